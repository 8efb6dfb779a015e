#pragma once
// The per-level kernel table. Each ISA translation unit (kernels_scalar.cpp, kernels_avx2.cpp,
// kernels_avx512.cpp) defines its table as a constant; the public entry points in kernels.cpp
// and sgemm.cpp validate arguments and call through the table of the active level. Raw pointers
// and lengths only: callers have checked sizes, so kernels never fail.

#include <cstddef>
#include <cstdint>

namespace pepita::simd::detail {

/// GEMM micro-kernel: C[0..mr)[0..nr) = A_pack * B_pack + beta * C, where A_pack holds kc
/// columns of mr values (a[k * mr + i]) and B_pack kc rows of nr values (b[k * nr + j]). beta == 0
/// means "overwrite C without reading it" (BLAS semantics: NaN in C does not leak through).
using GemmMicroKernel = void (*)(std::size_t kc, const float* a_pack, const float* b_pack, float* c,
                                 std::size_t ldc, float beta);

struct GemmShape {
  GemmMicroKernel kernel = nullptr;
  std::size_t mr = 0;  // rows per micro-tile
  std::size_t nr = 0;  // columns per micro-tile (the vectorised dimension)
  std::size_t kc = 0;  // depth of one packed block (A micro-panel mr*kc sits in L1)
  std::size_t mc = 0;  // rows of A packed at once (multiple of mr)
  std::size_t nc = 0;  // columns of B packed at once (kc*nc sits in L2; multiple of nr)
};

struct Kernels {
  float (*dot_f32)(const float* x, const float* y, std::size_t n);
  double (*dot_f64)(const double* x, const double* y, std::size_t n);
  void (*axpy_f32)(float alpha, const float* x, float* y, std::size_t n);
  void (*axpy_f64)(double alpha, const double* x, double* y, std::size_t n);
  void (*scale_f32)(float alpha, const float* x, float* out, std::size_t n);
  void (*add_f32)(const float* x, const float* y, float* out, std::size_t n);
  void (*mul_f32)(const float* x, const float* y, float* out, std::size_t n);
  void (*fma_f32)(const float* x, const float* y, const float* z, float* out, std::size_t n);
  float (*sum_f32)(const float* x, std::size_t n);
  double (*sum_f64)(const double* x, std::size_t n);
  float (*max_f32)(const float* x, std::size_t n);           // n > 0
  float (*min_f32)(const float* x, std::size_t n);           // n > 0
  std::size_t (*argmax_f32)(const float* x, std::size_t n);  // n > 0
  double (*sumsq_f32_as_f64)(const float* x, std::size_t n);
  double (*sumsq_f64)(const double* x, std::size_t n);
  double (*amax_f64)(const double* x, std::size_t n);
  // out[0] = x.y, out[1] = x.x, out[2] = y.y
  void (*cosine_parts_f32)(const float* x, const float* y, std::size_t n, float* out);
  void (*softmax_f32)(const float* x, float* out, std::size_t n);  // n > 0
  void (*relu_f32)(const float* x, float* out, std::size_t n);
  void (*gelu_f32)(const float* x, float* out, std::size_t n);
  // gamma/beta may be null (1 and 0)
  void (*layer_norm_f32)(const float* x, const float* gamma, const float* beta, float eps,
                         float* out, std::size_t n);  // n > 0
  std::int32_t (*dot_i8)(const std::int8_t* x, const std::int8_t* y, std::size_t n);
  float (*dot_bf16)(const std::uint16_t* x, const std::uint16_t* y, std::size_t n);
  void (*add_f64)(const double* x, const double* y, double* out, std::size_t n);
  // out (cols x rows) = in (rows x cols)^T, both row-major and contiguous; in != out.
  void (*transpose_f32)(const float* in, std::size_t rows, std::size_t cols, float* out);
  GemmShape gemm;
};

// Constant-initialised tables (no code runs to build them, so building one never executes an
// instruction of its ISA). avx512_tables is indexed by (has VNNI) | (has BF16) << 1: the VNNI and
// BF16 kernels are compiled in their own translation units so no such instruction can leak into
// code that runs on AVX-512 CPUs without those extensions.
extern const Kernels scalar_table;
extern const Kernels avx2_table;
extern const Kernels avx512_tables[4];

std::int32_t dot_i8_avx512_vnni(const std::int8_t* x, const std::int8_t* y, std::size_t n);
float dot_bf16_avx512_bf16(const std::uint16_t* x, const std::uint16_t* y, std::size_t n);

}  // namespace pepita::simd::detail
