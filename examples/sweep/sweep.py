#!/usr/bin/python3
"""A hyperparameter sweep of a small MLP on scikit-learn's bundled digits (issue 30).

One file holds every stage, as subcommands for the job files (job.toml, job-small.toml) and as
functions for the Python variant (sweep_pool.py):

  prepare  --out split.npz                  the deterministic train / val / infer split (no torch)
  train    --split F --lr --width --epochs --out DIR    DIR/model.pt (weights) + DIR/metrics.json
  evaluate --split F --out eval.json DIR...  each model's accuracy on the held-out val split
  select   --eval eval.json --out best.json --model best.pt   the best trial, its weights copied
  infer    --split F --model best.pt --shard I --shards N --out preds-I.json   batch inference
  check    --best best.json --min-accuracy A preds-*.json   the gate: prints and checks accuracy

Everything is seeded (numpy, torch, the split), and torch uses as many threads as the task's
`cpus` (OMP_NUM_THREADS, set by the job file), so a trial's weights are the same on every run.
Needs Debian's python3-torch and python3-sklearn (load_digits ships with sklearn: no download).
"""
import argparse
import io
import json
import os
import shutil
import sys
import time

SEED = 2026
TRAIN, VAL = 1000, 300  # the rest of the 1797 digits (497) is the larger inference split


def threads():
    """The task's CPUs: OMP_NUM_THREADS from the job file, never more than we may run on."""
    want = int(os.environ.get("OMP_NUM_THREADS", "1"))
    return max(1, min(want, len(os.sched_getaffinity(0))))


def import_torch():
    import torch

    torch.set_num_threads(threads())
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    return torch


# ---- data -------------------------------------------------------------------------------------


def make_split():
    """{x_train, y_train, x_val, y_val, x_infer, y_infer}: digits scaled to [0, 1], a fixed
    permutation, float32 / int64."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.RandomState(SEED).permutation(len(x))
    x, y = x[order], y[order]
    cut = {"train": slice(0, TRAIN), "val": slice(TRAIN, TRAIN + VAL), "infer": slice(TRAIN + VAL, None)}
    out = {}
    for name, s in cut.items():
        out["x_" + name], out["y_" + name] = x[s], y[s]
    return out


def load_split(path):
    import numpy as np

    with np.load(path) as f:
        return {k: f[k] for k in f.files}


# ---- model ------------------------------------------------------------------------------------


def build_model(torch, width, depth=2):
    """64 -> width (-> width) -> 10, ReLU."""
    layers, fan_in = [], 64
    for _ in range(depth):
        layers += [torch.nn.Linear(fan_in, width), torch.nn.ReLU()]
        fan_in = width
    layers.append(torch.nn.Linear(fan_in, 10))
    return torch.nn.Sequential(*layers)


def train_trial(split, lr, width, epochs, batch=32):
    """Trains one trial; returns (state_dict, metrics). Deterministic for given arguments."""
    torch = import_torch()
    start = time.time()
    torch.manual_seed(SEED)
    model = build_model(torch, width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = torch.from_numpy(split["x_train"])
    y = torch.from_numpy(split["y_train"])
    gen = torch.Generator().manual_seed(SEED)
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    with torch.no_grad():
        train_acc = (model(x).argmax(1) == y).float().mean().item()
    metrics = {
        "lr": lr,
        "width": width,
        "epochs": epochs,
        "final_loss": round(float(loss.item()), 6),
        "train_accuracy": round(train_acc, 6),
        "threads": torch.get_num_threads(),
        "train_seconds": round(time.time() - start, 3),
    }
    return model.state_dict(), metrics


def model_from(torch, state, width):
    model = build_model(torch, width)
    model.load_state_dict(state)
    model.eval()
    return model


def accuracy(model_state, width, x, y):
    torch = import_torch()
    model = model_from(torch, model_state, width)
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1)
    return round((pred == torch.from_numpy(y)).float().mean().item(), 6)


def predict(model_state, width, x):
    torch = import_torch()
    model = model_from(torch, model_state, width)
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(1).tolist()


def state_to_bytes(state):
    torch = import_torch()
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def state_from_bytes(data):
    torch = import_torch()
    return torch.load(io.BytesIO(data))


def shard_of(n, shard, shards):
    """Rows [begin, end) of shard `shard` of `shards` over n rows."""
    return n * shard // shards, n * (shard + 1) // shards


def pick_best(scores):
    """The best of [{name, val_accuracy, ...}]: highest accuracy, then the name (deterministic)."""
    if not scores:
        raise ValueError("no trial was evaluated")
    return sorted(scores, key=lambda s: (-s["val_accuracy"], s["name"]))[0]


# ---- subcommands ------------------------------------------------------------------------------


def expand(patterns):
    """Arguments that may be globs (a job file passes no shell): the sorted matches, or a clear
    error naming a pattern that matches nothing."""
    import glob

    out = []
    for p in patterns:
        found = sorted(glob.glob(p)) if any(c in p for c in "*?[") else [p]
        if not found:
            sys.exit("sweep.py: '{}' matches no file in {}".format(p, os.getcwd()))
        out += found
    return out


def write_json(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def cmd_prepare(a):
    import numpy as np

    split = make_split()
    with open(a.out, "wb") as f:
        np.savez(f, **split)
    if a.copy_script:
        shutil.copyfile(os.path.abspath(__file__), a.copy_script + ".tmp")
        os.replace(a.copy_script + ".tmp", a.copy_script)
    print("split: train {} val {} infer {} -> {}".format(
        len(split["y_train"]), len(split["y_val"]), len(split["y_infer"]), a.out))


def cmd_train(a):
    torch = import_torch()
    state, metrics = train_trial(load_split(a.split), a.lr, a.width, a.epochs)
    os.makedirs(a.out, exist_ok=True)
    torch.save(state, os.path.join(a.out, "model.pt"))
    write_json(os.path.join(a.out, "metrics.json"), metrics)
    print("{}: lr {} width {} epochs {} -> train accuracy {:.4f} ({} thread(s), {:.2f} s; ran in "
          "{})".format(a.out, a.lr, a.width, a.epochs, metrics["train_accuracy"],
                       metrics["threads"], metrics["train_seconds"], os.getcwd()))


def cmd_evaluate(a):
    torch = import_torch()
    split = load_split(a.split)
    scores = []
    for d in expand(a.trials):
        with open(os.path.join(d, "metrics.json")) as f:
            m = json.load(f)
        state = torch.load(os.path.join(d, "model.pt"))
        acc = accuracy(state, m["width"], split["x_val"], split["y_val"])
        scores.append({"name": d, "lr": m["lr"], "width": m["width"], "epochs": m["epochs"],
                       "val_accuracy": acc})
        print("{}: val accuracy {:.4f}".format(d, acc))
    write_json(a.out, scores)


def cmd_select(a):
    with open(a.eval) as f:
        best = pick_best(json.load(f))
    shutil.copyfile(os.path.join(best["name"], "model.pt"), a.model + ".tmp")
    os.replace(a.model + ".tmp", a.model)
    write_json(a.out, best)
    print("best: {} (lr {} width {} epochs {}) val accuracy {:.4f}".format(
        best["name"], best["lr"], best["width"], best["epochs"], best["val_accuracy"]))


def cmd_infer(a):
    torch = import_torch()
    split = load_split(a.split)
    with open(a.best) as f:
        best = json.load(f)
    begin, end = shard_of(len(split["x_infer"]), a.shard, a.shards)
    pred = predict(torch.load(a.model), best["width"], split["x_infer"][begin:end])
    write_json(a.out, {"shard": a.shard, "begin": begin, "end": end, "predictions": pred,
                       "labels": split["y_infer"][begin:end].tolist()})
    print("shard {}/{}: {} predictions".format(a.shard, a.shards, len(pred)))


def cmd_check(a):
    lines = []
    report = lines.append
    with open(a.best) as f:
        best = json.load(f)
    rows = []
    for p in expand(a.predictions):
        with open(p) as f:
            rows.append(json.load(f))
    rows.sort(key=lambda r: r["begin"])
    count = sum(len(r["predictions"]) for r in rows)
    right = sum(int(p == l) for r in rows for p, l in zip(r["predictions"], r["labels"]))
    # The shards must tile the inference split exactly: no row lost or predicted twice.
    tiled = all(rows[i]["end"] == rows[i + 1]["begin"] for i in range(len(rows) - 1))
    infer_acc = right / count if count else 0.0
    report("best trial: {} (lr {} width {} epochs {})".format(best["name"], best["lr"],
                                                             best["width"], best["epochs"]))
    report("best val accuracy: {:.4f}".format(best["val_accuracy"]))
    report("predictions: {} (infer accuracy {:.4f})".format(count, infer_acc))
    ok = bool(tiled and rows and rows[0]["begin"] == 0 and best["val_accuracy"] >= a.min_accuracy)
    report("goal: val accuracy >= {}: {}".format(a.min_accuracy, "met" if ok else "MISSED"))
    if not tiled or not rows or rows[0]["begin"] != 0:
        report("the prediction shards do not tile the infer split: a shard is missing")
    print("\n".join(lines))
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    if not ok:
        sys.exit(1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prepare")
    s.add_argument("--out", required=True)
    s.add_argument("--copy-script", help="also copy this script here (what later tasks run)")
    s = sub.add_parser("train")
    s.add_argument("--split", required=True)
    s.add_argument("--lr", type=float, required=True)
    s.add_argument("--width", type=int, required=True)
    s.add_argument("--epochs", type=int, required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("evaluate")
    s.add_argument("--split", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("trials", nargs="+")
    s = sub.add_parser("select")
    s.add_argument("--eval", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--model", required=True)
    s = sub.add_parser("infer")
    s.add_argument("--split", required=True)
    s.add_argument("--best", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--shard", type=int, required=True)
    s.add_argument("--shards", type=int, required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("check")
    s.add_argument("--best", required=True)
    s.add_argument("--min-accuracy", type=float, required=True)
    s.add_argument("--out", help="also write the report here")
    s.add_argument("predictions", nargs="+")
    a = p.parse_args(argv)
    globals()["cmd_" + a.cmd](a)


if __name__ == "__main__":
    main()
