// bf16 dot on AVX-512 BF16 (vdpbf16ps), compiled with -mavx512bf16 for this file only; selected
// only when CPUID.(7,1):EAX reports AVX512_BF16 (see active_kernels()).
//
// vdpbf16ps multiplies pairs of bf16 exactly into f32 and adds both products to the accumulator
// lane with round-to-nearest-even, ignoring MXCSR: subnormal inputs and outputs are flushed to
// zero (documented in kernels.hpp).

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "detail/table.hpp"

namespace pepita::simd::detail {

float dot_bf16_avx512_bf16(const std::uint16_t* x, const std::uint16_t* y, std::size_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm512_dpbf16_ps(acc0, __builtin_bit_cast(__m512bh, _mm512_loadu_si512(x + i)),
                            __builtin_bit_cast(__m512bh, _mm512_loadu_si512(y + i)));
    acc1 = _mm512_dpbf16_ps(acc1, __builtin_bit_cast(__m512bh, _mm512_loadu_si512(x + i + 32)),
                            __builtin_bit_cast(__m512bh, _mm512_loadu_si512(y + i + 32)));
  }
  for (; i < n; i += 32) {
    const std::size_t rem = n - i;
    const __mmask32 m = rem >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << rem) - 1u);
    // Masked-off halves are +0.0 bf16: they add exact zeros.
    acc0 = _mm512_dpbf16_ps(acc0, __builtin_bit_cast(__m512bh, _mm512_maskz_loadu_epi16(m, x + i)),
                            __builtin_bit_cast(__m512bh, _mm512_maskz_loadu_epi16(m, y + i)));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

}  // namespace pepita::simd::detail
