# pepita.gpu: the built-in Vulkan kernels on numpy arrays (on Mesa's lavapipe here), checked
# against numpy; bad dtype, shape and contiguity are TypeError/ValueError naming the argument.
# Needs a Vulkan device (capability `vulkan`, tests/common/require.py).
import os
import sys

import numpy as np
import pytest

import pepita

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "common"))
from require import require_capability  # noqa: E402

rng = np.random.default_rng(9)


@pytest.fixture(autouse=True)
def vulkan():
    require_capability("vulkan")
    assert pepita.gpu.available(), "vulkaninfo lists a device but pepita.gpu cannot open one"


def test_device_has_a_name():
    assert pepita.gpu.device_name()


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (7, 13, 5), (64, 64, 64), (65, 130, 33)])
def test_sgemm_matches_numpy(m, k, n):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = pepita.gpu.sgemm(a, b)
    assert c.shape == (m, n) and c.dtype == np.float32
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_saxpy_updates_y_in_place_and_sum_matches_numpy():
    x = rng.standard_normal(10_001).astype(np.float32)
    y = rng.standard_normal(10_001).astype(np.float32)
    expected = y + np.float32(1.5) * x
    assert pepita.gpu.saxpy(1.5, x, y) is y
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert pepita.gpu.sum(x) == pytest.approx(float(x.astype(np.float64).sum()), rel=1e-4, abs=1e-2)
    assert pepita.gpu.sum(np.zeros(0, np.float32)) == 0.0


def test_softmax_rows_match_numpy():
    x = (rng.standard_normal((17, 300)) * 10).astype(np.float32)
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(pepita.gpu.softmax(x), e / e.sum(axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-7)


def test_bad_arrays_are_errors_naming_the_argument():
    a = np.ones((4, 4), np.float32)
    with pytest.raises(TypeError, match="a: expected dtype float32"):
        pepita.gpu.sgemm(a.astype(np.float64), a)
    with pytest.raises(ValueError, match="do not multiply"):
        pepita.gpu.sgemm(a, np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="b: array is not C-contiguous"):
        pepita.gpu.sgemm(a, np.ones((4, 8), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="differ in length"):
        pepita.gpu.saxpy(1.0, np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray"):
        pepita.gpu.sum([1.0, 2.0])
    with pytest.raises(ValueError, match="x: expected a 2-D array"):
        pepita.gpu.softmax(np.ones(3, np.float32))
