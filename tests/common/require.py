"""The skip-or-fail rule of tests/common/require.hpp for the pytest suites (tests/python): a
missing capability skips the test, printing what is missing and how to provide it, unless
PEPITA_REQUIRE (comma list, `all`, `-name` to take one back out) names it; then the test fails.
Each probe is independent of the code under test.

    from require import require_capability
    def test_sweep():
        require_capability("torch")   # skips or fails here
"""
import os
import subprocess

import pytest

# name -> (in `all`, how to provide it); the names and the `all` set match require.hpp.
CAPABILITIES = {
    "kvm": True, "zram": True, "io_uring": True, "guest": True, "vulkan": True, "slurm": True,
    "netns": True, "root": True, "cgroup": True, "userns": True, "chromium": True, "torch": True,
    "ublk": False,
}
PROVIDE = {
    "vulkan": "a Vulkan device that vulkaninfo lists (scripts/install-deps installs Mesa lavapipe "
              "and vulkan-tools)",
    "torch": "Debian's PyTorch and scikit-learn for /usr/bin/python3 (scripts/install-deps: "
             "python3-torch python3-sklearn)",
}


def _probe_torch():
    try:
        out = subprocess.run(
            ["/usr/bin/python3", "-c",
             "import torch, sklearn.datasets; "
             "print('ok', len(sklearn.datasets.load_digits().target))"],
            capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "/usr/bin/python3 could not be run: {}".format(e)
    if out.returncode == 0 and out.stdout.startswith("ok 1797"):
        return ""
    lines = (out.stderr or out.stdout).strip().splitlines()
    return "/usr/bin/python3 cannot import torch and sklearn.datasets ({})".format(
        lines[-1] if lines else "exit {}".format(out.returncode))


def _probe_vulkan():
    """require.hpp's probe: vulkaninfo --summary names a device."""
    try:
        out = subprocess.run(["vulkaninfo", "--summary"], capture_output=True, text=True,
                             timeout=120)
    except FileNotFoundError:
        return "vulkaninfo is not installed (package vulkan-tools)"
    except (OSError, subprocess.TimeoutExpired) as e:
        return "vulkaninfo could not be run: {}".format(e)
    if "deviceName" in out.stdout:
        return ""
    return "vulkaninfo --summary lists no device (exit {})".format(out.returncode)


PROBES = {"torch": _probe_torch, "vulkan": _probe_vulkan}
_found = {}


def required(name, value=None):
    """True when PEPITA_REQUIRE names `name`; an unknown name in it is a failure, never a skip."""
    value = os.environ.get("PEPITA_REQUIRE", "") if value is None else value
    need = False
    for raw in value.split(","):
        n = raw.strip().lower()
        if not n:
            continue
        if n != "all" and n.lstrip("-") not in CAPABILITIES:
            pytest.fail("PEPITA_REQUIRE names unknown capability '{}' (known: all {})".format(
                n, " ".join(CAPABILITIES)))
        if n == name:
            need = True
        elif n == "-" + name:
            need = False
        elif n == "all" and CAPABILITIES[name]:
            need = True
    return need


def require_capability(name):
    """Skips (or, when PEPITA_REQUIRE names it, fails) the calling test unless `name` is here."""
    if name not in _found:
        _found[name] = PROBES[name]()
    missing = _found[name]
    if not missing:
        return
    message = "capability '{}' missing: {}. To provide it: {}.".format(name, missing, PROVIDE[name])
    if required(name):
        pytest.fail(message + " PEPITA_REQUIRE names it, so this is a failure.")
    pytest.skip(message + " (PEPITA_REQUIRE={} makes this a failure.)".format(name))
