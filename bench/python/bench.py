#!/usr/bin/python3
"""bench/python (issue 26): pepita from Python against the anchors, same machine, same run.

  rows: N /bin/true tasks and N no-op Python functions submitted from Python to a pepita Pool,
        to dask.distributed's LocalCluster (Debian python3-distributed; skipped when missing)
        and to concurrent.futures.ProcessPoolExecutor, with the same worker count; simd dot (at
        several sizes) and sgemm (256/512/1024) against numpy (OpenBLAS). Every figure is WALL
        time: tasks/s and GFLOP/s, higher is better; ours/anchor > 1 means pepita wins.
  method: --rounds rounds, the systems alternated inside each round (ours, then each anchor,
        per workload); the table shows each figure's median and min-max over the rounds. A
        pool/executor is created inside each timed round (its worker start-up counts); Dask's
        LocalCluster is started once, untimed, and reused (that favours Dask), and so is the
        remote row's one local `pepita worker` (--sandbox none: functions run on its
        persistent interpreters; the Pool connecting to it and its interpreters' start-up
        count).
  floor: "/bin/true exec floor" is os.posix_spawn + waitpid of /bin/true in a loop, one at a
        time, per core: what one exec costs on this machine, which bounds every system's rate.
  goals (issue 26): /bin/true and functions >= 5x Dask; functions >= 1x ProcessPoolExecutor;
        dot and sgemm >= 0.95x numpy. Each row prints its goal and whether it is met.

  PYTHONPATH=build-bench/python bench/python/bench.py [--tasks 10000] [--function-tasks 10000]
      [--rounds 3] [--workers N] [--remote-tasks N] [--cli PATH]
      (a Release build: a Debug build's kernels run at -O0)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

import pepita


def noop() -> None:
    return None


def run_true() -> int:
    return subprocess.run(["/bin/true"], check=False).returncode


def timed_rate(n: int, body: Callable[[], None]) -> float:
    start = time.perf_counter()
    body()
    return n / (time.perf_counter() - start)


# ---- task systems: each runs n tasks to completion -------------------------------------------


def pepita_true(workers: int, n: int) -> None:
    with pepita.Pool(cpu_workers=workers) as pool:
        task = pepita.Task.binary("/bin/true")
        fs = [pool.submit(task) for _ in range(n)]
        concurrent.futures.wait(fs)
        assert all(f.result().ok for f in fs)


def pepita_functions(workers: int, n: int) -> None:
    # pool.submit(fn) per call: each call pickled on its own, as a user writes it.
    with pepita.Pool(cpu_workers=workers) as pool:
        fs = [pool.submit(noop) for _ in range(n)]
        concurrent.futures.wait(fs)
        assert all(f.result() is None for f in fs)


def ppe(fn, workers: int, n: int) -> None:
    with concurrent.futures.ProcessPoolExecutor(workers) as ex:
        fs = [ex.submit(fn) for _ in range(n)]
        concurrent.futures.wait(fs)
        for f in fs:
            f.result()


def exec_floor(workers: int, n: int) -> None:
    """n /bin/true, one at a time on each of `workers` threads (posix_spawn releases the GIL)."""
    def one_thread(k: int) -> None:
        for _ in range(k):
            pid = os.posix_spawn("/bin/true", ["true"], os.environ)
            os.waitpid(pid, 0)

    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        share = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
        list(ex.map(one_thread, share))


class RemoteWorker:
    """One `pepita worker` on loopback (--sandbox none, so functions run on its persistent
    interpreters), started once, untimed, and reused, as Dask's cluster is."""

    def __init__(self, cli: str, workers: int) -> None:
        import socket
        import tempfile

        self.dir = tempfile.TemporaryDirectory(prefix="pepita-bench-")
        self.key = os.path.join(self.dir.name, "w.key")
        subprocess.run([cli, "worker", "--gen-key", self.key], check=True,
                       stdout=subprocess.DEVNULL)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [cli, "worker", "--listen", self.address, "--key", self.key, "--slots",
             str(workers), "--sandbox", "none", "--cache", os.path.join(self.dir.name, "cache")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"pepita worker {cli} did not start listening")
                time.sleep(0.05)

    def functions(self, n: int) -> None:
        with pepita.Pool(workers=[self.address], key=self.key) as pool:
            fs = [pool.submit(noop) for _ in range(n)]
            concurrent.futures.wait(fs)
            assert all(f.result() is None for f in fs)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.dir.cleanup()


def default_cli() -> str:
    """The `pepita` next to the imported package's build tree (build*/python/pepita ->
    build*/tools/pepita/pepita), else $PEPITA_CLI."""
    if os.environ.get("PEPITA_CLI"):
        return os.environ["PEPITA_CLI"]
    build = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(pepita.__file__))))
    return os.path.join(build, "tools", "pepita", "pepita")


class Dask:
    def __init__(self, workers: int) -> None:
        from dask.distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None)
        self.client = Client(self.cluster)

    def run(self, fn, n: int) -> None:
        fs = [self.client.submit(fn, pure=False) for _ in range(n)]
        self.client.gather(fs)

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


# ---- kernels ----------------------------------------------------------------------------------


def per_call_seconds(fn: Callable[[], object], min_time: float = 0.05) -> float:
    """Seconds per call, over enough back-to-back calls to last min_time."""
    fn()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        took = time.perf_counter() - start
        if took >= min_time:
            return took / calls
        calls *= 4


# ---- the table --------------------------------------------------------------------------------


class Row:
    def __init__(self, workload: str, anchor: str, unit: str, goal: Optional[float]) -> None:
        self.workload, self.anchor, self.unit, self.goal = workload, anchor, unit, goal
        self.ours: List[float] = []
        self.theirs: List[float] = []


def fmt_spread(xs: List[float]) -> str:
    return f"{statistics.median(xs):10.1f} ({min(xs):.1f}-{max(xs):.1f})"


def print_table(rows: List[Row], header: str) -> int:
    print(header)
    print(f"{'workload (wall time)':38} {'pepita median (min-max)':>30} {'anchor':>22} "
          f"{'anchor median (min-max)':>30} {'ours/anchor':>11} {'goal':>6}  met?")
    missed = 0
    for r in rows:
        ratio = statistics.median(r.ours) / statistics.median(r.theirs)
        if r.goal is None:
            goal, met = "-", "(reference)"
        else:
            goal = f">={r.goal:g}x"
            met = "met" if ratio >= r.goal else "MISSED"
            missed += ratio < r.goal
        print(f"{r.workload + ' ' + r.unit:38} {fmt_spread(r.ours):>30} {r.anchor:>22} "
              f"{fmt_spread(r.theirs):>30} {ratio:11.2f} {goal:>6}  {met}")
    return missed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=10000, help="/bin/true tasks per round")
    ap.add_argument("--function-tasks", type=int, default=10000,
                    help="no-op function tasks per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-tasks", action="store_true", help="kernels only")
    ap.add_argument("--no-kernels", action="store_true", help="task rows only")
    ap.add_argument("--remote-tasks", type=int, default=None,
                    help="no-op functions through one local `pepita worker` per round "
                         "(default: --function-tasks; 0: no remote row)")
    ap.add_argument("--cli", default=None, help="the pepita CLI that runs the worker "
                    "(default: $PEPITA_CLI, else the build tree's next to the package)")
    args = ap.parse_args()
    n, nf, w = args.tasks, args.function_tasks, args.workers
    nr = nf if args.remote_tasks is None else args.remote_tasks

    rows: List[Row] = []
    if not args.no_tasks:
        true_ppe = Row(f"{n} /bin/true", "ProcessPoolExecutor", "(tasks/s)", None)
        fn_ppe = Row(f"{nf} no-op functions", "ProcessPoolExecutor", "(tasks/s)", 1.0)
        true_floor = Row(f"{n} /bin/true", "exec floor", "(tasks/s)", None)
        true_dask = Row(f"{n} /bin/true", "dask LocalCluster", "(tasks/s)", 5.0)
        fn_dask = Row(f"{nf} no-op functions", "dask LocalCluster", "(tasks/s)", 5.0)
        # No goal in issue 26 for this one: shown for reference.
        remote_dask = Row(f"{nr} no-op functions, 1 pepita worker", "dask LocalCluster",
                          "(tasks/s)", None)
        remote: Optional[RemoteWorker] = None
        if nr > 0:
            cli = args.cli or default_cli()
            if os.access(cli, os.X_OK):
                remote = RemoteWorker(cli, w)
            else:
                print(f"no pepita CLI at {cli} (--cli or PEPITA_CLI): no remote row",
                      file=sys.stderr)
        try:
            dask: Optional[Dask] = Dask(w)
        except ImportError:
            dask = None
            print("dask.distributed is not installed (apt install python3-distributed): no Dask "
                  "rows", file=sys.stderr)
        try:
            for rnd in range(args.rounds):
                ours_true = timed_rate(n, lambda: pepita_true(w, n))
                true_ppe.ours.append(ours_true)
                true_floor.ours.append(ours_true)
                true_dask.ours.append(ours_true)
                true_ppe.theirs.append(timed_rate(n, lambda: ppe(run_true, w, n)))
                true_floor.theirs.append(timed_rate(n, lambda: exec_floor(w, n)))
                if dask:
                    true_dask.theirs.append(timed_rate(n, lambda: dask.run(run_true, n)))
                ours_fn = timed_rate(nf, lambda: pepita_functions(w, nf))
                fn_ppe.ours.append(ours_fn)
                fn_dask.ours.append(ours_fn)
                fn_ppe.theirs.append(timed_rate(nf, lambda: ppe(noop, w, nf)))
                if dask:
                    fn_dask.theirs.append(timed_rate(nf, lambda: dask.run(noop, nf)))
                if remote:
                    remote_dask.ours.append(timed_rate(nr, lambda: remote.functions(nr)))
                    if dask:
                        remote_dask.theirs.append(timed_rate(nr, lambda: dask.run(noop, nr)))
                print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            if dask:
                dask.close()
            if remote:
                remote.close()
        rows += [true_floor, true_ppe] + ([true_dask] if dask else []) + [fn_ppe] + (
            [fn_dask] if dask else []) + ([remote_dask] if remote and dask else [])

    if not args.no_kernels:
        rng = np.random.default_rng(0)
        kernel_rows: List[Tuple[Row, Callable[[], object], Callable[[], object], float]] = []
        for size in (1 << 12, 1 << 16, 1 << 20, 1 << 22, 1 << 24):
            x = rng.standard_normal(size).astype(np.float32)
            y = rng.standard_normal(size).astype(np.float32)
            kernel_rows.append((Row(f"dot {size} f32", "numpy", "(GFLOP/s)", 0.95),
                                lambda x=x, y=y: pepita.dot(x, y),
                                lambda x=x, y=y: np.dot(x, y), 2.0 * size))
        for size in (256, 512, 1024):
            a = rng.standard_normal((size, size)).astype(np.float32)
            b = rng.standard_normal((size, size)).astype(np.float32)
            c = np.empty((size, size), np.float32)
            kernel_rows.append((Row(f"sgemm {size}^3 f32", "numpy", "(GFLOP/s)", 0.95),
                                lambda a=a, b=b, c=c: pepita.sgemm(a, b, c),
                                lambda a=a, b=b, c=c: np.matmul(a, b, out=c),
                                2.0 * size ** 3))
        for _ in range(max(args.rounds, 5)):
            for row, ours, theirs, flops in kernel_rows:
                row.ours.append(flops / per_call_seconds(ours) / 1e9)
                row.theirs.append(flops / per_call_seconds(theirs) / 1e9)
        rows += [r[0] for r in kernel_rows]

    load = os.getloadavg()
    missed = print_table(rows, (
        f"bench/python: pepita {pepita.__file__}\n  {w} workers, {args.rounds} rounds "
        f"(kernels: {max(args.rounds, 5)}), simd level {pepita.simd_level()}, numpy "
        f"{np.__version__}, {os.cpu_count()} CPUs, load average {load[0]:.1f} at the end"))
    print(f"goals missed: {missed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
