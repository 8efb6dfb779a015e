#!/usr/bin/env bash
# Builds a Linux test guest from Debian packages only: an uncompressed vmlinux (booted through its
# PVH entry by QEMU TCG) and an initramfs with busybox-static, chosen kernel modules, e2fsprogs and
# the caller's files. See /work/shared/notes/linux-test-guests.md for why each step is as it is.
#
# Usage:
#   build-guest.sh --out DIR --init SCRIPT [--module NAME]... [--file SRC:DST]... [--bin SRC:DST]...
#                  [--cache DIR]
#     --out DIR      writes DIR/vmlinux (a link into the cache) and DIR/initrd.gz
#     --init SCRIPT  shell script run as the guest's test body (/test.sh); its exit status is
#                    printed as "PEPITA-GUEST-EXIT <rc>" before the guest reboots (= QEMU exits)
#     --module NAME  kernel module to load at boot (dependencies from modules.dep load first)
#     --file S:D     copy host file S to guest path D as is
#     --bin S:D      copy host executable S to guest path D (debug info stripped) with the shared
#                    libraries ldd lists
#     --cache DIR    where the unpacked kernel is kept, keyed by version (default: DIR/../guest-cache)
#
# Exit status: 0 built; 77 the kernel package or a tool cannot be had (callers skip, reason on
# stderr); 1 any other failure.
set -euo pipefail

SKIP=77
skip() {
  echo "build-guest: SKIP: $*" >&2
  exit "$SKIP"
}
die() {
  echo "build-guest: error: $*" >&2
  exit 1
}

out="" init="" cache=""
modules=() files=() bins=()
while (($#)); do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --init) init=$2; shift 2 ;;
    --module) modules+=("$2"); shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --bin) bins+=("$2"); shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    *) die "unknown argument '$1' (see the usage at the top of $0)" ;;
  esac
done
[[ -n $out && -n $init ]] || die "--out and --init are required"
[[ -f $init ]] || die "init script '$init' not found"
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${cache:-$out/../guest-cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

for tool in apt-cache apt-get dpkg-deb xz zstd cpio gzip busybox ldd strings; do
  command -v "$tool" >/dev/null || skip "'$tool' is not installed (run scripts/install-deps)"
done
busybox_bin=$(command -v busybox)
# The initramfs needs a static busybox: a dynamic one would find no libc there.
[[ $(LC_ALL=C ldd "$busybox_bin" 2>&1 || true) == *"not a dynamic"* ]] ||
  skip "$busybox_bin is not static (install package busybox-static)"

# --- kernel: resolve, download and unpack once per version ------------------------------------
meta=linux-image-6.12-cloud-amd64
pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}') || true
[[ -n $pkg ]] || skip "apt cannot resolve $meta (no Debian 12 security/backports sources?)"
kdir=$cache/$pkg
if [[ ! -f $kdir/.done ]]; then
  rm -rf "$kdir"
  mkdir -p "$kdir/dl"
  (cd "$kdir/dl" && apt-get download -q "$pkg" >/dev/null 2>"$kdir/dl/apt.log") ||
    skip "apt-get download $pkg failed: $(tail -n 2 "$kdir/dl/apt.log" | tr '\n' ' ')"
  dpkg-deb -x "$kdir"/dl/*.deb "$kdir/root"
  rm -rf "$kdir/dl"
  vmlinuz=$(ls "$kdir"/root/boot/vmlinuz-* | head -n1)
  # bzImage setup header: setup_sects at 0x1f1, payload_offset/length (u32) at 0x248/0x24c.
  read -r setup_sects < <(od -An -tu1 -j $((0x1f1)) -N1 "$vmlinuz")
  read -r payload_off payload_len < <(od -An -tu4 -j $((0x248)) -N8 "$vmlinuz")
  start=$(((setup_sects + 1) * 512 + payload_off))
  payload=$kdir/payload
  dd if="$vmlinuz" of="$payload" bs=64K skip="$start" count="$payload_len" \
    iflag=skip_bytes,count_bytes status=none
  magic=$(od -An -tx1 -N4 "$payload" | tr -d ' ')
  case "$magic" in
    28b52ffd) # zstd: the last 4 bytes are the appended decompressed size, not zstd data
      truncate -s $((payload_len - 4)) "$payload"
      zstd -dq --memory=2048MB -c "$payload" >"$kdir/vmlinux" ;;
    fd377a58) xz -dc "$payload" >"$kdir/vmlinux" ;;
    02214c18) lz4 -dc "$payload" >"$kdir/vmlinux" ;;
    *) die "unknown kernel payload compression (magic $magic) in $vmlinuz" ;;
  esac
  rm -f "$payload"
  [[ $(od -An -tx1 -N4 "$kdir/vmlinux" | tr -d ' ') == 7f454c46 ]] || die "extracted vmlinux is not ELF"
  rm -rf "$kdir"/root/boot "$kdir"/root/usr
  touch "$kdir/.done"
fi
kver=$(ls "$kdir/root/lib/modules")
moddir=$kdir/root/lib/modules/$kver

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
    skip "'$tool' is not installed (package e2fsprogs)"
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
sh /test.sh
echo "PEPITA-GUEST-EXIT $?"
sync
reboot -f
EOF
chmod +x "$stage/init"

(cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) | gzip -1 >"$out/initrd.gz.tmp"
mv "$out/initrd.gz.tmp" "$out/initrd.gz"
ln -sf "$kdir/vmlinux" "$out/vmlinux"
echo "build-guest: kernel $kver, initramfs $(du -k "$out/initrd.gz" | cut -f1) KiB -> $out"
