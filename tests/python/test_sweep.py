# The AI sweep from Python (issue 30, examples/sweep/sweep_pool.py): 4 trials, 1 epoch, as
# function tasks with pool.map on a local pepita.Pool; the selected accuracy and the
# predictions are checked. Needs torch and sklearn (capability `torch`, tests/common/require.py).
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "common"))

from require import require_capability  # noqa: E402

SCRIPT = os.path.join(ROOT, "examples", "sweep", "sweep_pool.py")


def test_small_sweep_with_pool_map_selects_an_accurate_model_and_predicts_every_infer_row(
        tmp_path):
    require_capability("torch")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, SCRIPT, "--small", "--slots", "2", "--out", str(out)],
                         capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, run.stdout + run.stderr
    best = json.loads((out / "best.json").read_text())
    scores = json.loads((out / "eval.json").read_text())
    assert len(scores) == 4
    assert best["val_accuracy"] == max(s["val_accuracy"] for s in scores)
    assert best["val_accuracy"] >= 0.75, best
    assert best["epochs"] == 1
    rows = json.loads((out / "predictions.json").read_text())
    assert [r["shard"] for r in rows] == [0, 1]
    assert rows[0]["begin"] == 0 and rows[0]["end"] == rows[1]["begin"]
    assert sum(len(r["predictions"]) for r in rows) == 497
    assert all(0 <= p <= 9 for r in rows for p in r["predictions"])
    assert (out / "best.pt").read_bytes() == (out / "{}.pt".format(best["name"])).read_bytes()
    assert "goal: val accuracy >= 0.75: met" in run.stdout
    assert "predictions: 497" in run.stdout


def test_require_rule_fails_when_pepita_require_names_a_missing_capability(monkeypatch):
    import require

    monkeypatch.setattr(require, "_found", {"torch": "probe says no"})
    monkeypatch.setenv("PEPITA_REQUIRE", "all")
    try:
        require.require_capability("torch")
    except BaseException as e:  # pytest's Failed is not an Exception subclass
        assert type(e).__name__ == "Failed" and "PEPITA_REQUIRE names it" in str(e)
    else:
        raise AssertionError("a required missing capability must fail")
    monkeypatch.setenv("PEPITA_REQUIRE", "all,-torch")
    try:
        require.require_capability("torch")
    except BaseException as e:
        assert type(e).__name__ == "Skipped" and "probe says no" in str(e)
    else:
        raise AssertionError("a missing capability that is not required must skip")


def test_checked_in_job_files_are_what_gen_jobs_writes(tmp_path):
    sweep_dir = os.path.join(ROOT, "examples", "sweep")
    subprocess.run([sys.executable, os.path.join(sweep_dir, "gen_jobs.py"), str(tmp_path)],
                   check=True, timeout=60)
    for name in ("job.toml", "job-remote.toml", "job-small.toml", "job-small-remote.toml"):
        with open(os.path.join(sweep_dir, name)) as f:
            assert (tmp_path / name).read_text() == f.read(), (
                name + " differs from gen_jobs.py's: run /usr/bin/python3 examples/sweep/gen_jobs.py")
