#pragma once
// A gtest fixture for `pepita run` tests: a fresh directory per test, job files written into it,
// pepita started with stdout and stderr in files there, and waited for with a limit (a hang fails
// the test instead of running into CI's time limit).

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/child.hpp"

namespace pepita::test {

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// stdout of `r` as JSON (a test failure, showing both streams, when it is not).
inline nlohmann::json parse(const CliResult& r) {
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "stdout is not JSON:\n" << r.out << "\nstderr:\n" << r.err;
  return j;
}

/// Names of the tasks in `pepita run --json`'s output that came from the cache (`cached`) or ran.
inline std::set<std::string> names_where(const nlohmann::json& j, bool cached) {
  std::set<std::string> out;
  for (const auto& t : j["tasks"]) {
    if (t["from_cache"].get<bool>() == cached) out.insert(t["name"].get<std::string>());
  }
  return out;
}

/// The last line of `text` that starts with `name` and a space: the task's row in the --explain
/// table, which follows the summary table.
inline std::string line_of(const std::string& text, const std::string& name) {
  std::string found;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t nl = std::min(text.find('\n', pos), text.size());
    const std::string line = text.substr(pos, nl - pos);
    if (line.starts_with(name + " ")) found = line;
    pos = nl + 1;
  }
  return found;
}

class RunFixture : public ::testing::Test {
 public:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pepita-cli-run-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path write(const std::string& name, const std::string& text) {
    const std::filesystem::path p = dir_ / name;
    std::ofstream(p) << text;
    return p;
  }

  // Starts pepita with stdout/stderr in files named after `tag`; returns its pid.
  pid_t spawn(const std::vector<std::string>& args, const std::string& tag) {
    std::vector<std::string> argv{PEPITA_CLI_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    return spawn_child(std::move(argv), (dir_ / (tag + ".out")).string(),
                       (dir_ / (tag + ".err")).string());
  }

  // Waits for pepita at most `limit`; a hang is killed and fails the test (exit_code -1).
  CliResult finish(pid_t pid, const std::string& tag,
                   std::chrono::seconds limit = std::chrono::seconds(120)) {
    const std::optional<int> code = wait_child(pid, limit);
    if (!code) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      ADD_FAILURE() << "pepita (" << tag << ") still running after " << limit.count()
                    << " s: killed";
    }
    return {code.value_or(-1), slurp(dir_ / (tag + ".out")), slurp(dir_ / (tag + ".err"))};
  }

  CliResult run(const std::vector<std::string>& args) { return finish(spawn(args, "run"), "run"); }

  std::string state() const { return (dir_ / "state").string(); }

  std::filesystem::path dir_;
};

}  // namespace pepita::test
