#pragma once
// Vector kernels for CPU-side AI maths (BLAS level 1 plus activations and normalisations), each
// dispatched at run time to scalar, AVX2+FMA or AVX-512 code (see dispatch.hpp). Any length, any
// alignment. Error bounds follow Higham, "Accuracy and Stability of Numerical Algorithms" (2nd
// ed.), ch. 3-4: u is the unit roundoff (2^-24 for f32, 2^-53 for f64), bounds hold when no
// intermediate overflows or underflows unless stated, and are checked by tests/simd against an
// f64 (or long double for f64 kernels) reference at every dispatch level.
//
//   std::vector<float> x(n), y(n);
//   float d = PEPITA_TRY(pepita::simd::dot(x, y));          // sizes must match
//   PEPITA_TRY_VOID(pepita::simd::axpy(2.0f, x, y));          // y += 2 x
//   PEPITA_TRY_VOID(pepita::simd::softmax(x, x));             // in place is fine
//
// Errors: InvalidArgument when lengths differ, or when a kernel needing n > 0 gets an empty
// input. Outputs may alias inputs exactly (out == x), never partially.

#include <cstddef>
#include <cstdint>
#include <span>

#include "pepita/error.hpp"

namespace pepita::simd {

// ---------- BLAS level 1 ----------

/// sum x_i y_i. |result - exact| <= (n + 2) u sum |x_i y_i|.
[[nodiscard]] Result<float> dot(std::span<const float> x, std::span<const float> y);
/// f64 dot, same bound with u = 2^-53.
[[nodiscard]] Result<double> dot(std::span<const double> x, std::span<const double> y);

/// y_i += alpha x_i. |y_i' - exact| <= 2u (|alpha x_i| + |y_i|) (one rounding with FMA levels).
[[nodiscard]] Result<void> axpy(float alpha, std::span<const float> x, std::span<float> y);
[[nodiscard]] Result<void> axpy(double alpha, std::span<const double> x, std::span<double> y);

/// out_i = alpha x_i. Correctly rounded (identical on every level).
[[nodiscard]] Result<void> scale(float alpha, std::span<const float> x, std::span<float> out);
/// out_i = x_i + y_i. Correctly rounded.
[[nodiscard]] Result<void> add(std::span<const float> x, std::span<const float> y,
                               std::span<float> out);
/// f64 out_i = x_i + y_i. Correctly rounded (the crate's `add_f64` / SimdOps::vadd_f64).
[[nodiscard]] Result<void> add(std::span<const double> x, std::span<const double> y,
                               std::span<double> out);
/// out_i = x_i * y_i. Correctly rounded.
[[nodiscard]] Result<void> mul(std::span<const float> x, std::span<const float> y,
                               std::span<float> out);
/// out_i = x_i y_i + z_i. Correctly rounded on AVX2/AVX-512 (fused); scalar level rounds twice:
/// |err| <= 2u (|x_i y_i| + |z_i|).
[[nodiscard]] Result<void> fma(std::span<const float> x, std::span<const float> y,
                               std::span<const float> z, std::span<float> out);

/// sum x_i. |result - exact| <= (n + 2) u sum |x_i|. Empty input: 0.
[[nodiscard]] Result<float> sum(std::span<const float> x);
[[nodiscard]] Result<double> sum(std::span<const double> x);

/// Largest / smallest element; exact. NaN if any element is NaN. +0 and -0 compare equal, so
/// either may be returned when they tie. Errors: InvalidArgument for an empty input.
[[nodiscard]] Result<float> max(std::span<const float> x);
[[nodiscard]] Result<float> min(std::span<const float> x);
/// Index of the first maximum, or of the first NaN if there is one (numpy's rule).
/// Errors: InvalidArgument for an empty input.
[[nodiscard]] Result<std::size_t> argmax(std::span<const float> x);

/// sqrt(sum x_i^2), squares accumulated in f64: no overflow or underflow for any finite input;
/// |result - exact| <= 2u |exact| (u = 2^-24). Empty input: 0. NaN if any NaN; +inf if any inf.
[[nodiscard]] Result<float> l2_norm(std::span<const float> x);
/// f64 norm: |result - exact| <= (n/2 + 2) u |exact|; rescales by max |x_i| when the plain sum
/// of squares would overflow or lose accuracy to underflow.
[[nodiscard]] Result<double> l2_norm(std::span<const double> x);

/// x.y / (|x| |y|) accumulated in f32, clamped to [-1, 1]; 0 when either vector is all zeros.
/// |result - exact| <= (2n + 8) u while the squares stay in f32 range (|x_i| in ~[1e-18, 1e18]).
[[nodiscard]] Result<float> cosine_similarity(std::span<const float> x, std::span<const float> y);

// ---------- activations and normalisation ----------

/// out_i = exp(x_i - max x) / sum_j exp(x_j - max x) (numerically stable: no overflow for any
/// finite x). |out_i - exact_i| <= (n + 16 + 2 |x_i - max x|) u exact_i + 2^-126.
/// Any NaN, any +inf, or all -inf: every output is NaN. Errors: InvalidArgument when empty.
[[nodiscard]] Result<void> softmax(std::span<const float> x, std::span<float> out);

/// out_i = max(x_i, 0); exact. NaN and -0 pass through unchanged.
[[nodiscard]] Result<void> relu(std::span<const float> x, std::span<float> out);

/// GELU in the tanh form used by GPT-2/BERT (PyTorch approximate="tanh"):
/// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Evaluated as x * sigmoid(z) with a ~2 ulp
/// exp. |out_i - ref_i| <= (16 + 4|z_i|) u |ref_i| + 2^-120 against that formula in f64, where
/// z_i = 2 sqrt(2/pi)(x_i + 0.044715 x_i^3); the absolute term covers x < ~-9.5, where the true
/// value drops below 2^-120 and the result underflows to -0. gelu(+inf) = +inf, gelu(-inf) = -0,
/// NaN -> NaN.
[[nodiscard]] Result<void> gelu(std::span<const float> x, std::span<float> out);

/// out_i = (x_i - mean) / sqrt(var + eps) * gamma_i + beta_i, with the population variance from
/// a two-pass algorithm. gamma/beta may be empty (meaning 1 and 0) or must have x's length.
/// With sigma = sqrt(var + eps) and M = max |x_j| (the rounding error of the mean, relative to
/// sigma, dominates when |mean| >> sigma):
/// |out_i - ref_i| <= (n + 16) u (|gamma_i| (1 + 2M / sigma) + |beta_i|).
/// Errors: InvalidArgument for an empty x, mismatched lengths, or eps < 0 / NaN.
[[nodiscard]] Result<void> layer_norm(std::span<const float> x, std::span<const float> gamma,
                                      std::span<const float> beta, float eps, std::span<float> out);

// ---------- layout ----------

/// out = x^T: x is a rows x cols row-major matrix (x[i * cols + j]), out the cols x rows one
/// (out[j * rows + i]). Exact (a permutation). Cache-blocked; AVX-512 transposes 16 x 16 tiles
/// in registers (masked for ragged edges), AVX2 8 x 8 tiles, scalar 32 x 32 blocks. Any shape,
/// including 0 rows or columns. Errors: InvalidArgument when x or out does not hold rows * cols
/// elements (or the product overflows), or when out overlaps x (transpose is not in place).
[[nodiscard]] Result<void> transpose(std::span<const float> x, std::size_t rows, std::size_t cols,
                                     std::span<float> out);

// ---------- quantised dots ----------

/// sum x_i y_i over signed bytes with i32 accumulation; exact (no overflow while
/// n <= 131072; beyond that the result wraps modulo 2^32 identically on every level).
/// Uses AVX-512 VNNI vpdpbusd when available (vnni_active()).
[[nodiscard]] Result<std::int32_t> dot_i8(std::span<const std::int8_t> x,
                                          std::span<const std::int8_t> y);

/// A bfloat16 value: the upper 16 bits of an IEEE f32.
struct Bf16 {
  std::uint16_t bits = 0;
  friend bool operator==(Bf16, Bf16) = default;
};
static_assert(sizeof(Bf16) == 2);

/// f32 -> bf16 rounding to nearest even; NaN stays a (quiet) NaN, overflow rounds to inf.
Bf16 to_bf16(float x) noexcept;
/// bf16 -> f32, exact.
float to_float(Bf16 x) noexcept;

/// sum x_i y_i of bf16 vectors in f32 (products are exact in f32). |result - exact| <=
/// (n + 2) u sum |x_i y_i| + n 2^-126: on AVX-512 BF16 (bf16_active()) vdpbf16ps flushes
/// subnormal inputs and partial sums to zero.
[[nodiscard]] Result<float> dot_bf16(std::span<const Bf16> x, std::span<const Bf16> y);

}  // namespace pepita::simd
