#!/usr/bin/env bash
# Host side of the ublk end-to-end test: builds the cached Linux 6.12 guest with the pepita CLI and
# tests/ublk/guest/e2e.sh, boots it under QEMU TCG and passes when the guest prints UBLK-E2E-PASS.
# Usage: run.sh BUILD_DIR PEPITA_BINARY [UBLK_TEST_BINARY]; with the test binary the guest also runs
# its real-device tests (UblkDevice.*, which need /dev/ublk-control and are not run on the host),
# with PEPITA_REQUIRE=ublk so they cannot skip there. Exit 77 (CTest skip) when qemu or the kernel
# package is not installed, with the reason printed (1 when PEPITA_REQUIRE names `guest`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
guest_dir=$here/../../guest
build=${1:?build dir}
pepita=${2:?pepita binary}
extra=()
[[ -n ${3:-} ]] && extra=(--bin "$3:/bin/pepita_ublk_tests")
out=$build/ublk-guest

set +e
"$guest_dir/build-guest.sh" --out "$out" --init "$here/e2e.sh" \
  --module ublk_drv --bin "$pepita:/bin/pepita" "${extra[@]}"
rc=$?
set -e
if ((rc == 77)); then
  echo "ublk guest test SKIPPED: the test guest cannot be built here (reason above)"
  exit 77
fi
((rc == 0)) || exit "$rc"
exec "$guest_dir/run-guest.sh" --dir "$out" --marker UBLK-E2E-PASS --smp 2 --mem 768 --timeout 330
