// `pepita vm run` as a user runs it: a guest's output and exit code, a hostile guest's fault,
// a runaway guest's timeout, and bad arguments.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli_runner.hpp"

namespace pepita::test {
namespace {

std::string guest(const char* name) {
  return std::string(PEPITA_BINARY_DIR) + "/guest/" + name + ".elf";
}

bool kvm_usable() { return ::access("/dev/kvm", R_OK | W_OK) == 0; }

std::string input_file(const std::string& bytes) {
  const auto path =
      std::filesystem::temp_directory_path() / ("pepita-vm-input-" + std::to_string(::getpid()));
  std::ofstream(path, std::ios::binary) << bytes;
  return path.string();
}

TEST(CliVm, HelloGuestPrintsAndExitsZero) {
  if (!kvm_usable()) GTEST_SKIP() << "/dev/kvm not accessible: micro-VMs cannot run here";
  CliRun run = run_pepita("vm run " + guest("hello") + " --mem 4M --timeout 5s");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_FALSE(run.output.empty());
}

TEST(CliVm, EscapeAttemptIsAReportedGuestFault) {
  if (!kvm_usable()) GTEST_SKIP() << "/dev/kvm not accessible: micro-VMs cannot run here";
  const std::string input = input_file("R");  // read at 1 TiB, outside guest memory
  CliRun run = run_pepita("vm run " + guest("escape") + " --mem 4M --timeout 5s --input " + input);
  std::filesystem::remove(input);
  EXPECT_EQ(run.exit_code, 125) << run.output;  // guest fault
  EXPECT_NE(run.output.find("fault"), std::string::npos) << run.output;
}

TEST(CliVm, BadMemoryValueIsAUsageError) {
  CliRun run = run_pepita("vm run " + guest("hello") + " --mem lots");
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("--mem"), std::string::npos) << run.output;
}

TEST(CliVm, MissingGuestFileFailsClearly) {
  CliRun run = run_pepita("vm run /nonexistent/guest.elf");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.output.find("/nonexistent/guest.elf"), std::string::npos) << run.output;
}

TEST(CliVm, NonElfGuestIsRejected) {
  if (!kvm_usable()) GTEST_SKIP() << "/dev/kvm not accessible: micro-VMs cannot run here";
  const std::string bogus = input_file("this is not an ELF file");
  CliRun run = run_pepita("vm run " + bogus);
  std::filesystem::remove(bogus);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.exit_code, 125);
}

}  // namespace
}  // namespace pepita::test
