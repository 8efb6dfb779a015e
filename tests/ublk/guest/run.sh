#!/usr/bin/env bash
# Host side of the ublk end-to-end test: builds the cached Linux 6.12 guest with the pepita CLI and
# tests/ublk/guest/e2e.sh, boots it under QEMU TCG and passes when the guest prints UBLK-E2E-PASS.
# Usage: run.sh BUILD_DIR PEPITA_BINARY. Exit 77 (CTest skip) when qemu or the kernel package
# cannot be had, with the reason printed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
guest_dir=$here/../../guest
build=${1:?build dir}
pepita=${2:?pepita binary}
out=$build/ublk-guest

set +e
"$guest_dir/build-guest.sh" --out "$out" --cache "$build/guest-cache" --init "$here/e2e.sh" \
  --module ublk_drv --bin "$pepita:/bin/pepita"
rc=$?
set -e
if ((rc == 77)); then
  echo "ublk guest test SKIPPED: the test guest cannot be built here (reason above)"
  exit 77
fi
((rc == 0)) || exit "$rc"
exec "$guest_dir/run-guest.sh" --dir "$out" --marker UBLK-E2E-PASS --smp 2 --mem 768 --timeout 170
