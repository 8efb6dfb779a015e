// AVX-512 F/BW/VL kernels (W = 16 floats), compiled with -mavx512f -mavx512bw -mavx512vl -mfma
// for this file only. Nothing here runs unless dispatch found AVX-512 F/BW/VL with the ZMM state
// enabled in XCR0. VNNI and BF16 kernels live in their own files (other flags).

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "detail/table.hpp"

namespace pepita::simd::detail {
namespace avx512 {

template <class E>
struct Ops;

template <>
struct Ops<float> {
  using V = __m512;
  using M = __mmask16;
  static constexpr std::size_t W = 16;
  static M tail(std::size_t n) { return static_cast<M>((1u << n) - 1u); }
  static V loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V load_tail(const float* p, std::size_t n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), tail(n), p);
  }
  static void store_tail(float* p, V v, std::size_t n) { _mm512_mask_storeu_ps(p, tail(n), v); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V abs(V a) { return _mm512_abs_ps(a); }
  static float hsum(V v) { return _mm512_reduce_add_ps(v); }
  static float hmax(V v) { return _mm512_reduce_max_ps(v); }
  static float hmin(V v) { return _mm512_reduce_min_ps(v); }
  static M cmp_unord(V a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static M cmp_lt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static M cmp_eq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static M mor(M a, M b) { return static_cast<M>(a | b); }
  static bool any(M m) { return m != 0; }
  static unsigned first(M m) { return static_cast<unsigned>(__builtin_ctz(m)); }
  static V blend(M m, V a, V b) { return _mm512_mask_blend_ps(m, a, b); }
  static V round(V v) {
    return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static V pow2i(V n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
  static void widen(V v, __m512d& lo, __m512d& hi) {
    lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  }
};

template <>
struct Ops<double> {
  using V = __m512d;
  using M = __mmask8;
  static constexpr std::size_t W = 8;
  static M tail(std::size_t n) { return static_cast<M>((1u << n) - 1u); }
  static V loadu(const double* p) { return _mm512_loadu_pd(p); }
  static void storeu(double* p, V v) { _mm512_storeu_pd(p, v); }
  static V load_tail(const double* p, std::size_t n, double fill) {
    return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), tail(n), p);
  }
  static void store_tail(double* p, V v, std::size_t n) { _mm512_mask_storeu_pd(p, tail(n), v); }
  static V set1(double x) { return _mm512_set1_pd(x); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V max(V a, V b) { return _mm512_max_pd(a, b); }
  static V abs(V a) { return _mm512_abs_pd(a); }
  static double hsum(V v) { return _mm512_reduce_add_pd(v); }
  static double hmax(V v) { return _mm512_reduce_max_pd(v); }
  static M cmp_unord(V a) { return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q); }
  static M mor(M a, M b) { return static_cast<M>(a | b); }
  static bool any(M m) { return m != 0; }
};

#include "detail/generic_kernels.hpp"

// int8 dot without VNNI: sign-extend 32 bytes to 32 x i16, vpmaddwd into 16 x i32 (exact: each
// pair sum is at most 2 * 128 * 128). The i32 lanes wrap like the scalar reference.
std::int32_t dot_i8(const std::int8_t* x, const std::int8_t* y, std::size_t n) {
  // SAFETY (the casts below): _mm256_loadu_si256 takes an unaligned __m256i* by convention; each
  // full load reads 32 bytes inside [p, p + n) as the loop bounds guarantee.
  __m512i acc0 = _mm512_setzero_si512();
  __m512i acc1 = _mm512_setzero_si512();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i a0 =
        _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
    const __m512i b0 =
        _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + i)));
    const __m512i a1 =
        _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 32)));
    const __m512i b1 =
        _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + i + 32)));
    acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(a0, b0));
    acc1 = _mm512_add_epi32(acc1, _mm512_madd_epi16(a1, b1));
  }
  for (; i < n; i += 32) {
    const std::size_t rem = n - i;
    const __mmask32 m = rem >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << rem) - 1u);
    const __m512i a = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, x + i));
    const __m512i b = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, y + i));
    acc0 = _mm512_add_epi32(acc0, _mm512_madd_epi16(a, b));
  }
  return _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
}

// bf16 dot without AVX512-BF16: widen bf16 -> f32 exactly (shift left 16), FMA in f32.
float dot_bf16(const std::uint16_t* x, const std::uint16_t* y, std::size_t n) {
  // SAFETY (the casts below): unaligned 32-byte loads inside [p, p + n), as the loop bounds
  // guarantee; the tail uses masked loads that touch only the remaining elements.
  __m512 acc0 = _mm512_setzero_ps();
  __m512 acc1 = _mm512_setzero_ps();
  auto widen = [](__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  };
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 =
        _mm512_fmadd_ps(widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))),
                        widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + i))), acc0);
    acc1 = _mm512_fmadd_ps(widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16))),
                           widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y + i + 16))),
                           acc1);
  }
  for (; i < n; i += 16) {
    const std::size_t rem = n - i;
    const __mmask16 m = rem >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << rem) - 1u);
    acc0 = _mm512_fmadd_ps(widen(_mm256_maskz_loadu_epi16(m, x + i)),
                           widen(_mm256_maskz_loadu_epi16(m, y + i)), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

// One 16 x 16 tile (or the top-left rh x cw of one, with masked loads and stores) transposed in
// registers. After unpacklo/hi_ps and unpacklo/hi_pd, s[4g + c] holds in 128-bit lane L the
// column 4L + c of rows 4g..4g+3; two rounds of shuffle_f32x4 then transpose those 4 x 4 lane
// blocks, so output row 4L + c is lane L of s[c], s[4 + c], s[8 + c], s[12 + c].
void transpose_16x16(const float* in, std::size_t ld_in, float* out, std::size_t ld_out,
                     std::size_t rh, std::size_t cw) {
  const __mmask16 load_mask = static_cast<__mmask16>((1u << cw) - 1u);   // cw in 1..16
  const __mmask16 store_mask = static_cast<__mmask16>((1u << rh) - 1u);  // rh in 1..16
  __m512 r[16];
  for (std::size_t k = 0; k < 16; ++k)
    r[k] = k < rh ? _mm512_maskz_loadu_ps(load_mask, in + k * ld_in) : _mm512_setzero_ps();
  __m512 t[16];
  for (int k = 0; k < 8; ++k) {
    t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  __m512 s[16];
  for (int g = 0; g < 4; ++g) {
    const __m512d a = _mm512_castps_pd(t[4 * g]);
    const __m512d b = _mm512_castps_pd(t[4 * g + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * g + 2]);
    const __m512d d = _mm512_castps_pd(t[4 * g + 3]);
    s[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    s[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    s[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    s[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int c = 0; c < 4; ++c) {
    // 0x88 takes lanes 0 and 2 of each operand, 0xdd lanes 1 and 3.
    const __m512 p = _mm512_shuffle_f32x4(s[c], s[4 + c], 0x88);
    const __m512 q = _mm512_shuffle_f32x4(s[c], s[4 + c], 0xdd);
    const __m512 u = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0x88);
    const __m512 v = _mm512_shuffle_f32x4(s[8 + c], s[12 + c], 0xdd);
    const __m512 rows_out[4] = {_mm512_shuffle_f32x4(p, u, 0x88), _mm512_shuffle_f32x4(q, v, 0x88),
                                _mm512_shuffle_f32x4(p, u, 0xdd), _mm512_shuffle_f32x4(q, v, 0xdd)};
    for (std::size_t l = 0; l < 4; ++l) {
      const std::size_t row = 4 * l + static_cast<std::size_t>(c);
      if (row < cw) _mm512_mask_storeu_ps(out + row * ld_out, store_mask, rows_out[l]);
    }
  }
}

void transpose(const float* in, std::size_t rows, std::size_t cols, float* out) {
  constexpr std::size_t B = 64;  // 64 x 64 blocks of 16 x 16 tiles: 16 KiB in + 16 KiB out
  for (std::size_t ib = 0; ib < rows; ib += B) {
    const std::size_t ie = ib + B < rows ? ib + B : rows;
    for (std::size_t jb = 0; jb < cols; jb += B) {
      const std::size_t je = jb + B < cols ? jb + B : cols;
      for (std::size_t i = ib; i < ie; i += 16) {
        const std::size_t rh = ie - i < 16 ? ie - i : 16;
        for (std::size_t j = jb; j < je; j += 16) {
          const std::size_t cw = je - j < 16 ? je - j : 16;
          transpose_16x16(in + i * cols + j, cols, out + j * rows + i, rows, rh, cw);
        }
      }
    }
  }
}

}  // namespace avx512

namespace avx512 {
constexpr Kernels make_table(bool vnni, bool bf16) {
  Kernels k = generic_table();
  k.dot_i8 = vnni ? &dot_i8_avx512_vnni : &dot_i8;
  k.dot_bf16 = bf16 ? &dot_bf16_avx512_bf16 : &dot_bf16;
  k.transpose_f32 = &transpose;
  k.gemm = GemmShape{&gemm_micro_impl<12>, 12, 32, 512, 144, 4096};
  return k;
}
}  // namespace avx512

constexpr Kernels avx512_tables[4] = {
    avx512::make_table(false, false), avx512::make_table(true, false),
    avx512::make_table(false, true), avx512::make_table(true, true)};

}  // namespace pepita::simd::detail
