// The AVX-512 table exists in four variants (with/without VNNI, with/without BF16); dispatch picks
// the one matching this CPU, so the others would go untested on a VNNI+BF16 machine. This test
// calls every variant's int8 and bf16 dot directly (all need only AVX-512 F/BW/VL plus the
// extension this CPU has) and checks them against exact / f64 references.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "detail/table.hpp"
#include "pepita/simd/dispatch.hpp"
#include "pepita/simd/kernels.hpp"
#include "simd_test_util.hpp"

namespace pepita::simd {
namespace {

TEST(Avx512Variants, Int8AndBf16DotsOfEveryRunnableVariant) {
  if (detected_level() != Level::avx512) GTEST_SKIP() << "no AVX-512 F/BW/VL on this CPU";
  const CpuFeatures& f = cpu_features();
  std::mt19937_64 rng(99);
  std::uniform_int_distribution<int> d8(-128, 127);
  std::uniform_real_distribution<float> df(-2, 2);
  int checked = 0;
  for (int variant = 0; variant < 4; ++variant) {
    const bool vnni = (variant & 1) != 0, bf16 = (variant & 2) != 0;
    if ((vnni && !f.avx512_vnni) || (bf16 && !f.avx512_bf16)) continue;  // would be SIGILL
    const detail::Kernels& k = detail::avx512_tables[variant];
    for (std::size_t n : test::test_lengths()) {
      test::Buf<std::int8_t> x(n, 1), y(n, 2);
      std::int64_t exact = 0;
      for (std::size_t i = 0; i < n; ++i) {
        x[i] = static_cast<std::int8_t>(d8(rng));
        y[i] = static_cast<std::int8_t>(d8(rng));
        exact += std::int64_t{x[i]} * y[i];
      }
      ASSERT_EQ(k.dot_i8(x.data(), y.data(), n), exact) << "variant " << variant << " n=" << n;
      test::Buf<Bf16> a(n, 3), b(n, 0);
      double ref = 0, abs = 0;
      for (std::size_t i = 0; i < n; ++i) {
        a[i] = to_bf16(df(rng));
        b[i] = to_bf16(df(rng));
        ref += double{to_float(a[i])} * to_float(b[i]);
        abs += std::fabs(double{to_float(a[i])} * to_float(b[i]));
      }
      // SAFETY: Bf16 is exactly one uint16_t (see kernels.hpp), as dot_bf16 itself relies on.
      const float got = k.dot_bf16(reinterpret_cast<const std::uint16_t*>(a.data()),
                                   reinterpret_cast<const std::uint16_t*>(b.data()), n);
      ASSERT_LE(std::fabs(got - ref), (n + 2) * test::kU32 * abs + n * 0x1p-126)
          << "variant " << variant << " n=" << n;
    }
    ++checked;
  }
  EXPECT_GE(checked, 1);
}

}  // namespace
}  // namespace pepita::simd
