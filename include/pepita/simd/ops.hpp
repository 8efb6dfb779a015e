#pragma once
// The reference crate's simd API (simd.rs: SimdCapabilities, SimdOps, MatrixOps) over pepita's
// runtime-dispatched kernels (kernels.hpp, sgemm.hpp, dispatch.hpp). Every call runs the real
// kernel at the process's active level; nothing here has its own arithmetic.
//
//   auto caps = pepita::simd::SimdCapabilities::detect();   // caps.description() == "AVX-512"
//   pepita::simd::SimdOps ops;
//   PEPITA_TRY_VOID(ops.vadd_f64(a, b, c));                  // c = a + b
//   pepita::simd::MatrixOps mat;
//   PEPITA_TRY_VOID(mat.matmul_f32(a, b, c, m, k, n));       // c (m x n) = a (m x k) * b (k x n)
//   PEPITA_TRY_VOID(mat.transpose_f32(src, dst, rows, cols));

#include <cstddef>
#include <cstdint>
#include <span>

#include "pepita/error.hpp"
#include "pepita/simd/dispatch.hpp"

namespace pepita::simd {

/// What this CPU and OS offer and which kernel level runs. The crate's sse/neon flags have no
/// counterpart: every x86-64 CPU has SSE2, and pepita builds only for x86-64.
struct SimdCapabilities {
  CpuFeatures features;         // CPUID + XCR0, see dispatch.hpp
  Level level = Level::scalar;  // the level the kernels run at (active_level())

  /// Probes the CPU (cached) and reads the active level.
  static SimdCapabilities detect() noexcept;
  /// Register width of the active level in bits: 512 (AVX-512), 256 (AVX2), 64 (scalar).
  std::uint32_t best_vector_width() const noexcept;
  /// f32 / f64 lanes per register at the active level (16/8, 8/4, 2/1).
  std::size_t best_f32_width() const noexcept { return best_vector_width() / 32; }
  std::size_t best_f64_width() const noexcept { return best_vector_width() / 64; }
  /// True when the kernels run vectorised (level above scalar).
  bool has_simd() const noexcept { return level != Level::scalar; }
  /// "AVX-512", "AVX2" or "Scalar".
  const char* description() const noexcept;
};

/// Element-wise vector operations: vadd/vmul are correctly rounded, dot_f32 carries the error
/// bound of simd::dot. Errors: InvalidArgument when lengths differ.
class SimdOps {
 public:
  SimdOps() noexcept : caps_(SimdCapabilities::detect()) {}
  /// Keeps `caps` for callers to inspect. Dispatch is process-wide (set_level), so the kernels
  /// still run at the active level: use set_level to choose one.
  explicit SimdOps(const SimdCapabilities& caps) noexcept : caps_(caps) {}
  static SimdOps with_caps(const SimdCapabilities& caps) noexcept { return SimdOps(caps); }
  const SimdCapabilities& caps() const noexcept { return caps_; }

  Result<void> vadd_f32(std::span<const float> a, std::span<const float> b,
                        std::span<float> c) const;
  Result<void> vadd_f64(std::span<const double> a, std::span<const double> b,
                        std::span<double> c) const;
  Result<void> vmul_f32(std::span<const float> a, std::span<const float> b,
                        std::span<float> c) const;
  Result<float> dot_f32(std::span<const float> a, std::span<const float> b) const;

 private:
  SimdCapabilities caps_;
};

/// Dense row-major matrix operations: matmul is simd::sgemm (blocked, packed, AVX-512 12x32
/// micro-kernel), transpose is simd::transpose (16 x 16 register tiles on AVX-512).
class MatrixOps {
 public:
  MatrixOps() noexcept : caps_(SimdCapabilities::detect()) {}
  const SimdCapabilities& caps() const noexcept { return caps_; }

  /// c (m x n) = a (m x k) * b (k x n). InvalidArgument, naming the matrix, when a span does not
  /// hold exactly its m*k, k*n or m*n elements.
  Result<void> matmul_f32(std::span<const float> a, std::span<const float> b, std::span<float> c,
                          std::size_t m, std::size_t k, std::size_t n) const;
  /// dst (cols x rows) = src (rows x cols)^T; errors as simd::transpose.
  Result<void> transpose_f32(std::span<const float> src, std::span<float> dst, std::size_t rows,
                             std::size_t cols) const;

 private:
  SimdCapabilities caps_;
};

}  // namespace pepita::simd
