// Built-in kernels against CPU references, at sizes that are not multiples of the workgroup or
// tile sizes, and their size checks.

#include "pepita/gpu/builtins.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gpu_env.hpp"
#include "pepita/gpu/buffer.hpp"

namespace pepita::gpu {
namespace {

using test::env;

std::vector<float> random_floats(std::size_t n, std::uint32_t seed, float lo = -1.0f,
                                 float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

Buffer upload(const std::vector<float>& v) {
  auto b = Buffer::from<float>(*env().device, v);
  if (!b) {
    ADD_FAILURE() << b.error().to_string();
    std::abort();  // no Buffer to return; tests size their inputs so this cannot happen
  }
  return std::move(*b);
}

std::vector<float> download(const Buffer& b, std::size_t n) {
  std::vector<float> v(n);
  auto ok = b.download(std::span<float>(v));
  EXPECT_TRUE(ok) << ok.error().to_string();
  return v;
}

TEST(GpuBuiltins, VectorAddMatchesCpu) {
  PEPITA_REQUIRE_GPU();
  Builtins& lib = *env().builtins;
  for (std::size_t n : {1u, 255u, 257u, 10007u}) {
    auto a = random_floats(n, 1), b = random_floats(n, 2);
    Buffer ga = upload(a), gb = upload(b);
    auto gc = Buffer::create(*env().device, n * sizeof(float));
    ASSERT_TRUE(gc);
    auto ok = lib.vector_add(ga, gb, *gc, n);
    ASSERT_TRUE(ok) << ok.error().to_string();
    auto c = download(*gc, n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(c[i], a[i] + b[i]) << "n=" << n << " i=" << i;
  }
}

TEST(GpuBuiltins, SaxpyMatchesCpu) {
  PEPITA_REQUIRE_GPU();
  Builtins& lib = *env().builtins;
  const std::size_t n = 100003;
  auto x = random_floats(n, 3), y = random_floats(n, 4);
  Buffer gx = upload(x), gy = upload(y);
  ASSERT_TRUE(lib.saxpy(-2.5f, gx, gy, n));
  auto out = download(gy, n);
  // Fused or not is the driver's choice (GLSL fma need not be exact): one rounding of the product
  // is allowed, relative to the operands' magnitude (cancellation makes ulps of the result
  // useless).
  for (std::size_t i = 0; i < n; ++i) {
    float tol = 1.2e-7f * (std::fabs(2.5f * x[i]) + std::fabs(y[i]));
    ASSERT_NEAR(out[i], std::fma(-2.5f, x[i], y[i]), tol) << i;
  }
}

TEST(GpuBuiltins, SumAndMaxMatchCpu) {
  PEPITA_REQUIRE_GPU();
  Builtins& lib = *env().builtins;
  for (std::size_t n : {1u, 3u, 1000u, 65537u, 1000003u}) {
    auto x = random_floats(n, 5, -1.0f, 1.0f);
    Buffer gx = upload(x);
    double ref = 0, abs_sum = 0;
    for (float v : x) ref += v, abs_sum += std::fabs(v);
    auto s = lib.sum(gx, n);
    ASSERT_TRUE(s) << s.error().to_string();
    // Tree summation error bound: ~log2(n) u sum|x|, generously.
    EXPECT_NEAR(*s, ref, 1e-5 * abs_sum + 1e-6) << "n=" << n;
    auto m = lib.max(gx, n);
    ASSERT_TRUE(m);
    EXPECT_EQ(*m, *std::max_element(x.begin(), x.end())) << "n=" << n;
  }
  Buffer one = upload({-3.0f});
  auto empty = lib.sum(one, 0);
  ASSERT_TRUE(empty);
  EXPECT_EQ(*empty, 0.0f);
  EXPECT_FALSE(lib.max(one, 0));
}

TEST(GpuBuiltins, SoftmaxMatchesCpu) {
  PEPITA_REQUIRE_GPU();
  Builtins& lib = *env().builtins;
  for (auto [rows, cols] : {std::pair<std::size_t, std::size_t>{1, 1}, {3, 1000}, {37, 513}}) {
    auto x = random_floats(rows * cols, 6, -30.0f, 30.0f);
    x[0] = 88.0f;  // exp(88) overflows float without max subtraction
    Buffer gx = upload(x);
    auto gy = Buffer::create(*env().device, rows * cols * sizeof(float));
    ASSERT_TRUE(gy);
    auto ok = lib.softmax(gx, *gy, rows, cols);
    ASSERT_TRUE(ok) << ok.error().to_string();
    auto y = download(*gy, rows * cols);
    for (std::size_t r = 0; r < rows; ++r) {
      const float* xr = &x[r * cols];
      double m = *std::max_element(xr, xr + cols), s = 0;
      for (std::size_t c = 0; c < cols; ++c) s += std::exp(xr[c] - m);
      double row_sum = 0;
      for (std::size_t c = 0; c < cols; ++c) {
        double ref = std::exp(xr[c] - m) / s;
        ASSERT_NEAR(y[r * cols + c], ref, 1e-5 * ref + 1e-7) << r << "," << c;
        row_sum += y[r * cols + c];
      }
      EXPECT_NEAR(row_sum, 1.0, 1e-4);
    }
  }
}

void check_sgemm(Builtins& lib, std::size_t m, std::size_t n, std::size_t k, float alpha,
                 float beta) {
  // At least one element each: a zero-byte Buffer is an error (k == 0 case).
  auto a = random_floats(std::max<std::size_t>(m * k, 1), 7);
  auto b = random_floats(std::max<std::size_t>(k * n, 1), 8);
  auto c = random_floats(m * n, 9);
  Buffer ga = upload(a), gb = upload(b), gc = upload(c);
  auto ok = lib.sgemm(m, n, k, alpha, ga, gb, beta, gc);
  ASSERT_TRUE(ok) << ok.error().to_string();
  auto out = download(gc, m * n);
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      double ref = 0, mag = 0;
      for (std::size_t p = 0; p < k; ++p) {
        ref += static_cast<double>(a[i * k + p]) * b[p * n + j];
        mag += std::fabs(static_cast<double>(a[i * k + p]) * b[p * n + j]);
      }
      ref = alpha * ref + beta * c[i * n + j];
      // Dot-product bound (k + 2) u sum|a b|, u = 2^-24.
      double tol = (static_cast<double>(k) + 2) * 6e-8 *
                       (std::fabs(alpha) * mag + std::fabs(beta * c[i * n + j])) +
                   1e-6;
      ASSERT_NEAR(out[i * n + j], ref, tol) << m << "x" << n << "x" << k << " at " << i << "," << j;
    }
  }
}

TEST(GpuBuiltins, SgemmMatchesCpuAtOddSizes) {
  PEPITA_REQUIRE_GPU();
  for (SgemmKernel which : {SgemmKernel::Tiled, SgemmKernel::Direct}) {
    SCOPED_TRACE(which == SgemmKernel::Tiled ? "tiled" : "direct");
    auto lib = Builtins::create(*env().device, {.sgemm = which});
    ASSERT_TRUE(lib);
    check_sgemm(*lib, 1, 1, 1, 1.0f, 0.0f);
    check_sgemm(*lib, 65, 67, 17, 1.0f, 0.0f);    // one past the 64 tile, k one past the 16 step
    check_sgemm(*lib, 130, 33, 200, 0.5f, 2.0f);  // beta != 0 reads C
    check_sgemm(*lib, 7, 129, 0, 1.0f, 3.0f);     // k == 0: C = beta C
  }
}

TEST(GpuBuiltins, BetaZeroIgnoresNanInC) {
  PEPITA_REQUIRE_GPU();
  Builtins& lib = *env().builtins;  // the device's default (Auto) sgemm
  Buffer ga = upload({1, 2, 3, 4}), gb = upload({1, 0, 0, 1});
  Buffer gc = upload(std::vector<float>(4, std::nanf("")));
  ASSERT_TRUE(lib.sgemm(2, 2, 2, 1.0f, ga, gb, 0.0f, gc));
  EXPECT_EQ(download(gc, 4), (std::vector<float>{1, 2, 3, 4}));
}

TEST(GpuBuiltins, SgemmRefusesOverflowingShapesAndGridsOverTheDeviceLimit) {
  PEPITA_REQUIRE_GPU();
  Builtins& lib = *env().builtins;
  Buffer one = upload(std::vector<float>(1));
  auto wrap = lib.sgemm(SIZE_MAX, 1, 2, 1.0f, one, one, 0.0f, one);
  ASSERT_FALSE(wrap);
  EXPECT_EQ(wrap.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(wrap.error().message(), "gpu::Builtins::sgemm: m * k overflows");

  // One row of C wider than the device's workgroup count can cover (64 columns per group on
  // either kernel), with every buffer big enough: refused before any dispatch.
  const std::uint32_t max_x = env().device->info().max_group_count[0];
  const std::size_t n = std::size_t{max_x} * 64 + 1;
  if (n * sizeof(float) > env().device->info().max_storage_buffer_range)
    GTEST_SKIP() << "a " << n << "-float row is over this device's storage-buffer range";
  Buffer wide = upload(std::vector<float>(n));
  const std::uint64_t before = env().device->dispatch_count();
  auto grid = lib.sgemm(1, n, 1, 1.0f, one, wide, 0.0f, wide);
  ASSERT_FALSE(grid);
  EXPECT_EQ(grid.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(grid.error().message().find("gpu::Builtins::sgemm: 1 x " + std::to_string(n) +
                                        " needs " + std::to_string(max_x + 1u) +
                                        " x 1 "
                                        "workgroups, over the device limit; split C into blocks"),
            std::string::npos)
      << grid.error().message();
  EXPECT_EQ(env().device->dispatch_count(), before);
}

TEST(GpuBuiltins, MoveAssignedBuiltinsStillRun) {
  PEPITA_REQUIRE_GPU();
  auto a = Builtins::create(*env().device);
  auto b = Builtins::create(*env().device);
  ASSERT_TRUE(a && b);
  *a = std::move(*b);
  Buffer x = upload({1.0f, 2.0f, 3.0f}), y = upload({0.0f, 0.0f, 0.0f}),
         out = upload({9.0f, 9.0f, 9.0f});
  ASSERT_TRUE(a->vector_add(x, y, out, 3));
  EXPECT_EQ(download(out, 3), (std::vector<float>{1.0f, 2.0f, 3.0f}));
}

TEST(GpuBuiltins, SizeMismatchesAreErrors) {
  PEPITA_REQUIRE_GPU();
  Builtins& lib = *env().builtins;
  Buffer small = upload(std::vector<float>(10)), big = upload(std::vector<float>(100));
  auto r1 = lib.vector_add(big, small, big, 100);
  ASSERT_FALSE(r1);
  EXPECT_EQ(r1.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r1.error().message().find("'b'"), std::string::npos) << r1.error().message();
  EXPECT_FALSE(lib.saxpy(1.0f, small, big, 11));
  EXPECT_FALSE(lib.sum(small, 11));
  EXPECT_FALSE(lib.softmax(big, small, 10, 10));
  auto g = lib.sgemm(10, 10, 2, 1.0f, small, big, 0.0f, big);  // A needs 20 floats
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message().find("'a'"), std::string::npos);
  auto huge = lib.sgemm(1u << 20, 1u << 20, 1, 1.0f, big, big, 0.0f, big);
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code(), ErrorCode::InvalidArgument);
  auto wrap = lib.softmax(big, big, SIZE_MAX, 2);
  ASSERT_FALSE(wrap);
}

// Every operand is checked against the size its op reads or writes: a buffer one float short in
// any position is refused naming that operand, before anything is dispatched.
TEST(GpuBuiltins, EachOperandOneFloatShortIsRefusedByNameBeforeAnyDispatch) {
  PEPITA_REQUIRE_GPU();
  Builtins& lib = *env().builtins;
  constexpr std::size_t m = 3, n = 4, k = 5;
  Buffer fit = upload(std::vector<float>(m * n * k, 1.0f));  // large enough for any operand
  auto no_value = [](Result<float> r) -> Result<void> {
    if (!r) return std::unexpected(r.error());
    return {};
  };
  struct Case {
    const char* operand;
    std::size_t needs;
    std::function<Result<void>(Buffer&)> call;  // the short buffer in the operand's place
  };
  const std::vector<Case> cases = {
      {"'a'", n, [&](Buffer& s) { return lib.vector_add(s, fit, fit, n); }},
      {"'b'", n, [&](Buffer& s) { return lib.vector_add(fit, s, fit, n); }},
      {"'out'", n, [&](Buffer& s) { return lib.vector_add(fit, fit, s, n); }},
      {"'x'", n, [&](Buffer& s) { return lib.saxpy(2.0f, s, fit, n); }},
      {"'y'", n, [&](Buffer& s) { return lib.saxpy(2.0f, fit, s, n); }},
      {"'x'", n, [&](Buffer& s) { return no_value(lib.sum(s, n)); }},
      {"'x'", n, [&](Buffer& s) { return no_value(lib.max(s, n)); }},
      {"'in'", m * n, [&](Buffer& s) { return lib.softmax(s, fit, m, n); }},
      {"'out'", m * n, [&](Buffer& s) { return lib.softmax(fit, s, m, n); }},
      {"'a'", m * k, [&](Buffer& s) { return lib.sgemm(m, n, k, 1.0f, s, fit, 0.0f, fit); }},
      {"'b'", k * n, [&](Buffer& s) { return lib.sgemm(m, n, k, 1.0f, fit, s, 0.0f, fit); }},
      {"'c'", m * n, [&](Buffer& s) { return lib.sgemm(m, n, k, 1.0f, fit, fit, 0.0f, s); }},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    Buffer exact = upload(std::vector<float>(c.needs, 1.0f));
    ASSERT_TRUE(c.call(exact)) << "case " << i << ": " << c.operand << " of exactly its size";
    Buffer shy = upload(std::vector<float>(c.needs - 1, 7.0f));
    const auto before = env().device->dispatch_count();
    auto r = c.call(shy);
    ASSERT_FALSE(r) << "case " << i << ": " << c.operand << " one float short";
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument) << "case " << i;
    EXPECT_NE(r.error().message().find(c.operand), std::string::npos)
        << "case " << i << ": " << r.error().message();
    EXPECT_NE(r.error().message().find("needs " + std::to_string(c.needs)), std::string::npos)
        << "case " << i << ": " << r.error().message();
    EXPECT_EQ(env().device->dispatch_count(), before) << "case " << i;
    EXPECT_EQ(download(shy, c.needs - 1), std::vector<float>(c.needs - 1, 7.0f)) << "case " << i;
  }
}

}  // namespace
}  // namespace pepita::gpu
