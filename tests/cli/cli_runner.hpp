#pragma once
// Runs the built pepita binary as a user would and captures its exit code and output.

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace pepita::test {

struct CliRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr interleaved
};

/// Runs `pepita <args>` through /bin/sh; args are passed verbatim, so quote them as for a shell.
/// `env` (e.g. "NAME=value ") is prepended to the command line.
inline CliRun run_pepita(const std::string& args, const std::string& env = "") {
  const std::string command = env + std::string(PEPITA_CLI_PATH) + " " + args + " 2>&1";
  CliRun run;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  std::array<char, 4096> buffer{};
  size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    run.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

}  // namespace pepita::test
