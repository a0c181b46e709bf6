#!/usr/bin/env bash
# Times BuildKit (Docker Engine) and Buildah on the project's own workloads (project-workloads.sh)
# with the commands ../shared/bench/peers.sh uses (docker build --network=host + docker push;
# buildah build --layers --runtime /usr/sbin/runc --isolation oci --network host + buildah
# push), against the dockerd and the CNCF Distribution registry peers.sh runs (BENCH_TMP,
# BENCH_REGISTRY_PORT), started the same way when they are not running. Before "cold" each
# builder's cache (BuildKit's, cache mounts included; buildah's images and cache-mount dir) is
# emptied and the workload's base image imported again, untimed. Buildah keeps a storage of its
# own below BENCH_TMP, so the machine's default storage (other users') is left alone. The base
# is pushed to the registry beforehand too (untimed): in Stratum it is in the registry already.
# Usage: peers-project.sh [WORKLOAD ...]    Output: TSV "workload peer phase seconds".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=project-workloads.sh
source "$here/project-workloads.sh"
tmp=${BENCH_TMP:-/tmp/peer-bench}
port=${BENCH_REGISTRY_PORT:-5099}
mkdir -p "$tmp"
DOCKER=/usr/bin/docker
sock=$tmp/dockerd.sock
export DOCKER_HOST=unix://$sock

# As peers.sh's.
start_dockerd() {
  [[ -S $sock ]] && $DOCKER info >/dev/null 2>&1 && return
  dockerd --iptables=false --bridge=none --data-root "$tmp/docker" --exec-root "$tmp/docker-exec" \
    --pidfile "$tmp/dockerd.pid" --host "unix://$sock" >"$tmp/dockerd.log" 2>&1 &
  for _ in $(seq 1 50); do $DOCKER info >/dev/null 2>&1 && return; sleep 0.2; done
  echo "dockerd did not start; see $tmp/dockerd.log" >&2; exit 1
}
start_registry() {
  curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && return
  rm -rf "$tmp/registry"
  cat >"$tmp/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $tmp/registry}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
YML
  docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1 &
  echo $! >"$tmp/registry.pid"
  for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && return; sleep 0.1; done
  echo "registry did not start" >&2; exit 1
}
t() {
  local s e; s=$(date +%s.%N)
  "$@" >>"$tmp/cmd.log" 2>&1 || { echo "failed: $*; see $tmp/cmd.log" >&2; return 1; }
  e=$(date +%s.%N); echo "$e - $s" | bc
}
# t, once more when the first attempt fails (said on stderr; the time is the second's): Debian's
# dockerd 20.10 (BuildKit 0.8) now and then loses a just-changed file of the context it syncs
# ("error mounting .../buildkit-mount*/package-lock.json ... no such file"); a rerun finds it.
t_retry() { t "$@" || { echo "retrying: $*" >&2; t "$@"; }; }

bdir=$tmp/buildah-project
buildah_() { TMPDIR=$bdir/tmp buildah --root "$bdir/root" --runroot "$bdir/runroot" --storage-driver overlay "$@"; }
buildah_reset() {
  buildah_ rm --all >/dev/null 2>&1 || true
  buildah_ rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$bdir/tmp"; mkdir -p "$bdir/tmp" # buildah-cache-<uid>: the cache mounts
}

start_dockerd; start_registry
workloads=("$@"); ((${#workloads[@]})) || workloads=($(project_workloads))
for w in "${workloads[@]}"; do
  read -r base_tar base_name < <(project_base "$w")
  ref=127.0.0.1:$port/peers/$w
  ctx=$tmp/ctx-project/$w
  # BuildKit
  for phase in "${PROJECT_PHASES[@]}"; do $DOCKER image rm -f "$ref:buildkit-$phase" >/dev/null 2>&1 || true; done
  $DOCKER builder prune -af >/dev/null 2>&1 || true
  $DOCKER image rm -f "$base_name" >/dev/null 2>&1 || true
  $DOCKER import "$base_tar" "$base_name" >>"$tmp/cmd.log" 2>&1
  # The base is in the registry before "cold", as it is in Stratum's (imported there).
  $DOCKER tag "$base_name" "$ref:buildkit-base"
  $DOCKER push "$ref:buildkit-base" >>"$tmp/cmd.log" 2>&1
  project_context "$w" "$ctx"
  for phase in "${PROJECT_PHASES[@]}"; do
    project_phase "$w" "$phase" "$ctx"
    b=$(t_retry env DOCKER_BUILDKIT=1 $DOCKER build --network=host -t "$ref:buildkit-$phase" "$ctx")
    p=$(t $DOCKER push "$ref:buildkit-$phase")
    printf '%s\tbuildkit\t%s-build\t%.3f\n%s\tbuildkit\t%s-push\t%.3f\n' "$w" "$phase" "$b" "$w" "$phase" "$p"
  done
  # Buildah
  buildah_reset
  c=$(buildah_ from scratch)
  buildah_ add "$c" "$base_tar" / >>"$tmp/cmd.log" 2>&1
  buildah_ commit -q "$c" "$base_name" >>"$tmp/cmd.log" 2>&1
  buildah_ rm "$c" >/dev/null
  buildah_ push --tls-verify=false "$base_name" "docker://$ref:buildah-base" >>"$tmp/cmd.log" 2>&1
  project_context "$w" "$ctx"
  for phase in "${PROJECT_PHASES[@]}"; do
    project_phase "$w" "$phase" "$ctx"
    b=$(t buildah_ build --layers --runtime /usr/sbin/runc --isolation oci --network host -t "$ref:buildah-$phase" "$ctx")
    p=$(t buildah_ push --tls-verify=false "$ref:buildah-$phase" "docker://$ref:buildah-$phase")
    printf '%s\tbuildah\t%s-build\t%.3f\n%s\tbuildah\t%s-push\t%.3f\n' "$w" "$phase" "$b" "$w" "$phase" "$p"
  done
  buildah_reset
  # buildah's overlay storage keeps a mount of its own root
  if grep -qF " $bdir/root/overlay " /proc/self/mountinfo; then umount "$bdir/root/overlay" || true; fi
done
