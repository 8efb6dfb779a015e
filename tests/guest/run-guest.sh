#!/usr/bin/env bash
# Boots a guest built by build-guest.sh under QEMU's software emulation (TCG, microvm, PVH entry)
# and decides pass/fail from the console: QEMU exits 0 even when the guest panics, so only the
# success marker printed by the guest's test script counts.
#
# Usage: run-guest.sh --dir DIR --marker TEXT [--timeout S] [--smp N] [--mem MiB] [-- QEMU_ARGS...]
#   DIR holds vmlinux and initrd.gz; the console goes to DIR/console.log.
# Exit status: 0 marker seen and the guest's test script exited 0; 77 qemu missing (skip; 1 when
# PEPITA_REQUIRE names `guest`); 1 otherwise (the whole console is printed).
set -euo pipefail

dir="" marker="" timeout_s=120 smp=1 mem=512
extra=()
while (($#)); do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --marker) marker=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "run-guest: unknown argument '$1'" >&2; exit 1 ;;
  esac
done
[[ -n $dir && -n $marker ]] || { echo "run-guest: --dir and --marker are required" >&2; exit 1; }
source "${BASH_SOURCE[0]%/*}/../common/require.sh"
qemu=$(command -v qemu-system-x86_64) ||
  pepita_missing guest "qemu-system-x86_64 is not installed" "package qemu-system-x86 (scripts/install-deps)"

log=$dir/console.log
start=$(date +%s.%N)
# -cpu max,-cx16: multi-vCPU TCG with cmpxchg16b crashed at random on QEMU 7.2.
# tsc_early_khz: without it microvm under TCG sometimes hangs calibrating against the PIT.
# oops=panic + panic=-1 + -no-reboot: a crashed guest ends QEMU at once instead of hanging.
set +e
timeout --kill-after=5 "$timeout_s" "$qemu" -M microvm -accel tcg -cpu max,-cx16 -smp "$smp" \
  -m "$mem" -nodefaults -no-user-config -nographic -serial stdio -monitor none -no-reboot \
  -kernel "$dir/vmlinux" -initrd "$dir/initrd.gz" \
  -append "console=ttyS0 panic=-1 oops=panic tsc_early_khz=2600000 quiet loglevel=4" \
  "${extra[@]}" </dev/null >"$log" 2>&1
rc=$?
set -e
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}')

if ((rc == 124 || rc == 137)); then
  why="timed out after ${timeout_s}s"
elif ! grep -qF -- "$marker" "$log"; then
  why="success marker '$marker' not on the console (qemu exit $rc)"
elif ! grep -q "^PEPITA-GUEST-EXIT 0" "$log"; then
  why="guest test script did not exit 0"
else
  echo "run-guest: PASS in ${elapsed}s (marker '$marker')"
  exit 0
fi
echo "run-guest: FAIL: $why; guest console follows (${elapsed}s)" >&2
echo "----- guest console -----" >&2
tr -d '\r' <"$log" >&2
echo "----- end of guest console -----" >&2
exit 1
