# Sourced by the shell-driven tests (tests/guest, tests/*/guest): the skip-or-fail rule of
# tests/common/require.hpp. A missing capability skips the test (exit 77, CTest's
# SKIP_RETURN_CODE) with what is missing and how to provide it, unless PEPITA_REQUIRE (comma list
# of kvm,zram,io_uring,guest,vulkan,slurm,netns,root,cgroup,userns,chromium,torch,ublk, or `all` = every one but ublk;
# `-name` takes one back out, as in `all,-kvm`) names it:
# then the test fails (exit 1).

pepita_known_capabilities="kvm zram io_uring guest vulkan slurm netns root cgroup userns chromium torch ublk"
pepita_all_capabilities="kvm zram io_uring guest vulkan slurm netns root cgroup userns chromium torch"

# pepita_required CAP: true when PEPITA_REQUIRE names CAP (or `all` and CAP is in it). Exits 1
# when PEPITA_REQUIRE names a capability nobody knows (a typo must not turn into a skip).
# A `-name` entry takes CAP back out of what came before it (`all,-kvm`).
pepita_required() {
  local cap=$1 name required=1
  local IFS=', '
  for name in ${PEPITA_REQUIRE:-}; do
    name=${name,,}
    [[ -z $name ]] && continue
    if [[ $name != all && " $pepita_known_capabilities " != *" ${name#-} "* ]]; then
      echo "FAILED: PEPITA_REQUIRE names unknown capability '$name' (known: all $pepita_known_capabilities)" >&2
      exit 1
    fi
    [[ $name == "$cap" ]] && required=0
    [[ $name == "-$cap" ]] && required=1
    [[ $name == all && " $pepita_all_capabilities " == *" $cap "* ]] && required=0
  done
  return $required
}

# pepita_missing CAP WHAT_IS_MISSING HOW_TO_PROVIDE: ends the test as skipped (77) or failed (1).
pepita_missing() {
  local cap=$1 missing=$2 provide=$3
  if pepita_required "$cap"; then
    echo "FAILED: capability '$cap' missing: $missing. To provide it: $provide." \
      "PEPITA_REQUIRE names it, so this is a failure." >&2
    exit 1
  fi
  echo "SKIPPED: capability '$cap' missing: $missing. To provide it: $provide." \
    "(PEPITA_REQUIRE=$cap makes this a failure.)" >&2
  exit 77
}
