#!/usr/bin/env bash
# Stratum benchmark: every workload in ../shared/bench/workloads through Stratum end to end
# (CLI -> API -> queue -> worker -> image in our registry), cold and warm, beside BuildKit and
# Buildah timed by ../shared/bench/peers.sh in the same run; then the project's own workloads
# (test/bench/workloads, phases in project-workloads.sh: npm ci through bind + cache mounts on
# a Debian base with nodejs) beside the peers timed by peers-project.sh with peers.sh's
# commands. Prints a table of seconds and the ratio Stratum / BuildKit, the worker's and API's
# peak RSS, the snapshot micro-benchmark and a registry pull comparison. WORKLOAD names come
# from either folder.
# With --runs N the whole comparison runs N times (peers too) and the report gives each run's
# table and the medians (a single workload's ratio moves by +-0.3 between runs on 2 cores).
# With --throughput N (default 0: off) it also submits N small builds at once to each builder
# (test/bench/throughput.sh): builds per minute and p50/p95 build time.
# Usage: test/bench/bench.sh [--runs N] [--throughput N] [WORKLOAD ...]     (npm run bench)
source "$(dirname "$0")/../../infra/lib.sh"
source "$(dirname "$0")/throughput.sh"
runs=1
throughput=0
while (($#)); do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --throughput) throughput=$2; shift 2 ;;
    *) break ;;
  esac
done
setup_all
cd "$STRATUM_ROOT"
shared=$(cd "$STRATUM_ROOT/../shared" && pwd)
out_root=${BENCH_OUT:-$STRATUM_ROOT/test-output/bench}
rm -rf "$out_root"; mkdir -p "$out_root"
export BENCH_TMP=${BENCH_TMP:-/tmp/stratum-bench-peers}
# shellcheck source=project-workloads.sh
source "$STRATUM_ROOT/test/bench/project-workloads.sh"
workloads=() projects=()
if (($#)); then
  for w in "$@"; do
    if [[ -d $shared/bench/workloads/$w ]]; then workloads+=("$w")
    elif [[ -d $PROJECT_WORKLOADS_DIR/$w ]]; then projects+=("$w")
    else log "no workload $w in $shared/bench/workloads or $PROJECT_WORKLOADS_DIR"; exit 1; fi
  done
else
  workloads=($(ls "$shared/bench/workloads")) projects=($(project_workloads))
fi
((${#projects[@]} == 0)) || apt_install debootstrap # the npm workload's Debian base

apt_install skopeo bc
pids=()
data=""
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  # The stack's data dir goes with it (never through a mount a stopped worker left behind).
  # (retried: a process of the stack's may still be ending and writing there; one run of three
  # failed once on "Directory not empty")
  if [[ -n $data ]] && ! grep -qF "$data" /proc/self/mountinfo; then
    # and the worker's runtime dir on the tmpfs (its scratch dir's `runc` links into it), which
    # the next worker's sweep removes only once a later stack starts
    local link
    for link in "$data"/worker/*/runc; do
      if [[ -L $link ]]; then rm -rf "$(dirname "$(readlink "$link")")"; fi
    done
    for _ in 1 2 3 4 5; do rm -rf "$data" 2>/dev/null && break; sleep 0.5; done
    [[ ! -e $data ]] || { log "cannot remove $data"; return 1; }
  fi
  data=""
}
trap cleanup EXIT
peak_rss_mb() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
now() { date +%s.%N; }

# Every builder starts its part of a run from the same kernel state. Each container (ours,
# BuildKit's, Buildah's) leaves a dying memory cgroup behind while the page cache it wrote stays
# charged to it, and on this host's kernel file creation slows with their number: the
# manyfiles RUN loop took 0.4 s of system CPU with 20 memory cgroups and 5 s with 389. Whoever
# ran later in a run paid for everyone before it, so the page cache is written back and
# dropped (which lets those cgroups go) before each builder, and their count is logged.
settle_kernel() { # label
  sync
  echo 3 >/proc/sys/vm/drop_caches
  printf '%s\tmemory cgroups after settling: %s\n' "$1" "$(awk '$1 == "memory" {print $3}' /proc/cgroups)" >>"$out/kernel.txt"
}

# A fresh stack per workload: new Redis, empty store and layer cache, so "cold" is cold.
start_stack() {
  cleanup
  data=$(mktemp -d /tmp/stratum-bench-data.XXXX)
  rport=$(free_port); aport=$(free_port)
  # The shipped config (append-only, fsync on every write), as up.sh runs it.
  redis-server "$STRATUM_ROOT/infra/redis.conf" --port "$rport" --dir "$data" >"$out/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  export REDIS_URL=redis://127.0.0.1:$rport DATA_DIR=$data API_PORT=$aport WORKER_ID=bench LOG_LEVEL=warn
  node dist/workers/builder/src/main.js >>"$out/worker.log" 2>&1 &
  worker_pid=$!; pids+=($worker_pid)
  node dist/apps/api/src/main.js >>"$out/api.log" 2>&1 &
  api_pid=$!; pids+=($api_pid)
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$aport/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
  # and until the worker serves its queues (it advertises itself then): the peers' daemons are
  # up before their cold builds too, so "cold" is empty caches, not a worker still booting
  for _ in $(seq 1 150); do
    curl -fs "http://127.0.0.1:$aport/api/v1/workers" 2>/dev/null | grep -q '"live":true' && break
    sleep 0.1
  done
  export STRATUM_URL=http://127.0.0.1:$aport
}

one_run() {
  : >"$out/peers.tsv"
  if ((${#workloads[@]})); then
    settle_kernel peers
    log "peers (BuildKit, Buildah): $shared/bench/peers.sh ${workloads[*]}"
    "$shared/bench/peers.sh" "${workloads[@]}" | tee -a "$out/peers.tsv"
  fi
  if ((${#projects[@]})); then
    log "peers (BuildKit, Buildah) on the project's workloads: test/bench/peers-project.sh ${projects[*]}"
    test/bench/peers-project.sh "${projects[@]}" | tee -a "$out/peers.tsv"
  fi
  : >"$out/stratum.tsv"
  settle_kernel stratum
  for w in "${workloads[@]}"; do
    ctx=$BENCH_TMP/ctx/$w # the same context dirs peers.sh built
    start_stack
    for phase in cold warm; do
      s=$(now)
      apps/cli/bin/stratum build -t "bench/$w:latest" "$ctx" >>"$out/stratum-$w.log" 2>&1 ||
        { log "stratum build of $w ($phase) failed; see $out/stratum-$w.log"; exit 1; }
      e=$(now)
      printf '%s\tstratum\t%s-build+push\t%.3f\n' "$w" "$phase" "$(echo "$e - $s" | bc)" | tee -a "$out/stratum.tsv"
    done
    printf '%s\tstratum\tworker-peak-rss-mb\t%s\n%s\tstratum\tapi-peak-rss-mb\t%s\n' \
      "$w" "$(peak_rss_mb "$worker_pid")" "$w" "$(peak_rss_mb "$api_pid")" | tee -a "$out/stratum.tsv"
    if [[ $w == bigdata ]]; then
      # Registry pull: skopeo copy to a local dir, from Stratum and from CNCF Distribution holding the same image.
      port=${BENCH_REGISTRY_PORT:-5099}
      skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
        "docker://127.0.0.1:$aport/bench/$w:latest" "docker://127.0.0.1:$port/mirror/$w:latest" >>"$out/skopeo.log" 2>&1
      # Five rounds, the two registries interleaved (who goes first alternates); the median of
      # each is reported. `sync` first: the build's dirty pages are not flushed during the pulls.
      sync
      a="stratum|127.0.0.1:$aport/bench/$w:latest" b="distribution|127.0.0.1:$port/mirror/$w:latest"
      for order in "$a $b" "$b $a" "$a $b" "$b $a" "$a $b"; do
        for src in $order; do
          name=${src%%|*}; ref=${src#*|}; dir=$(mktemp -d)
          s=$(now)
          skopeo copy -q --src-tls-verify=false "docker://$ref" "dir:$dir/img" >>"$out/skopeo.log" 2>&1
          e=$(now); rm -rf "$dir"
          echo "$name $(echo "$e - $s" | bc)" >>"$out/skopeo-rounds.txt"
        done
      done
      for name in stratum distribution; do
        median=$(awk -v n="$name" '$1 == n {print $2}' "$out/skopeo-rounds.txt" | sort -n | sed -n 3p)
        printf '%s\t%s\tskopeo-pull\t%.3f\n' "$w" "$name" "$median" | tee -a "$out/stratum.tsv"
      done
    fi
  done
  for w in "${projects[@]}"; do
    start_stack
    read -r base_tar base_name < <(project_base "$w")
    # The base imported beforehand, untimed, as for the peers; and its layer extracted on the
    # worker by a build of its own (docker import and buildah commit leave it unpacked in the
    # peers' stores): "cold" times the workload's steps, not unpacking the base.
    apps/cli/bin/stratum import "$base_tar" "$base_name" >>"$out/stratum-$w.log" 2>&1 ||
      { log "stratum import of $base_tar failed; see $out/stratum-$w.log"; exit 1; }
    prime=$BENCH_TMP/ctx-project/$w-prime
    rm -rf "$prime"; mkdir -p "$prime"; printf 'FROM %s\nRUN true\n' "$base_name" >"$prime/Dockerfile"
    apps/cli/bin/stratum build -t "bench/$w-prime:latest" "$prime" >>"$out/stratum-$w.log" 2>&1 ||
      { log "stratum build of $w's base failed; see $out/stratum-$w.log"; exit 1; }
    ctx=$BENCH_TMP/ctx-project/$w-stratum
    project_context "$w" "$ctx"
    for phase in "${PROJECT_PHASES[@]}"; do
      project_phase "$w" "$phase" "$ctx"
      s=$(now)
      apps/cli/bin/stratum build -t "bench/$w:latest" "$ctx" >>"$out/stratum-$w.log" 2>&1 ||
        { log "stratum build of $w ($phase) failed; see $out/stratum-$w.log"; exit 1; }
      e=$(now)
      printf '%s\tstratum\t%s-build+push\t%.3f\n' "$w" "$phase" "$(echo "$e - $s" | bc)" | tee -a "$out/stratum.tsv"
    done
    printf '%s\tstratum\tworker-peak-rss-mb\t%s\n%s\tstratum\tapi-peak-rss-mb\t%s\n' \
      "$w" "$(peak_rss_mb "$worker_pid")" "$w" "$(peak_rss_mb "$api_pid")" | tee -a "$out/stratum.tsv"
  done
  cleanup

  log "snapshot micro-benchmark (one-file change on a 200 MB base)"
  node test/bench/snapshot-bench.js | tee -a "$out/stratum.tsv"

  if ((throughput > 0)); then
    log "throughput: $throughput builds at once per builder"
    throughput_bench "$throughput" | tee -a "$out/stratum.tsv"
  fi
}

for run in $(seq 1 "$runs"); do
  out=$out_root/run$run
  mkdir -p "$out"
  ((runs > 1)) && log "run $run of $runs"
  one_run
done
node test/bench/report.js "$out_root"/run*/ | tee "$out_root/report.txt"
