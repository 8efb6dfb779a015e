# examples/model-cache (issue 30): a trained model's float32 weights go through pepita's
# ZramStore with lz4 and zstd, inference tasks read them back bit-exact and predict exactly what
# the original model does; the compression ratio is reported. Needs torch (capability `torch`).
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "common"))

from require import require_capability  # noqa: E402

SCRIPT = os.path.join(ROOT, "examples", "model-cache", "model_cache.py")


def test_weights_in_a_zram_store_read_back_bit_exact_and_report_lz4_and_zstd_ratios():
    require_capability("torch")
    run = subprocess.run([sys.executable, SCRIPT, "--width", "32", "--shards", "3"],
                         capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, run.stdout + run.stderr
    for alg in ("lz4", "zstd"):
        row = re.search(r"^{}\s+(\d+\.\d+)\s.*3 shards: bit-exact, 497 predictions identical"
                        .format(alg), run.stdout, re.M)
        assert row, run.stdout
        assert float(row.group(1)) >= 1.0  # a page the store cannot shrink is kept as it is
