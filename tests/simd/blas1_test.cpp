// BLAS-1 style kernels (dot, axpy, scale, add, mul, fma, sum, max/min/argmax, l2 norm, cosine)
// at every dispatch level this CPU runs, every length 0..130 plus large ones, misaligned
// starts, against an f64 (f32 kernels) or long double (f64 kernels) reference and the error
// bound stated in kernels.hpp.

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "pepita/simd/kernels.hpp"
#include "simd_test_util.hpp"

namespace pepita::simd {
namespace {

using test::Buf;
using test::kU32;
using test::kU64;

class Blas1 : public ::testing::TestWithParam<Level> {
 protected:
  test::LevelGuard guard_{GetParam()};
  std::mt19937_64 rng_{0x5eed + static_cast<unsigned>(GetParam())};

  // Calls f(n, offset) for every test length and a few misalignments.
  template <class F>
  void for_shapes(F f) {
    for (std::size_t n : test::test_lengths()) {
      for (std::size_t off : {0u, 1u, 3u}) {
        if (n > 130 && off != 1) continue;
        f(n, off);
      }
    }
  }
};

TEST_P(Blas1, DotF32WithinBound) {
  for_shapes([&](std::size_t n, std::size_t off) {
    Buf<float> x(n, off), y(n, off + 2);
    test::fill_uniform(x, rng_);
    test::fill_uniform(y, rng_);
    double ref = 0, abs = 0;
    for (std::size_t i = 0; i < n; ++i) {
      ref += double{x[i]} * y[i];
      abs += std::fabs(double{x[i]} * y[i]);
    }
    auto r = dot(std::span<const float>(x), std::span<const float>(y));
    ASSERT_TRUE(r.has_value());
    EXPECT_LE(std::fabs(*r - ref), (n + 2) * kU32 * abs + 1e-30) << "n=" << n << " off=" << off;
  });
}

TEST_P(Blas1, DotF64WithinBound) {
  for_shapes([&](std::size_t n, std::size_t off) {
    Buf<double> x(n, off), y(n, off + 1);
    test::fill_uniform(x, rng_);
    test::fill_uniform(y, rng_);
    long double ref = 0, abs = 0;
    for (std::size_t i = 0; i < n; ++i) {
      ref += static_cast<long double>(x[i]) * y[i];
      abs += std::fabs(static_cast<long double>(x[i]) * y[i]);
    }
    auto r = dot(std::span<const double>(x), std::span<const double>(y));
    ASSERT_TRUE(r.has_value());
    EXPECT_LE(std::fabs(*r - ref), (n + 2) * kU64 * abs + 1e-300) << "n=" << n;
  });
}

TEST_P(Blas1, AxpyF32AndF64WithinBound) {
  for_shapes([&](std::size_t n, std::size_t off) {
    Buf<float> x(n, off), y(n, off + 1);
    test::fill_uniform(x, rng_);
    test::fill_uniform(y, rng_);
    std::vector<float> y0(y.data(), y.data() + n);
    ASSERT_TRUE(axpy(-1.75f, std::span<const float>(x), std::span<float>(y)).has_value());
    for (std::size_t i = 0; i < n; ++i) {
      const double exact = -1.75 * x[i] + double{y0[i]};
      const double bound = 2 * kU32 * (std::fabs(1.75 * x[i]) + std::fabs(y0[i]));
      ASSERT_LE(std::fabs(y[i] - exact), bound) << "n=" << n << " i=" << i;
    }
    Buf<double> xd(n, off), yd(n, off);
    test::fill_uniform(xd, rng_);
    test::fill_uniform(yd, rng_);
    std::vector<double> yd0(yd.data(), yd.data() + n);
    ASSERT_TRUE(axpy(0.3, std::span<const double>(xd), std::span<double>(yd)).has_value());
    for (std::size_t i = 0; i < n; ++i) {
      const long double exact = 0.3L * xd[i] + yd0[i];
      ASSERT_LE(std::fabs(yd[i] - exact), 2 * kU64 * (std::fabs(0.3 * xd[i]) + std::fabs(yd0[i])));
    }
  });
}

bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

TEST_P(Blas1, ElementwiseOpsAreCorrectlyRounded) {
  for_shapes([&](std::size_t n, std::size_t off) {
    Buf<float> x(n, off), y(n, off + 1), z(n, off + 2), out(n, off + 3);
    test::fill_uniform(x, rng_, -100, 100);
    test::fill_uniform(y, rng_, -100, 100);
    test::fill_uniform(z, rng_, -100, 100);
    ASSERT_TRUE(scale(0.1f, std::span<const float>(x), std::span<float>(out)).has_value());
    for (std::size_t i = 0; i < n; ++i) ASSERT_TRUE(same_float(out[i], 0.1f * x[i])) << i;
    ASSERT_TRUE(add(std::span<const float>(x), std::span<const float>(y), out).has_value());
    for (std::size_t i = 0; i < n; ++i) ASSERT_TRUE(same_float(out[i], x[i] + y[i])) << i;
    ASSERT_TRUE(mul(std::span<const float>(x), std::span<const float>(y), out).has_value());
    for (std::size_t i = 0; i < n; ++i) ASSERT_TRUE(same_float(out[i], x[i] * y[i])) << i;
    ASSERT_TRUE(
        fma(std::span<const float>(x), std::span<const float>(y), std::span<const float>(z), out)
            .has_value());
    for (std::size_t i = 0; i < n; ++i) {
      if (GetParam() == Level::scalar) {
        const double exact = double{x[i]} * y[i] + z[i];
        ASSERT_LE(std::fabs(out[i] - exact),
                  2 * kU32 * (std::fabs(double{x[i]} * y[i]) + std::fabs(z[i])));
      } else {
        ASSERT_TRUE(same_float(out[i], std::fmaf(x[i], y[i], z[i]))) << i;
      }
    }
    // In place (out == x) is allowed.
    std::vector<float> x0(x.data(), x.data() + n);
    ASSERT_TRUE(add(std::span<const float>(x), std::span<const float>(y), x).has_value());
    for (std::size_t i = 0; i < n; ++i) ASSERT_TRUE(same_float(x[i], x0[i] + y[i])) << i;
  });
}

TEST_P(Blas1, SumWithinBound) {
  for_shapes([&](std::size_t n, std::size_t off) {
    Buf<float> x(n, off);
    test::fill_uniform(x, rng_, -1, 3);
    double ref = 0, abs = 0;
    for (std::size_t i = 0; i < n; ++i) ref += x[i], abs += std::fabs(x[i]);
    auto r = sum(std::span<const float>(x));
    ASSERT_TRUE(r.has_value());
    EXPECT_LE(std::fabs(*r - ref), (n + 2) * kU32 * abs) << "n=" << n;
    Buf<double> xd(n, off);
    test::fill_uniform(xd, rng_, -1, 3);
    long double refd = 0, absd = 0;
    for (std::size_t i = 0; i < n; ++i) refd += xd[i], absd += std::fabs(xd[i]);
    auto rd = sum(std::span<const double>(xd));
    ASSERT_TRUE(rd.has_value());
    EXPECT_LE(std::fabs(*rd - refd), (n + 2) * kU64 * absd) << "n=" << n;
  });
}

TEST_P(Blas1, MaxMinArgmaxExact) {
  for_shapes([&](std::size_t n, std::size_t off) {
    if (n == 0) return;
    Buf<float> x(n, off);
    test::fill_uniform(x, rng_, -50, 50);
    std::size_t best = 0;
    for (std::size_t i = 1; i < n; ++i) {
      if (x[i] > x[best]) best = i;
    }
    x[n - 1 - (n / 3)] = x[best];  // a tie: argmax must return the first index
    if (n - 1 - (n / 3) < best) best = n - 1 - (n / 3);
    float lo = x[0];
    for (std::size_t i = 1; i < n; ++i) lo = std::min(lo, x[i]);
    EXPECT_EQ(*max(std::span<const float>(x)), x[best]);
    EXPECT_EQ(*min(std::span<const float>(x)), lo);
    EXPECT_EQ(*argmax(std::span<const float>(x)), best) << "n=" << n;
    // A NaN anywhere wins, and argmax reports the first NaN.
    const std::size_t at = n / 2;
    x[at] = std::numeric_limits<float>::quiet_NaN();
    if (n > 2) x[n - 1] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_TRUE(std::isnan(*max(std::span<const float>(x))));
    EXPECT_TRUE(std::isnan(*min(std::span<const float>(x))));
    EXPECT_EQ(*argmax(std::span<const float>(x)), at);
  });
}

TEST_P(Blas1, ArgmaxOfAllZerosAndInfinities) {
  for (std::size_t n : {1u, 5u, 17u, 33u}) {
    Buf<float> x(n, 1);
    for (std::size_t i = 0; i < n; ++i) x[i] = -std::numeric_limits<float>::infinity();
    EXPECT_EQ(*argmax(std::span<const float>(x)), 0u);
    EXPECT_EQ(*max(std::span<const float>(x)), -std::numeric_limits<float>::infinity());
    for (std::size_t i = 0; i < n; ++i) x[i] = 0.0f;
    EXPECT_EQ(*argmax(std::span<const float>(x)), 0u);
    x[n - 1] = std::numeric_limits<float>::infinity();
    EXPECT_EQ(*argmax(std::span<const float>(x)), n - 1);
  }
}

TEST_P(Blas1, L2NormWithinBoundAndNoOverflow) {
  for_shapes([&](std::size_t n, std::size_t off) {
    Buf<float> x(n, off);
    test::fill_uniform(x, rng_);
    double ss = 0;
    for (std::size_t i = 0; i < n; ++i) ss += double{x[i]} * x[i];
    const double ref = std::sqrt(ss);
    EXPECT_LE(std::fabs(*l2_norm(std::span<const float>(x)) - ref), 2 * kU32 * ref) << n;
    Buf<double> xd(n, off);
    test::fill_uniform(xd, rng_);
    long double ssd = 0;
    for (std::size_t i = 0; i < n; ++i) ssd += static_cast<long double>(xd[i]) * xd[i];
    const long double refd = std::sqrt(ssd);
    EXPECT_LE(std::fabs(*l2_norm(std::span<const double>(xd)) - refd), (n / 2.0 + 2) * kU64 * refd);
  });
  // Squares that overflow / underflow the element type.
  std::vector<float> big(37, 3e30f), tiny(37, 3e-30f);
  EXPECT_NEAR(*l2_norm(std::span<const float>(big)) / (3e30 * std::sqrt(37.0)), 1.0, 2 * kU32);
  EXPECT_NEAR(*l2_norm(std::span<const float>(tiny)) / (3e-30 * std::sqrt(37.0)), 1.0, 2 * kU32);
  std::vector<double> bigd(37, 3e200), tinyd(37, 3e-200), mixed{1e-300, 3e-310, 4e-300};
  EXPECT_NEAR(*l2_norm(std::span<const double>(bigd)) / (3e200 * std::sqrt(37.0)), 1.0, 40 * kU64);
  EXPECT_NEAR(*l2_norm(std::span<const double>(tinyd)) / (3e-200 * std::sqrt(37.0)), 1.0,
              40 * kU64);
  const long double mixed_ref = std::sqrt(1e-600L + 9e-620L + 16e-600L);
  EXPECT_NEAR(*l2_norm(std::span<const double>(mixed)) / mixed_ref, 1.0, 8 * kU64);
  std::vector<double> special{1.0, std::numeric_limits<double>::infinity(), 2.0};
  EXPECT_EQ(*l2_norm(std::span<const double>(special)), std::numeric_limits<double>::infinity());
  special[0] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(std::isnan(*l2_norm(std::span<const double>(special))));
  std::vector<float> specialf{1.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_TRUE(std::isnan(*l2_norm(std::span<const float>(specialf))));
  EXPECT_EQ(*l2_norm(std::span<const float>()), 0.0f);
}

// The f64 norm's overflow fallback scales by the largest |x_i|: wherever that element sits (every
// vector lane, body or tail, either sign), the result is that element's magnitude, not infinity.
TEST_P(Blas1, L2NormF64FallbackFindsTheLargestElementInEveryLane) {
  for (std::size_t n = 1; n <= 19; ++n) {
    for (std::size_t at = 0; at < n; ++at) {
      std::vector<double> x(n, 1.0);
      x[at] = at % 2 == 0 ? 1e300 : -1e300;  // its square overflows: the scaled path runs
      EXPECT_NEAR(*l2_norm(std::span<const double>(x)) / 1e300, 1.0, 4 * kU64)
          << "n=" << n << " at=" << at;
    }
  }
}

TEST_P(Blas1, CosineSimilarityWithinBound) {
  for_shapes([&](std::size_t n, std::size_t off) {
    Buf<float> x(n, off), y(n, off + 1);
    test::fill_uniform(x, rng_);
    test::fill_uniform(y, rng_);
    double xy = 0, xx = 0, yy = 0;
    for (std::size_t i = 0; i < n; ++i) {
      xy += double{x[i]} * y[i];
      xx += double{x[i]} * x[i];
      yy += double{y[i]} * y[i];
    }
    const double ref = (xx == 0 || yy == 0) ? 0.0 : xy / std::sqrt(xx * yy);
    auto r = cosine_similarity(std::span<const float>(x), std::span<const float>(y));
    ASSERT_TRUE(r.has_value());
    EXPECT_LE(std::fabs(*r - ref), (2 * n + 8) * kU32) << n;
    EXPECT_LE(std::fabs(*r), 1.0f);
  });
  std::vector<float> a(20, 0.5f), zero(20, 0.0f);
  EXPECT_EQ(*cosine_similarity(std::span<const float>(a), std::span<const float>(a)), 1.0f);
  EXPECT_EQ(*cosine_similarity(std::span<const float>(a), std::span<const float>(zero)), 0.0f);
}

TEST_P(Blas1, LengthMismatchAndEmptyInputsAreErrors) {
  std::vector<float> a(5), b(6);
  auto d = dot(std::span<const float>(a), std::span<const float>(b));
  ASSERT_FALSE(d.has_value());
  EXPECT_EQ(d.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(d.error().message().find("5 vs 6"), std::string::npos) << d.error().message();
  EXPECT_FALSE(axpy(1.0f, std::span<const float>(a), std::span<float>(b)).has_value());
  EXPECT_FALSE(add(std::span<const float>(a), std::span<const float>(a), b).has_value());
  EXPECT_FALSE(
      fma(std::span<const float>(a), std::span<const float>(a), std::span<const float>(b), a)
          .has_value());
  EXPECT_FALSE(cosine_similarity(std::span<const float>(a), std::span<const float>(b)).has_value());
  EXPECT_EQ(max(std::span<const float>()).error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(argmax(std::span<const float>()).error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(*dot(std::span<const float>(), std::span<const float>()), 0.0f);
  EXPECT_EQ(*sum(std::span<const double>()), 0.0);
}

// The message of a refused call: "<op>: <what> lengths differ (a vs b); pass spans of equal
// length", or "(no error)" when the call succeeded.
template <class T>
std::string error_of(const Result<T>& r) {
  return r ? std::string("(no error)") : r.error().message();
}

// Every kernel checks its lengths before touching memory (level-independent) and says which two
// arguments disagree; nothing is written to out.
TEST(Blas1Checks, EveryLengthMismatchNamesTheOperationAndTheArguments) {
  std::vector<float> f5(5, 1.0f), f6(6, 7.0f);
  std::vector<double> d5(5, 1.0), d6(6, 7.0);
  const auto cf = [](const std::vector<float>& v) { return std::span<const float>(v); };
  const auto cd = [](const std::vector<double>& v) { return std::span<const double>(v); };
  const std::string differ = " lengths differ (5 vs 6); pass spans of equal length";
  EXPECT_EQ(error_of(dot(cd(d5), cd(d6))), "dot: x and y" + differ);
  EXPECT_EQ(error_of(axpy(2.0, cd(d5), std::span<double>(d6))), "axpy: x and y" + differ);
  EXPECT_EQ(error_of(scale(2.0f, cf(f5), std::span<float>(f6))), "scale: x and out" + differ);
  EXPECT_EQ(error_of(add(cf(f5), cf(f5), std::span<float>(f6))), "add: x and out" + differ);
  EXPECT_EQ(error_of(add(cd(d5), cd(d6), std::span<double>(d5))), "add: x and y" + differ);
  EXPECT_EQ(error_of(add(cd(d5), cd(d5), std::span<double>(d6))), "add: x and out" + differ);
  EXPECT_EQ(error_of(mul(cf(f5), cf(f6), std::span<float>(f5))), "mul: x and y" + differ);
  EXPECT_EQ(error_of(mul(cf(f5), cf(f5), std::span<float>(f6))), "mul: x and out" + differ);
  EXPECT_EQ(error_of(fma(cf(f5), cf(f6), cf(f5), std::span<float>(f5))), "fma: x and y" + differ);
  EXPECT_EQ(error_of(fma(cf(f5), cf(f5), cf(f6), std::span<float>(f5))), "fma: x and z" + differ);
  EXPECT_EQ(error_of(fma(cf(f5), cf(f5), cf(f5), std::span<float>(f6))), "fma: x and out" + differ);
  EXPECT_EQ(f6, std::vector<float>(6, 7.0f)) << "a refused call writes nothing";
  EXPECT_EQ(d6, std::vector<double>(6, 7.0)) << "a refused call writes nothing";
  auto lo = min(std::span<const float>());
  ASSERT_FALSE(lo);
  EXPECT_EQ(lo.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(lo.error().message(), "min: empty input has no result; pass at least one element");
}

TEST_P(Blas1, NaNAndInfPropagateThroughReductions) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (std::size_t n : {1u, 7u, 16u, 64u, 100u}) {
    for (std::size_t at : {std::size_t{0}, n / 2, n - 1}) {
      std::vector<float> x(n, 1.0f), y(n, 2.0f);
      x[at] = nan;
      EXPECT_TRUE(std::isnan(*dot(std::span<const float>(x), std::span<const float>(y))));
      EXPECT_TRUE(std::isnan(*sum(std::span<const float>(x))));
      EXPECT_TRUE(
          std::isnan(*cosine_similarity(std::span<const float>(x), std::span<const float>(y))));
      x[at] = inf;
      EXPECT_EQ(*dot(std::span<const float>(x), std::span<const float>(y)), inf);
      EXPECT_EQ(*sum(std::span<const float>(x)), inf);
      EXPECT_EQ(*l2_norm(std::span<const float>(x)), inf);
      EXPECT_EQ(*max(std::span<const float>(x)), inf);
      EXPECT_EQ(*argmax(std::span<const float>(x)), at);
      y[at] = -inf;
      EXPECT_EQ(*dot(std::span<const float>(x), std::span<const float>(y)), -inf);
      ASSERT_TRUE(axpy(1.0f, std::span<const float>(y), std::span<float>(x)).has_value());
      EXPECT_TRUE(std::isnan(x[at]));  // inf + -inf
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, Blas1, ::testing::ValuesIn(test::available_levels()),
                         test::level_name);

// Property: at the detected level, dot and sum stay within their bounds for arbitrary vectors.
RC_GTEST_PROP(Blas1Property, DotAndSumWithinBound, ()) {
  const auto n = *rc::gen::inRange<std::size_t>(0, 300);
  const auto x = *rc::gen::container<std::vector<float>>(
      n, rc::gen::map(rc::gen::inRange(-1000000, 1000000), [](int v) { return v / 997.0f; }));
  const auto y = *rc::gen::container<std::vector<float>>(
      n, rc::gen::map(rc::gen::inRange(-1000000, 1000000), [](int v) { return v / 991.0f; }));
  double ref = 0, abs = 0, sref = 0, sabs = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ref += double{x[i]} * y[i];
    abs += std::fabs(double{x[i]} * y[i]);
    sref += x[i];
    sabs += std::fabs(x[i]);
  }
  RC_ASSERT(std::fabs(*dot(std::span<const float>(x), std::span<const float>(y)) - ref) <=
            (n + 2) * kU32 * abs);
  RC_ASSERT(std::fabs(*sum(std::span<const float>(x)) - sref) <= (n + 2) * kU32 * sabs);
}

}  // namespace
}  // namespace pepita::simd
