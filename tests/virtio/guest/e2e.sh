# Runs inside the Linux 6.12 test guest as /test.sh (busybox sh, root, virtio_blk loaded).
# Linux's own virtio_blk driver against `pepita vhost-user-blk`: /dev/vda (zram target, 1 queue)
# and /dev/vdb (file target, 2 queues): mkfs.ext4, files of known content, sync, umount,
# e2fsck -fn, remount, checksums, O_DIRECT read-back, fstrim (discard through the device).
set -u
fail() {
  echo "VIRTIO-E2E-FAIL: $*"
  exit 1
}
step() { echo "== $*"; }

roundtrip() {
  DEV=$1
  [ -b "$DEV" ] || fail "$DEV is not a block device ($(ls /dev/vd* 2>&1))"
  echo "$DEV: $(cat /sys/block/${DEV#/dev/}/size) sectors, $(ls /sys/block/${DEV#/dev/}/mq | wc -l) hw queue(s), logical block $(cat /sys/block/${DEV#/dev/}/queue/logical_block_size)"
  dd if=/dev/urandom of=/tmp/pattern bs=4096 count=256 2>/dev/null
  dd if=/tmp/pattern of="$DEV" bs=65536 seek=8 oflag=direct conv=notrunc 2>/dev/null || fail "O_DIRECT write $DEV"
  dd if="$DEV" of=/tmp/back bs=65536 skip=8 count=16 iflag=direct 2>/dev/null || fail "O_DIRECT read $DEV"
  cmp /tmp/pattern /tmp/back || fail "O_DIRECT read-back differs on $DEV"
  mkfs.ext4 -q -F "$DEV" >/tmp/mkfs.log 2>&1 || { cat /tmp/mkfs.log; fail "mkfs.ext4 $DEV"; }
  mount -t ext4 "$DEV" /mnt || fail "mount $DEV"
  dd if=/dev/urandom of=/mnt/a bs=4096 count=300 2>/dev/null
  dd if=/dev/urandom of=/mnt/b bs=65536 count=40 2>/dev/null
  mkdir -p /mnt/dir && echo "pepita virtio-blk" >/mnt/dir/small
  seq 1 20000 >/mnt/dir/numbers
  (cd /mnt && sha256sum a b dir/small dir/numbers >/tmp/sums)
  sync
  umount /mnt || fail "umount $DEV"
  e2fsck -fn "$DEV" >/tmp/fsck.log 2>&1 || { cat /tmp/fsck.log; fail "e2fsck -fn $DEV not clean"; }
  tail -n 1 /tmp/fsck.log
  mount -t ext4 "$DEV" /mnt || fail "remount $DEV"
  (cd /mnt && sha256sum -c /tmp/sums) || fail "checksums differ after remount on $DEV"
  rm /mnt/b && sync && fstrim -v /mnt || echo "fstrim not done on $DEV"
  umount /mnt || fail "second umount $DEV"
}

step "virtio devices: $(ls /dev/vd* 2>&1 | tr '\n' ' ')"
step "/dev/vda: zram target, 1 queue"
roundtrip /dev/vda
step "/dev/vdb: file target, 2 queues"
roundtrip /dev/vdb
# Leave a file on the file target for the host to check after the guest is gone.
mount -t ext4 /dev/vdb /mnt || fail "mount /dev/vdb for the host check"
echo "written by the guest" >/mnt/host-check
sync
umount /mnt || fail "umount /dev/vdb"
echo "VIRTIO-E2E-PASS"
