#!/usr/bin/python3
"""The sweep from Python (issue 30): the same stages as job.toml, as function tasks on a
pepita.Pool — trials with pool.map, then evaluate, select and the inference shards.

  PYTHONPATH=build/python /usr/bin/python3 examples/sweep/sweep_pool.py --out /tmp/sweep-py
  ... --small                          4 trials, 1 epoch (what tests/python/test_sweep.py runs)
  ... --worker HOST:PORT --key w.key   the tasks on `pepita worker`s (same Python, torch, pepita)

Each function is pickled by value with cloudpickle (sweep.py included), runs in a task process
with torch on one thread, and returns its result (weights as bytes) to this process, which
writes split.npz, trial-NN.pt, eval.json, best.json, best.pt and predictions.json under --out.
Exits 1 when the best accuracy is below the goal (0.95; 0.75 for --small).
"""
import argparse
import itertools
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cloudpickle  # noqa: E402
import pepita  # noqa: E402

import gen_jobs  # noqa: E402  (the grids)
import sweep  # noqa: E402

cloudpickle.register_pickle_by_value(sweep)  # task processes need not find sweep.py


def train(split, lr, width, epochs):
    state, metrics = sweep.train_trial(split, lr, width, epochs)
    return sweep.state_to_bytes(state), metrics


def evaluate(split, weights, width):
    return sweep.accuracy(sweep.state_from_bytes(weights), width, split["x_val"], split["y_val"])


def infer(split, weights, width, shard, shards):
    begin, end = sweep.shard_of(len(split["x_infer"]), shard, shards)
    pred = sweep.predict(sweep.state_from_bytes(weights), width, split["x_infer"][begin:end])
    return {"shard": shard, "begin": begin, "end": end, "predictions": pred,
            "labels": split["y_infer"][begin:end].tolist()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for the results")
    p.add_argument("--small", action="store_true", help="4 trials, 1 epoch")
    p.add_argument("--slots", type=int, default=os.cpu_count(), help="task processes at once")
    p.add_argument("--worker", action="append", default=[], help="HOST:PORT of a pepita worker")
    p.add_argument("--key", help="the workers' key file (mode 0600)")
    a = p.parse_args(argv)
    grid = gen_jobs.SMALL if a.small else gen_jobs.FULL
    os.makedirs(a.out, exist_ok=True)
    start = time.time()

    import numpy as np

    split = sweep.make_split()
    with open(os.path.join(a.out, "split.npz"), "wb") as f:
        np.savez(f, **split)
    trials = list(itertools.product(grid["lrs"], grid["widths"], grid["epochs"]))
    n = len(trials)
    pool_args = dict(process_slots=a.slots, retries=1)
    if a.worker:
        pool_args.update(workers=a.worker, key=a.key)
    with pepita.Pool(**pool_args) as pool:
        lrs, widths, epochs = zip(*trials)
        trained = list(pool.map(train, [split] * n, lrs, widths, epochs))
        weights = [w for w, _ in trained]
        for i, (w, m) in enumerate(trained):
            with open(os.path.join(a.out, "trial-{:02d}.pt".format(i)), "wb") as f:
                f.write(w)
            print("trial-{:02d}: lr {} width {} epochs {} -> train accuracy {:.4f}".format(
                i, m["lr"], m["width"], m["epochs"], m["train_accuracy"]))
        accs = list(pool.map(evaluate, [split] * n, weights, widths))
        scores = [{"name": "trial-{:02d}".format(i), "lr": lrs[i], "width": widths[i],
                   "epochs": epochs[i], "val_accuracy": acc} for i, acc in enumerate(accs)]
        sweep.write_json(os.path.join(a.out, "eval.json"), scores)
        best = sweep.pick_best(scores)
        best_index = int(best["name"].split("-")[1])
        sweep.write_json(os.path.join(a.out, "best.json"), best)
        with open(os.path.join(a.out, "best.pt"), "wb") as f:
            f.write(weights[best_index])
        shards = grid["shards"]
        rows = list(pool.map(infer, [split] * shards, [weights[best_index]] * shards,
                             [best["width"]] * shards, range(shards), [shards] * shards))
    sweep.write_json(os.path.join(a.out, "predictions.json"), rows)
    count = sum(len(r["predictions"]) for r in rows)
    right = sum(int(p == l) for r in rows for p, l in zip(r["predictions"], r["labels"]))
    ok = best["val_accuracy"] >= grid["min_accuracy"] and count == len(split["y_infer"])
    print("best trial: {} (lr {} width {} epochs {})".format(best["name"], best["lr"],
                                                             best["width"], best["epochs"]))
    print("best val accuracy: {:.4f}".format(best["val_accuracy"]))
    print("predictions: {} (infer accuracy {:.4f})".format(count, right / max(count, 1)))
    print("goal: val accuracy >= {}: {}".format(grid["min_accuracy"], "met" if ok else "MISSED"))
    print("{} trials in {:.1f} s (wall)".format(n, time.time() - start))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
