// Public kernel entry points: argument checks, then one call through the active level's table.
// Compiled for the x86-64 baseline (runs before any ISA is known to be present).

#include "pepita/simd/kernels.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>

#include "detail/active.hpp"
#include "pepita/core/format.hpp"
#include "pepita/simd/dispatch.hpp"

namespace pepita::simd {

namespace {

using detail::active_kernels;

// Error paths are cold and out of line so the happy path of each entry point stays a length
// compare, a table load and a tail call.
[[gnu::cold, gnu::noinline]] std::unexpected<Error> mismatch(std::size_t a, std::size_t b,
                                                             const char* op, const char* what) {
  return fail(ErrorCode::InvalidArgument, std::string(op) + ": " + what + " lengths differ (" +
                                              std::to_string(a) + " vs " + std::to_string(b) +
                                              "); pass spans of equal length");
}

[[gnu::cold, gnu::noinline]] std::unexpected<Error> empty_input(const char* op) {
  return fail(ErrorCode::InvalidArgument,
              std::string(op) + ": empty input has no result; pass at least one element");
}

}  // namespace

Result<float> dot(std::span<const float> x, std::span<const float> y) {
  if (x.size() != y.size()) [[unlikely]]
    return mismatch(x.size(), y.size(), "dot", "x and y");
  return active_kernels().dot_f32(x.data(), y.data(), x.size());
}

Result<double> dot(std::span<const double> x, std::span<const double> y) {
  if (x.size() != y.size()) [[unlikely]]
    return mismatch(x.size(), y.size(), "dot", "x and y");
  return active_kernels().dot_f64(x.data(), y.data(), x.size());
}

Result<void> axpy(float alpha, std::span<const float> x, std::span<float> y) {
  if (x.size() != y.size()) [[unlikely]]
    return mismatch(x.size(), y.size(), "axpy", "x and y");
  active_kernels().axpy_f32(alpha, x.data(), y.data(), x.size());
  return {};
}

Result<void> axpy(double alpha, std::span<const double> x, std::span<double> y) {
  if (x.size() != y.size()) [[unlikely]]
    return mismatch(x.size(), y.size(), "axpy", "x and y");
  active_kernels().axpy_f64(alpha, x.data(), y.data(), x.size());
  return {};
}

Result<void> scale(float alpha, std::span<const float> x, std::span<float> out) {
  if (x.size() != out.size()) [[unlikely]]
    return mismatch(x.size(), out.size(), "scale", "x and out");
  active_kernels().scale_f32(alpha, x.data(), out.data(), x.size());
  return {};
}

Result<void> add(std::span<const float> x, std::span<const float> y, std::span<float> out) {
  if (x.size() != y.size()) [[unlikely]]
    return mismatch(x.size(), y.size(), "add", "x and y");
  if (x.size() != out.size()) [[unlikely]]
    return mismatch(x.size(), out.size(), "add", "x and out");
  active_kernels().add_f32(x.data(), y.data(), out.data(), x.size());
  return {};
}

Result<void> add(std::span<const double> x, std::span<const double> y, std::span<double> out) {
  if (x.size() != y.size()) [[unlikely]]
    return mismatch(x.size(), y.size(), "add", "x and y");
  if (x.size() != out.size()) [[unlikely]]
    return mismatch(x.size(), out.size(), "add", "x and out");
  active_kernels().add_f64(x.data(), y.data(), out.data(), x.size());
  return {};
}

Result<void> transpose(std::span<const float> x, std::size_t rows, std::size_t cols,
                       std::span<float> out) {
  std::size_t n = 0;
  if (__builtin_mul_overflow(rows, cols, &n)) [[unlikely]]
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("transpose: rows {} x cols {} overflows size_t", rows, cols));
  if (x.size() != n) [[unlikely]]
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("transpose: x holds {} elements, rows x cols is {}; pass the whole "
                            "row-major matrix",
                            x.size(), n));
  if (out.size() != n) [[unlikely]]
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("transpose: out holds {} elements, rows x cols is {}", out.size(), n));
  if (n == 0) return {};
  // Compare addresses as integers: x and out may be unrelated arrays.
  const auto xb = reinterpret_cast<std::uintptr_t>(x.data());  // SAFETY: inspected, not used
  const auto ob = reinterpret_cast<std::uintptr_t>(out.data());
  if (xb < ob + n * sizeof(float) && ob < xb + n * sizeof(float)) [[unlikely]]
    return fail(ErrorCode::InvalidArgument,
                "transpose: out overlaps x; transpose into a separate buffer");
  active_kernels().transpose_f32(x.data(), rows, cols, out.data());
  return {};
}

Result<void> mul(std::span<const float> x, std::span<const float> y, std::span<float> out) {
  if (x.size() != y.size()) [[unlikely]]
    return mismatch(x.size(), y.size(), "mul", "x and y");
  if (x.size() != out.size()) [[unlikely]]
    return mismatch(x.size(), out.size(), "mul", "x and out");
  active_kernels().mul_f32(x.data(), y.data(), out.data(), x.size());
  return {};
}

Result<void> fma(std::span<const float> x, std::span<const float> y, std::span<const float> z,
                 std::span<float> out) {
  if (x.size() != y.size()) [[unlikely]]
    return mismatch(x.size(), y.size(), "fma", "x and y");
  if (x.size() != z.size()) [[unlikely]]
    return mismatch(x.size(), z.size(), "fma", "x and z");
  if (x.size() != out.size()) [[unlikely]]
    return mismatch(x.size(), out.size(), "fma", "x and out");
  active_kernels().fma_f32(x.data(), y.data(), z.data(), out.data(), x.size());
  return {};
}

Result<float> sum(std::span<const float> x) { return active_kernels().sum_f32(x.data(), x.size()); }

Result<double> sum(std::span<const double> x) {
  return active_kernels().sum_f64(x.data(), x.size());
}

Result<float> max(std::span<const float> x) {
  if (x.empty()) [[unlikely]]
    return empty_input("max");
  return active_kernels().max_f32(x.data(), x.size());
}

Result<float> min(std::span<const float> x) {
  if (x.empty()) [[unlikely]]
    return empty_input("min");
  return active_kernels().min_f32(x.data(), x.size());
}

Result<std::size_t> argmax(std::span<const float> x) {
  if (x.empty()) [[unlikely]]
    return empty_input("argmax");
  return active_kernels().argmax_f32(x.data(), x.size());
}

Result<float> l2_norm(std::span<const float> x) {
  return static_cast<float>(std::sqrt(active_kernels().sumsq_f32_as_f64(x.data(), x.size())));
}

Result<double> l2_norm(std::span<const double> x) {
  const auto& k = active_kernels();
  const double s = k.sumsq_f64(x.data(), x.size());
  // Below 2^-968 the squares may have lost bits to subnormals; above DBL_MAX they overflowed.
  if (std::isfinite(s) && (s >= 0x1p-968 || s == 0.0)) {
    if (s != 0.0) return std::sqrt(s);
  }
  const double amax = k.amax_f64(x.data(), x.size());
  if (amax == 0.0 || !std::isfinite(amax)) return amax;  // zeros, inf or NaN
  // Scale by a power of two near 1/amax: exact, and every scaled square lies in (0, 4].
  const double factor = std::ldexp(1.0, -std::ilogb(amax));
  std::array<double, 512> chunk{};
  double total = 0.0;
  for (std::size_t i = 0; i < x.size(); i += chunk.size()) {
    const std::size_t len = std::min(chunk.size(), x.size() - i);
    for (std::size_t j = 0; j < len; ++j) chunk[j] = x[i + j] * factor;
    total += k.sumsq_f64(chunk.data(), len);
  }
  return std::sqrt(total) / factor;
}

Result<float> cosine_similarity(std::span<const float> x, std::span<const float> y) {
  if (x.size() != y.size()) [[unlikely]]
    return mismatch(x.size(), y.size(), "cosine_similarity", "x and y");
  float parts[3] = {0, 0, 0};
  active_kernels().cosine_parts_f32(x.data(), y.data(), x.size(), parts);
  if (parts[1] == 0.0f || parts[2] == 0.0f) return 0.0f;
  float r = parts[0] / (std::sqrt(parts[1]) * std::sqrt(parts[2]));
  // Rounding can push |r| a hair past 1; NaN passes both tests unchanged.
  if (r > 1.0f) r = 1.0f;
  if (r < -1.0f) r = -1.0f;
  return r;
}

Result<void> softmax(std::span<const float> x, std::span<float> out) {
  if (x.empty()) [[unlikely]]
    return empty_input("softmax");
  if (x.size() != out.size()) [[unlikely]]
    return mismatch(x.size(), out.size(), "softmax", "x and out");
  active_kernels().softmax_f32(x.data(), out.data(), x.size());
  return {};
}

Result<void> relu(std::span<const float> x, std::span<float> out) {
  if (x.size() != out.size()) [[unlikely]]
    return mismatch(x.size(), out.size(), "relu", "x and out");
  active_kernels().relu_f32(x.data(), out.data(), x.size());
  return {};
}

Result<void> gelu(std::span<const float> x, std::span<float> out) {
  if (x.size() != out.size()) [[unlikely]]
    return mismatch(x.size(), out.size(), "gelu", "x and out");
  active_kernels().gelu_f32(x.data(), out.data(), x.size());
  return {};
}

Result<void> layer_norm(std::span<const float> x, std::span<const float> gamma,
                        std::span<const float> beta, float eps, std::span<float> out) {
  if (x.empty()) [[unlikely]]
    return empty_input("layer_norm");
  if (x.size() != out.size()) [[unlikely]]
    return mismatch(x.size(), out.size(), "layer_norm", "x and out");
  if (!gamma.empty() && x.size() != gamma.size()) {
    return mismatch(x.size(), gamma.size(), "layer_norm", "x and gamma");
  }
  if (!beta.empty() && x.size() != beta.size()) {
    return mismatch(x.size(), beta.size(), "layer_norm", "x and beta");
  }
  if (!(eps >= 0.0f)) {
    return fail(ErrorCode::InvalidArgument,
                "layer_norm: eps must be >= 0 (typically 1e-5), got " + std::to_string(eps));
  }
  active_kernels().layer_norm_f32(x.data(), gamma.empty() ? nullptr : gamma.data(),
                                  beta.empty() ? nullptr : beta.data(), eps, out.data(), x.size());
  return {};
}

Result<std::int32_t> dot_i8(std::span<const std::int8_t> x, std::span<const std::int8_t> y) {
  if (x.size() != y.size()) [[unlikely]]
    return mismatch(x.size(), y.size(), "dot_i8", "x and y");
  return active_kernels().dot_i8(x.data(), y.data(), x.size());
}

Bf16 to_bf16(float x) noexcept {
  const auto bits = std::bit_cast<std::uint32_t>(x);
  if (std::isnan(x)) return Bf16{static_cast<std::uint16_t>((bits >> 16) | 0x40u)};
  const std::uint32_t round = 0x7FFFu + ((bits >> 16) & 1u);
  return Bf16{static_cast<std::uint16_t>((bits + round) >> 16)};
}

float to_float(Bf16 x) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(x.bits) << 16);
}

Result<float> dot_bf16(std::span<const Bf16> x, std::span<const Bf16> y) {
  if (x.size() != y.size()) [[unlikely]]
    return mismatch(x.size(), y.size(), "dot_bf16", "x and y");
  // SAFETY: Bf16 is a standard-layout struct holding exactly one uint16_t (static_assert'd size
  // 2), so an array of Bf16 is an array of uint16_t bit patterns for the kernels.
  return active_kernels().dot_bf16(reinterpret_cast<const std::uint16_t*>(x.data()),
                                   reinterpret_cast<const std::uint16_t*>(y.data()), x.size());
}

}  // namespace pepita::simd
