# The simd kernels over numpy arrays (zero-copy, checked against numpy) and ZramStore; bad
# dtype, shape, contiguity and types are TypeError/ValueError naming the argument.
import numpy as np
import pytest

import pepita

rng = np.random.default_rng(26)


def vec(n, dtype=np.float32):
    return rng.standard_normal(n).astype(dtype)


@pytest.mark.parametrize("n", [0, 1, 7, 64, 1000, 4099])
def test_dot_matches_numpy(n):
    x, y = vec(n), vec(n)
    ref = float(np.dot(x.astype(np.float64), y.astype(np.float64)))
    assert pepita.dot(x, y) == pytest.approx(ref, rel=1e-4, abs=1e-4)
    xd, yd = vec(n, np.float64), vec(n, np.float64)
    assert pepita.dot(xd, yd) == pytest.approx(float(np.dot(xd, yd)), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("n", [(1 << 21) - 3, (1 << 21) + 16_411, 3 << 21])
def test_dot_of_large_vectors_split_across_threads_matches_numpy_and_the_serial_dot(n):
    x, y = vec(n), vec(n)
    ref = float(np.dot(x.astype(np.float64), y.astype(np.float64)))
    split = pepita.dot(x, y)
    serial = pepita.dot(x, y, parallel=False)
    assert split == pytest.approx(ref, rel=1e-3, abs=1e-2)
    assert serial == pytest.approx(ref, rel=1e-3, abs=1e-2)
    xd, yd = x.astype(np.float64), y.astype(np.float64)
    assert pepita.dot(xd, yd) == pytest.approx(ref, rel=1e-12, abs=1e-9)


def test_axpy_updates_y_in_place():
    x, y = vec(1001), vec(1001)
    expected = y + np.float32(2.5) * x
    view = y  # the same memory: zero-copy
    pepita.axpy(2.5, x, y)
    np.testing.assert_allclose(view, expected, rtol=1e-6, atol=1e-6)
    xd, yd = vec(33, np.float64), vec(33, np.float64)
    expected = yd - 0.5 * xd
    pepita.axpy(-0.5, xd, yd)
    np.testing.assert_allclose(yd, expected, rtol=1e-14)


def test_softmax_relu_gelu_match_numpy():
    x = vec(513) * 5
    e = np.exp(x.astype(np.float64) - x.max())
    np.testing.assert_allclose(pepita.softmax(x), e / e.sum(), rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(pepita.relu(x), np.maximum(x, 0))
    xd = x.astype(np.float64)
    gelu = 0.5 * xd * (1 + np.tanh(np.sqrt(2 / np.pi) * (xd + 0.044715 * xd ** 3)))
    np.testing.assert_allclose(pepita.gelu(x), gelu, rtol=1e-5, atol=1e-6)
    out = np.empty_like(x)
    assert pepita.softmax(x, out) is out
    inplace = x.copy()
    pepita.relu(inplace, inplace)
    np.testing.assert_array_equal(inplace, np.maximum(x, 0))


def test_sum_and_norm_match_numpy():
    x = vec(10000)
    assert pepita.vsum(x) == pytest.approx(float(x.astype(np.float64).sum()), abs=1e-2)
    assert pepita.l2_norm(x) == pytest.approx(float(np.linalg.norm(x.astype(np.float64))),
                                              rel=1e-6)


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (17, 33, 9), (128, 64, 256), (300, 200, 100)])
@pytest.mark.parametrize("parallel", [False, True])
def test_sgemm_matches_numpy(m, k, n, parallel):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(pepita.sgemm(a, b, parallel=parallel), ref, rtol=1e-4,
                               atol=1e-4 * k)


def test_sgemm_with_transposes_alpha_beta_and_output():
    a = rng.standard_normal((40, 30)).astype(np.float32)  # op(a) = a.T: 30 x 40
    b = rng.standard_normal((20, 40)).astype(np.float32)  # op(b) = b.T: 40 x 20
    c = rng.standard_normal((30, 20)).astype(np.float32)
    ref = 2.0 * (a.T.astype(np.float64) @ b.T.astype(np.float64)) + 0.5 * c
    out = pepita.sgemm(a, b, c, alpha=2.0, beta=0.5, trans_a=True, trans_b=True)
    assert out is c
    np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-3)


def test_wrong_dtype_is_a_type_error_naming_the_argument():
    with pytest.raises(TypeError, match=r"y: expected dtype float32, got float64"):
        pepita.dot(vec(4), vec(4, np.float64))
    with pytest.raises(TypeError, match=r"x: expected a numpy.ndarray of float32, got list"):
        pepita.dot([1.0, 2.0], vec(2))
    with pytest.raises(TypeError, match=r"b: expected dtype float32, got int64"):
        pepita.sgemm(np.ones((2, 2), np.float32), np.ones((2, 2), np.int64))


def test_wrong_shape_and_length_are_value_errors_naming_the_argument():
    with pytest.raises(ValueError, match=r"x and y differ in length: 3 vs 4"):
        pepita.dot(vec(3), vec(4))
    with pytest.raises(ValueError, match=r"x: expected a 1-D array, got 2-D"):
        pepita.softmax(np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"a and b do not multiply"):
        pepita.sgemm(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"c: expected shape \(2, 2\)"):
        pepita.sgemm(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32),
                     np.ones((3, 3), np.float32))
    with pytest.raises(pepita.InvalidArgumentError):
        pepita.softmax(np.ones(0, np.float32))  # pepita's own check: empty input


def test_non_contiguous_and_read_only_arrays_are_value_errors():
    x = vec(20)
    with pytest.raises(ValueError, match=r"x: array is not C-contiguous"):
        pepita.dot(x[::2], vec(10))
    with pytest.raises(ValueError, match=r"a: array is not C-contiguous"):
        pepita.sgemm(np.ones((3, 4), np.float32).T, np.ones((3, 2), np.float32))
    ro = vec(20)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"y: array is read-only"):
        pepita.axpy(1.0, vec(20), ro)
    with pytest.raises(ValueError, match=r"out partly overlaps x"):
        pepita.relu(x[1:], x[:-1])


def test_zram_store_round_trips_and_compresses():
    z = pepita.ZramStore(1 << 20, algorithm="zstd")
    data = (b"pepita " * 2000)[:8192]
    z.write(4096, data)
    assert z.read(4096, len(data)) == data
    assert z.read(0, 10) == bytes(10)  # never written: zeros
    z.write(0, np.arange(1024, dtype=np.uint32))  # any buffer
    assert np.frombuffer(z.read(0, 4096), dtype=np.uint32).tolist() == list(range(1024))
    s = z.stats()
    assert s["orig_data_size"] >= 3 * 4096 and s["compr_data_size"] < s["orig_data_size"]
    z.discard(4096, 8192)
    assert z.read(4096, 8) == bytes(8)
    assert z.size == 1 << 20


def test_zram_store_bad_input():
    with pytest.raises(pepita.InvalidArgumentError):
        pepita.ZramStore(1000)  # not a multiple of 4096
    with pytest.raises(pepita.InvalidArgumentError, match="lz4"):
        pepita.ZramStore(4096, algorithm="gzip")
    z = pepita.ZramStore(4096)
    with pytest.raises(pepita.InvalidArgumentError):
        z.write(4096, b"x")  # past the end
    with pytest.raises(TypeError, match="data: expected a bytes-like object, got str"):
        z.write(0, "text")
