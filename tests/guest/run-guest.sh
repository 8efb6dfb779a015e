#!/usr/bin/env bash
# Boots a guest built by build-guest.sh under QEMU's software emulation (TCG, microvm, PVH entry)
# and decides pass/fail from the console: QEMU exits 0 even when the guest panics, so only the
# success marker printed by the guest's test script counts.
#
# Usage: run-guest.sh --dir DIR --marker TEXT [--timeout S] [--smp N] [--mem MiB] [-- QEMU_ARGS...]
#   DIR holds vmlinux and initrd.gz; the console goes to DIR/console.log. With PEPITA_COVERAGE_DUMPS
#   set, the coverage counts the guest prints are unpacked under it (see take_counts below).
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

# Coverage counts: a coverage build's programs in the guest leave .gcda files that build-guest.sh's
# /init prints after the test script (base64 tar.gz between PEPITA-GCOV-BEGIN/END). With
# PEPITA_COVERAGE_DUMPS set (make coverage) they are unpacked into
# $PEPITA_COVERAGE_DUMPS/guest-<name>-<pid>/ as GCOV_PREFIX=<that dir> GCOV_PREFIX_STRIP=0 writes
# them, for the Makefile to merge. A cut or corrupt dump loses only the counts: said on stderr,
# never a test failure.
take_counts() {
  local name dest
  name=$(basename "$dir")
  dest=$PEPITA_COVERAGE_DUMPS/guest-${name%-guest}-$$
  # grep without -q reads to the end: tr killed by SIGPIPE would fail the pipeline (pipefail).
  if ! tr -d '\r' <"$log" | grep -x PEPITA-GCOV-BEGIN >/dev/null; then
    echo "run-guest: no coverage counts on the guest console (no instrumented program exited there)" >&2
    return 0
  fi
  mkdir -p "$PEPITA_COVERAGE_DUMPS"
  rm -rf "$dest" "$dest.tar.gz"
  # Only whole base64 lines: a kernel message printed in between is dropped (gzip's CRC catches
  # one printed inside a line).
  if ! tr -d '\r' <"$log" | awk '$0 == "PEPITA-GCOV-BEGIN" {on = 1; next}
      $0 == "PEPITA-GCOV-END" {if (on) ended = 1; on = 0; next}
      on && /^[A-Za-z0-9+\/=]+$/ {print} END {exit !ended}' | base64 -d >"$dest.tar.gz" 2>/dev/null; then
    echo "run-guest: warning: the guest's coverage dump is cut short or not base64 (no" \
      "PEPITA-GCOV-END, or bad characters); its counts are lost" >&2
    rm -f "$dest.tar.gz"
    return 0
  fi
  mkdir -p "$dest"
  if ! gzip -tq "$dest.tar.gz" 2>/dev/null || ! tar -xzf "$dest.tar.gz" -C "$dest" 2>/dev/null; then
    echo "run-guest: warning: the guest's coverage dump is corrupt (gzip or tar refused it);" \
      "its counts are lost" >&2
    rm -rf "$dest" "$dest.tar.gz"
    return 0
  fi
  rm -f "$dest.tar.gz"
  echo "run-guest: $(find "$dest" -name '*.gcda' | wc -l) coverage count files from the guest -> $dest"
}
[[ -z ${PEPITA_COVERAGE_DUMPS:-} ]] || take_counts

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
# The coverage dump, if any, is shown as one line, not as its base64.
tr -d '\r' <"$log" | awk '$0 == "PEPITA-GCOV-BEGIN" {on = 1; n = 0; next}
  on && $0 == "PEPITA-GCOV-END" {on = 0; print "[coverage dump: " n " lines of base64]"; next}
  on {n++; next} {print} END {if (on) print "[coverage dump cut short after " n " lines]"}' >&2
echo "----- end of guest console -----" >&2
exit 1
