// Dispatch: detection agrees with the kernel's view of the CPU (/proc/cpuinfo), every level up to
// the detected one can be forced, higher ones and bad PEPITA_SIMD values are clean errors.

#include "pepita/simd/dispatch.hpp"

#include <gtest/gtest.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "simd_test_util.hpp"

namespace pepita::simd {
namespace {

std::set<std::string> cpuinfo_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string w; words >> w;) flags.insert(w);
    return flags;
  }
  return {};
}

TEST(Dispatch, DetectionMatchesProcCpuinfo) {
  const auto flags = cpuinfo_flags();
  if (flags.empty()) GTEST_SKIP() << "/proc/cpuinfo has no flags line (not x86 Linux?)";
  const CpuFeatures& f = cpu_features();
  // The kernel lists a flag only when it also enabled the state (XCR0), like our probe.
  EXPECT_EQ(f.avx2, flags.count("avx2") == 1);
  EXPECT_EQ(f.fma, flags.count("fma") == 1);
  EXPECT_EQ(f.avx512f, flags.count("avx512f") == 1);
  EXPECT_EQ(f.avx512bw, flags.count("avx512bw") == 1);
  EXPECT_EQ(f.avx512vl, flags.count("avx512vl") == 1);
  EXPECT_EQ(f.avx512_vnni, flags.count("avx512_vnni") == 1);
  EXPECT_EQ(f.avx512_bf16, flags.count("avx512_bf16") == 1);
  const bool has512 = flags.count("avx512f") && flags.count("avx512bw") && flags.count("avx512vl");
  const bool has2 = flags.count("avx2") && flags.count("fma");
  const Level want = has512 && has2 ? Level::avx512 : has2 ? Level::avx2 : Level::scalar;
  EXPECT_EQ(detected_level(), want);
}

TEST(Dispatch, EveryAvailableLevelCanBeForced) {
  for (Level l : test::available_levels()) {
    ASSERT_TRUE(set_level(l).has_value());
    EXPECT_EQ(active_level(), l);
    EXPECT_EQ(level_summary().rfind(std::string(to_string(l)), 0), 0u) << level_summary();
  }
  reset_level();
  EXPECT_EQ(active_level(), detected_level());
}

// Every level is accepted exactly when the CPU runs it; a level above the CPU is refused and leaves
// the active level as it was (on an AVX-512 host nothing is above: all three are accepted).
TEST(Dispatch, LevelIsForcedOnlyWhenTheCpuRunsIt) {
  for (Level l : {Level::scalar, Level::avx2, Level::avx512}) {
    reset_level();
    auto r = set_level(l);
    if (l <= detected_level()) {
      ASSERT_TRUE(r.has_value()) << to_string(l) << ": " << r.error().to_string();
      EXPECT_EQ(active_level(), l);
    } else {
      ASSERT_FALSE(r.has_value()) << to_string(l);
      EXPECT_EQ(r.error().code(), ErrorCode::Unsupported);
      EXPECT_EQ(active_level(), detected_level());
    }
  }
  reset_level();
}

// level_of on synthetic feature sets (this CPU has only one): a level needs every feature it
// names, AVX-512 also AVX2 and FMA, and the extensions (VNNI, BF16, DQ, F16C) raise nothing.
TEST(Dispatch, LevelOfNeedsEveryFeatureOfTheLevel) {
  EXPECT_EQ(level_of(CpuFeatures{}), Level::scalar);
  const CpuFeatures avx2{.avx2 = true, .fma = true};
  EXPECT_EQ(level_of(avx2), Level::avx2);
  const CpuFeatures avx512{
      .avx2 = true, .fma = true, .avx512f = true, .avx512bw = true, .avx512vl = true};
  EXPECT_EQ(level_of(avx512), Level::avx512);
  for (bool CpuFeatures::*avx2_part : {&CpuFeatures::avx2, &CpuFeatures::fma}) {
    CpuFeatures f = avx2;
    f.*avx2_part = false;
    EXPECT_EQ(level_of(f), Level::scalar) << "AVX2 or FMA alone";
    f = avx512;
    f.*avx2_part = false;
    EXPECT_EQ(level_of(f), Level::scalar) << "AVX-512 without AVX2 or FMA";
  }
  for (bool CpuFeatures::*avx512_part :
       {&CpuFeatures::avx512f, &CpuFeatures::avx512bw, &CpuFeatures::avx512vl}) {
    CpuFeatures f = avx512;
    f.*avx512_part = false;
    EXPECT_EQ(level_of(f), Level::avx2) << "AVX-512 with one of F, BW, VL missing";
  }
  const CpuFeatures extensions{
      .f16c = true, .avx512dq = true, .avx512_vnni = true, .avx512_bf16 = true};
  EXPECT_EQ(level_of(extensions), Level::scalar);
  EXPECT_EQ(detected_level(), level_of(cpu_features()));
}

TEST(Dispatch, ParseLevel) {
  EXPECT_EQ(*parse_level("scalar"), Level::scalar);
  EXPECT_EQ(*parse_level("avx2"), Level::avx2);
  EXPECT_EQ(*parse_level("avx512"), Level::avx512);
  for (const char* bad : {"", "AVX2", "sse", "avx512 ", "neon"}) {
    auto r = parse_level(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(r.error().message().find("scalar, avx2 or avx512"), std::string::npos);
  }
  for (Level l : {Level::scalar, Level::avx2, Level::avx512}) {
    EXPECT_EQ(*parse_level(to_string(l)), l) << "to_string and parse_level round-trip";
  }
  EXPECT_EQ(to_string(static_cast<Level>(9)), "unknown") << "a value outside the enum";
}

TEST(Dispatch, EnvironmentVariable) {
  ASSERT_EQ(setenv("PEPITA_SIMD", "scalar", 1), 0);
  auto r = init_level_from_env();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(active_level(), Level::scalar);
  if (detected_level() != Level::scalar) {
    EXPECT_NE(level_summary().find("PEPITA_SIMD"), std::string::npos) << level_summary();
  }
  ASSERT_EQ(setenv("PEPITA_SIMD", "bogus", 1), 0);
  auto bad = init_level_from_env();
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(bad.error().message().find("PEPITA_SIMD"), std::string::npos);
  EXPECT_EQ(active_level(), Level::scalar);  // unchanged on error
  if (detected_level() < Level::avx512) {
    ASSERT_EQ(setenv("PEPITA_SIMD", "avx512", 1), 0);
    auto high = init_level_from_env();
    ASSERT_FALSE(high.has_value());
    EXPECT_EQ(high.error().code(), ErrorCode::Unsupported);
  }
  ASSERT_EQ(unsetenv("PEPITA_SIMD"), 0);
  ASSERT_EQ(*init_level_from_env(), detected_level());
  EXPECT_EQ(active_level(), detected_level());
}

// Child half of StartUpEnvironment: prints the summary the process started with. Only
// StartUpEnvironment runs it (CTest does not register it: src/simd/CMakeLists.txt).
TEST(Dispatch, ChildPrintsSummary) {
  if (std::getenv("PEPITA_SIMD_TEST_CHILD") == nullptr) GTEST_SKIP() << "only run as a child";
  std::printf("SUMMARY<<%s>>\n", level_summary().c_str());
}

// Runs this test binary again with PEPITA_SIMD set, so the variable is seen at start-up (the
// first kernel call), exactly as a user's process sees it.
std::string child_summary(const char* value) {
  char self[PATH_MAX] = {};
  const ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len <= 0) return "readlink failed";
  const std::string cmd = std::string("PEPITA_SIMD_TEST_CHILD=1 PEPITA_SIMD='") + value + "' '" +
                          std::string(self, static_cast<std::size_t>(len)) +
                          "' --gtest_filter=Dispatch.ChildPrintsSummary 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), pipe) != nullptr) out += buf;
  pclose(pipe);
  const auto b = out.find("SUMMARY<<"), e = out.find(">>", b);
  return b == std::string::npos || e == std::string::npos ? out : out.substr(b + 9, e - b - 9);
}

TEST(Dispatch, StartUpEnvironment) {
  const std::string forced = child_summary("scalar");
  EXPECT_EQ(forced.rfind("scalar (detected ", 0), 0u) << forced;
  if (detected_level() != Level::scalar) {
    EXPECT_NE(forced.find("; PEPITA_SIMD"), std::string::npos) << forced;
  }
  const std::string bogus = child_summary("avx9");
  EXPECT_EQ(bogus.rfind(std::string(to_string(detected_level())) + " (", 0), 0u) << bogus;
  EXPECT_NE(bogus.find("ignored PEPITA_SIMD: unknown SIMD level 'avx9'"), std::string::npos)
      << bogus;
  if (detected_level() < Level::avx512) {
    const std::string high = child_summary("avx512");
    EXPECT_NE(high.find("ignored PEPITA_SIMD=avx512"), std::string::npos) << high;
  }
}

TEST(Dispatch, SummaryNamesDetectedExtensions) {
  reset_level();
  const std::string s = level_summary();
  EXPECT_EQ(s.rfind(std::string(to_string(detected_level())), 0), 0u) << s;
  EXPECT_NE(s.find("detected"), std::string::npos) << s;
  EXPECT_EQ(s.find("+vnni") != std::string::npos, cpu_features().avx512_vnni) << s;
  EXPECT_EQ(vnni_active(), cpu_features().avx512_vnni && detected_level() == Level::avx512);
  EXPECT_EQ(bf16_active(), cpu_features().avx512_bf16 && detected_level() == Level::avx512);
}

}  // namespace
}  // namespace pepita::simd
