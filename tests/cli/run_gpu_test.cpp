// `pepita run` with backend = "gpu" tasks: the bundled example job on the machine's Vulkan device
// (lavapipe in CI), and a bad GPU task failing with its reason while the others succeed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli_runner.hpp"
#include "common/require.hpp"

namespace pepita::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Loading Mesa's lavapipe leaves allocations behind at unload, unnamed by then (see
// info_test.cpp); tests/gpu checks the GPU code itself with leak checking on.
constexpr const char* kNoDriverLeakCheck = "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 ";

class RunGpuCli : public ::testing::Test {
 protected:
  // Skips (or fails, under PEPITA_REQUIRE=vulkan) when vulkaninfo lists no device; with one there,
  // `pepita info` not seeing it is a failure.
  void SetUp() override {
    PEPITA_REQUIRE_CAPABILITY(vulkan);
    CliRun info = run_pepita("info --json", kNoDriverLeakCheck);
    ASSERT_EQ(info.exit_code, 0) << info.output;
    const json j = json::parse(info.output, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << info.output;
    ASSERT_FALSE(j["gpu"]["devices"].empty())
        << "vulkaninfo lists a device, pepita info none: " << j["gpu"]["error"];
    std::string tmpl = (fs::temp_directory_path() / "pepita-cli-gpu-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // `pepita run --json -q` of `job` (quiet: no progress lines around the JSON).
  std::pair<int, json> run_json(const std::string& job) {
    CliRun r = run_pepita(
        "run --json -q --no-journal --state-dir " + (dir_ / "state").string() + " " + job,
        kNoDriverLeakCheck);
    json j = json::parse(r.output, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.output;
    return {r.exit_code, j};
  }

  std::map<std::string, json> by_name(const json& j) {
    std::map<std::string, json> out;
    for (const auto& t : j["tasks"]) out[t["name"]] = t;
    return out;
  }

  fs::path dir_;
};

TEST_F(RunGpuCli, ExampleJobComputesOnTheDevice) {
  const std::string job = std::string(PEPITA_SOURCE_DIR) + "/examples/gpu/job.toml";
  auto [code, j] = run_json(job);
  ASSERT_EQ(code, 0) << j.dump(2);
  EXPECT_TRUE(j["ok"].get<bool>());
  auto t = by_name(j);
  ASSERT_EQ(t.size(), 6u);
  for (const auto& [name, r] : t) EXPECT_EQ(r["status"], "succeeded") << name << ": " << r["error"];
  EXPECT_EQ(t["make-x"]["stdout"],
            "add: 1000 floats -> " + (dir_ / "state" / "x.f32").string() + "\n");
  EXPECT_EQ(t["sum-y"]["stdout"], "754250\n");
  EXPECT_EQ(t["max-y"]["stdout"], "1503.5\n");
  EXPECT_EQ(t["dot"]["stdout"], "204\n");
  EXPECT_EQ(fs::file_size(dir_ / "state" / "y.f32"), 4000u);
  // Softmax rows sum to 1 and are the same shifted pattern.
  std::istringstream in(t["softmax"]["stdout"].get<std::string>());
  double v[8] = {};
  for (double& x : v) in >> x;
  EXPECT_NEAR(v[0] + v[1] + v[2] + v[3], 1.0, 1e-6);
  EXPECT_NEAR(v[4], v[0], 1e-6);
  EXPECT_NEAR(v[3], 0.6439142, 1e-6);
}

TEST_F(RunGpuCli, BadGpuTaskFailsWithItsReasonOthersRun) {
  const fs::path job = dir_ / "bad.toml";
  std::ofstream(job) << "[[task]]\nname = \"typo\"\nbackend = \"gpu\"\ncommand = \"saxpi\"\n"
                        "args = [\"x=fill:1\", \"y=fill:1\", \"n=4\"]\nretries = 0\n\n"
                        "[[task]]\nname = \"missing\"\nbackend = \"gpu\"\ncommand = \"sum\"\n"
                        "args = [\"x=nope.f32\"]\nretries = 0\n\n"
                        "[[task]]\nname = \"fine\"\nbackend = \"gpu\"\ncommand = \"sum\"\n"
                        "args = [\"x=fill:0.25\", \"n=8\"]\n";
  auto [code, j] = run_json(job.string());
  EXPECT_EQ(code, 1) << j.dump(2);
  auto t = by_name(j);
  EXPECT_EQ(t["typo"]["status"], "failed");
  EXPECT_NE(t["typo"]["error"].get<std::string>().find("unknown GPU kernel 'saxpi'"),
            std::string::npos)
      << t["typo"]["error"];
  EXPECT_EQ(t["missing"]["status"], "failed");
  EXPECT_NE(t["missing"]["error"].get<std::string>().find("nope.f32: no such file"),
            std::string::npos)
      << t["missing"]["error"];
  EXPECT_EQ(t["fine"]["status"], "succeeded") << t["fine"]["error"];
  EXPECT_EQ(t["fine"]["stdout"], "2\n");
}

}  // namespace
}  // namespace pepita::test
