#!/usr/bin/env bash
# Builds a Linux test guest from installed Debian packages only: an uncompressed vmlinux (booted
# through its PVH entry by QEMU TCG) extracted from the installed 6.12 cloud kernel's
# /boot/vmlinuz-<ver>, and an initramfs with busybox-static, chosen modules from
# /lib/modules/<ver>, e2fsprogs and the caller's files. Nothing is downloaded: the kernel package
# is installed by scripts/install-deps (linux-image-6.12-cloud-amd64). See
# /work/shared/notes/linux-test-guests.md for why each step is as it is.
#
# Usage:
#   build-guest.sh --out DIR --init SCRIPT [--module NAME]... [--file SRC:DST]... [--bin SRC:DST]...
#                  [--cache DIR]
#     --out DIR      writes DIR/vmlinux (a link into the cache) and DIR/initrd.gz
#     --init SCRIPT  shell script run as the guest's test body (/test.sh); its exit status is
#                    printed as "PEPITA-GUEST-EXIT <rc>" before the guest reboots (= QEMU exits);
#                    it runs with GCOV_PREFIX=/gcov GCOV_PREFIX_STRIP=0, and the .gcda files a
#                    coverage build's programs leave there are printed after that line (a base64
#                    tar.gz between PEPITA-GCOV-BEGIN and PEPITA-GCOV-END; run-guest.sh takes them)
#     --module NAME  kernel module to load at boot (dependencies from the .ko's depends= first)
#     --file S:D     copy host file S to guest path D as is
#     --bin S:D      copy host executable S to guest path D (debug info stripped) with the shared
#                    libraries ldd lists
#     --cache DIR    where the extracted vmlinux is kept, keyed by kernel version (default:
#                    $PEPITA_GUEST_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/pepita/guest-kernel:
#                    one cache for every build dir — normal, ASan, coverage)
#   build-guest.sh --kernel-only --out DIR [--cache DIR]
#     only extracts the kernel: writes DIR/vmlinux (the micro-VM monitor's Linux boot test)
#
# Exit status: 0 built; 77 the kernel package or a tool is not installed (callers skip, reason on
# stderr; 1 instead when PEPITA_REQUIRE names `guest`, see tests/common/require.sh); 1 any other
# failure.
set -euo pipefail
source "${BASH_SOURCE[0]%/*}/../common/require.sh"

missing() {
  pepita_missing guest "$*" "run scripts/install-deps (qemu-system-x86 busybox-static e2fsprogs \
xz-utils cpio zstd linux-image-6.12-cloud-amd64)"
}
die() {
  echo "build-guest: error: $*" >&2
  exit 1
}

out="" init="" cache="" kernel_only=0
modules=() files=() bins=()
while (($#)); do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --init) init=$2; shift 2 ;;
    --module) modules+=("$2"); shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --bin) bins+=("$2"); shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --kernel-only) kernel_only=1; shift ;;
    *) die "unknown argument '$1' (see the usage at the top of $0)" ;;
  esac
done
[[ -n $out ]] || die "--out is required"
if ((!kernel_only)); then
  [[ -n $init ]] || die "--init is required (or --kernel-only)"
  [[ -f $init ]] || die "init script '$init' not found"
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${cache:-${PEPITA_GUEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/pepita/guest-kernel}}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

tools=(dpkg-query xz zstd od dd)
((kernel_only)) || tools+=(cpio gzip busybox ldd strings)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || missing "'$tool' is not installed"
done
if ((!kernel_only)); then
  busybox_bin=$(command -v busybox)
  # The initramfs needs a static busybox: a dynamic one would find no libc there.
  [[ $(LC_ALL=C ldd "$busybox_bin" 2>&1 || true) == *"not a dynamic"* ]] ||
    missing "$busybox_bin is not static (package busybox-static)"
fi

# --- kernel: the installed 6.12 cloud image; vmlinux extracted once per version ------------------
# The meta package names the image package it installed (linux-image-<ver>, or
# linux-image-<ver>-unsigned); without the meta package, the newest installed 6.12 cloud image.
meta=linux-image-6.12-cloud-amd64
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
pkg=""
if installed "$meta"; then
  pkg=$(dpkg-query -W -f='${Depends}' "$meta" | grep -oE 'linux-image-6\.12[^ ,|]*' | head -n1) || true
fi
if [[ -z $pkg ]]; then
  pkg=$(dpkg-query -W -f='${Package} ${Status}\n' 'linux-image-6.12*-cloud-amd64*' 2>/dev/null |
    awk '/install ok installed/ {print $1}' | sort -V | tail -n1) || true
fi
[[ -n $pkg ]] && installed "$pkg" || missing "no 6.12 cloud kernel package is installed ($meta)"
kver=${pkg#linux-image-}
kver=${kver%-unsigned}
vmlinuz=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
[[ -r $vmlinuz ]] || missing "$vmlinuz (from $pkg) is missing or unreadable"
[[ -f $moddir/modules.builtin ]] || missing "$moddir (from $pkg) has no modules.builtin"

kdir=$cache/$kver
if [[ ! -f $kdir/vmlinux || $kdir/vmlinux -ot $vmlinuz ]]; then
  # Extract into a private directory and rename it into place: build dirs may build guests at once.
  tmp=$(mktemp -d "$cache/.extract.XXXXXX")
  chmod 755 "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  # bzImage setup header: setup_sects at 0x1f1, payload_offset/length (u32) at 0x248/0x24c.
  read -r setup_sects < <(od -An -tu1 -j $((0x1f1)) -N1 "$vmlinuz")
  read -r payload_off payload_len < <(od -An -tu4 -j $((0x248)) -N8 "$vmlinuz")
  start=$(((setup_sects + 1) * 512 + payload_off))
  payload=$tmp/payload
  dd if="$vmlinuz" of="$payload" bs=64K skip="$start" count="$payload_len" \
    iflag=skip_bytes,count_bytes status=none
  magic=$(od -An -tx1 -N4 "$payload" | tr -d ' ')
  case "$magic" in
    28b52ffd) # zstd: the last 4 bytes are the appended decompressed size, not zstd data
      truncate -s $((payload_len - 4)) "$payload"
      zstd -dq --memory=2048MB -c "$payload" >"$tmp/vmlinux" ;;
    fd377a58) xz -dc "$payload" >"$tmp/vmlinux" ;;
    02214c18) lz4 -dc "$payload" >"$tmp/vmlinux" ;;
    *) die "unknown kernel payload compression (magic $magic) in $vmlinuz" ;;
  esac
  rm -f "$payload"
  [[ $(od -An -tx1 -N4 "$tmp/vmlinux" | tr -d ' ') == 7f454c46 ]] || die "extracted vmlinux is not ELF"
  echo "$pkg $vmlinuz" >"$tmp/source"
  [[ -f $kdir/vmlinux && ! $kdir/vmlinux -ot $vmlinuz ]] || rm -rf "$kdir"  # stale, or never made
  mv -T "$tmp" "$kdir" 2>/dev/null || true  # another build won the race: its copy is as good
  rm -rf "$tmp"
  trap - EXIT
fi
[[ -f $kdir/vmlinux ]] || die "no vmlinux in $kdir after extraction"
if ((kernel_only)); then
  ln -sf "$kdir/vmlinux" "$out/vmlinux"
  echo "build-guest: kernel $kver -> $out/vmlinux"
  exit 0
fi

# --- initramfs ----------------------------------------------------------------------------------
stage=$(mktemp -d "$out/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,tmp,mnt,lib/modules,lib64,lib/x86_64-linux-gnu,usr/bin,usr/sbin,root}
cp "$busybox_bin" "$stage/bin/busybox"

# Copies an executable and every library ldd lists (plus the loader, at both of its paths).
copy_with_libs() {
  local src=$1 dst=$2
  mkdir -p "$stage/$(dirname "$dst")"
  cp -L "$src" "$stage/$dst"
  local lib
  while read -r lib; do
    [[ -n $lib && -f $lib ]] || continue
    mkdir -p "$stage/$(dirname "$lib")"
    cp -Ln "$lib" "$stage/$lib" 2>/dev/null || true
  done < <(LC_ALL=C ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' || true)
}
for tool in mke2fs e2fsck; do
  path=$(command -v "$tool" || PATH=/sbin:/usr/sbin command -v "$tool") ||
    missing "'$tool' is not installed (package e2fsprogs)"
  copy_with_libs "$path" "/sbin/$tool"
done
ln -sf mke2fs "$stage/sbin/mkfs.ext4"
ln -sf e2fsck "$stage/sbin/fsck.ext4"
[[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$stage/etc/"
loader=/lib64/ld-linux-x86-64.so.2
cp -L "$loader" "$stage/lib64/" && cp -L "$loader" "$stage/lib/x86_64-linux-gnu/"

# Modules: the requested ones plus their dependency closure (the .ko's depends= field; Debian
# ships no modules.dep), dependencies first. Built-in modules (modules.builtin) are skipped.
declare -A seen=()
load_order=()
add_module() {
  local name=${1//-/_} rel ko deps dep
  [[ -n ${seen[$name]:-} ]] && return 0
  seen[$name]=1
  if grep -qE "/${name//_/[-_]}\.ko$" "$moddir/modules.builtin"; then return 0; fi
  rel=$(cd "$moddir" && find kernel -regextype posix-extended \
    -regex ".*/${name//_/[-_]}\.ko(\.xz|\.zst)?" | head -n1)
  [[ -n $rel ]] || die "module '$name' is not in kernel $kver"
  ko=$stage/lib/modules/$name.ko
  case "$rel" in
    *.xz) xz -dc "$moddir/$rel" >"$ko" ;;
    *.zst) zstd -dqc "$moddir/$rel" >"$ko" ;;
    *) cp "$moddir/$rel" "$ko" ;;
  esac
  deps=$(strings -a "$ko" | sed -n 's/^depends=//p' | head -n1)
  for dep in ${deps//,/ }; do add_module "$dep"; done
  load_order+=("$name")
}
for m in "${modules[@]}"; do add_module "$m"; done
printf '%s\n' "${load_order[@]}" >"$stage/lib/modules/load-order"

for spec in "${files[@]}"; do
  src=${spec%%:*} dst=${spec#*:}
  [[ -f $src ]] || die "--file source '$src' not found"
  mkdir -p "$stage/$(dirname "$dst")"
  cp -L "$src" "$stage/$dst"
done
for spec in "${bins[@]}"; do
  src=${spec%%:*} dst=${spec#*:}
  [[ -f $src ]] || die "--bin source '$src' not found"
  copy_with_libs "$src" "$dst"
  # Debug info only slows the guest's initramfs unpacking (it runs emulated).
  command -v strip >/dev/null && strip --strip-debug "$stage/$dst" 2>/dev/null || true
done
cp "$init" "$stage/test.sh"
chmod +x "$stage/test.sh"

cat >"$stage/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
while read -r m; do
  [ -n "$m" ] || continue
  insmod "/lib/modules/$m.ko" || echo "init: insmod $m failed"
done </lib/modules/load-order
echo "init: kernel $(uname -r), modules: $(cat /lib/modules/load-order | tr '\n' ' ')"
# A coverage build's programs write their counts (.gcda) under /gcov, keeping the build dir's
# absolute paths; uninstrumented programs ignore these variables.
export GCOV_PREFIX=/gcov GCOV_PREFIX_STRIP=0
sh /test.sh
echo "PEPITA-GUEST-EXIT $?"
# The counts go home over the console (run-guest.sh decodes them when PEPITA_COVERAGE_DUMPS is
# set): a gzip'd tar, base64 between marker lines. Nothing is printed when nothing was counted.
if [ -n "$(find /gcov -type f -name '*.gcda' 2>/dev/null | head -n 1)" ]; then
  echo "PEPITA-GCOV-BEGIN"
  tar -C /gcov -czf - . | base64
  echo "PEPITA-GCOV-END"
fi
sync
reboot -f
EOF
chmod +x "$stage/init"

(cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) | gzip -1 >"$out/initrd.gz.tmp"
mv "$out/initrd.gz.tmp" "$out/initrd.gz"
ln -sf "$kdir/vmlinux" "$out/vmlinux"
echo "build-guest: kernel $kver, initramfs $(du -k "$out/initrd.gz" | cut -f1) KiB -> $out"
