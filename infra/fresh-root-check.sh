#!/usr/bin/env bash
# The fresh-machine check: runs the README's two quick-start commands in a brand-new Debian root,
# where nothing installed by hand on this machine exists, and reports what the root lacked.
#
#   infra/fresh-root-check.sh [--keep] [--only up|test]
#
# 1. A pristine Debian bookworm root is made with `debootstrap --variant=minbase` once per
#    machine (cached under $FRESH_ROOT_CACHE, never entered), and copied to a new root per run.
# 2. A clean clone of this repository's HEAD (committed work only) goes to <root>/work/main and
#    the shared folder beside it to <root>/work/shared. The host's Node.js is bound in read-only
#    (the machines we run on come with Node 20 and npm 11; Debian 12's nodejs is 18), nothing else.
# 3. In the root (entered as a machine's own "/": a private mount namespace whose root is
#    pivot_root'ed to it, with /proc, /sys, /dev of the host; same network). Not chroot: the
#    kernel refuses user namespaces to a chrooted process, and our steps run in them:
#    - `./infra/up.sh` on a free port, then the README's example build with the CLI, then SIGINT;
#      checks that every process it started is gone;
#    - `CI=true ./infra/test.sh` (what .ci/run calls).
# 4. Prints which programs were missing in the root before, what the scripts installed, and both
#    results. Exit status 0 only when both commands succeeded.
# Every process started in the root is stopped by PID and every mount under it is unmounted on
# exit; the root is removed unless --keep.
source "$(dirname "$0")/lib.sh"

keep=false
only=all
while (($#)); do
  case "$1" in
    --keep) keep=true ;;
    --only) only=$2; shift ;;
    *) echo "usage: $0 [--keep] [--only up|test]" >&2; exit 2 ;;
  esac
  shift
done

apt_install debootstrap git
CACHE=${FRESH_ROOT_CACHE:-/var/tmp/stratum-fresh-root-cache}
SUITE=bookworm
MIRROR=${FRESH_ROOT_MIRROR:-http://deb.debian.org/debian}
PRISTINE=$CACHE/$SUITE-minbase
if [[ ! -f $PRISTINE/.complete ]]; then
  log "debootstrap $SUITE (minbase) into $PRISTINE (once per machine)"
  rm -rf "$PRISTINE"
  mkdir -p "$CACHE"
  as_root debootstrap --variant=minbase "$SUITE" "$PRISTINE" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE/debootstrap.log"; exit 1; }
  touch "$PRISTINE/.complete"
fi

ROOT=$(mktemp -d /var/tmp/stratum-fresh-root.XXXXXX)
REPORT=$ROOT.report
: >"$REPORT"
started=$(date +%s)

# The root's own mount namespace is held by one process (NS_PID, a `sleep` whose root is the fresh
# root after pivot_root); every command of the check enters it with nsenter. Processes started in
# the root are those in that namespace (by PID; the holder itself is stopped last).
NS_PID=
root_pids() {
  [[ -n $NS_PID ]] || return 0
  local p ns
  ns=$(readlink "/proc/$NS_PID/ns/mnt" 2>/dev/null) || return 0
  for p in /proc/[0-9]*; do
    [[ ${p#/proc/} != "$NS_PID" && $(readlink "$p/ns/mnt" 2>/dev/null) == "$ns" ]] && echo "${p#/proc/}"
  done
  return 0
}

cleanup() {
  local pids tries=0
  pids=$(root_pids)
  if [[ -n $pids ]]; then
    log "stopping processes left in the root: $(echo $pids)"
    kill -TERM $pids 2>/dev/null || true
    while [[ -n $(root_pids) ]] && ((tries++ < 50)); do sleep 0.2; done
    pids=$(root_pids)
    [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
    sleep 0.5
  fi
  # The holder last: with it the namespace goes, and every mount made in the root with it.
  if [[ -n $NS_PID ]]; then
    kill -KILL "$NS_PID" 2>/dev/null || true
    wait "$NS_PID" 2>/dev/null || true
  fi
  # Deepest first; lazy only as a last resort (a mount still busy after every process is gone).
  findmnt -rn -o TARGET | grep -E "^$ROOT(/|$)" | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  if [[ -n $(findmnt -rn -o TARGET | grep -E "^$ROOT(/|$)") ]]; then
    log "mounts still under $ROOT: kept it"
  elif ! $keep; then
    rm -rf --one-file-system "$ROOT"
  fi
}
trap cleanup EXIT

log "new root $ROOT"
cp -a "$PRISTINE/." "$ROOT/"
rm -f "$ROOT/.complete"
# The root a mount point of its own, as / is on a machine: runc makes the container's / a slave
# mount (MS_SLAVE|MS_REC on "/"), which fails with EINVAL where "/" is a plain directory.
mount --bind "$ROOT" "$ROOT"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# What a new machine of our kind comes with besides Debian: its local CAs (an egress proxy
# re-signs https; the ca-certificates package our scripts install picks them up from here) and
# NODE_EXTRA_CA_CERTS pointing Node at the system bundle.
if [[ -d /usr/local/share/ca-certificates ]]; then
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp -a /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
fi
machine_env=()
[[ -n ${NODE_EXTRA_CA_CERTS:-} ]] && machine_env+=("NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS")

# The machine's own Node.js and npm (read-only), as on a new machine of the kind we run on.
node_bin=$(readlink -f "$(command -v node)")
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
mkdir -p "$ROOT/usr/local/bin" "$ROOT/usr/local/lib/node_modules/npm"
touch "$ROOT/usr/local/bin/node"
mount --bind "$node_bin" "$ROOT/usr/local/bin/node"
mount --bind -o ro "$npm_dir" "$ROOT/usr/local/lib/node_modules/npm"
mount -o remount,bind,ro "$ROOT/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ROOT/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ROOT/usr/local/bin/npx"

mount -t proc proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys"
mount --make-rslave "$ROOT/sys"
mount --rbind /dev "$ROOT/dev"
mount --make-rslave "$ROOT/dev"
mount -t tmpfs tmpfs "$ROOT/run"
mkdir -p "$ROOT/work"
git clone -q "$STRATUM_ROOT" "$ROOT/work/main"
cp -a "$STRATUM_ROOT/../shared" "$ROOT/work/shared"

# The namespace holder: a private copy of this mount namespace whose "/" becomes the root (it is a
# mount point: the bind above), the host's tree detached under it.
mkdir -p "$ROOT/.oldroot"
unshare --mount --propagation private sh -c \
  'cd "$1" && pivot_root . .oldroot && /.oldroot/usr/bin/umount -l /.oldroot && exec /bin/sleep infinity' \
  sh "$ROOT" &
NS_PID=$!
for _ in $(seq 1 100); do
  [[ $(cat "/proc/$NS_PID/comm" 2>/dev/null) == sleep ]] && break
  kill -0 "$NS_PID" 2>/dev/null || { echo "could not pivot_root into $ROOT" >&2; exit 1; }
  sleep 0.1
done
rmdir "$ROOT/.oldroot"
# setns(CLONE_NEWNS) sets the caller's root and cwd to the namespace's root: no chroot involved.
in_root() { nsenter --target "$NS_PID" --mount /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
  "${machine_env[@]}" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# What the root lacks before the scripts run: every program a script or a test runs.
programs=(redis-server redis-cli runc git curl skopeo podman buildah dockerd docker docker-registry
  chromium umoci debootstrap busybox setfattr igzip pigz zstd python3 openssl ip)
missing=()
for p in "${programs[@]}"; do in_root sh -c "command -v $p" >/dev/null || missing+=("$p"); done
in_root dpkg-query -W -f '${Package}\n' | sort >"$ROOT.pkgs-before"
echo "missing in the fresh root before: ${missing[*]:-(none)}" | tee -a "$REPORT"

up_rc=skipped
if [[ $only == all || $only == up ]]; then
  port=$(free_port)
  log "command 1 in the root: API_PORT=$port ./infra/up.sh"
  t0=$(date +%s)
  # Job control on: a background job of a script would otherwise ignore SIGINT (our Ctrl-C).
  set -m
  in_root sh -c "cd /work/main && API_PORT=$port exec ./infra/up.sh" >"$ROOT.up.log" 2>&1 &
  up_pid=$!
  set +m
  ok=false
  for _ in $(seq 1 1200); do
    # up.sh says so once the API is healthy and the busybox base is in (as a user reads it)
    grep -q 'Stratum is up' "$ROOT.up.log" 2>/dev/null && { ok=true; break; }
    kill -0 "$up_pid" 2>/dev/null || break
    sleep 0.5
  done
  if $ok; then
    echo "up.sh: up after $(($(date +%s) - t0)) s" | tee -a "$REPORT"
    mkdir -p "$ROOT/work/hello"
    printf 'FROM busybox\nRUN echo hi > /hi\nCMD ["cat", "/hi"]\n' >"$ROOT/work/hello/Dockerfile"
    if in_root sh -c "cd /work/main && STRATUM_URL=http://127.0.0.1:$port apps/cli/bin/stratum build -t hello/world:1 /work/hello" >"$ROOT.build.log" 2>&1; then
      echo "README example build: succeeded" | tee -a "$REPORT"
      up_rc=0
    else
      echo "README example build: FAILED" | tee -a "$REPORT"
      tail -15 "$ROOT.build.log" | sed 's/^/  | /' | tee -a "$REPORT"
      up_rc=1
    fi
  else
    echo "up.sh: never said 'Stratum is up'" | tee -a "$REPORT"
    up_rc=1
  fi
  # Ctrl-C as a terminal sends it: to the whole process group (set -m gave the job its own).
  kill -INT -- "-$up_pid" 2>/dev/null || true
  # up.sh stops the worker (within its 30 s shutdown timeout) and the API, then redis-server
  for _ in $(seq 1 200); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$up_pid" 2>/dev/null || wait "$up_pid" 2>/dev/null || true
  left=$(root_pids)
  if [[ -n $left ]]; then
    echo "after Ctrl-C, still running in the root: $(ps -o pid=,comm= -p $(echo $left | tr ' ' ,) | tr '\n' ';')" | tee -a "$REPORT"
    up_rc=1
  else
    echo "after Ctrl-C: no process left" | tee -a "$REPORT"
  fi
  ((up_rc == 0)) || { echo "up.sh log (tail):"; tail -30 "$ROOT.up.log" | sed 's/^/  | /'; } | tee -a "$REPORT"
fi

test_rc=skipped
if [[ $only == all || $only == test ]]; then
  log "command 2 in the root: CI=true ./infra/test.sh (log: $ROOT.test.log)"
  t0=$(date +%s)
  set +e
  in_root sh -c 'cd /work/main && CI=true exec ./infra/test.sh' >"$ROOT.test.log" 2>&1
  test_rc=$?
  set -e
  echo "test.sh: exit $test_rc after $(($(date +%s) - t0)) s" | tee -a "$REPORT"
  grep -E '^(Tests|Test Suites):|^(FAIL) ' "$ROOT.test.log" | sed 's/^/  /' | tee -a "$REPORT" || true
  ((test_rc == 0)) || { echo "test.sh log (tail):"; tail -40 "$ROOT.test.log" | sed 's/^/  | /'; } | tee -a "$REPORT"
  (cd "$ROOT/work/main" && git status --porcelain) | sed 's/^/  changed in the clone: /' | tee -a "$REPORT"
fi

in_root dpkg-query -W -f '${Package}\n' | sort >"$ROOT.pkgs-after"
echo "Debian packages the scripts installed: $(comm -13 "$ROOT.pkgs-before" "$ROOT.pkgs-after" | wc -l) ($(comm -13 "$ROOT.pkgs-before" "$ROOT.pkgs-after" | grep -xE "$(IFS='|'; echo "${SYSTEM_PACKAGES[*]}|${TEST_PACKAGES[*]}" | sed 's/\./\\./g')" | tr '\n' ' '))" | tee -a "$REPORT"
echo "fresh-root check: up=$up_rc test=$test_rc in $(($(date +%s) - started)) s; logs $ROOT.{up,build,test}.log" | tee -a "$REPORT"
[[ ($up_rc == 0 || $up_rc == skipped) && ($test_rc == 0 || $test_rc == skipped) ]]
