// int8 dot on AVX-512 VNNI (vpdpbusd), compiled with -mavx512vnni for this file only; selected
// only when CPUID reports AVX512_VNNI (see active_kernels()).
//
// vpdpbusd multiplies UNSIGNED bytes by SIGNED bytes. For signed x we feed x ^ 0x80 = x + 128
// (as u8) and subtract 128 * sum(y), which a second vpdpbusd against all-ones computes. All
// arithmetic wraps modulo 2^32, so the result equals the scalar reference bit for bit.

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "detail/table.hpp"

namespace pepita::simd::detail {

std::int32_t dot_i8_avx512_vnni(const std::int8_t* x, const std::int8_t* y, std::size_t n) {
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
  __m512i ysum0 = _mm512_setzero_si512(), ysum1 = _mm512_setzero_si512();
  std::size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    const __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512(x + i), bias);
    const __m512i b0 = _mm512_loadu_si512(y + i);
    const __m512i a1 = _mm512_xor_si512(_mm512_loadu_si512(x + i + 64), bias);
    const __m512i b1 = _mm512_loadu_si512(y + i + 64);
    acc0 = _mm512_dpbusd_epi32(acc0, a0, b0);
    ysum0 = _mm512_dpbusd_epi32(ysum0, ones, b0);
    acc1 = _mm512_dpbusd_epi32(acc1, a1, b1);
    ysum1 = _mm512_dpbusd_epi32(ysum1, ones, b1);
  }
  for (; i < n; i += 64) {
    const std::size_t rem = n - i;
    const __mmask64 m = rem >= 64 ? ~__mmask64{0} : (__mmask64{1} << rem) - 1;
    // Masked-off lanes: a = 0 ^ 0x80 = 128 but b = 0, so they add nothing to either sum.
    const __m512i a = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, x + i), bias);
    const __m512i b = _mm512_maskz_loadu_epi8(m, y + i);
    acc0 = _mm512_dpbusd_epi32(acc0, a, b);
    ysum0 = _mm512_dpbusd_epi32(ysum0, ones, b);
  }
  const auto dot =
      static_cast<std::uint32_t>(_mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1)));
  const auto ysum =
      static_cast<std::uint32_t>(_mm512_reduce_add_epi32(_mm512_add_epi32(ysum0, ysum1)));
  return static_cast<std::int32_t>(dot - 128u * ysum);
}

}  // namespace pepita::simd::detail
