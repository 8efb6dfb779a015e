# The pool's persistent Python workers (the "python" backend, include/pepita/executor/serve.hpp):
# function tasks on a local pool reuse one long-lived interpreter per cpu slot; a worker that
# dies, times out or is cancelled fails only that task's future and is replaced.
import ctypes
import os
import sys
import textwrap
import time

import cloudpickle
import pytest

import pepita
from test_interrupt import alive, interrupt

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def worker_pid():
    return os.getpid()


def nested_failure(depth):
    if depth == 0:
        raise KeyError("deep inside the worker")
    return nested_failure(depth - 1)


def test_many_calls_reuse_the_same_worker_processes():
    with pepita.Pool(cpu_workers=2) as pool:
        pids = list(pool.map(lambda _: os.getpid(), range(200)))
    assert os.getpid() not in pids
    assert 1 <= len(set(pids)) <= 2, f"200 calls on 2 cpu slots used {len(set(pids))} processes"


def test_worker_count_is_the_pools_cpu_slots():
    with pepita.Pool(cpu_workers=3) as pool:
        # Three calls that overlap (each waits for all three to have started) need 3 workers.
        d = pool.run(lambda: __import__("tempfile").mkdtemp())

        def meet(i):
            open(os.path.join(d, str(i)), "w").close()
            deadline = time.monotonic() + 60
            while len(os.listdir(d)) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            return os.getpid()

        pids = list(pool.map(meet, range(3)))
    assert len(set(pids)) == 3


def test_a_worker_that_exits_fails_its_future_and_is_replaced():
    with pepita.Pool(cpu_workers=1) as pool:
        before = pool.run(worker_pid)
        f = pool.submit(os._exit, 3)
        with pytest.raises(pepita.TaskFailedError, match="exited with status 3") as info:
            f.result(timeout=120)
        assert f"pid {before}" in str(info.value)
        assert "replaces it" in str(info.value)
        after = pool.run(worker_pid)
    assert after != before
    assert not alive(before)


def test_a_segfault_fails_its_future_with_the_signal_and_the_worker_is_replaced():
    with pepita.Pool(cpu_workers=1) as pool:
        before = pool.run(worker_pid)
        f = pool.submit(ctypes.string_at, 0)  # reads address 0: SIGSEGV in the worker
        with pytest.raises(pepita.TaskFailedError, match="SIGSEGV") as info:
            f.result(timeout=120)
        assert info.value.result.signal == 11
        assert info.value.result.status == "signaled"
        assert pool.run(pow, 3, 3) == 27
        assert pool.run(worker_pid) != before


def test_a_timeout_kills_the_worker_and_a_new_one_takes_the_next_task():
    with pepita.Pool(cpu_workers=1) as pool:
        before = pool.run(worker_pid)
        slow = pool.submit(pepita.Task.function(time.sleep, (60,), timeout=0.5))
        with pytest.raises(pepita.TaskTimedOutError, match="timed out after 0.5 s") as info:
            slow.result(timeout=120)
        assert info.value.result.status == "timed-out"
        assert not alive(before)
        assert pool.run(worker_pid) != before


def test_cancelling_a_running_function_kills_its_worker():
    with pepita.Pool(cpu_workers=1) as pool:
        marker = pool.run(lambda: __import__("tempfile").mktemp())

        def announce_then_sleep(path):
            with open(path + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(path + ".tmp", path)
            time.sleep(120)

        f = pool.submit(announce_then_sleep, marker)
        deadline = time.monotonic() + 60
        while not os.path.exists(marker):
            assert time.monotonic() < deadline, "the function never started"
            time.sleep(0.02)
        pid = int(open(marker).read())
        os.unlink(marker)
        assert f.cancel()
        assert f.cancelled()
        deadline = time.monotonic() + 60
        while alive(pid):
            assert time.monotonic() < deadline, "the cancelled function's worker survived"
            time.sleep(0.02)
        assert pool.run(worker_pid) != pid


def test_the_exception_comes_back_with_the_workers_traceback_text():
    with pepita.Pool(cpu_workers=1) as pool:
        with pytest.raises(KeyError, match="deep inside the worker") as info:
            pool.run(nested_failure, 3)
    tb = str(info.value.__cause__)
    assert "Traceback (most recent call last)" in tb
    assert tb.count("nested_failure") >= 4


def test_a_function_exception_keeps_the_worker():
    with pepita.Pool(cpu_workers=1) as pool:
        before = pool.run(worker_pid)
        with pytest.raises(ZeroDivisionError):
            pool.run(lambda: 1 / 0)
        assert pool.run(worker_pid) == before


def test_a_missing_module_is_named_and_keeps_the_worker(tmp_path, monkeypatch):
    (tmp_path / "only_in_driver_mod.py").write_text("def f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_in_driver_mod

    with pepita.Pool(cpu_workers=1) as pool:
        before = pool.run(worker_pid)
        with pytest.raises(ImportError, match="only_in_driver_mod") as info:
            pool.run(only_in_driver_mod.f)
        assert info.value.name == "only_in_driver_mod"
        assert pool.run(worker_pid) == before


def test_prints_of_a_function_come_back_as_the_tasks_stderr():
    events = []
    with pepita.Pool(cpu_workers=1, on_event=events.append) as pool:
        assert pool.run(lambda: print("chatter") or 5) == 5
    finished = [e for e in events if e.kind == "finished"]
    assert b"chatter" in finished[0].result.stderr


def test_function_tasks_still_go_through_the_pool_events_and_journal(tmp_path):
    journal = tmp_path / "run.journal"
    events = []
    with pepita.Pool(cpu_workers=1, journal=str(journal), on_event=events.append) as pool:
        assert pool.run(pepita.Task.function(pow, (2, 5), name="pow-task")) == 32
    assert [e.kind for e in events] == ["started", "finished"]
    assert events[-1].name == "pow-task"
    assert journal.stat().st_size > 0
    with pepita.Pool(cpu_workers=1, journal=str(journal), resume=True) as pool:
        f = pool.submit(pepita.Task.function(pow, (2, 5), name="pow-task"))
        assert f.result(timeout=120) == 32
        assert pool.stats()["from_journal"] == 1


def test_retries_rerun_a_function_whose_worker_died(tmp_path):
    flag = tmp_path / "crashed-once"

    def crash_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(9)
        return "second attempt"

    with pepita.Pool(cpu_workers=1, retries=1) as pool:
        assert pool.run(crash_once, str(flag)) == "second attempt"


CTRL_C_CHILD = textwrap.dedent("""
    import os, sys, time, pepita
    pidfile = sys.argv[1]

    def announce_then_sleep():
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pidfile + ".tmp", pidfile)
        time.sleep(120)

    with pepita.Pool(cpu_workers=1) as pool:
        f = pool.submit(announce_then_sleep)
        try:
            f.result()
        except KeyboardInterrupt:
            print("interrupted cancelled=%s" % f.cancelled(), flush=True)
            raise
""")


def test_ctrl_c_while_waiting_on_a_function_cancels_it_and_kills_its_worker(tmp_path):
    rc, out, err, worker = interrupt(CTRL_C_CHILD, tmp_path)
    assert "KeyboardInterrupt" in err
    assert rc != 0
    assert "interrupted cancelled=True" in out
    deadline = time.monotonic() + 30
    while alive(worker):
        assert time.monotonic() < deadline, "the function's worker survived Ctrl-C"
        time.sleep(0.05)


def test_a_pool_whose_last_reference_goes_in_a_done_callback_shuts_down_cleanly():
    import threading

    pool = pepita.Pool(cpu_workers=1)
    holder = [pool]
    del pool
    done = threading.Event()
    f = holder[0].submit(pow, 2, 3)
    # The callback runs on the pool's finisher thread and drops the last reference there.
    f.add_done_callback(lambda _: (holder.clear(), done.set()))
    assert f.result(timeout=120) == 8
    assert done.wait(60), "the done callback never ran"
    with pepita.Pool(cpu_workers=1) as again:  # the process is still healthy
        assert again.run(pow, 3, 2) == 9
