#!/usr/bin/env bash
# Makes the `busybox:latest` base image in a running Stratum from Debian's busybox-static, once:
# a fresh machine with no internet can then build `FROM busybox` (an unqualified name is looked up
# in our registry before the default registry). Does nothing when the image is there already.
# Usage: infra/busybox-base.sh [API_URL]   (default $STRATUM_URL, else http://127.0.0.1:8080)
source "$(dirname "$0")/lib.sh"
api=${1:-${STRATUM_URL:-http://127.0.0.1:8080}}
api=${api%/}

auth=()
[[ -n ${STRATUM_TOKEN:-} ]] && auth=(-H "Authorization: Bearer $STRATUM_TOKEN")
status=$(curl -s "${auth[@]}" -o /dev/null -w '%{http_code}' "$api/api/v1/images/busybox:latest")
if [[ $status == 200 ]]; then
  log "busybox:latest is in the registry already"
  exit 0
elif [[ $status != 404 ]]; then
  log "cannot ask $api for busybox:latest (HTTP $status)"
  exit 1
fi
apt_install busybox-static

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/fs"/{bin,etc,tmp,root,proc,sys,dev}
chmod 1777 "$root/fs/tmp"
cp /bin/busybox "$root/fs/bin/busybox"
for applet in $("$root/fs/bin/busybox" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$root/fs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/fs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/fs/etc/group"
# Fixed owners and times: the same layer digest on every machine with the same busybox-static.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2024-01-01 00:00:00Z' \
  -C "$root/fs" -cf "$root/rootfs.tar" .

version=$(dpkg-query -W -f '${Version}' busybox-static)
curl -fsS "${auth[@]}" -X POST -H 'Content-Type: application/x-tar' --data-binary "@$root/rootfs.tar" \
  "$api/api/v1/images/import?repository=busybox&tag=latest&message=busybox-static%20$version%20(Debian)" >/dev/null
log "imported busybox:latest from Debian's busybox-static $version"
