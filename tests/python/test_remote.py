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


# Issue 26: function tasks on a worker run in persistent interpreters there, one per slot.

def crash_hard():
    os._exit(7)


def test_remote_functions_reuse_one_interpreter_per_slot(worker):
    address, key = worker
    with pepita.Pool(workers=[address], key=key) as pool:
        pids = [pool.run(remote_pid) for _ in range(6)]  # one at a time: any slot, reused
    assert os.getpid() not in pids
    assert len(set(pids)) <= 2, f"6 sequential calls used {len(set(pids))} interpreters"
    assert len(pids) - len(set(pids)) >= 4


def test_a_remote_crash_fails_only_that_call_and_its_interpreter_is_replaced(worker):
    address, key = worker
    with pepita.Pool(workers=[address], key=key) as pool:
        assert pool.run(pow, 2, 8) == 256
        with pytest.raises(pepita.TaskFailedError, match="exited with status 7"):
            pool.run(crash_hard)
        assert [pool.run(pow, 2, k) for k in range(4)] == [1, 2, 4, 8]


def test_a_module_missing_on_the_worker_is_still_an_import_error_naming_it(
        worker, tmp_path, monkeypatch):
    (tmp_path / "only_on_the_driver_mod.py").write_text("def f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_on_the_driver_mod

    address, key = worker
    with pepita.Pool(workers=[address], key=key) as pool:
        with pytest.raises(ImportError, match="only_on_the_driver_mod") as info:
            pool.run(only_on_the_driver_mod.f)
        assert info.value.name == "only_on_the_driver_mod"
        assert pool.run(pow, 3, 3) == 27  # the interpreter that could not load it still serves


def test_a_remote_function_with_env_runs_in_a_fresh_interpreter_each_call(worker):
    address, key = worker
    with pepita.Pool(workers=[address], key=key) as pool:
        task = lambda: pepita.Task.function(remote_pid, env={"PEPITA_TEST": "1"})
        pids = {pool.run(task()) for _ in range(3)}
    assert len(pids) == 3


def test_a_remote_timeout_kills_the_interpreter_and_the_next_call_gets_a_new_one(worker):
    address, key = worker
    with pepita.Pool(workers=[address], key=key) as pool:
        f = pool.submit(pepita.Task.function(time.sleep, (30,), timeout=0.5))
        with pytest.raises(pepita.TaskTimedOutError):
            f.result(timeout=120)
        assert pool.run(pow, 5, 2) == 25
