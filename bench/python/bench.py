#!/usr/bin/python3
"""bench/python (issue 26): pepita from Python against the anchors, same machine, same run.

  rows: N /bin/true tasks and N no-op Python functions submitted from Python to a pepita Pool,
        to dask.distributed's LocalCluster (Debian python3-distributed; skipped when missing)
        and to concurrent.futures.ProcessPoolExecutor; simd dot and sgemm against numpy
        (OpenBLAS). Tasks/s and GFLOP/s: higher is better; ours/anchor > 1 means pepita wins.

  PYTHONPATH=build-bench/python bench/python/bench.py [--tasks 10000] [--function-tasks 500]
  (a RelWithDebInfo/Release build: a Debug build's kernels run at -O0)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import time

import numpy as np

import pepita


def noop() -> None:
    return None


def run_true() -> int:
    return subprocess.run(["/bin/true"], check=False).returncode


def rate(n: int, submit_all) -> float:
    start = time.perf_counter()
    submit_all(n)
    return n / (time.perf_counter() - start)


def pepita_true(workers: int, n: int) -> None:
    with pepita.Pool(cpu_workers=workers) as pool:
        task = pepita.Task.binary("/bin/true")
        fs = [pool.submit(task) for _ in range(n)]
        concurrent.futures.wait(fs)
        assert all(f.result().ok for f in fs)


def pepita_functions(workers: int, n: int) -> None:
    with pepita.Pool(cpu_workers=workers) as pool:
        task = pepita.Task.function(noop)
        fs = [pool.submit(task) for _ in range(n)]
        concurrent.futures.wait(fs)
        assert all(f.result() is None for f in fs)


def ppe(fn, workers: int, n: int) -> None:
    with concurrent.futures.ProcessPoolExecutor(workers) as ex:
        fs = [ex.submit(fn) for _ in range(n)]
        concurrent.futures.wait(fs)
        for f in fs:
            f.result()


def dask_rows(workers: int, n: int, nf: int):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        return None
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        def go(fn, count):
            fs = [client.submit(fn, pure=False) for _ in range(count)]
            client.gather(fs)
        return rate(n, lambda k: go(run_true, k)), rate(nf, lambda k: go(noop, k))


def best_gflops(flops: float, fn, repeat: int = 7) -> float:
    fn()  # warm up (packing buffers, threads)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--function-tasks", type=int, default=500,
                    help="function tasks (each is a Python process: ~5/s per core)")
    args = ap.parse_args()
    n, w = args.tasks, args.workers
    nf = args.function_tasks
    rows = []  # (workload, ours, anchor name, anchor)

    ours_true = rate(n, lambda k: pepita_true(w, k))
    ours_fn = rate(nf, lambda k: pepita_functions(w, k))
    rows.append((f"{n} /bin/true (tasks/s)", ours_true, "ProcessPoolExecutor",
                 rate(n, lambda k: ppe(run_true, w, k))))
    rows.append((f"{nf} no-op functions (tasks/s)", ours_fn, "ProcessPoolExecutor",
                 rate(nf, lambda k: ppe(noop, w, k))))
    d = dask_rows(w, n, nf)
    if d is None:
        print("dask.distributed is not installed (apt install python3-distributed): no Dask rows",
              file=sys.stderr)
    else:
        rows.append((f"{n} /bin/true (tasks/s)", ours_true, "dask LocalCluster", d[0]))
        rows.append((f"{nf} no-op functions (tasks/s)", ours_fn, "dask LocalCluster", d[1]))

    rng = np.random.default_rng(0)
    x = rng.standard_normal(1 << 20).astype(np.float32)
    y = rng.standard_normal(1 << 20).astype(np.float32)
    rows.append(("dot 1M f32 (GFLOP/s)", best_gflops(2 * x.size, lambda: pepita.dot(x, y)),
                 "numpy", best_gflops(2 * x.size, lambda: np.dot(x, y))))
    for size in (256, 1024):
        a = rng.standard_normal((size, size)).astype(np.float32)
        b = rng.standard_normal((size, size)).astype(np.float32)
        c = np.empty((size, size), np.float32)
        flops = 2.0 * size ** 3
        rows.append((f"sgemm {size}^3 f32 (GFLOP/s)",
                     best_gflops(flops, lambda: pepita.sgemm(a, b, c)), "numpy",
                     best_gflops(flops, lambda: np.matmul(a, b, out=c))))

    print(f"bench/python: {w} workers, simd level {pepita.simd_level()}, "
          f"numpy {np.__version__}")
    print(f"{'workload':34} {'pepita':>12} {'anchor':>22} {'value':>12} {'ours/anchor':>12}")
    for workload, ours, anchor, value in rows:
        print(f"{workload:34} {ours:12.1f} {anchor:>22} {value:12.1f} {ours / value:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
