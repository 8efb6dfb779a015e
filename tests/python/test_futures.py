# Pool, Task.binary and Future: concurrent.futures semantics (result, done, callbacks, wait,
# as_completed, cancel), dependencies, events and the pool's counters.
import concurrent.futures
import threading
import time

import pytest

import pepita


def test_binary_task_result_carries_stdout_and_exit_status():
    with pepita.Pool(cpu_workers=2) as pool:
        f = pool.submit(pepita.Task.binary("/bin/echo", args=["hello", "pool"]))
        r = f.result(timeout=60)
    assert isinstance(f, concurrent.futures.Future)
    assert f.done() and not f.cancelled()
    assert r.ok and r.status == "succeeded" and r.exit_code == 0
    assert r.stdout == b"hello pool\n"
    assert r.text == "hello pool\n"


def test_run_returns_the_result_synchronously():
    with pepita.Pool() as pool:
        r = pool.run(pepita.Task.binary("/bin/sh", args=["-c", "printf x; printf y >&2"]))
    assert (r.stdout, r.stderr) == (b"x", b"y")


def test_env_cwd_and_stdin_reach_the_process(tmp_path):
    with pepita.Pool() as pool:
        r = pool.run(pepita.Task.binary(
            "/bin/sh", args=["-c", 'echo "$GREETING $(pwd)"; cat'], env={"GREETING": "hi"},
            cwd=str(tmp_path), stdin=b"from-stdin"))
    assert r.text == f"hi {tmp_path}\nfrom-stdin"


def test_failed_task_raises_task_failed_error_with_its_result():
    with pepita.Pool() as pool:
        f = pool.submit(pepita.Task.binary("/bin/sh", args=["-c", "echo oops >&2; exit 3"],
                                           name="bad"))
        with pytest.raises(pepita.TaskFailedError) as info:
            f.result(timeout=60)
    assert info.value.result.exit_code == 3
    assert "'bad' exited with status 3" in str(info.value)
    assert "oops" in str(info.value)
    assert isinstance(f.exception(), pepita.TaskFailedError)


def test_missing_binary_is_a_launch_failure_naming_it():
    with pepita.Pool() as pool:
        f = pool.submit(pepita.Task.binary("/nonexistent/tool"))
        with pytest.raises(pepita.TaskFailedError) as info:
            f.result(timeout=60)
    assert info.value.result.status == "launch-failed"
    assert "/nonexistent/tool" in str(info.value)


def test_timeout_raises_task_timed_out_error():
    with pepita.Pool() as pool:
        f = pool.submit(pepita.Task.binary("/bin/sleep", args=["30"], timeout=0.2))
        with pytest.raises(pepita.TaskTimedOutError) as info:
            f.result(timeout=60)
    assert isinstance(info.value, TimeoutError)
    assert info.value.result.status == "timed-out"


def test_retries_run_a_failing_task_again():
    with pepita.Pool(retries=2) as pool:
        f = pool.submit(pepita.Task.binary("/bin/false"))
        with pytest.raises(pepita.TaskFailedError) as info:
            f.result(timeout=60)
    assert info.value.result.attempts == 3


def test_done_callbacks_run_once_with_the_future():
    seen = []
    done = threading.Event()
    with pepita.Pool() as pool:
        f = pool.submit(pepita.Task.binary("/bin/true"))

        def cb(fut):
            seen.append(fut)
            done.set()

        f.add_done_callback(cb)
        assert done.wait(60)
    assert seen == [f]


def test_as_completed_and_wait_see_every_future():
    with pepita.Pool(cpu_workers=4) as pool:
        futures = [pool.submit(pepita.Task.binary("/bin/sh", args=["-c", f"echo {i}"]))
                   for i in range(20)]
        outs = sorted(int(f.result().stdout) for f in concurrent.futures.as_completed(
            futures, timeout=120))
        done, not_done = concurrent.futures.wait(futures, timeout=120)
    assert outs == list(range(20))
    assert len(done) == 20 and not not_done


def test_wait_first_exception_returns_at_the_failure():
    with pepita.Pool(cpu_workers=2) as pool:
        slow = pool.submit(pepita.Task.binary("/bin/sleep", args=["30"]))
        bad = pool.submit(pepita.Task.binary("/bin/false"))
        done, not_done = concurrent.futures.wait(
            [slow, bad], timeout=60, return_when=concurrent.futures.FIRST_EXCEPTION)
        assert bad in done and slow in not_done
        assert slow.cancel()
    assert slow.cancelled()


def test_cancel_a_queued_task():
    with pepita.Pool(process_slots=1) as pool:
        running = pool.submit(pepita.Task.binary("/bin/sleep", args=["30"]))
        queued = pool.submit(pepita.Task.binary("/bin/echo", args=["never"]))
        assert queued.cancel()
        assert queued.cancelled() and queued.done()
        with pytest.raises(concurrent.futures.CancelledError):
            queued.result()
        # as_completed must not hang on a cancelled future
        assert queued in set(concurrent.futures.as_completed([queued], timeout=10))
        assert running.cancel()
    assert running.cancelled()


def test_cancel_after_completion_returns_false():
    with pepita.Pool() as pool:
        f = pool.submit(pepita.Task.binary("/bin/true"))
        f.result(timeout=60)
        assert not f.cancel()
        assert not f.cancelled()


def test_dependencies_run_in_order_and_failures_skip_dependents(tmp_path):
    marker = tmp_path / "m"
    with pepita.Pool(cpu_workers=2) as pool:
        first = pool.submit(pepita.Task.binary("/bin/sh", args=["-c", f"sleep 0.2; echo a > {marker}"]))
        second = pool.submit(pepita.Task.binary("/bin/cat", args=[str(marker)], deps=[first]))
        assert second.result(timeout=60).stdout == b"a\n"
        bad = pool.submit(pepita.Task.binary("/bin/false"))
        after = pool.submit(pepita.Task.binary("/bin/true", deps=[bad]))
        with pytest.raises(pepita.TaskFailedError) as info:
            after.result(timeout=60)
    assert info.value.result.status == "skipped"


def test_events_reach_the_callback_in_order():
    events = []
    lock = threading.Lock()

    def on_event(e):
        with lock:
            events.append(e)

    with pepita.Pool(on_event=on_event) as pool:
        f = pool.submit(pepita.Task.binary("/bin/true", name="ev"))
        f.result(timeout=60)
    kinds = [e.kind for e in events if e.name == "ev"]
    assert kinds == ["started", "finished"]
    assert events[-1].result.ok and events[-1].id == f.task_id


def test_stats_count_what_ran():
    with pepita.Pool() as pool:
        for f in [pool.submit(pepita.Task.binary("/bin/true")) for _ in range(3)]:
            f.result(timeout=60)
        s = pool.stats()
    assert s["submitted"] == 3 and s["succeeded"] == 3


def test_journal_resume_skips_what_succeeded(tmp_path):
    journal = str(tmp_path / "journal")
    with pepita.Pool(journal=journal) as pool:
        pool.run(pepita.Task.binary("/bin/echo", args=["once"], name="j"))
    with pepita.Pool(journal=journal, resume=True) as pool:
        r = pool.run(pepita.Task.binary("/bin/echo", args=["once"], name="j"))
    assert r.from_journal and r.ok


def test_submit_after_shutdown_raises_cancelled_error():
    pool = pepita.Pool()
    pool.shutdown()
    with pytest.raises(pepita.CancelledError) as info:
        pool.submit(pepita.Task.binary("/bin/true"))
    assert "shut down" in str(info.value)
    assert isinstance(info.value, concurrent.futures.CancelledError)


def test_leaving_the_block_with_an_exception_cancels_running_tasks():
    start = time.monotonic()
    with pytest.raises(RuntimeError):
        with pepita.Pool() as pool:
            f = pool.submit(pepita.Task.binary("/bin/sleep", args=["30"]))
            raise RuntimeError("boom")
    assert f.cancelled()
    assert time.monotonic() - start < 25  # not the sleep's 30 s


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_raising_event_callback_does_not_keep_futures_from_finishing():
    def on_event(e):
        raise RuntimeError("callback bug")

    with pepita.Pool(on_event=on_event) as pool:
        assert pool.run(pepita.Task.binary("/bin/echo", args=["still"])).stdout == b"still\n"
