// SIMD dot product over the input: the input is two int32 vectors a and b of n elements each
// (8n bytes, little-endian); the guest prints "dot <sum of a[i]*b[i] as int64>". AVX2 when the CPU
// and XCR0 allow it (checked at CPL3 with cpuid/xgetbv), scalar otherwise; exact integer result.
#include <immintrin.h>

#include "pepita_guest/runtime.hpp"

namespace {

bool g_avx2 = false;

bool detect_avx2() {
  unsigned a, b, c, d;
  asm volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
  if ((c & (1u << 27)) == 0) return false;  // OSXSAVE
  unsigned lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 6) != 6) return false;  // XMM and YMM state enabled
  asm volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
  return (b & (1u << 5)) != 0;
}

int64_t load_i32(const unsigned char* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return v;
}

int64_t dot_scalar(const unsigned char* a, const unsigned char* b, uint64_t from, uint64_t n) {
  int64_t sum = 0;
  for (uint64_t i = from; i < n; ++i) sum += load_i32(a + 4 * i) * load_i32(b + 4 * i);
  return sum;
}

__attribute__((target("avx2"))) int64_t dot_avx2(const unsigned char* a, const unsigned char* b,
                                                 uint64_t n) {
  __m256i acc = _mm256_setzero_si256();
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 4 * i));
    __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 4 * i));
    // Signed 32x32->64 products of the even lanes, then of the odd lanes shifted down.
    acc = _mm256_add_epi64(acc, _mm256_mul_epi32(x, y));
    acc =
        _mm256_add_epi64(acc, _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(y, 32)));
  }
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + dot_scalar(a, b, i, n);
}

}  // namespace

extern "C" void guest_init() { g_avx2 = detect_avx2(); }

extern "C" int guest_main() {
  using namespace pepita::guest;
  Bytes in = input();
  if (in.size % 8 != 0) {
    write(2, "dot: input must be two int32 vectors of equal length\n", 53);
    return 2;
  }
  const uint64_t n = in.size / 8;
  const unsigned char* a = in.data;
  const unsigned char* b = in.data + 4 * n;
  const int64_t sum = g_avx2 ? dot_avx2(a, b, n) : dot_scalar(a, b, 0, n);
  print("dot ");
  print_i64(sum);
  print(g_avx2 ? " avx2\n" : " scalar\n");
  return 0;
}
