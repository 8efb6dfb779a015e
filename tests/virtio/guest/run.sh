#!/usr/bin/env bash
# Host side of the virtio end-to-end test: starts two `pepita vhost-user-blk` servers (zram with
# 1 queue, file with 2 queues), boots the cached Linux 6.12 guest (tests/guest) under QEMU TCG with
# shared memfd RAM and two vhost-user-blk-pci devices, passes when the guest prints
# VIRTIO-E2E-PASS, both servers stop cleanly on SIGTERM and e2fsck on the host finds the file
# target's filesystem clean. Usage: run.sh BUILD_DIR PEPITA_BINARY. Exit 77 (CTest skip) with the
# reason printed when qemu or the kernel package is not installed (1 when PEPITA_REQUIRE names it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
guest_dir=$here/../../guest
source "$here/../../common/require.sh"
build=${1:?build dir}
pepita=${2:?pepita binary}
out=$build/virtio-guest
mkdir -p "$out"

command -v qemu-system-x86_64 >/dev/null ||
  pepita_missing guest "qemu-system-x86_64 is not installed" "package qemu-system-x86 (scripts/install-deps)"
set +e
"$guest_dir/build-guest.sh" --out "$out" --init "$here/e2e.sh" \
  --module virtio_blk
rc=$?
set -e
if ((rc == 77)); then
  echo "virtio guest test SKIPPED: the test guest cannot be built here (reason above)"
  exit 77
fi
((rc == 0)) || exit "$rc"

sock0=$out/vub0.sock sock1=$out/vub1.sock img=$out/disk.img
rm -f "$sock0" "$sock1" "$img"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$pepita" vhost-user-blk --socket "$sock0" --target zram --size 64M >/dev/null 2>"$out/srv0.log" &
pids+=($!)
"$pepita" vhost-user-blk --socket "$sock1" --target file --file "$img" --size 64M --queues 2 \
  >/dev/null 2>"$out/srv1.log" &
pids+=($!)
for _ in $(seq 100); do
  [[ -S $sock0 && -S $sock1 ]] && break
  sleep 0.1
done
[[ -S $sock0 && -S $sock1 ]] || { cat "$out"/srv*.log; echo "servers did not listen"; exit 1; }

set +e
"$guest_dir/run-guest.sh" --dir "$out" --marker VIRTIO-E2E-PASS --smp 2 --mem 512 --timeout 200 -- \
  -machine pcie=on,memory-backend=mem \
  -object memory-backend-memfd,id=mem,size=512M,share=on \
  -chardev socket,id=vub0,path="$sock0" -device vhost-user-blk-pci,chardev=vub0,num-queues=1 \
  -chardev socket,id=vub1,path="$sock1" -device vhost-user-blk-pci,chardev=vub1,num-queues=2
rc=$?
set -e
tr -d '\r' <"$out/console.log" | grep -E '^(==|/dev/vd|e2fsck|/mnt|VIRTIO|[a-z/]+: OK)' || true
status=0
for i in 0 1; do
  kill -TERM "${pids[$i]}" 2>/dev/null || true
  if ! wait "${pids[$i]}"; then
    echo "server $i did not stop cleanly"
    status=1
  fi
  cat "$out/srv$i.log"
done
pids=()
((rc == 0)) || exit "$rc"
((status == 0)) || exit 1
# What the guest flushed is in the backing file: a clean filesystem holding the guest's file.
if command -v e2fsck >/dev/null || [[ -x /sbin/e2fsck ]]; then
  PATH=$PATH:/sbin:/usr/sbin e2fsck -fn "$img" || { echo "host e2fsck of the file target failed"; exit 1; }
  if command -v debugfs >/dev/null || [[ -x /sbin/debugfs ]]; then
    got=$(PATH=$PATH:/sbin:/usr/sbin debugfs -R 'cat /host-check' "$img" 2>/dev/null)
    [[ $got == "written by the guest" ]] || { echo "host-check file reads '$got'"; exit 1; }
    echo "host: file target clean, host-check file intact"
  fi
fi
echo "virtio guest test PASSED"
