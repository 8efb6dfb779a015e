#!/usr/bin/env bash
# Host side of the restart test: `pepita vhost-user-blk` (file target, 2 queues) is killed with
# SIGKILL while the guest (restart-guest.sh) has writes in flight, and a new server is started on
# the same socket and file. QEMU reconnects (chardev reconnect=1), hands the new server the
# INFLIGHT_SHMFD region the first one kept, and the new server resubmits what was in flight (its
# log says how many), so the guest sees a stall, not an error. Passes when the guest prints
# VIRTIO-RESTART-PASS, the kill came before the guest's writers finished, the new server served
# requests and stops cleanly, and the host's e2fsck and checksums of the file agree with what the
# guest flushed before the kill. Then a crash: the guest boots again on the same file (served by a
# third server), reads back the first boot's files, flushes a second set, starts writers, and the
# host SIGKILLs the server and then QEMU. The file must then be clean after what a boot-time
# fsck does (journal replay, orphans: e2fsck -p), holding every file flushed in either boot.
# Usage: restart.sh BUILD_DIR PEPITA_BINARY. Exit 77 (CTest skip) with the reason printed when
# not root, or qemu or the kernel package is not installed (1 when PEPITA_REQUIRE names it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
guest_dir=$here/../../guest
source "$here/../../common/require.sh"
build=${1:?build dir}
pepita=${2:?pepita binary}
out=$build/virtio-restart
mkdir -p "$out"
PATH=$PATH:/sbin:/usr/sbin

(($(id -u) == 0)) ||
  pepita_missing root "not running as root" "run the tests as root (the guest's memfd RAM and vhost-user socket)"
command -v qemu-system-x86_64 >/dev/null ||
  pepita_missing guest "qemu-system-x86_64 is not installed" "package qemu-system-x86 (scripts/install-deps)"
set +e
"$guest_dir/build-guest.sh" --out "$out" \
  --init "$here/restart-guest.sh" --module virtio_blk
rc=$?
set -e
if ((rc == 77)); then
  echo "virtio restart test SKIPPED: the test guest cannot be built here (reason above)"
  exit 77
fi
((rc == 0)) || exit "$rc"

sock=$out/vub.sock img=$out/disk.img log=$out/console.log
rm -f "$sock" "$img" "$img.crash" "$log" "$out"/console-1.log "$out"/srv*.log
server_pid="" qemu_pid=""
cleanup() {
  [[ -n $server_pid ]] && kill -TERM "$server_pid" 2>/dev/null
  [[ -n $qemu_pid ]] && kill -TERM "$qemu_pid" 2>/dev/null
  true
}
trap cleanup EXIT
start_server() { # $1: log name
  "$pepita" vhost-user-blk --socket "$sock" --target file --file "$img" --size 64M --queues 2 \
    >/dev/null 2>"$out/$1.log" &
  server_pid=$!
  for _ in $(seq 100); do
    [[ -S $sock ]] && return 0
    sleep 0.1
  done
  cat "$out/$1.log"
  echo "server did not listen on $sock"
  exit 1
}
console_has() { [[ -f $log ]] && tr -d '\r' <"$log" | grep -q "^$1"; }

start_server srv-a
"$guest_dir/run-guest.sh" --dir "$out" --marker VIRTIO-RESTART-PASS --smp 2 --mem 512 \
  --timeout 150 -- \
  -machine pcie=on,memory-backend=mem \
  -object memory-backend-memfd,id=mem,size=512M,share=on \
  -chardev socket,id=vub,path="$sock",reconnect=1 \
  -device vhost-user-blk-pci,chardev=vub,num-queues=2 &
qemu_pid=$!

# Kill the server the moment the guest says its writers are running.
for _ in $(seq 1200); do
  console_has RESTART-KILL-NOW && break
  kill -0 "$qemu_pid" 2>/dev/null || break
  sleep 0.05
done
if ! console_has RESTART-KILL-NOW; then
  wait "$qemu_pid" || true
  qemu_pid=""
  echo "the guest never started its heavy I/O"
  exit 1
fi
kill -KILL "$server_pid"
killed_at_done=no
console_has RESTART-IO-DONE && killed_at_done=yes
set +e
wait "$server_pid"
rc=$?
set -e
server_pid=""
((rc == 137)) || { echo "first server ended with status $rc, not by SIGKILL"; exit 1; }
echo "host: killed the first server (SIGKILL) with the guest's writers running"
sleep 0.5 # the frontend sees the socket close and stalls the queues
start_server srv-b
echo "host: second server listening on the same socket and file"

set +e
wait "$qemu_pid"
rc=$?
set -e
qemu_pid=""
tr -d '\r' <"$log" | grep -E '^(==|FLUSHED|RESTART|writer|/dev/vd|e2fsck|keep/|VIRTIO)' || true
kill -TERM "$server_pid"
status=0
wait "$server_pid" || { echo "second server did not stop cleanly"; status=1; }
server_pid=""
cat "$out/srv-a.log" "$out/srv-b.log"
((rc == 0)) || exit "$rc"
((status == 0)) || exit 1
[[ $killed_at_done == no ]] || { echo "the writers had finished before the kill: not mid-I/O"; exit 1; }
served=$(sed -n 's/.*: \([0-9]*\) requests.*/\1/p' "$out/srv-b.log")
((${served:-0} > 0)) || { echo "the second server served no requests: QEMU did not reconnect"; exit 1; }

# Checks that the file holds every file the guest printed as FLUSHED in console $1.
check_flushed() { # $1 console log, $2 image, $3 expected count
  local checked=0 got sum name
  while read -r _ sum name; do
    got=$(debugfs -R "cat /$name" "$2" 2>/dev/null | sha256sum | cut -d' ' -f1)
    [[ $got == "$sum" ]] || { echo "host: /$name in the file has sha256 $got, flushed $sum"; exit 1; }
    checked=$((checked + 1))
  done < <(tr -d '\r' <"$1" | grep '^FLUSHED ')
  ((checked == $3)) || { echo "host: expected $3 FLUSHED files in $1, saw $checked"; exit 1; }
}

# The file itself, read by the host: a clean filesystem holding every file flushed before the kill.
e2fsck -fn "$img" || { echo "host e2fsck -fn of the file target failed"; exit 1; }
check_flushed "$log" "$img" 4
echo "host: file target clean, 4 files flushed before the kill intact"

# --- Boot 2: crash (server and QEMU killed mid-I/O, no reconnect) ------------------------------
mv "$log" "$out/console-1.log"
start_server srv-c
"$guest_dir/run-guest.sh" --dir "$out" --marker VIRTIO-RESTART-NEVER --smp 2 --mem 512 \
  --timeout 150 -- \
  -machine pcie=on,memory-backend=mem \
  -object memory-backend-memfd,id=mem,size=512M,share=on \
  -chardev socket,id=vub,path="$sock",reconnect=1 \
  -device vhost-user-blk-pci,chardev=vub,num-queues=2 >"$out/run-2.log" 2>&1 &
qemu_pid=$!
for _ in $(seq 1200); do
  console_has CRASH-KILL-NOW && break
  kill -0 "$qemu_pid" 2>/dev/null || break
  sleep 0.05
done
if ! console_has CRASH-KILL-NOW; then
  wait "$qemu_pid" || true
  qemu_pid=""
  tr -d '\r' <"$log"
  echo "the second boot never started its writers"
  exit 1
fi
kill -KILL "$server_pid"
set +e
wait "$server_pid"
rc=$?
set -e
server_pid=""
((rc == 137)) || { echo "third server ended with status $rc, not by SIGKILL"; exit 1; }
# Then the whole VM: QEMU is the child of run-guest.sh's timeout.
timeout_pid=$(pgrep -P "$qemu_pid" -x timeout || true)
vm_pid=$([[ -n $timeout_pid ]] && pgrep -P "$timeout_pid" || true)
[[ -n $vm_pid ]] && kill -KILL "$vm_pid"
wait "$qemu_pid" || true
qemu_pid=""
echo "host: second boot: killed the server, then QEMU (SIGKILL), writers running"
tr -d '\r' <"$log" | grep -E '^(==|FLUSHED|CRASH|keep|VIRTIO)' || true

cp --sparse=always "$img" "$img.crash"
# Preen mode (-p), as at boot: it replays the journal, truncates orphans and recounts the
# superblock's free counts (which ext4 does not keep exact on disk), and refuses (exit 4,
# "UNEXPECTED INCONSISTENCY") anything that would be real damage.
set +e
e2fsck -fp "$img.crash" >"$out/fsck-crash.log" 2>&1
rc=$?
set -e
cat "$out/fsck-crash.log"
((rc <= 1)) || { echo "host: e2fsck -fp after the crash exited $rc: the filesystem is damaged"; exit 1; }
e2fsck -fn "$img.crash" >/dev/null || { echo "host: not clean after journal replay"; exit 1; }
check_flushed "$out/console-1.log" "$img.crash" 4
check_flushed "$log" "$img.crash" 2
rm -f "$img.crash"
echo "host: after the crash: clean after journal replay, 6 flushed files of both boots intact"
echo "virtio restart test PASSED"
