#!/usr/bin/env bash
# Lets this host's worker build for foreign platforms (linux/arm64, linux/arm/v7, …) through
# qemu-user emulation: installs qemu-user-static, mounts binfmt_misc when it is not mounted, and
# registers the qemu handlers for the named architectures with the F flag ("fix binary": the
# kernel opens the interpreter now, so it works inside a container's rootfs that lacks it).
# Run it only when you want emulated builds; the worker advertises what it finds at start.
#
#   infra/setup-binfmt.sh                 # aarch64 and arm (linux/arm64, linux/arm/v7)
#   infra/setup-binfmt.sh aarch64 riscv64 # the qemu names of the architectures wanted
#
# Handlers are host-wide and use the standard names (qemu-aarch64, …). A handler already
# registered with the F flag is left alone; one without it is re-registered with it.
source "$(dirname "$0")/lib.sh"

arches=("$@")
((${#arches[@]})) || arches=(aarch64 arm)

apt_install qemu-user-static

dir=/proc/sys/fs/binfmt_misc
if [[ ! -e $dir/register ]]; then
  log "mounting binfmt_misc on $dir"
  as_root mount -t binfmt_misc binfmt_misc "$dir"
fi
if [[ $(cat "$dir/status") != enabled ]]; then
  as_root sh -c "echo 1 > $dir/status"
fi

for arch in "${arches[@]}"; do
  conf=/usr/lib/binfmt.d/qemu-$arch.conf
  if [[ ! -f $conf ]]; then
    log "no qemu handler description for \"$arch\" ($conf missing); known: $(cd /usr/lib/binfmt.d && ls qemu-*.conf | sed 's/^qemu-//; s/\.conf$//' | tr '\n' ' ')"
    exit 1
  fi
  line=$(cat "$conf")
  name=$(cut -d: -f2 <<<"$line")
  flags=${line##*:}
  [[ $flags == *F* ]] || line="${line}F"
  if [[ -e $dir/$name ]]; then
    if grep -q '^flags: .*F' "$dir/$name" && grep -q '^enabled' "$dir/$name"; then
      log "$name: registered with the F flag already"
      continue
    fi
    log "$name: registered without the F flag or disabled; registering it again with F"
    as_root sh -c "echo -1 > $dir/$name"
  fi
  # The register file takes the line with its \x escapes as written (the kernel decodes them).
  as_root sh -c "printf '%s' '$line' > $dir/register"
  log "$name: registered ($(grep '^interpreter' "$dir/$name"), $(grep '^flags' "$dir/$name"))"
done
