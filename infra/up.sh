#!/usr/bin/env bash
# Quick start, command 1: set up everything and run Stratum on this machine —
# a local redis-server on a free port, the worker and the API (port $API_PORT, default 8080),
# with the filesystem store under $DATA_DIR (default ./.data). Ctrl-C stops all three.
# Safe to re-run.
source "$(dirname "$0")/lib.sh"
setup_all
cd "$STRATUM_ROOT"

export DATA_DIR=${DATA_DIR:-$STRATUM_ROOT/.data}
export API_PORT=${API_PORT:-8080}
mkdir -p "$DATA_DIR/redis"
pids=()
redis_pid=
# The worker and the API stop first (a worker hands its running builds back through Redis),
# redis-server last. It runs in a session of its own, so a terminal's Ctrl-C (sent to the whole
# foreground process group) does not take it down before them.
stop() {
  trap - INT TERM EXIT
  log "stopping (pids ${pids[*]:-} ${redis_pid})"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n $redis_pid ]]; then
    kill -TERM "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
}
trap stop INT TERM EXIT

if [[ -z ${REDIS_URL:-} ]]; then
  port=$(free_port)
  setsid redis-server "$STRATUM_ROOT/infra/redis.conf" --port "$port" --dir "$DATA_DIR/redis" \
    >"$DATA_DIR/redis.log" 2>&1 &
  redis_pid=$!
  export REDIS_URL=redis://127.0.0.1:$port
  for _ in $(seq 1 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  log "redis-server on port $port (pid $redis_pid)"
fi

node dist/workers/builder/src/main.js &
pids+=($!)
node dist/apps/api/src/main.js &
pids+=($!)
# Up to two minutes (a busy machine's first start); a process that exits ends the wait at once.
healthy=false
for _ in $(seq 1 600); do
  curl -fs "http://127.0.0.1:$API_PORT/healthz" >/dev/null 2>&1 && { healthy=true; break; }
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || break 2; done
  sleep 0.2
done
if ! $healthy; then
  log "the API did not become healthy on port $API_PORT (its log is above)"
  exit 1
fi
# A `busybox` base, so `FROM busybox` builds on a machine that reaches no registry (once).
"$STRATUM_ROOT/infra/busybox-base.sh" "http://127.0.0.1:$API_PORT" || log "warning: no busybox base image (see above)"
log "Stratum is up: API http://127.0.0.1:$API_PORT (docs /docs), data in $DATA_DIR"
log "try: apps/cli/bin/stratum build -t hello:latest <dir>   (STRATUM_URL=http://127.0.0.1:$API_PORT)"
wait -n "${pids[@]}" ${redis_pid:+"$redis_pid"}
