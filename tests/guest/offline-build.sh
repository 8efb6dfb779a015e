#!/usr/bin/env bash
# Proves the Linux test guest needs no network: builds a guest with the package tools that could
# download (apt, apt-get, apt-cache, wget, curl) shadowed by stubs that record any call and fail,
# and with every proxy pointing at a closed port. Passes when the guest builds and nothing called a
# stub. Usage: offline-build.sh BUILD_DIR. Exit 77 (skip; 1 under PEPITA_REQUIRE=guest) when the
# guest's packages are not installed, as build-guest.sh decides.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?build dir}
out=$build/guest-offline
rm -rf "$out"
mkdir -p "$out/stubs"
calls=$out/network-calls.log
: >"$calls"
for tool in apt apt-get apt-cache apt-helper wget curl; do
  printf '#!/bin/sh\necho "%s $*" >>"%s"\necho "offline-build: %s called: no network at test time" >&2\nexit 1\n' \
    "$tool" "$calls" "$tool" >"$out/stubs/$tool"
  chmod +x "$out/stubs/$tool"
done
printf 'echo offline guest\n' >"$out/init.sh"

set +e
env PATH="$out/stubs:$PATH" http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
  ftp_proxy=http://127.0.0.1:9 no_proxy= \
  "$here/build-guest.sh" --out "$out/guest" --init "$out/init.sh" --module virtio_blk \
  --module ublk_drv
rc=$?
set -e
if [[ -s $calls ]]; then
  echo "offline-build: FAIL: building the guest called a network tool:"
  cat "$calls"
  exit 1
fi
((rc == 0)) || exit "$rc"
[[ -s $out/guest/initrd.gz && -s $out/guest/vmlinux ]] || { echo "offline-build: FAIL: no guest"; exit 1; }
echo "offline-build: PASS: guest built with apt/wget/curl unusable and no proxy reachable"
