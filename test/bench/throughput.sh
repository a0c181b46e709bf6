#!/usr/bin/env bash
# Throughput: N small builds submitted at once (default 30), each of the `steps` workload with its
# own GREETING build arg (so every RUN misses the cache: 30 different images), through Stratum
# (one worker, WORKER_CONCURRENCY slots), BuildKit (N concurrent `docker build` + `docker push`)
# and Buildah (N concurrent `buildah build` + `buildah push`), in the same run.
# Prints TSV rows "throughput <tool> <metric> <value>": builds-per-minute, p50-s, p95-s, wall-s.
# Expects what bench.sh sets up: peers.sh's dockerd and registry running, the context dirs it
# made under $BENCH_TMP/ctx, dist/ built, and start_stack/cleanup from bench.sh (sourced).
# Usage (from bench.sh): throughput_bench N
throughput_bench() {
  local n=$1 w=steps tool i
  local ctx=$BENCH_TMP/ctx/$w port=${BENCH_REGISTRY_PORT:-5099}
  local tdir=$out/throughput
  mkdir -p "$tdir"
  # per-build seconds -> builds/min over the wall time, nearest-rank p50/p95
  summarize() { # tool wall-seconds times-file
    sort -n "$3" | awk -v tool="$1" -v wall="$2" -v n="$n" '
      { t[NR] = $1 }
      END {
        if (NR != n) { printf "throughput\t%s\tcompleted\t%d\n", tool, NR }
        p50 = t[int((NR * 50 + 99) / 100)]; p95 = t[int((NR * 95 + 99) / 100)]
        printf "throughput\t%s\tbuilds-per-minute\t%.1f\n", tool, NR * 60 / wall
        printf "throughput\t%s\tp50-s\t%.2f\nthroughput\t%s\tp95-s\t%.2f\n", tool, p50, tool, p95
        printf "throughput\t%s\twall-s\t%.2f\n", tool, wall
      }'
  }
  one() { # tool i: one build (and push), its seconds on stdout
    local s e
    s=$(now)
    case $1 in
      stratum)
        apps/cli/bin/stratum build -q --build-arg "GREETING=hello-$2" -t "tp/steps:$2" "$ctx" ;;
      buildkit)
        # Debian's client (as peers.sh): it builds with BuildKit without buildx
        DOCKER_BUILDKIT=1 /usr/bin/docker build -q --network=host --build-arg "GREETING=hello-$2" \
          -t "127.0.0.1:$port/tp/steps:bk-$2" "$ctx" &&
          /usr/bin/docker push -q "127.0.0.1:$port/tp/steps:bk-$2" ;;
      buildah)
        buildah build -q --layers --runtime /usr/sbin/runc --isolation oci --network host \
          --build-arg "GREETING=hello-$2" -t "127.0.0.1:$port/tp/steps:ba-$2" "$ctx" &&
          buildah push -q --tls-verify=false "127.0.0.1:$port/tp/steps:ba-$2" ;;
    esac >>"$tdir/$1.log" 2>&1 || { echo "throughput: $1 build $2 failed; see $tdir/$1.log" >&2; return 1; }
    e=$(now)
    echo "$e - $s" | bc
  }
  for tool in stratum buildkit buildah; do
    case $tool in
      stratum)
        # 6 slots: on 2 cores (30 builds, interleaved rounds) 4 slots gave 170-185 builds/min,
        # 6 gave 180-193 and 8 189-190; 3 gave 167-170.
        WORKER_CONCURRENCY=${THROUGHPUT_SLOTS:-6} start_stack ;;
      buildkit)
        DOCKER_HOST=unix://$BENCH_TMP/dockerd.sock /usr/bin/docker builder prune -af >/dev/null 2>&1 || true ;;
      buildah)
        buildah rm --all >/dev/null 2>&1 || true
        buildah rmi --all --force >/dev/null 2>&1 || true ;;
    esac
    settle_kernel "throughput $tool"
    : >"$tdir/$tool.times"
    local s e jobs=()
    s=$(now)
    for i in $(seq 1 "$n"); do
      (DOCKER_HOST=unix://$BENCH_TMP/dockerd.sock one "$tool" "$i" >>"$tdir/$tool.times") &
      jobs+=($!)
    done
    for j in "${jobs[@]}"; do wait "$j" || true; done
    e=$(now)
    summarize "$tool" "$(echo "$e - $s" | bc)" "$tdir/$tool.times"
    if [[ $tool == stratum ]]; then cleanup; fi
  done
}
