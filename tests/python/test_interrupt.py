# Ctrl-C: a Python process waiting on a pepita task gets SIGINT, raises KeyboardInterrupt
# promptly, and the task is cancelled (its process is gone), for Future.result and run_job.
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent("""
    import sys, pepita
    pidfile = sys.argv[1]
    script = f"echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; exec sleep 120"
    with pepita.Pool() as pool:
        f = pool.submit(pepita.Task.binary("/bin/sh", args=["-c", script]))
        try:
            f.result()
        except KeyboardInterrupt:
            print("interrupted cancelled=%s" % f.cancelled(), flush=True)
            raise
""")

JOB_CHILD = textwrap.dedent("""
    import sys, pepita
    pidfile = sys.argv[1]
    open(sys.argv[2], "w").write(f'''
    [[task]]
    name = "long"
    command = "/bin/sh"
    args = ["-c", "echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; exec sleep 120"]
    ''')
    try:
        pepita.run_job(sys.argv[2], journal=False)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise
""")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie not yet reaped by its parent counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def interrupt(script, tmp_path, *extra):
    pidfile = tmp_path / "task.pid"
    child = subprocess.Popen([sys.executable, "-c", script, str(pidfile), *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=os.environ.copy())
    deadline = time.monotonic() + 120
    while not pidfile.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    task_pid = int(pidfile.read_text())
    child.send_signal(signal.SIGINT)
    try:
        out, err = child.communicate(timeout=60)  # far less than the task's 120 s
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail("SIGINT did not stop the waiting Python process")
    return child.returncode, out, err, task_pid


def test_ctrl_c_in_result_raises_keyboard_interrupt_and_cancels_the_task(tmp_path):
    rc, out, err, task_pid = interrupt(CHILD, tmp_path)
    assert "KeyboardInterrupt" in err
    assert rc != 0
    assert "interrupted cancelled=True" in out
    assert not alive(task_pid), "the task's process survived the cancel"


def test_ctrl_c_in_run_job_cancels_the_job(tmp_path):
    rc, out, err, task_pid = interrupt(JOB_CHILD, tmp_path, str(tmp_path / "job.toml"))
    assert "KeyboardInterrupt" in err
    assert "interrupted" in out
    assert not alive(task_pid), "the job's task survived the interrupt"
