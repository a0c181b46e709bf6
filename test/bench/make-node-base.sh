#!/usr/bin/env bash
# Makes (once per machine) the base image of the npm bench workload: Debian bookworm
# (`debootstrap --variant=minbase`, the same cached tar test/support/debian-base.ts makes and
# reuses) with nodejs and npm from apt, as an uncompressed root filesystem tar. Every builder
# imports this same tar as its base, so a "cold" build measures the workload's own steps
# (npm ci through bind + cache mounts), not apt.
# Usage: test/bench/make-node-base.sh      prints the tar's path
set -euo pipefail
cache=/var/tmp/stratum-test-cache
minbase=$cache/bookworm-minbase.tar
out=$cache/bookworm-nodejs-v2.tar # v2: with the host's CAs
[[ -s $out ]] && { echo "$out"; exit 0; }
mkdir -p "$cache"
root=$(mktemp -d "$cache/node-base-XXXX")
trap 'rm -rf "$root"' EXIT
if [[ -s $minbase ]]; then
  tar -C "$root" --numeric-owner -xf "$minbase"
else
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$root.log" 2>&1 ||
    { echo "debootstrap failed; see $root.log" >&2; exit 1; }
  rm -f "$root.log"
  tar -C "$root" --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* --exclude=./run/* \
    -cf "$minbase.$$.tmp" . && mv "$minbase.$$.tmp" "$minbase"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The host's own CAs (here: the TLS-intercepting egress proxy's), as a user behind such a proxy
# adds them to a base: npm talks to https://registry.npmjs.org through it.
mkdir -p "$root/usr/local/share/ca-certificates"
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
# A mount namespace of its own: the /proc mounted for apt goes with it, whatever happens.
unshare --mount --propagation private --fork sh -ec '
  mount -t proc proc "$1/proc"
  chroot "$1" sh -ec "export DEBIAN_FRONTEND=noninteractive; apt-get update -q; apt-get install -y -q --no-install-recommends nodejs npm ca-certificates; update-ca-certificates; apt-get clean; rm -rf /var/lib/apt/lists/*"
' sh "$root" >&2
: >"$root/etc/resolv.conf"
tar -C "$root" --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* --exclude=./run/* \
  -cf "$out.$$.tmp" . && mv "$out.$$.tmp" "$out"
echo "$out"
