// Portable kernels (W = 1): the same generic bodies as the vector levels, instantiated over
// plain float/double, compiled for the x86-64 baseline. Four accumulators keep the reductions
// pipelined; fmadd is a*b + c with two roundings (no FMA in the baseline ISA).

#include <cstddef>
#include <cstdint>

#include "detail/table.hpp"

namespace pepita::simd::detail {
namespace scalar {

template <class E>
struct ScalarOps {
  using V = E;
  using M = bool;
  static constexpr std::size_t W = 1;
  static V loadu(const E* p) { return *p; }
  static void storeu(E* p, V v) { *p = v; }
  static V load_tail(const E* p, std::size_t n, E fill) { return n > 0 ? *p : fill; }
  static void store_tail(E* p, V v, std::size_t n) {
    if (n > 0) *p = v;
  }
  static V set1(E x) { return x; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V div(V a, V b) { return a / b; }
  static V fmadd(V a, V b, V c) { return a * b + c; }
  // Same NaN rule as maxps/minps: the second operand wins when either is NaN.
  static V max(V a, V b) { return a > b ? a : b; }
  static V min(V a, V b) { return a < b ? a : b; }
  static V abs(V a) { return a < 0 ? -a : (a == 0 ? E(0) : a); }
  static E hsum(V v) { return v; }
  static E hmax(V v) { return v; }
  static E hmin(V v) { return v; }
  static M cmp_unord(V a) { return a != a; }
  static M cmp_lt(V a, V b) { return a < b; }
  static M cmp_eq(V a, V b) { return a == b; }
  static M mor(M a, M b) { return a || b; }
  static bool any(M m) { return m; }
  static unsigned first(M) { return 0; }
  static V blend(M m, V a, V b) { return m ? b : a; }
};

template <class E>
struct Ops;

template <>
struct Ops<double> : ScalarOps<double> {};

template <>
struct Ops<float> : ScalarOps<float> {
  // Round to nearest even by the 1.5 * 2^23 trick; exact for |v| < 2^22 (exp's range).
  static V round(V v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic;
  }
  static V pow2i(V n) {
    const auto bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(n) + 127) << 23;
    return __builtin_bit_cast(float, bits);
  }
  static void widen(V v, double& lo, double& hi) {
    lo = static_cast<double>(v);
    hi = 0.0;
  }
};

#include "detail/generic_kernels.hpp"

// Accumulates in uint32 so overflow wraps (defined) exactly like the vector lanes do.
std::int32_t dot_i8(const std::int8_t* x, const std::int8_t* y, std::size_t n) {
  std::uint32_t total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    total += static_cast<std::uint32_t>(std::int32_t{x[i]} * std::int32_t{y[i]});
  }
  return static_cast<std::int32_t>(total);
}

float dot_bf16(const std::uint16_t* x, const std::uint16_t* y, std::size_t n) {
  float acc[4] = {0, 0, 0, 0};
  std::size_t i = 0;
  auto widen = [](std::uint16_t h) {
    return __builtin_bit_cast(float, static_cast<std::uint32_t>(h) << 16);
  };
  for (; i + 4 <= n; i += 4) {
    for (std::size_t j = 0; j < 4; ++j) acc[j] += widen(x[i + j]) * widen(y[i + j]);
  }
  for (; i < n; ++i) acc[0] += widen(x[i]) * widen(y[i]);
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

}  // namespace scalar

namespace scalar {
constexpr Kernels make_table() {
  Kernels k = generic_table();
  k.dot_i8 = &dot_i8;
  k.dot_bf16 = &dot_bf16;
  k.gemm = GemmShape{&gemm_micro_impl<4>, 4, 2, 512, 144, 4096};
  return k;
}
}  // namespace scalar

constexpr Kernels scalar_table = scalar::make_table();

}  // namespace pepita::simd::detail
