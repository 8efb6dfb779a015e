# Runs inside the Linux 6.12 test guest as /test.sh (busybox sh, root, ublk_drv loaded).
# Proves the pepita ublk server end to end: ext4 on the zram and file targets (mkfs, files of known
# content, e2fsck -fn, remount, checksums), an O_DIRECT dd write/read-back, and kill -9 of a server
# during I/O (no hang; the block device goes away; `pepita ublk del` cleans up); then user recovery:
# kill -9 of a --recoverable server under a mounted ext4 with a writer appending records,
# `pepita ublk recover`, the writer going on without an error, e2fsck clean and every record there;
# and each way recover can be refused (no device, live server, no flag, no state file, its backing
# file gone, a target of another size or with fewer tags) a clear error, as are `del` of a missing
# device and `add --recoverable` whose state directory cannot be made (no device left behind).
# The last servers stop normally so that a coverage build's counts are written (build-guest.sh).
# Waits poll against generous deadlines (TCG on a loaded CI host is slow), never fixed sleeps.
set -u
P=/bin/pepita
fail() {
  echo "UBLK-E2E-FAIL: $*"
  [ -f /tmp/srv.err ] && { echo "--- server stderr"; cat /tmp/srv.err; }
  exit 1
}
step() { echo "== $*"; }

# start_server ARGS...: runs `pepita ublk add ARGS` in the background; sets SRV (pid), DEV.
start_server() {
  rm -f /tmp/srv.out /tmp/srv.err
  $P ublk add "$@" >/tmp/srv.out 2>/tmp/srv.err &
  SRV=$!
  i=0
  while [ $i -lt 600 ]; do  # 30 s
    DEV=$(head -n 1 /tmp/srv.out 2>/dev/null)
    [ -n "$DEV" ] && [ -b "$DEV" ] && return 0
    kill -0 $SRV 2>/dev/null || fail "server exited early: ublk add $*"
    sleep 0.05
    i=$((i + 1))
  done
  fail "server did not publish its device within 30 s: ublk add $*"
}
stop_server() {
  kill -TERM $SRV
  wait $SRV
  rc=$?
  cat /tmp/srv.err
  [ $rc -eq 0 ] || fail "server exited with $rc after SIGTERM"
  [ ! -e "$DEV" ] || fail "$DEV still exists after the server stopped"
}

# expect_refusal WHAT TEXT CMD...: CMD exits 1 and its message holds TEXT.
expect_refusal() {
  what=$1 text=$2
  shift 2
  out=$("$@" 2>&1)
  rc=$?
  [ $rc -eq 1 ] || fail "$what: exited $rc, not 1: $out"
  echo "$out" | grep -q "$text" || fail "$what: the message does not say \"$text\": $out"
  echo "refused ($what): $out"
}
# no_devices WHEN: no ublk device is left (neither node nor list entry).
no_devices() {
  ls /dev/ublkb* /dev/ublkc* >/dev/null 2>&1 && fail "a ublk device is left $1"
  $P ublk list | grep -q "^[0-9]" && fail "a ublk device is still listed $1"
  return 0
}

# ext4 round trip on $DEV: files of known content survive umount, fsck and remount.
fs_roundtrip() {
  mkfs.ext4 -q -F "$DEV" >/tmp/mkfs.log 2>&1 || { cat /tmp/mkfs.log; fail "mkfs.ext4 $DEV"; }
  mount -t ext4 "$DEV" /mnt || fail "mount $DEV"
  dd if=/dev/urandom of=/mnt/a bs=4096 count=300 2>/dev/null
  dd if=/dev/urandom of=/mnt/b bs=65536 count=40 2>/dev/null
  mkdir -p /mnt/dir && echo "pepita ublk" >/mnt/dir/small
  seq 1 20000 >/mnt/dir/numbers   # compressible: exercises the zram compressor
  (cd /mnt && sha256sum a b dir/small dir/numbers >/tmp/sums)
  sync
  umount /mnt || fail "umount $DEV"
  e2fsck -fn "$DEV" >/tmp/fsck.log 2>&1 || { cat /tmp/fsck.log; fail "e2fsck -fn $DEV not clean"; }
  tail -n 1 /tmp/fsck.log
  mount -t ext4 "$DEV" /mnt || fail "remount $DEV"
  (cd /mnt && sha256sum -c /tmp/sums) || fail "checksums differ after remount on $DEV"
  rm /mnt/b && sync && fstrim /mnt 2>/dev/null  # discard through the device, where supported
  umount /mnt || fail "second umount $DEV"
}

# O_DIRECT write then read-back of 2 MiB at an offset, compared byte for byte.
direct_io() {
  dd if=/dev/urandom of=/tmp/pattern bs=4096 count=512 2>/dev/null
  dd if=/tmp/pattern of="$DEV" bs=65536 seek=16 oflag=direct conv=notrunc 2>/dev/null ||
    fail "O_DIRECT write to $DEV"
  dd if="$DEV" of=/tmp/back bs=65536 skip=16 count=32 iflag=direct 2>/dev/null ||
    fail "O_DIRECT read from $DEV"
  cmp /tmp/pattern /tmp/back || fail "O_DIRECT read-back differs on $DEV"
  echo "O_DIRECT 2 MiB write/read-back identical"
}

step "no ublk devices yet"
$P ublk list || fail "ublk list"

step "bad arguments: exit 2 with the usage line, before any device or backing file exists"
for args in "--target mem --size lots" "--target file --file /tmp/new.img --size 1000" \
  "--target zram" "--size 1M --max-io 1000"; do
  out=$($P ublk add $args 2>&1)
  rc=$?
  [ $rc -eq 2 ] || fail "ublk add $args exited $rc, not 2: $out"
  echo "$out" | grep -q "Usage: pepita ublk add" || fail "ublk add $args: no usage line: $out"
done
no_devices "after a usage error"
[ -e /tmp/new.img ] && fail "a usage error left a backing file"

step "refusals of the driver and of the state directory: exit 1, a clear error, nothing left"
expect_refusal "del of a device that does not exist" "no such ublk device" $P ublk del 99
: >/tmp/not-a-dir
expect_refusal "add --recoverable whose state directory cannot be made" \
  "cannot create the ublk state directory" \
  $P ublk add --target mem --size 16M --depth 8 --recoverable --state-dir /tmp/not-a-dir/state
no_devices "after add --recoverable failed to record its state"

if [ -x /bin/pepita_ublk_tests ]; then
  step "C++ API against the real driver (UblkDevice.*, not run on a host without ublk)"
  out=$(PEPITA_REQUIRE=ublk /bin/pepita_ublk_tests \
    --gtest_filter='UblkDevice.*:UblkServer.*:UblkControl.*' --gtest_color=no 2>&1) ||
    { echo "$out"; fail "pepita_ublk_tests in the guest"; }
  echo "$out" | grep -E '^\[ +(OK|SKIPPED|FAILED) +\]'
  echo "$out" | grep -q '^\[ *OK \] UblkDevice\.' || { echo "$out"; fail "UblkDevice.* did not run"; }
  if echo "$out" | grep -q '^\[  SKIPPED \]'; then fail "a ublk test skipped in the guest"; fi
fi

step "zram target (zstd, 2 queues): ext4 + O_DIRECT"
start_server --target zram --size 64M --comp zstd --queues 2 --depth 32
echo "device $DEV"
$P ublk list
expect_refusal "recover of a device created without --recoverable" "created without user recovery" \
  $P ublk recover "${DEV#/dev/ublkb}"
fs_roundtrip
direct_io
stop_server

step "file target (UBLK_F_USER_COPY): ext4 + O_DIRECT"
start_server --target file --file /tmp/backing.img --size 48M --depth 16 --user-copy
fs_roundtrip
direct_io
stop_server
[ "$(stat -c %s /tmp/backing.img)" = 50331648 ] || fail "backing file has the wrong size"

step "kill -9 of the server during I/O"
start_server --target mem --size 64M --depth 16
dd if=/dev/zero of="$DEV" bs=65536 count=100000 oflag=direct 2>/tmp/dd.err &
DD=$!
sleep 1
kill -9 $SRV
wait $SRV 2>/dev/null
i=0
while kill -0 $DD 2>/dev/null; do
  [ $i -lt 600 ] || fail "dd still blocked 60 s after the server was killed"
  sleep 0.1
  i=$((i + 1))
done
echo "writer ended after the kill: $(tail -n 1 /tmp/dd.err)"
i=0
while [ -e "$DEV" ]; do
  [ $i -lt 300 ] || fail "$DEV still present 30 s after the server was killed"
  sleep 0.1
  i=$((i + 1))
done
echo "$DEV is gone"
ID=${DEV#/dev/ublkb}
$P ublk list
$P ublk del "$ID" || fail "ublk del $ID after the kill"
$P ublk list | grep -q "^$ID " && fail "device $ID still listed after del"


step "user recovery: kill -9 of a --recoverable --reissue file server under a mounted ext4 with a writer"
STATE=/tmp/ublk-state
# start_recover ID ARGS...: runs `pepita ublk recover ID ARGS` in the background as the new server;
# sets SRV once it serves $DEV again.
start_recover() {
  rm -f /tmp/srv.out /tmp/srv.err
  $P ublk recover "$@" >/tmp/srv.out 2>/tmp/srv.err &
  SRV=$!
  i=0
  while [ "$(head -n 1 /tmp/srv.out 2>/dev/null)" != "$DEV" ]; do
    kill -0 $SRV 2>/dev/null || fail "ublk recover $* exited"
    [ $i -lt 600 ] || fail "ublk recover $* did not serve $DEV within 60 s"
    sleep 0.1
    i=$((i + 1))
  done
}
rm -f /tmp/rec.img /tmp/stop-writer /tmp/writer.count /tmp/writer.err
expect_refusal "recover of a device that does not exist" "no such ublk device" $P ublk recover 99
start_server --target file --file /tmp/rec.img --size 64M --depth 16 --recoverable --reissue \
  --state-dir $STATE
ID=${DEV#/dev/ublkb}
[ -f $STATE/$ID.toml ] || fail "no state file $STATE/$ID.toml after ublk add --recoverable"
cat $STATE/$ID.toml
$P ublk list
expect_refusal "recover while the server runs" "not quiesced" $P ublk recover "$ID" --state-dir $STATE
mkfs.ext4 -q -F "$DEV" >/tmp/mkfs.log 2>&1 || { cat /tmp/mkfs.log; fail "mkfs.ext4 $DEV"; }
mount -t ext4 "$DEV" /mnt || fail "mount $DEV"
PAD=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
# The writer appends "record N PAD" lines, syncing every 10 (so the writes reach the device, and a
# sync during the outage waits for the recovered server); any failed append or sync ends it with 1.
(
  n=0
  while [ ! -e /tmp/stop-writer ]; do
    n=$((n + 1))
    echo "record $n $PAD" >>/mnt/records || { echo "append of record $n failed" >/tmp/writer.err; exit 1; }
    if [ $((n % 10)) -eq 0 ]; then
      sync || { echo "sync after record $n failed" >/tmp/writer.err; exit 1; }
    fi
    echo $n >/tmp/writer.count
  done
  exit 0
) &
WRITER=$!
# wait_records N SECONDS: until the writer has appended N records. The count file is empty for a
# moment while the writer rewrites it: that reads as 0 (an empty operand would end the loop).
wait_records() {
  i=0
  while c=$(cat /tmp/writer.count 2>/dev/null); [ "${c:-0}" -lt "$1" ]; do
    kill -0 $WRITER 2>/dev/null || fail "the writer ended: $(cat /tmp/writer.err 2>/dev/null)"
    [ $i -lt $(($2 * 10)) ] || fail "the writer has not reached record $1 after $2 s"
    sleep 0.1
    i=$((i + 1))
  done
}
wait_records 50 60
kill -9 $SRV
wait $SRV 2>/dev/null
echo "server killed at record $(cat /tmp/writer.count)"
[ -b "$DEV" ] || fail "$DEV went away although the device is recoverable"
$P ublk list
expect_refusal "recover without the state file" "no state file" \
  $P ublk recover "$ID" --state-dir /tmp/no-such-state
mkdir -p /tmp/gone-state
sed "s|^path = .*|path = '/tmp/no-such-backing.img'|" $STATE/$ID.toml >/tmp/gone-state/$ID.toml
expect_refusal "recover when the backing file is gone" "backing file /tmp/no-such-backing.img is gone" \
  $P ublk recover "$ID" --state-dir /tmp/gone-state
[ -e /tmp/no-such-backing.img ] && fail "a refused recover created the missing backing file"
BEFORE=$(cat /tmp/writer.count)
start_recover "$ID" --state-dir $STATE
cat /tmp/srv.err
$P ublk list | grep "^$ID " | grep -q live || { $P ublk list; fail "device $ID not live after recover"; }
wait_records $((BEFORE + 50)) 60
touch /tmp/stop-writer
wait $WRITER || fail "the writer failed across the recovery: $(cat /tmp/writer.err 2>/dev/null)"
LAST=$(cat /tmp/writer.count)
echo "writer went on from record $BEFORE to $LAST across kill -9 and recover"
umount /mnt || fail "umount $DEV after the recovery"
e2fsck -fn "$DEV" >/tmp/fsck.log 2>&1 || { cat /tmp/fsck.log; fail "e2fsck -fn $DEV not clean after the recovery"; }
tail -n 1 /tmp/fsck.log
mount -t ext4 "$DEV" /mnt || fail "remount $DEV after the recovery"
# Every record 1..LAST once, in order, whole.
awk -v pad=$PAD -v last="$LAST" '
  $1 != "record" || $2 != NR || $3 != pad || NF != 3 { print "bad line " NR ": " $0; bad = 1; exit }
  END { if (!bad && NR != last) { print NR " records, expected " last; bad = 1 } exit bad }
' /mnt/records || fail "the writer's records are not intact after the recovery"
echo "all $LAST records intact"
umount /mnt || fail "final umount $DEV"
stop_server
[ ! -e $STATE/$ID.toml ] || fail "the state file outlived the stopped device"
$P ublk list | grep -q "^$ID " && fail "device $ID still listed after its recovered server stopped"

step "user recovery of a mem target: its data died with the server, so recover wants --accept-empty"
start_server --target mem --size 16M --depth 8 --recoverable --state-dir $STATE
ID=${DEV#/dev/ublkb}
grep -q "brings the device back empty" /tmp/srv.err ||
  fail "no data-loss warning for a recoverable mem target: $(cat /tmp/srv.err)"
kill -9 $SRV
wait $SRV 2>/dev/null
expect_refusal "recover of a mem target without --accept-empty" "accept-empty" \
  $P ublk recover "$ID" --state-dir $STATE
# A target other than the device's (the state file edited) is refused before the device is
# touched: it stays quiesced for the right one.
mkdir -p /tmp/other-state
sed 's/^size = .*/size = 33554432/' $STATE/$ID.toml >/tmp/other-state/$ID.toml
expect_refusal "recover with a target of another size" "not the target the device was added with" \
  $P ublk recover "$ID" --state-dir /tmp/other-state --accept-empty
sed 's/^depth = .*/depth = 4/' $STATE/$ID.toml >/tmp/other-state/$ID.toml
expect_refusal "recover with fewer tags than the device" "fewer than the device's 1 x 8" \
  $P ublk recover "$ID" --state-dir /tmp/other-state --accept-empty
$P ublk list | grep "^$ID " | grep -q quiesced || { $P ublk list; fail "device $ID not quiesced after the refusals"; }
start_recover "$ID" --state-dir $STATE --accept-empty
grep -q "comes back empty" /tmp/srv.err || fail "recover --accept-empty did not say the device is empty"
dd if="$DEV" of=/tmp/empty bs=65536 count=4 iflag=direct 2>/dev/null || fail "read of the recovered $DEV"
cmp -n 262144 /tmp/empty /dev/zero || fail "the recovered mem device is not empty (zeros)"
echo "recovered mem device reads as zeros"
stop_server

step "recoverable servers stopped by SIGTERM: a relative --file is recorded absolute; the state goes"
cd /tmp && start_server --target file --file rel.img --size 16M --depth 8 --recoverable \
  --state-dir $STATE
cd /
ID=${DEV#/dev/ublkb}
grep -q '^path = "/tmp/rel.img"$' $STATE/$ID.toml ||
  { cat $STATE/$ID.toml; fail "--file rel.img run from /tmp is not recorded as /tmp/rel.img"; }
stop_server
[ ! -e $STATE/$ID.toml ] || fail "the state file outlived the stopped file device"
start_server --target zram --size 16M --depth 8 --recoverable --state-dir $STATE
ID=${DEV#/dev/ublkb}
grep -q "brings the device back empty" /tmp/srv.err ||
  fail "no data-loss warning for a recoverable zram target: $(cat /tmp/srv.err)"
stop_server
[ ! -e $STATE/$ID.toml ] || fail "the state file outlived the stopped zram device"
no_devices "after the recoverable servers stopped"

echo "UBLK-E2E-PASS"
