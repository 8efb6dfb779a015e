// transpose (blocked; AVX-512 16x16 and AVX2 8x8 register tiles) and the f64 add at every
// dispatch level this CPU runs, against naive loops: every shape up to 40 x 40 (all tile edge
// cases), large ragged ones, random shapes (rapidcheck), whole tiles between inaccessible pages,
// and the argument checks. Also the crate's SimdCapabilities / SimdOps / MatrixOps names.

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/child.hpp"
#include "pepita/simd/kernels.hpp"
#include "pepita/simd/ops.hpp"
#include "simd_test_util.hpp"

namespace pepita::simd {
namespace {

using test::Buf;

std::vector<float> naive_transpose(const std::vector<float>& x, std::size_t rows,
                                   std::size_t cols) {
  std::vector<float> out(rows * cols);
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j) out[j * rows + i] = x[i * cols + j];
  return out;
}

// Distinct values (the index, exactly representable) so any misplaced element shows up.
std::vector<float> iota_matrix(std::size_t rows, std::size_t cols) {
  std::vector<float> x(rows * cols);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) + 0.5f;
  return x;
}

// n floats that end exactly where an inaccessible page begins, so touching one element past them
// faults even without ASan (whose heap redzones Buf relies on).
class GuardedFloats {
 public:
  explicit GuardedFloats(std::size_t n) : n_(n) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    data_bytes_ = (n * sizeof(float) + page - 1) / page * page;
    map_bytes_ = data_bytes_ + page;
    void* p =
        ::mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    base_ = static_cast<char*>(p);
    if (::mprotect(base_ + data_bytes_, page, PROT_NONE) != 0) {
      ::munmap(base_, map_bytes_);
      base_ = nullptr;
    }
  }
  ~GuardedFloats() {
    if (base_ != nullptr) ::munmap(base_, map_bytes_);
  }
  GuardedFloats(const GuardedFloats&) = delete;
  GuardedFloats& operator=(const GuardedFloats&) = delete;
  bool ok() const { return base_ != nullptr; }
  std::span<float> span() {
    return {static_cast<float*>(static_cast<void*>(base_ + data_bytes_)) - n_, n_};
  }

 private:
  std::size_t n_;
  std::size_t data_bytes_ = 0;
  std::size_t map_bytes_ = 0;
  char* base_ = nullptr;
};

class Transpose : public ::testing::TestWithParam<Level> {
 protected:
  test::LevelGuard guard_{GetParam()};

  void expect_matches_naive(std::size_t rows, std::size_t cols) {
    const auto x = iota_matrix(rows, cols);
    // One sentinel past the end catches a write beyond rows * cols.
    std::vector<float> out(rows * cols + 1, -1.0f);
    ASSERT_TRUE(transpose(x, rows, cols, std::span<float>(out.data(), rows * cols)).has_value());
    const auto want = naive_transpose(x, rows, cols);
    for (std::size_t i = 0; i < want.size(); ++i)
      ASSERT_EQ(out[i], want[i]) << rows << " x " << cols << " element " << i;
    EXPECT_EQ(out.back(), -1.0f) << rows << " x " << cols << ": wrote past the end";
  }
};

TEST_P(Transpose, EveryShapeUpTo40x40MatchesNaive) {
  for (std::size_t rows = 0; rows <= 40; ++rows)
    for (std::size_t cols = 0; cols <= 40; ++cols) expect_matches_naive(rows, cols);
}

// Whole tiles only (every register-tile kernel runs, no ragged edge): each matrix ends at an
// inaccessible page, so a tile that loads or stores one row too many faults. In a child, so a
// fault fails this test instead of ending the run.
TEST_P(Transpose, TilesTouchNothingPastEitherMatrix) {
  for (auto [rows, cols] : std::vector<std::pair<std::size_t, std::size_t>>{
           {8, 8}, {16, 8}, {8, 16}, {16, 16}, {32, 48}, {48, 32}}) {
    const auto code = pepita::test::run_forked([rows, cols] {
      const auto x = iota_matrix(rows, cols);
      GuardedFloats in(rows * cols), out(rows * cols);
      ASSERT_TRUE(in.ok() && out.ok());
      std::copy(x.begin(), x.end(), in.span().begin());
      ASSERT_TRUE(transpose(std::span<const float>(in.span()), rows, cols, out.span()).has_value());
      const auto got = out.span();
      EXPECT_TRUE(std::equal(got.begin(), got.end(), naive_transpose(x, rows, cols).begin()));
    });
    EXPECT_EQ(code, 0) << rows << " x " << cols << " (128 + 11: a fault past a matrix)";
  }
}

TEST_P(Transpose, LargeAndRaggedShapesMatchNaive) {
  for (auto [r, c] : std::vector<std::pair<std::size_t, std::size_t>>{
           {1, 5000}, {5000, 1}, {64, 64}, {128, 256}, {257, 129}, {1000, 999}, {17, 1025}})
    expect_matches_naive(r, c);
}

TEST_P(Transpose, TwiceIsIdentityForRandomShapes) {
  const bool ok = rc::check("transpose twice", [] {
    const auto rows = *rc::gen::inRange<std::size_t>(0, 300);
    const auto cols = *rc::gen::inRange<std::size_t>(0, 300);
    std::vector<float> x(rows * cols);
    std::mt19937 rng(static_cast<unsigned>(rows * 1000 + cols));
    std::uniform_real_distribution<float> d(-1e6f, 1e6f);
    for (auto& v : x) v = d(rng);
    std::vector<float> t(x.size());
    std::vector<float> back(x.size());
    RC_ASSERT(transpose(x, rows, cols, t).has_value());
    RC_ASSERT(t == naive_transpose(x, rows, cols));
    RC_ASSERT(transpose(t, cols, rows, back).has_value());
    RC_ASSERT(back == x);
  });
  EXPECT_TRUE(ok);
}

TEST_P(Transpose, NanAndSignedZeroMoveBitForBit) {
  std::vector<float> x = {std::numeric_limits<float>::quiet_NaN(), -0.0f, 1.0f, -2.0f, 3.0f,
                          std::numeric_limits<float>::infinity()};
  std::vector<float> out(6);
  ASSERT_TRUE(transpose(x, 2, 3, out).has_value());
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_TRUE(std::signbit(out[2]));  // x[0][1] = -0 lands at out[1][0]
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[5], std::numeric_limits<float>::infinity());
}

TEST_P(Transpose, AddF64MatchesExactSumsAtEveryLength) {
  std::mt19937_64 rng(7);
  for (std::size_t n : test::test_lengths()) {
    Buf<double> x(n, 1), y(n, 3), out(n, 0);
    test::fill_uniform(x, rng, -1e3, 1e3);
    test::fill_uniform(y, rng, -1e3, 1e3);
    ASSERT_TRUE(add(std::span<const double>(x), std::span<const double>(y), std::span<double>(out))
                    .has_value());
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], x[i] + y[i]) << "n " << n << " i " << i;
    // In place (out == x) is allowed.
    ASSERT_TRUE(add(std::span<const double>(x), std::span<const double>(y), std::span<double>(x))
                    .has_value());
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(x[i], out[i]);
  }
}

INSTANTIATE_TEST_SUITE_P(Levels, Transpose, ::testing::ValuesIn(test::available_levels()),
                         test::level_name);

TEST(TransposeArgs, WrongSizesAndOverlapAreRefusedNamingTheOperand) {
  std::vector<float> x(12);
  std::vector<float> out(12);
  auto bad_x = transpose(std::span<const float>(x.data(), 11), 3, 4, out);
  ASSERT_FALSE(bad_x.has_value());
  EXPECT_EQ(bad_x.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(bad_x.error().message().find("x holds 11"), std::string::npos);
  auto bad_out = transpose(x, 3, 4, std::span<float>(out.data(), 10));
  ASSERT_FALSE(bad_out.has_value());
  EXPECT_NE(bad_out.error().message().find("out holds 10"), std::string::npos);
  auto overlap = transpose(x, 3, 4, x);
  ASSERT_FALSE(overlap.has_value());
  EXPECT_NE(overlap.error().message().find("overlaps"), std::string::npos);
  auto overflow = transpose(x, std::size_t{1} << 40, std::size_t{1} << 40, out);
  ASSERT_FALSE(overflow.has_value());
  EXPECT_NE(overflow.error().message().find("overflows"), std::string::npos);
  std::vector<double> a(3), b(4), c(3);
  auto mismatch = add(std::span<const double>(a), std::span<const double>(b), std::span<double>(c));
  ASSERT_FALSE(mismatch.has_value());
  EXPECT_EQ(mismatch.error().code(), ErrorCode::InvalidArgument);
}

TEST(SimdCrateNames, CapabilitiesDescribeTheActiveLevel) {
  for (Level level : test::available_levels()) {
    test::LevelGuard guard(level);
    const auto caps = SimdCapabilities::detect();
    EXPECT_EQ(caps.level, level);
    EXPECT_EQ(caps.has_simd(), level != Level::scalar);
    const std::uint32_t bits = level == Level::avx512 ? 512 : level == Level::avx2 ? 256 : 64;
    EXPECT_EQ(caps.best_vector_width(), bits);
    EXPECT_EQ(caps.best_f32_width(), bits / 32);
    EXPECT_EQ(caps.best_f64_width(), bits / 64);
    const std::string want = level == Level::avx512 ? "AVX-512"
                             : level == Level::avx2 ? "AVX2"
                                                    : "Scalar";
    EXPECT_EQ(caps.description(), want);
  }
  EXPECT_EQ(SimdCapabilities::detect().features.avx512f, cpu_features().avx512f);
}

TEST(SimdCrateNames, SimdOpsComputeAndCheckLengths) {
  SimdOps ops = SimdOps::with_caps(SimdCapabilities::detect());
  std::vector<float> a = {1, 2, 3}, b = {4, 5, 6}, c(3);
  ASSERT_TRUE(ops.vadd_f32(a, b, c).has_value());
  EXPECT_EQ(c, (std::vector<float>{5, 7, 9}));
  ASSERT_TRUE(ops.vmul_f32(a, b, c).has_value());
  EXPECT_EQ(c, (std::vector<float>{4, 10, 18}));
  EXPECT_EQ(ops.dot_f32(a, b).value(), 32.0f);
  std::vector<double> da = {0.5, 1.5}, db = {2, 3}, dc(2);
  ASSERT_TRUE(ops.vadd_f64(da, db, dc).has_value());
  EXPECT_EQ(dc, (std::vector<double>{2.5, 4.5}));
  EXPECT_FALSE(ops.vadd_f32(a, std::span<const float>(b.data(), 2), c).has_value());
}

TEST(SimdCrateNames, MatrixOpsMultiplyAndTranspose) {
  MatrixOps mat;
  // [1 2 3; 4 5 6] * [7 8; 9 10; 11 12] = [58 64; 139 154]
  std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = {7, 8, 9, 10, 11, 12}, c(4, -1.0f);
  ASSERT_TRUE(mat.matmul_f32(a, b, c, 2, 3, 2).has_value());
  EXPECT_EQ(c, (std::vector<float>{58, 64, 139, 154}));
  std::vector<float> t(6);
  ASSERT_TRUE(mat.transpose_f32(a, t, 2, 3).has_value());
  EXPECT_EQ(t, (std::vector<float>{1, 4, 2, 5, 3, 6}));
  auto bad = mat.matmul_f32(a, b, c, 2, 3, 3);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(bad.error().message().find("b holds 6"), std::string::npos) << bad.error().message();
}

}  // namespace
}  // namespace pepita::simd
