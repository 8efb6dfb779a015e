// AVX2 + FMA kernels (W = 8 floats), compiled with -mavx2 -mfma for this file only. Nothing here
// runs unless dispatch found AVX2, FMA and the YMM state enabled in XCR0.

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "detail/table.hpp"

namespace pepita::simd::detail {
namespace avx2 {

template <class E>
struct Ops;

template <>
struct Ops<float> {
  using V = __m256;
  using M = __m256;
  static constexpr std::size_t W = 8;
  static __m256i tail(std::size_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static V loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V load_tail(const float* p, std::size_t n, float fill) {
    const __m256i m = tail(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store_tail(float* p, V v, std::size_t n) { _mm256_maskstore_ps(p, tail(n), v); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V abs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static __m128 fold(V v) {
    return _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  }
  static float hsum(V v) {
    __m128 s = fold(v);
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hmax(V v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hmin(V v) {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    s = _mm_min_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static M cmp_unord(V a) { return _mm256_cmp_ps(a, a, _CMP_UNORD_Q); }
  static M cmp_lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static M cmp_eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static M mor(M a, M b) { return _mm256_or_ps(a, b); }
  static bool any(M m) { return _mm256_movemask_ps(m) != 0; }
  static unsigned first(M m) { return static_cast<unsigned>(__builtin_ctz(_mm256_movemask_ps(m))); }
  static V blend(M m, V a, V b) { return _mm256_blendv_ps(a, b, m); }
  static V round(V v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V pow2i(V n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  static void widen(V v, __m256d& lo, __m256d& hi) {
    lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
  }
};

template <>
struct Ops<double> {
  using V = __m256d;
  using M = __m256d;
  static constexpr std::size_t W = 4;
  static __m256i tail(std::size_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(static_cast<long long>(n)),
                              _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static V loadu(const double* p) { return _mm256_loadu_pd(p); }
  static void storeu(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V load_tail(const double* p, std::size_t n, double fill) {
    const __m256i m = tail(n);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
  }
  static void store_tail(double* p, V v, std::size_t n) { _mm256_maskstore_pd(p, tail(n), v); }
  static V set1(double x) { return _mm256_set1_pd(x); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V max(V a, V b) { return _mm256_max_pd(a, b); }
  static V abs(V a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
  static double hsum(V v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static double hmax(V v) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(s, _mm_unpackhi_pd(s, s)));
  }
  static M cmp_unord(V a) { return _mm256_cmp_pd(a, a, _CMP_UNORD_Q); }
  static M mor(M a, M b) { return _mm256_or_pd(a, b); }
  static bool any(M m) { return _mm256_movemask_pd(m) != 0; }
};

#include "detail/generic_kernels.hpp"

// int8 dot: sign-extend 16 bytes to 16 x i16, vpmaddwd into 8 x i32 (exact per pair).
std::int32_t dot_i8(const std::int8_t* x, const std::int8_t* y, std::size_t n) {
  // SAFETY (all casts below): _mm_loadu_si128 takes an unaligned __m128i* by convention; each
  // load reads 16 bytes inside [p, p + n) as the loop bounds guarantee.
  auto load = [](const std::int8_t* p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  };
  __m256i acc0 = _mm256_setzero_si256();
  __m256i acc1 = _mm256_setzero_si256();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(load(x + i), load(y + i)));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(load(x + i + 16), load(y + i + 16)));
  }
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(load(x + i), load(y + i)));
  }
  const __m256i acc = _mm256_add_epi32(acc0, acc1);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  auto total = static_cast<std::uint32_t>(_mm_cvtsi128_si32(s));
  for (; i < n; ++i) total += static_cast<std::uint32_t>(std::int32_t{x[i]} * std::int32_t{y[i]});
  return static_cast<std::int32_t>(total);
}

// bf16 dot: widen exactly to f32 (shift left 16), FMA in f32.
float dot_bf16(const std::uint16_t* x, const std::uint16_t* y, std::size_t n) {
  // SAFETY: unaligned 16-byte loads inside [p, p + n), as the loop bounds guarantee.
  auto load = [](const std::uint16_t* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  };
  __m256 acc0 = _mm256_setzero_ps();
  __m256 acc1 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(load(x + i), load(y + i), acc0);
    acc1 = _mm256_fmadd_ps(load(x + i + 8), load(y + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load(x + i), load(y + i), acc0);
  float total = Ops<float>::hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) {
    const float a = __builtin_bit_cast(float, static_cast<std::uint32_t>(x[i]) << 16);
    const float b = __builtin_bit_cast(float, static_cast<std::uint32_t>(y[i]) << 16);
    total += a * b;
  }
  return total;
}

// 8 x 8 tile transpose in registers: unpack pairs of rows, shuffle pairs of pairs, then swap
// 128-bit halves (the classic AVX sequence, Intel optimization manual §11.11).
void transpose_8x8(const float* in, std::size_t ld_in, float* out, std::size_t ld_out) {
  __m256 r[8];
  for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(in + k * ld_in);
  __m256 t[8];
  for (int k = 0; k < 4; ++k) {
    t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  __m256 u[8];
  for (int g = 0; g < 2; ++g) {
    u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g + 0], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g + 0], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int c = 0; c < 4; ++c) {
    _mm256_storeu_ps(out + c * ld_out, _mm256_permute2f128_ps(u[c], u[4 + c], 0x20));
    _mm256_storeu_ps(out + (4 + c) * ld_out, _mm256_permute2f128_ps(u[c], u[4 + c], 0x31));
  }
}

void transpose(const float* in, std::size_t rows, std::size_t cols, float* out) {
  constexpr std::size_t B = 64;  // 64 x 64 blocks of 8 x 8 tiles: 16 KiB in + 16 KiB out
  const std::size_t rows8 = rows & ~std::size_t{7};
  const std::size_t cols8 = cols & ~std::size_t{7};
  for (std::size_t ib = 0; ib < rows8; ib += B) {
    const std::size_t ie = ib + B < rows8 ? ib + B : rows8;
    for (std::size_t jb = 0; jb < cols8; jb += B) {
      const std::size_t je = jb + B < cols8 ? jb + B : cols8;
      for (std::size_t i = ib; i < ie; i += 8)
        for (std::size_t j = jb; j < je; j += 8)
          transpose_8x8(in + i * cols + j, cols, out + j * rows + i, rows);
    }
  }
  // Ragged edges: the last cols % 8 columns of every row, then the last rows % 8 rows.
  transpose_block(in, cols, out, rows, 0, rows, cols8, cols);
  transpose_block(in, cols, out, rows, rows8, rows, 0, cols8);
}

}  // namespace avx2

namespace avx2 {
constexpr Kernels make_table() {
  Kernels k = generic_table();
  k.dot_i8 = &dot_i8;
  k.dot_bf16 = &dot_bf16;
  k.transpose_f32 = &transpose;
  k.gemm = GemmShape{&gemm_micro_impl<6>, 6, 16, 512, 144, 4096};
  return k;
}
}  // namespace avx2

constexpr Kernels avx2_table = avx2::make_table();

}  // namespace pepita::simd::detail
