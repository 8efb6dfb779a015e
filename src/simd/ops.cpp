// The crate's SimdCapabilities / SimdOps / MatrixOps: argument checks, then the dispatched
// kernels. Baseline x86-64 code, like kernels.cpp.
#include "pepita/simd/ops.hpp"

#include "pepita/core/format.hpp"
#include "pepita/simd/kernels.hpp"
#include "pepita/simd/sgemm.hpp"

namespace pepita::simd {

SimdCapabilities SimdCapabilities::detect() noexcept {
  return SimdCapabilities{cpu_features(), active_level()};
}

std::uint32_t SimdCapabilities::best_vector_width() const noexcept {
  switch (level) {
    case Level::avx512: return 512;
    case Level::avx2: return 256;
    case Level::scalar: return 64;
  }
  return 64;
}

const char* SimdCapabilities::description() const noexcept {
  switch (level) {
    case Level::avx512: return "AVX-512";
    case Level::avx2: return "AVX2";
    case Level::scalar: return "Scalar";
  }
  return "Scalar";
}

Result<void> SimdOps::vadd_f32(std::span<const float> a, std::span<const float> b,
                               std::span<float> c) const {
  return add(a, b, c);
}

Result<void> SimdOps::vadd_f64(std::span<const double> a, std::span<const double> b,
                               std::span<double> c) const {
  return add(a, b, c);
}

Result<void> SimdOps::vmul_f32(std::span<const float> a, std::span<const float> b,
                               std::span<float> c) const {
  return mul(a, b, c);
}

Result<float> SimdOps::dot_f32(std::span<const float> a, std::span<const float> b) const {
  return dot(a, b);
}

namespace {
Result<void> check_extent(const char* name, std::size_t have, std::size_t rows, std::size_t cols) {
  std::size_t want = 0;
  if (__builtin_mul_overflow(rows, cols, &want) || have != want)
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("matmul_f32: {} holds {} elements, a {} x {} matrix needs {}", name,
                            have, rows, cols, want));
  return {};
}
}  // namespace

Result<void> MatrixOps::matmul_f32(std::span<const float> a, std::span<const float> b,
                                   std::span<float> c, std::size_t m, std::size_t k,
                                   std::size_t n) const {
  PEPITA_TRY_VOID(check_extent("a", a.size(), m, k));
  PEPITA_TRY_VOID(check_extent("b", b.size(), k, n));
  PEPITA_TRY_VOID(check_extent("c", c.size(), m, n));
  // ld >= 1 keeps sgemm's leading-dimension checks satisfied for empty extents.
  return sgemm(Transpose::no, Transpose::no, m, n, k, 1.0f, a.data(), k == 0 ? 1 : k, b.data(),
               n == 0 ? 1 : n, 0.0f, c.data(), n == 0 ? 1 : n);
}

Result<void> MatrixOps::transpose_f32(std::span<const float> src, std::span<float> dst,
                                      std::size_t rows, std::size_t cols) const {
  return transpose(src, rows, cols, dst);
}

}  // namespace pepita::simd
