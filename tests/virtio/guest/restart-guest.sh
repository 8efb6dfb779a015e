# Runs inside the Linux 6.12 test guest as /test.sh (busybox sh, root, virtio_blk loaded), twice.
# Boot 1 (blank disk), reconnect: the host kills `pepita vhost-user-blk` (SIGKILL) while this guest has writes in flight on
# /dev/vda (file target, 2 queues) and starts a new server on the same socket and file; QEMU
# reconnects (chardev reconnect=1) and re-sends the rings. What was flushed before the kill must
# be intact, the writes in flight must complete after the reconnect, and the filesystem must be
# clean. Console protocol with the host (tests/virtio/guest/restart.sh):
#   "FLUSHED <sha256> <name>"  one line per file made durable before the kill
#   "RESTART-KILL-NOW"         heavy I/O is running: the host kills the server now
#   "RESTART-IO-DONE"          the writer finished (the host checks the kill came before it)
# Boot 2 (the disk of boot 1, served by a third server), crash: the files of boot 1 must read back,
# then a second set is flushed ("FLUSHED" lines again), writers start, "CRASH-KILL-NOW", and the
# host kills the server and then QEMU: nothing completes after that, and the host checks the file.
set -u
fail() {
  echo "VIRTIO-RESTART-FAIL: $*"
  exit 1
}
step() { echo "== $*"; }
now_ms() { awk '{printf "%d", $1 * 1000}' /proc/uptime; }

DEV=/dev/vda
[ -b "$DEV" ] || fail "$DEV is not a block device ($(ls /dev/vd* 2>&1))"
step "$DEV: $(cat /sys/block/vda/size) sectors, $(ls /sys/block/vda/mq | wc -l) hw queue(s)"
dd if=/dev/urandom of=/tmp/pattern bs=65536 count=16 2>/dev/null
want=$(sha256sum </tmp/pattern | cut -d' ' -f1)
ROUNDS=${ROUNDS:-48}
writer() {
  # Each round: 1 MiB with O_DIRECT, then fsync (a virtio-blk FLUSH). Two writers, so both
  # virtqueues have requests in flight; the slowest round shows the outage.
  w=$1 rounds=$2 name=$3 i=0 worst=0
  while [ $i -lt $rounds ]; do
    t0=$(now_ms)
    dd if=/tmp/pattern of=/mnt/$name$w.$((i % 6)) bs=65536 oflag=direct conv=fsync 2>/dev/null ||
      { echo "writer $w: dd failed in round $i"; exit 1; }
    t=$(($(now_ms) - t0))
    [ $t -gt $worst ] && worst=$t
    i=$((i + 1))
  done
  echo "writer $w: $rounds rounds, slowest ${worst} ms"
}

if mount -t ext4 "$DEV" /mnt 2>/dev/null && [ -f /mnt/keep.sums ]; then
  step "second boot: reading back what the first boot flushed"
  (cd /mnt && sha256sum -c keep.sums) || fail "files of the first boot differ"
  mkdir -p /mnt/keep2
  dd if=/dev/urandom of=/mnt/keep2/c bs=4096 count=100 2>/dev/null
  seq 40000 50000 >/mnt/keep2/numbers
  sync || fail "sync of the second set"
  (cd /mnt && sha256sum keep2/c keep2/numbers >/mnt/keep2.sums)
  sync || fail "sync of the second sums"
  sed 's/^/FLUSHED /' /mnt/keep2.sums
  writer 0 100000 crash >/dev/null 2>&1 &
  writer 1 100000 crash >/dev/null 2>&1 &
  while [ ! -e /mnt/crash0.1 ] || [ ! -e /mnt/crash1.1 ]; do sleep 0.1; done
  echo "CRASH-KILL-NOW"
  sleep 600
  fail "still running 600 s after asking the host to crash us"
fi
umount /mnt 2>/dev/null

mkfs.ext4 -q -F "$DEV" >/tmp/mkfs.log 2>&1 || { cat /tmp/mkfs.log; fail "mkfs.ext4 $DEV"; }
mount -t ext4 "$DEV" /mnt || fail "mount $DEV"

step "writing and flushing the files that must survive"
mkdir -p /mnt/keep
dd if=/dev/urandom of=/mnt/keep/a bs=4096 count=200 2>/dev/null
dd if=/dev/urandom of=/mnt/keep/b bs=65536 count=12 2>/dev/null
seq 1 30000 >/mnt/keep/numbers
echo "flushed before the kill" >/mnt/keep/small
sync || fail "sync of the files to keep"
(cd /mnt && sha256sum keep/a keep/b keep/numbers keep/small >/tmp/sums)
cp /tmp/sums /mnt/keep.sums && sync || fail "sync of the sums"
sed 's/^/FLUSHED /' /tmp/sums

step "heavy I/O: O_DIRECT writes + fsync on both queues while the server is killed"
writer 0 $ROUNDS heavy >/tmp/w0.log 2>&1 &
p0=$!
writer 1 $ROUNDS heavy >/tmp/w1.log 2>&1 &
p1=$!
# Let I/O get going so that the kill lands in the middle of it, not before.
while [ ! -e /mnt/heavy0.1 ] || [ ! -e /mnt/heavy1.1 ]; do sleep 0.1; done
echo "RESTART-KILL-NOW"
wait $p0
r0=$?
wait $p1
r1=$?
echo "RESTART-IO-DONE"
cat /tmp/w0.log /tmp/w1.log
[ $r0 -eq 0 ] && [ $r1 -eq 0 ] || fail "a writer failed across the restart"

step "after the restart: flushed files, heavy files, fsck from the device itself"
for f in /mnt/heavy*; do
  got=$(sha256sum <"$f" | cut -d' ' -f1)
  [ "$got" = "$want" ] || fail "$f differs from what was written"
done
umount /mnt || fail "umount $DEV"
# Read what the (new) server has, not the guest's cached copy.
echo 3 >/proc/sys/vm/drop_caches
blockdev --flushbufs "$DEV" 2>/dev/null
e2fsck -fn "$DEV" >/tmp/fsck.log 2>&1 || { cat /tmp/fsck.log; fail "e2fsck -fn $DEV not clean"; }
tail -n 1 /tmp/fsck.log
mount -t ext4 "$DEV" /mnt || fail "remount $DEV"
(cd /mnt && sha256sum -c /tmp/sums) || fail "files flushed before the kill changed"
umount /mnt || fail "final umount $DEV"
echo "VIRTIO-RESTART-PASS"
