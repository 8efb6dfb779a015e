#!/usr/bin/python3
"""Model weights served from compressed RAM (issue 30): a trained digits MLP's float32 weights are
stored in pepita's ZramStore (the zram page store as a library: each 4 KiB page compressed on its
own, identical pages kept once), read back by inference tasks that check them bit-exact, and the
compression ratio of real float32 weights is reported for lz4 and zstd.

  PYTHONPATH=build/python /usr/bin/python3 examples/model-cache/model_cache.py
  ... --weights STATE_DIR/best.pt --width 128   a sweep's selected model (examples/sweep)

Without --weights it trains the full sweep's usual winner (lr 0.003, width 128, 30 epochs; about
a second). The inference tasks are threads of this process: the store lives here (a ZramStore is
an object in one process; the store is thread-safe, one lock per page). Exits 1 if a read-back is
not bit-exact or the predictions differ from the original model's.
"""
import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "sweep"))

import pepita  # noqa: E402
import sweep  # noqa: E402

PAGE = 4096


def flatten(torch, state):
    """The state dict as one float32 little-endian blob and its index [(name, shape, offset)]."""
    index, parts, offset = [], [], 0
    for name, t in state.items():
        raw = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        index.append((name, tuple(t.shape), offset, len(raw)))
        parts.append(raw)
        offset += len(raw)
    return b"".join(parts), index


def unflatten(torch, blob, index):
    import numpy as np

    state = {}
    for name, shape, offset, size in index:
        arr = np.frombuffer(blob, dtype="<f4", count=size // 4, offset=offset).reshape(shape)
        state[name] = torch.from_numpy(arr.copy())
    return state


def tool_ratio(tool, args, blob):
    """The reference tool's whole-stream ratio on the same bytes (None if it is not installed)."""
    if shutil.which(tool) is None:
        return None
    with tempfile.NamedTemporaryFile() as f:
        f.write(blob)
        f.flush()
        out = subprocess.run([tool] + args + ["-c", f.name], capture_output=True, check=True)
    return len(blob) / len(out.stdout)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="a torch state dict (a sweep's best.pt)")
    p.add_argument("--width", type=int, default=128, help="the model's hidden width")
    p.add_argument("--shards", type=int, default=4, help="inference tasks")
    p.add_argument("--algorithms", default="lz4,zstd")
    a = p.parse_args(argv)
    torch = sweep.import_torch()
    split = sweep.make_split()
    if a.weights:
        state = torch.load(a.weights)
        source = a.weights
    else:
        state, _ = sweep.train_trial(split, 0.003, a.width, 30)
        source = "trained here: lr 0.003 width {} epochs 30".format(a.width)
    blob, index = flatten(torch, state)
    params = sum(size // 4 for *_, size in index)
    reference = sweep.predict(state, a.width, split["x_infer"])
    print("weights: {} float32 ({} bytes, {} pages) from {}".format(
        params, len(blob), -(-len(blob) // PAGE), source))

    ok = True
    rows = []
    for alg in a.algorithms.split(","):
        padded = -(-len(blob) // PAGE) * PAGE
        store = pepita.ZramStore(padded, algorithm=alg)
        t0 = time.perf_counter()
        store.write(0, blob + bytes(padded - len(blob)))
        write_s = time.perf_counter() - t0
        st = store.stats()

        def task(shard):
            """One inference task: weights read back from the store, checked, then a shard."""
            data = store.read(0, len(blob))
            exact = data == blob
            begin, end = sweep.shard_of(len(split["x_infer"]), shard, a.shards)
            pred = sweep.predict(unflatten(torch, data, index), a.width,
                                 split["x_infer"][begin:end])
            return exact, pred == reference[begin:end], len(pred)

        with concurrent.futures.ThreadPoolExecutor(a.shards) as ex:
            results = list(ex.map(task, range(a.shards)))
        exact = all(r[0] for r in results)
        same = all(r[1] for r in results)
        count = sum(r[2] for r in results)
        ok = ok and exact and same and count == len(reference)
        ratio = st["orig_data_size"] / max(st["compr_data_size"], 1)
        rows.append((alg, ratio, tool_ratio(alg, ["-q"] if alg == "lz4" else ["-q", "-3"], blob),
                     write_s, exact, same, count))

    print("{:<6} {:>16} {:>22} {:>10}  {}".format("algo", "ZramStore ratio", "whole-file tool ratio",
                                                  "write ms", "inference tasks"))
    for alg, ratio, tool, write_s, exact, same, count in rows:
        print("{:<6} {:>16.3f} {:>22} {:>10.2f}  {} shards: {}, {} predictions {}".format(
            alg, ratio, "n/a" if tool is None else "{:.3f}".format(tool), write_s * 1e3, a.shards,
            "bit-exact" if exact else "NOT BIT-EXACT", count,
            "identical to the original model's" if same else "DIFFERENT"))
    print("(ratio = original bytes / compressed bytes; the store compresses each 4 KiB page alone, "
          "the tool the whole file)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
