# Shared helpers for the infra scripts (sourced, not run).
# shellcheck shell=bash
set -euo pipefail
STRATUM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export STRATUM_ROOT

log() { printf '\033[1m[stratum]\033[0m %s\n' "$*" >&2; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# Debian packages the service and its tests need. Installed only when missing.
# SYSTEM_PACKAGES: what the service itself runs (up.sh). TEST_PACKAGES: every program a test
# or the fresh-root check runs besides (test.sh installs both): a test never skips for a missing
# tool, it fails naming it, so the install has to be here.
# Programs that come from another package than the one named: redis-server's binary is in
# redis-tools (a dependency of redis-server), gcc's in gcc-12 (of gcc), ldd in libc-bin (essential).
# python3 runs the worker's idmapped-mount helper (libs/layers/src/idmapped-mount.ts; ctypes is in its stdlib).
# openssh-client: the worker's git fetches ssh git sources (ADD git@host:…) with it.
SYSTEM_PACKAGES=(redis-server runc crun git busybox-static ca-certificates curl attr isal pigz zstd util-linux iproute2 openssl slirp4netns iptables golang-github-containers-common python3 openssh-client)
TEST_PACKAGES=(umoci skopeo podman buildah docker.io docker-registry chromium debootstrap python3 gcc libc6-dev qemu-user-static openssh-client openssh-server)

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    as_root apt-get update -q >/dev/null
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  }
}

ensure_node() {
  if ! command -v node >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if ((major < 20)); then
    log "Node.js >= 20 is required (found $(node -v)); install a newer Node.js and re-run"
    exit 1
  fi
}

# npm packages from the lockfile, when node_modules is missing or older than it. `npm install`
# rather than `npm ci`: npm 11 writes lockfiles without the other platforms' optional binaries
# (@swc/core-darwin-*, …) and `npm ci` then refuses them as "out of sync"; `npm install`
# installs the locked versions all the same.
ensure_npm_packages() {
  cd "$STRATUM_ROOT"
  if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
    log "installing npm packages (locked versions)"
    npm install --no-audit --no-fund --loglevel=error
  fi
}

build_project() {
  cd "$STRATUM_ROOT"
  log "building (tsc)"
  npm run -s build
}

setup_all() {
  apt_install "${SYSTEM_PACKAGES[@]}" "$@"
  ensure_node
  ensure_npm_packages
  build_project
}

# A TCP port nobody listens on now (never 6379, 5000 or 5099).
free_port() {
  node -e '
    const net = require("net");
    (function pick() {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const p = s.address().port;
        s.close(() => ([6379, 5000, 5099].includes(p) ? pick() : console.log(p)));
      });
    })();'
}
