#!/usr/bin/env bash
# Installs the build tree BUILD_DIR into a temporary prefix, then configures, builds and runs the
# consumer project against it with find_package(pepita), as a user of an installed pepita would.
# Usage: install-and-consume.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d /tmp/pepita-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log" ||
  { cat "$work/install.log"; exit 1; }
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$src/tests/install/consumer" -B "$work/build" "${gen[@]}" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; echo "install test: configuring a find_package(pepita) consumer failed" >&2; exit 1; }
cmake --build "$work/build" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; echo "install test: building the consumer failed" >&2; exit 1; }
out=$("$work/build/consumer")
expected=$'from a process\nfrom a function\nFROM A CUSTOM BACKEND'
if [[ $out != "$expected" ]]; then
  printf 'install test: consumer printed:\n%s\nexpected:\n%s\n' "$out" "$expected" >&2
  exit 1
fi
echo "install test: find_package(pepita) consumer built against $work/prefix and ran"
