# Pool(workers=[...], key=...): binaries and Python functions run on a real `pepita worker`
# started from this build, as tests/cli and tests/transport start theirs (--gen-key, --listen).
import os
import socket
import subprocess
import time

import sys

import cloudpickle
import pytest

import pepita

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # see test_functions.py


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def worker(pepita_cli, tmp_path):
    key = str(tmp_path / "w.key")
    subprocess.run([pepita_cli, "worker", "--gen-key", key], check=True)
    address = f"127.0.0.1:{free_port()}"
    log = open(tmp_path / "worker.log", "w")
    # --sandbox none: the round trip is under test here, not the sandbox (tests/transport
    # covers it); a sandboxed task would not see this build tree's package.
    proc = subprocess.Popen(
        [pepita_cli, "worker", "--listen", address, "--key", key, "--slots", "2",
         "--sandbox", "none", "--cache", str(tmp_path / "cache")],
        stdout=log, stderr=subprocess.STDOUT)
    yield address, key
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def remote_pid():
    return os.getpid()


def test_binary_and_function_tasks_round_trip_through_a_worker(worker):
    address, key = worker
    with pepita.Pool(workers=[address], key=key) as pool:
        r = pool.submit(pepita.Task.binary("/bin/echo", args=["over", "the", "wire"])).result(
            timeout=120)
        assert r.stdout == b"over the wire\n"
        assert pool.submit(pow, 3, 4).result(timeout=120) == 81
        assert pool.run(remote_pid) != os.getpid()
        assert list(pool.map(abs, [-1, -2, -3])) == [1, 2, 3]
        with pytest.raises(ZeroDivisionError):
            pool.run(lambda: 1 / 0)


def test_remote_task_failure_keeps_its_status(worker):
    address, key = worker
    with pepita.Pool(workers=[address], key=key) as pool:
        f = pool.submit(pepita.Task.binary("/bin/sh", args=["-c", "exit 4"]))
        with pytest.raises(pepita.TaskFailedError) as info:
            f.result(timeout=120)
    assert info.value.result.exit_code == 4


def test_bad_key_file_is_an_error_naming_it(tmp_path):
    missing = str(tmp_path / "missing.key")
    with pytest.raises(pepita.PepitaError, match="missing.key"):
        pepita.Pool(workers=["127.0.0.1:1"], key=missing)
