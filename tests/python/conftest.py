# pytest configuration for tests/python (issue 26): the `pepita` package from the build tree
# (CTest puts ${build}/python on PYTHONPATH) and the pepita CLI (PEPITA_CLI) for the worker.
import os
import sys

import pytest


@pytest.fixture
def pepita_cli():
    """The pepita CLI of this build (CTest passes it as PEPITA_CLI)."""
    path = os.environ.get("PEPITA_CLI")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("PEPITA_CLI must name the pepita binary of this build (CTest sets it)")
    return path


@pytest.fixture
def python():
    return sys.executable
