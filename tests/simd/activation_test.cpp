// softmax, relu, gelu, layer norm and the quantised dots (int8, bf16) at every dispatch level,
// every length 0..130 plus large ones, against f64 / exact integer references and the bounds in
// kernels.hpp; NaN / inf behaviour as documented.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "pepita/simd/kernels.hpp"
#include "simd_test_util.hpp"

namespace pepita::simd {
namespace {

using test::Buf;
using test::kU32;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

class Activations : public ::testing::TestWithParam<Level> {
 protected:
  test::LevelGuard guard_{GetParam()};
  std::mt19937_64 rng_{0xac7 + static_cast<unsigned>(GetParam())};

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

TEST_P(Activations, SoftmaxWithinBound) {
  for_shapes([&](std::size_t n, std::size_t off) {
    if (n == 0) return;
    Buf<float> x(n, off), out(n, off + 1);
    test::fill_uniform(x, rng_, -30, 30);
    if (n > 3) x[2] = -200.0f;  // exp underflows to 0 relative to the max
    double m = x[0];
    for (std::size_t i = 0; i < n; ++i) m = std::max(m, double{x[i]});
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
    ASSERT_TRUE(softmax(std::span<const float>(x), out).has_value());
    double total = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double ref = std::exp(x[i] - m) / s;
      const double bound = (n + 16 + 2 * std::fabs(x[i] - m)) * kU32 * ref + 0x1p-126;
      ASSERT_LE(std::fabs(out[i] - ref), bound) << "n=" << n << " i=" << i << " x=" << x[i];
      total += out[i];
    }
    EXPECT_NEAR(total, 1.0, (n + 20) * kU32);
    // In place.
    ASSERT_TRUE(softmax(std::span<const float>(x), x).has_value());
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(x[i], out[i]);
  });
}

TEST_P(Activations, SoftmaxSpecialValues) {
  for (std::size_t n : {1u, 7u, 16u, 33u}) {
    std::vector<float> x(n, 1.0f), out(n);
    x[n / 2] = kNaN;
    ASSERT_TRUE(softmax(std::span<const float>(x), out).has_value());
    for (float v : out) EXPECT_TRUE(std::isnan(v));
    std::fill(x.begin(), x.end(), -kInf);
    ASSERT_TRUE(softmax(std::span<const float>(x), out).has_value());
    for (float v : out) EXPECT_TRUE(std::isnan(v));
    std::fill(x.begin(), x.end(), 1e30f);  // huge but finite: stable, uniform
    ASSERT_TRUE(softmax(std::span<const float>(x), out).has_value());
    for (float v : out) EXPECT_NEAR(v, 1.0 / n, 4 * n * kU32);
    x[0] = -kInf;  // -inf with finite others: exactly 0
    ASSERT_TRUE(softmax(std::span<const float>(x), out).has_value());
    if (n > 1) {
      EXPECT_EQ(out[0], 0.0f);
    }
  }
  std::vector<float> empty, out;
  EXPECT_EQ(softmax(std::span<const float>(empty), out).error().code(), ErrorCode::InvalidArgument);
}

TEST_P(Activations, ReluExactAndPassesNaN) {
  for_shapes([&](std::size_t n, std::size_t off) {
    Buf<float> x(n, off), out(n, off + 2);
    test::fill_uniform(x, rng_, -5, 5);
    if (n > 2) x[1] = kNaN;
    if (n > 3) x[2] = -0.0f;
    ASSERT_TRUE(relu(std::span<const float>(x), out).has_value());
    for (std::size_t i = 0; i < n; ++i) {
      if (std::isnan(x[i])) {
        ASSERT_TRUE(std::isnan(out[i]));
      } else {
        const float want = x[i] < 0 ? 0.0f : x[i];
        ASSERT_EQ(out[i], want);
        ASSERT_EQ(std::signbit(out[i]), std::signbit(want)) << i;
      }
    }
  });
}

// 0.5 x (1 + tanh(y)) == x / (1 + exp(-2y)); the second form has no cancellation for x << 0,
// where 1 + tanh(y) loses every digit even in f64.
double gelu_ref(double x) {
  const double y = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
  return x / (1.0 + std::exp(-2.0 * y));
}

TEST(GeluReference, MatchesTheTanhFormWhereThatIsAccurate) {
  for (double x : {-2.0, -0.5, 0.1, 1.0, 3.0}) {
    const double tanh_form =
        0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    EXPECT_NEAR(gelu_ref(x), tanh_form, 1e-14);
  }
}

TEST_P(Activations, GeluWithinBound) {
  for_shapes([&](std::size_t n, std::size_t off) {
    Buf<float> x(n, off), out(n, off + 1);
    test::fill_uniform(x, rng_, -12, 12);
    ASSERT_TRUE(gelu(std::span<const float>(x), out).has_value());
    for (std::size_t i = 0; i < n; ++i) {
      const double v = x[i];
      const double z = 2 * std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v);
      const double ref = gelu_ref(v);
      ASSERT_LE(std::fabs(out[i] - ref), (16 + 4 * std::fabs(z)) * kU32 * std::fabs(ref) + 0x1p-120)
          << "x=" << v;
    }
  });
  std::vector<float> special{kInf, -kInf, kNaN, 0.0f, -0.0f, 1e-30f, 40.0f, -40.0f};
  std::vector<float> out(special.size());
  ASSERT_TRUE(gelu(std::span<const float>(special), out).has_value());
  EXPECT_EQ(out[0], kInf);
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_TRUE(std::isnan(out[2]));
  EXPECT_EQ(out[3], 0.0f);
  EXPECT_EQ(out[4], 0.0f);
  EXPECT_NEAR(out[5], 0.5e-30f, 1e-37f);
  EXPECT_EQ(out[6], 40.0f);
  EXPECT_EQ(out[7], 0.0f);
}

TEST_P(Activations, LayerNormWithinBound) {
  for_shapes([&](std::size_t n, std::size_t off) {
    if (n == 0) return;
    Buf<float> x(n, off), g(n, off + 1), b(n, off + 2), out(n, off + 3);
    test::fill_uniform(x, rng_, 2, 5);  // mean far from 0: exercises the two-pass variance
    test::fill_uniform(g, rng_, 0.5, 1.5);
    test::fill_uniform(b, rng_, -1, 1);
    const float eps = 1e-5f;
    double mean = 0;
    for (std::size_t i = 0; i < n; ++i) mean += x[i];
    mean /= static_cast<double>(n);
    double var = 0, big = 0;
    for (std::size_t i = 0; i < n; ++i) {
      var += (x[i] - mean) * (x[i] - mean);
      big = std::max(big, std::fabs(double{x[i]}));
    }
    var /= static_cast<double>(n);
    const double sigma = std::sqrt(var + eps);
    for (bool affine : {true, false}) {
      std::span<const float> gs = affine ? std::span<const float>(g) : std::span<const float>();
      std::span<const float> bs = affine ? std::span<const float>(b) : std::span<const float>();
      ASSERT_TRUE(layer_norm(std::span<const float>(x), gs, bs, eps, out).has_value());
      for (std::size_t i = 0; i < n; ++i) {
        const double gi = affine ? g[i] : 1.0, bi = affine ? b[i] : 0.0;
        const double ref = (x[i] - mean) / sigma * gi + bi;
        const double bound =
            (n + 16) * kU32 * (std::fabs(gi) * (1 + 2 * big / sigma) + std::fabs(bi));
        ASSERT_LE(std::fabs(out[i] - ref), bound) << "n=" << n << " i=" << i;
      }
    }
  });
  std::vector<float> x(4, 1.0f), out(4), g3(3);
  EXPECT_EQ(layer_norm(std::span<const float>(x), {}, {}, -1.0f, out).error().code(),
            ErrorCode::InvalidArgument);
  EXPECT_FALSE(layer_norm(std::span<const float>(x), {}, {}, kNaN, out).has_value());
  EXPECT_FALSE(layer_norm(std::span<const float>(x), std::span<const float>(g3), {}, 0, out));
  EXPECT_FALSE(layer_norm(std::span<const float>(), {}, {}, 0, std::span<float>()).has_value());
  // Constant input with eps = 0 divides 0 by 0: NaN, not a crash.
  ASSERT_TRUE(layer_norm(std::span<const float>(x), {}, {}, 0.0f, out).has_value());
  EXPECT_TRUE(std::isnan(out[0]));
}

TEST_P(Activations, DotI8Exact) {
  std::uniform_int_distribution<int> d(-128, 127);
  for_shapes([&](std::size_t n, std::size_t off) {
    Buf<std::int8_t> x(n, off), y(n, off + 1);
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = static_cast<std::int8_t>(d(rng_));
      y[i] = static_cast<std::int8_t>(d(rng_));
    }
    if (n > 3) x[1] = y[1] = -128;  // the extremes, where u8/s8 tricks go wrong
    if (n > 3) x[2] = 127, y[2] = -128;
    std::int64_t exact = 0;
    for (std::size_t i = 0; i < n; ++i) exact += std::int64_t{x[i]} * y[i];
    auto r = dot_i8(std::span<const std::int8_t>(x), std::span<const std::int8_t>(y));
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(*r, exact) << "n=" << n;
  });
  // Past 2^31 the sum wraps modulo 2^32, identically on every level.
  const std::size_t n = 200003;
  std::vector<std::int8_t> a(n, -128), b(n, -128);
  const auto want = static_cast<std::int32_t>(static_cast<std::uint32_t>(n) * 16384u);
  EXPECT_EQ(*dot_i8(std::span<const std::int8_t>(a), std::span<const std::int8_t>(b)), want);
}

TEST_P(Activations, DotBf16WithinBound) {
  for_shapes([&](std::size_t n, std::size_t off) {
    Buf<Bf16> x(n, off), y(n, off + 1);
    std::uniform_real_distribution<float> d(-2, 2);
    double ref = 0, abs = 0;
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = to_bf16(d(rng_));
      y[i] = to_bf16(d(rng_));
      ref += double{to_float(x[i])} * to_float(y[i]);
      abs += std::fabs(double{to_float(x[i])} * to_float(y[i]));
    }
    auto r = dot_bf16(std::span<const Bf16>(x), std::span<const Bf16>(y));
    ASSERT_TRUE(r.has_value());
    EXPECT_LE(std::fabs(*r - ref), (n + 2) * kU32 * abs + n * 0x1p-126) << "n=" << n;
  });
}

// The activation and quantised kernels check lengths before touching memory (level-independent)
// and name the two arguments that disagree; nothing is written to out.
TEST(ActivationChecks, EveryLengthMismatchNamesTheOperationAndTheArguments) {
  const std::vector<float> x(5, 1.0f), gamma(5, 1.0f), beta6(6, 0.0f);
  std::vector<float> out6(6, 7.0f);
  const std::string differ = " lengths differ (5 vs 6); pass spans of equal length";
  const auto msg = [](const Result<void>& r) {
    return r ? std::string("(no error)") : r.error().message();
  };
  EXPECT_EQ(msg(softmax(x, out6)), "softmax: x and out" + differ);
  EXPECT_EQ(msg(relu(x, out6)), "relu: x and out" + differ);
  EXPECT_EQ(msg(gelu(x, out6)), "gelu: x and out" + differ);
  EXPECT_EQ(msg(layer_norm(x, gamma, {}, 1e-5f, out6)), "layer_norm: x and out" + differ);
  std::vector<float> out5(5, 7.0f);
  EXPECT_EQ(msg(layer_norm(x, gamma, beta6, 1e-5f, out5)), "layer_norm: x and beta" + differ);
  EXPECT_EQ(out6, std::vector<float>(6, 7.0f)) << "a refused call writes nothing";
  EXPECT_EQ(out5, std::vector<float>(5, 7.0f)) << "a refused call writes nothing";

  const std::vector<std::int8_t> i5(5, 1), i6(6, 1);
  auto di = dot_i8(i5, i6);
  ASSERT_FALSE(di);
  EXPECT_EQ(di.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(di.error().message(), "dot_i8: x and y" + differ);
  const std::vector<Bf16> b5(5, to_bf16(1.0f)), b6(6, to_bf16(1.0f));
  auto db = dot_bf16(b5, b6);
  ASSERT_FALSE(db);
  EXPECT_EQ(db.error().message(), "dot_bf16: x and y" + differ);
}

TEST(Bf16, ConversionRoundsToNearestEven) {
  EXPECT_EQ(to_bf16(1.0f).bits, 0x3F80);
  EXPECT_EQ(to_float(Bf16{0x3F80}), 1.0f);
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to even (1).
  EXPECT_EQ(to_bf16(1.0f + 0x1p-8f).bits, 0x3F80);
  EXPECT_EQ(to_bf16(1.0f + 0x1p-8f + 0x1p-20f).bits, 0x3F81);
  EXPECT_EQ(to_bf16(-2.5f).bits, 0xC020);
  EXPECT_TRUE(std::isnan(to_float(to_bf16(kNaN))));
  EXPECT_EQ(to_float(to_bf16(std::numeric_limits<float>::max())), kInf);
  EXPECT_EQ(to_float(to_bf16(-kInf)), -kInf);
}

INSTANTIATE_TEST_SUITE_P(Levels, Activations, ::testing::ValuesIn(test::available_levels()),
                         test::level_name);

}  // namespace
}  // namespace pepita::simd
