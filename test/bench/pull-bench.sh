#!/usr/bin/env bash
# Registry pull benchmark (issue "Many hosts for real", item 6): N clients pulling one ~100 MB
# multi-layer image at once, with skopeo, from
#   - Stratum, filesystem store;
#   - Stratum, S3 store (s3rver on loopback), blob GETs through the API (S3_REDIRECT=off);
#   - Stratum, S3 store, blob GETs redirected to presigned S3 URLs (S3_REDIRECT=on);
#   - CNCF Distribution (Debian's docker-registry), filesystem store,
# each the median of ROUNDS rounds, with the API's CPU seconds per pull (utime+stime of the API
# process from /proc, over all rounds, divided by the pulls); then the servers alone: the layer
# blobs fetched by N curl clients from Stratum (fs), s3rver (presigned URLs) and Distribution.
# Usage: test/bench/pull-bench.sh [--clients N] [--rounds R] [--layer-mb M]
#        (defaults 20, 3, 25: an image of four 25 MB random layers on a busybox root)
source "$(dirname "$0")/../../infra/lib.sh"
clients=20 rounds=3 layer_mb=25
while (($#)); do
  case $1 in
    --clients) clients=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --layer-mb) layer_mb=$2; shift 2 ;;
    *) echo "usage: $0 [--clients N] [--rounds R] [--layer-mb M]" >&2; exit 2 ;;
  esac
done
setup_all
apt_install skopeo bc docker-registry busybox-static
cd "$STRATUM_ROOT"
shared=$(cd "$STRATUM_ROOT/../shared" && pwd)
out=${BENCH_OUT:-$STRATUM_ROOT/test-output/pull-bench}
rm -rf "$out"; mkdir -p "$out"
work=$(mktemp -d /tmp/stratum-pull-bench.XXXX)
pids=()
# Newest first: the APIs and the worker stop while their Redis (started first) still answers.
cleanup() {
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  pids=()
  if ! grep -qF "$work" /proc/self/mountinfo; then rm -rf "$work"; fi
}
trap cleanup EXIT
now() { date +%s.%N; }
wait_http() { for _ in $(seq 1 150); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; log "$1 did not answer"; exit 1; }
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

rport=$(free_port)
redis-server "$STRATUM_ROOT/infra/redis.conf" --port "$rport" --dir "$work" >"$out/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

# A Stratum API on its own data dir and Redis database (each store its own deployment: the
# shared-store probe compares the processes of one deployment); sets api_port and api_pid.
start_api() { # name, redis db, extra env...
  local name=$1 db=$2; shift 2
  api_port=$(free_port)
  mkdir -p "$work/$name"
  env REDIS_URL="redis://127.0.0.1:$rport/$db" DATA_DIR="$work/$name" API_PORT="$api_port" \
    WORKER_ID="pull-$name" LOG_LEVEL=warn "$@" node dist/apps/api/src/main.js >"$out/api-$name.log" 2>&1 &
  api_pid=$!
  pids+=($api_pid)
}

# 1. The image, built by Stratum on the filesystem store.
start_api fs 1; fs_port=$api_port fs_pid=$api_pid
env REDIS_URL="redis://127.0.0.1:$rport/1" DATA_DIR="$work/fs" WORKER_ID=pull-fs LOG_LEVEL=warn \
  node dist/workers/builder/src/main.js >"$out/worker-fs.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$fs_port/healthz"
ctx=$work/ctx; mkdir -p "$ctx"
bash "$shared/fixtures/make-busybox-rootfs.sh" "$ctx/rootfs.tar" >>"$out/build.log" 2>&1
{
  echo 'FROM scratch'
  echo 'ADD rootfs.tar /'
  for i in 1 2 3 4; do echo "RUN dd if=/dev/urandom of=/layer$i.bin bs=1M count=$layer_mb 2>/dev/null"; done
} >"$ctx/Dockerfile"
STRATUM_URL=http://127.0.0.1:$fs_port apps/cli/bin/stratum build -t bench/pull:latest "$ctx" >>"$out/build.log" 2>&1 ||
  { log "build failed; see $out/build.log"; exit 1; }
src=docker://127.0.0.1:$fs_port/bench/pull:latest

# 2. The same image in the other registries.
s3port=$(free_port)
mkdir -p "$work/s3"
node -e "require('fs-extra').rmdir = async () => undefined; const S3rver = require('s3rver');
  new S3rver({ address: '127.0.0.1', port: $s3port, silent: true, directory: '$work/s3' }).run()" >"$out/s3rver.log" 2>&1 &
pids+=($!)
s3env=(STORAGE=s3 S3_ENDPOINT=http://127.0.0.1:$s3port S3_ACCESS_KEY=S3RVER S3_SECRET_KEY=S3RVER S3_BUCKET=pullbench)
start_api s3off 2 "${s3env[@]}" S3_REDIRECT=off; s3off_port=$api_port s3off_pid=$api_pid
start_api s3on 3 "${s3env[@]}" S3_REDIRECT=on; s3on_port=$api_port s3on_pid=$api_pid
dport=$(free_port)
cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$dport}
YML
docker-registry serve "$work/registry.yml" >"$out/registry.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$s3off_port/healthz"
wait_http "http://127.0.0.1:$s3on_port/healthz"
wait_http "http://127.0.0.1:$dport/v2/"
copy() { skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "$@" >>"$out/skopeo.log" 2>&1; }
copy "$src" "docker://127.0.0.1:$s3off_port/bench/pull:latest" # s3on shares the bucket
copy "$src" "docker://127.0.0.1:$dport/bench/pull:latest"
size=$(skopeo inspect --tls-verify=false --raw "$src" | node -e \
  'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const m=JSON.parse(s);console.log((m.layers.reduce((a,l)=>a+l.size,0)/1048576).toFixed(0), m.layers.length)})')
log "image: ${size% *} MB compressed in ${size#* } layers; $clients clients, $rounds rounds"
sync

# 3. Rounds: every registry once per round, the order rotating.
targets=("stratum-fs|$fs_port|$fs_pid" "stratum-s3-via-api|$s3off_port|$s3off_pid" "stratum-s3-redirect|$s3on_port|$s3on_pid" "distribution-fs|$dport|")
declare -A cpu0
for t in "${targets[@]}"; do IFS='|' read -r name _ pid <<<"$t"; [[ -n $pid ]] && cpu0[$name]=$(cpu_seconds "$pid"); done
for r in $(seq 1 "$rounds"); do
  for k in $(seq 0 $((${#targets[@]} - 1))); do
    t=${targets[$(((k + r) % ${#targets[@]}))]}
    IFS='|' read -r name port _ <<<"$t"
    mkdir -p "$work/pull"
    s=$(now)
    jobs=()
    for c in $(seq 1 "$clients"); do
      skopeo copy -q --src-tls-verify=false "docker://127.0.0.1:$port/bench/pull:latest" "dir:$work/pull/$name-$c" \
        >>"$out/skopeo-$name.log" 2>&1 &
      jobs+=($!)
    done
    failed=0
    for j in "${jobs[@]}"; do wait "$j" || failed=$((failed + 1)); done
    e=$(now)
    rm -rf "$work/pull"
    ((failed == 0)) || { log "$failed of $clients pulls from $name failed; see $out/skopeo-$name.log"; exit 1; }
    echo "$name $(echo "$e - $s" | bc)" >>"$out/rounds.txt"
  done
done
printf '%-22s %10s %14s\n' registry "median s" "api cpu s/pull" | tee "$out/report.txt"
for t in "${targets[@]}"; do
  IFS='|' read -r name _ pid <<<"$t"
  median=$(awk -v n="$name" '$1 == n {print $2}' "$out/rounds.txt" | sort -n | sed -n "$(((rounds + 1) / 2))p")
  cpu=-
  [[ -n $pid ]] && cpu=$(echo "scale=3; ($(cpu_seconds "$pid") - ${cpu0[$name]}) / ($clients * $rounds)" | bc)
  printf '%-22s %10.2f %14s\n' "$name" "$median" "$cpu" | tee -a "$out/report.txt"
done

# 4. The servers alone: the same bytes fetched with curl (no skopeo hashing or writing), N clients
# at once each GETting every layer blob to /dev/null, from Stratum's fs store, from s3rver at the
# presigned URLs Stratum's redirects name, and from Distribution. Shows which server bounds the
# redirected S3 pull: when s3rver alone is slower than Distribution, the S3 figures above are
# s3rver's, not Stratum's (MinIO is the production target; it is not on this machine).
layers=$(skopeo inspect --tls-verify=false --raw "docker://127.0.0.1:$fs_port/bench/pull:latest" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).layers.map(l=>l.digest).join(" ")))')
direct() { # name url... : N clients, each fetching every url; appends "name seconds" to direct.txt
  local name=$1 s e c jobs=() args=()
  shift
  for u in "$@"; do args+=(-o /dev/null "$u"); done
  s=$(now)
  for c in $(seq 1 "$clients"); do curl -fsS "${args[@]}" >>"$out/curl.log" 2>&1 & jobs+=($!); done
  for j in "${jobs[@]}"; do wait "$j" || { log "a curl of $name failed; see $out/curl-$name.log"; exit 1; }; done
  e=$(now)
  echo "$name $(echo "$e - $s" | bc)" >>"$out/direct.txt"
}
fs_urls=() s3_urls=() d_urls=()
for l in $layers; do
  fs_urls+=("http://127.0.0.1:$fs_port/v2/bench/pull/blobs/$l")
  d_urls+=("http://127.0.0.1:$dport/v2/bench/pull/blobs/$l")
  s3_urls+=("$(curl -s -o /dev/null -w '%{redirect_url}' "http://127.0.0.1:$s3on_port/v2/bench/pull/blobs/$l")")
done
printf '\nservers alone (%s curl clients, every layer blob each, median of %s):\n' "$clients" "$rounds" | tee -a "$out/report.txt"
for r in $(seq 1 "$rounds"); do
  direct stratum-fs-api "${fs_urls[@]}"
  direct s3rver-presigned "${s3_urls[@]}"
  direct distribution-fs "${d_urls[@]}"
done
for name in stratum-fs-api s3rver-presigned distribution-fs; do
  median=$(awk -v n="$name" '$1 == n {print $2}' "$out/direct.txt" | sort -n | sed -n "$(((rounds + 1) / 2))p")
  printf '%-22s %10.2f\n' "$name" "$median" | tee -a "$out/report.txt"
done
