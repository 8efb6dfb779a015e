// sgemm against a naive f64 reference: odd shapes that leave partial micro-tiles and cross the
// KC/MC/NC block edges, every transpose combination, alpha/beta (including beta = 0 ignoring NaN
// in C), padded leading dimensions, every dispatch level, and the parallel path.

#include "pepita/simd/sgemm.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "pepita/scheduler/scheduler.hpp"
#include "simd_test_util.hpp"

namespace pepita::simd {
namespace {

struct Case {
  std::size_t m, n, k;
  Transpose ta, tb;
  float alpha, beta;
  std::size_t pad;  // extra leading-dimension elements
};

// Runs one case and checks every element against the f64 reference and the header's bound.
void check_case(const Case& t, std::mt19937_64& rng, const GemmOptions& opts = {}) {
  const bool tra = t.ta == Transpose::yes, trb = t.tb == Transpose::yes;
  // BLAS rule: a leading dimension is at least 1 even for an empty (k = 0) operand.
  const std::size_t lda = std::max<std::size_t>(1, (tra ? t.m : t.k) + t.pad);
  const std::size_t ldb = std::max<std::size_t>(1, (trb ? t.k : t.n) + t.pad);
  const std::size_t ldc = t.n + t.pad;
  std::uniform_real_distribution<float> d(-1, 1);
  std::vector<float> a((tra ? t.k : t.m) * lda), b((trb ? t.n : t.k) * ldb), c(t.m * ldc);
  for (auto& v : a) v = d(rng);
  for (auto& v : b) v = d(rng);
  for (auto& v : c) v = t.beta == 0.0f ? std::numeric_limits<float>::quiet_NaN() : d(rng);
  const std::vector<float> c0 = c;
  auto r = sgemm(t.ta, t.tb, t.m, t.n, t.k, t.alpha, a.data(), lda, b.data(), ldb, t.beta, c.data(),
                 ldc, opts);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  for (std::size_t i = 0; i < t.m; ++i) {
    for (std::size_t j = 0; j < ldc; ++j) {
      if (j >= t.n) {  // padding is never written
        ASSERT_TRUE(std::isnan(c[i * ldc + j]) ? std::isnan(c0[i * ldc + j])
                                               : c[i * ldc + j] == c0[i * ldc + j]);
        continue;
      }
      double ref = 0, abs = 0;
      for (std::size_t p = 0; p < t.k; ++p) {
        const double av = tra ? a[p * lda + i] : a[i * lda + p];
        const double bv = trb ? b[j * ldb + p] : b[p * ldb + j];
        ref += av * bv;
        abs += std::fabs(av * bv);
      }
      ref *= t.alpha;
      abs *= std::fabs(t.alpha);
      double cb = 0;
      if (t.beta != 0.0f) {
        ref += double{t.beta} * c0[i * ldc + j];
        cb = std::fabs(double{t.beta} * c0[i * ldc + j]);
      }
      const double bound = (t.k + 2) * test::kU32 * abs + 2 * test::kU32 * cb + 1e-30;
      ASSERT_LE(std::fabs(c[i * ldc + j] - ref), bound)
          << "m=" << t.m << " n=" << t.n << " k=" << t.k << " ta=" << tra << " tb=" << trb
          << " at (" << i << "," << j << ")";
    }
  }
}

class Sgemm : public ::testing::TestWithParam<Level> {
 protected:
  test::LevelGuard guard_{GetParam()};
  std::mt19937_64 rng_{0x6e33 + static_cast<unsigned>(GetParam())};
};

TEST_P(Sgemm, OddShapesAllTransposes) {
  const std::tuple<std::size_t, std::size_t, std::size_t> shapes[] = {
      {1, 1, 1},    {17, 33, 65}, {1000, 1, 100}, {1, 1000, 100},
      {13, 7, 300}, {2, 3, 1},    {31, 65, 257},  {25, 97, 16}};
  for (auto [m, n, k] : shapes) {
    for (Transpose ta : {Transpose::no, Transpose::yes}) {
      for (Transpose tb : {Transpose::no, Transpose::yes}) {
        check_case({m, n, k, ta, tb, 1.0f, 0.0f, 0}, rng_);
        if (testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

TEST_P(Sgemm, AlphaBetaAndPaddedLeadingDimensions) {
  for (auto [alpha, beta] : {std::pair{0.5f, 1.0f}, {-2.0f, 0.25f}, {1.0f, -1.0f}, {0.0f, 3.0f}}) {
    check_case({23, 45, 67, Transpose::no, Transpose::yes, alpha, beta, 5}, rng_);
    check_case({40, 70, 300, Transpose::yes, Transpose::no, alpha, beta, 3}, rng_);
  }
  check_case({9, 11, 0, Transpose::no, Transpose::no, 1.0f, 0.5f, 0}, rng_);  // k = 0: C = beta C
  check_case({9, 11, 0, Transpose::no, Transpose::no, 1.0f, 0.0f, 0}, rng_);  // zeroes, drops NaN
}

TEST_P(Sgemm, LargerThanOneBlockInEveryDimension) {
  // m > MC, n > NC, k > KC on every level: several packed blocks per dimension plus edges.
  check_case({203, 530, 600, Transpose::no, Transpose::no, 1.0f, 0.5f, 1}, rng_);
}

TEST_P(Sgemm, ParallelMatchesTheBound) {
  auto sched = scheduler::Scheduler::create({.workers = 2});
  ASSERT_TRUE(sched.has_value()) << sched.error().to_string();
  const GemmOptions opts{.scheduler = sched->get()};
  check_case({150, 300, 200, Transpose::no, Transpose::no, 1.0f, 0.0f, 0}, rng_, opts);
  check_case({300, 40, 200, Transpose::yes, Transpose::yes, 0.5f, 2.0f, 2}, rng_, opts);
  check_case({1000, 1, 1000, Transpose::no, Transpose::no, 1.0f, 0.0f, 0}, rng_, opts);
  check_case({3, 3, 3, Transpose::no, Transpose::no, 1.0f, 0.0f, 0}, rng_, opts);
}

INSTANTIATE_TEST_SUITE_P(Levels, Sgemm, ::testing::ValuesIn(test::available_levels()),
                         test::level_name);

TEST(SgemmArgs, BadLeadingDimensionsAndNullPointersAreErrors) {
  std::vector<float> a(12), b(12), c(12, 7.0f);
  auto r =
      sgemm(Transpose::no, Transpose::no, 3, 4, 3, 1, a.data(), 2, b.data(), 4, 0, c.data(), 4);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message().find("lda"), std::string::npos) << r.error().message();
  EXPECT_FALSE(
      sgemm(Transpose::no, Transpose::yes, 3, 4, 3, 1, a.data(), 3, b.data(), 2, 0, c.data(), 4));
  EXPECT_FALSE(
      sgemm(Transpose::no, Transpose::no, 3, 4, 3, 1, a.data(), 3, b.data(), 4, 0, c.data(), 3));
  EXPECT_FALSE(
      sgemm(Transpose::no, Transpose::no, 3, 4, 3, 1, nullptr, 3, b.data(), 4, 0, c.data(), 4));
  for (float v : c) EXPECT_EQ(v, 7.0f);  // argument errors leave C untouched
  // Empty products are fine and touch nothing.
  EXPECT_TRUE(
      sgemm(Transpose::no, Transpose::no, 0, 4, 3, 1, nullptr, 3, nullptr, 4, 0, nullptr, 4));
}

}  // namespace
}  // namespace pepita::simd
