// `pepita worker` with bad input: a bad address, a missing key, a key file of the wrong mode or
// content, a bad label or slot count all exit 2 with the usage line before the worker binds or
// makes its cache directory; --gen-key never overwrites a file. (A worker serving tasks is
// tested in run_test.cpp and tests/transport.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_runner.hpp"
#include "common/require.hpp"

namespace pepita::test {
namespace {

namespace fs = std::filesystem;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(CliWorker, BadArgumentsAreUsageErrorsThatCreateNothing) {
  ScratchDir dir;
  const std::string key = dir / "good.key";
  ASSERT_EQ(run_pepita("worker --gen-key " + key).exit_code, 0);
  const std::string open_key = dir / "open.key";  // readable by everyone
  fs::copy_file(key, open_key);
  ASSERT_EQ(::chmod(open_key.c_str(), 0644), 0);
  const std::string short_key = dir / "short.key";
  ASSERT_EQ(::close(::open(short_key.c_str(), O_WRONLY | O_CREAT, 0600)), 0);  // empty
  const std::string cache = dir / "cache";
  const std::string k = " --key " + key + " --cache " + cache;
  struct Case {
    std::string args, says;
  };
  const std::vector<Case> cases = {
      {"worker --listen 127.0.0.1:0 --cache " + cache, "--key FILE is required"},
      {"worker --listen nohost" + k, "--listen: bad address 'nohost'"},
      {"worker --listen 127.0.0.1:99999" + k, "bad address '127.0.0.1:99999'"},
      {"worker --listen 127.0.0.1:http" + k, "bad address"},
      {"worker --connect :7070" + k, "--connect: bad address ':7070'"},
      {"worker --listen 127.0.0.1:0 --connect 127.0.0.1:1" + k, "excludes"},
      {"worker --listen 127.0.0.1:0 --key " + dir / "missing.key" + " --cache " + cache,
       "missing.key"},
      {"worker --listen 127.0.0.1:0 --key " + open_key + " --cache " + cache, "chmod 600"},
      {"worker --listen 127.0.0.1:0 --key " + short_key + " --cache " + cache, "short.key"},
      {"worker --listen 127.0.0.1:0 --label novalue" + k, "label 'novalue' must be key=value"},
      {"worker --listen 127.0.0.1:0 --label =x" + k, "must be key=value"},
      {"worker --listen 127.0.0.1:0 --slots 100000" + k, "--slots"},
      {"worker --listen 127.0.0.1:0 --slots -1" + k, "--slots"},
      {"worker --connect 127.0.0.1:1 --give-up 0" + k, "--give-up"},
      {"worker --listen 127.0.0.1:0 --tls=maybe" + k, "--tls"},
      {"worker --listen 127.0.0.1:0 --cache-size lots" + k, "--cache-size: "},
      {"worker --listen 127.0.0.1:0 --label zone=a --cpus lots" + k, "--cpus: "},
      {"worker --listen 127.0.0.1:0 --memory lots" + k, "--memory: "},
  };
  for (const auto& c : cases) {
    // TMPDIR points into `dir` too, where the default cache directory would appear.
    CliRun run = run_pepita(c.args, "TMPDIR=" + dir.path.string() + " ");
    EXPECT_EQ(run.exit_code, 2) << c.args << "\n" << run.output;
    EXPECT_NE(run.output.find(c.says), std::string::npos) << c.args << "\n" << run.output;
    EXPECT_NE(run.output.find("Usage: pepita worker --key FILE"), std::string::npos)
        << c.args << ": no usage line\n"
        << run.output;
  }
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"good.key", "open.key", "short.key"}))
      << "a usage error created a cache directory or file";
}

// A port held by another program, for the worker or its --metrics: exit 1 saying which and why.
TEST(CliWorker, AnAddressInUseFailsTheWorkerOrItsMetricsSayingSo) {
  ScratchDir dir;
  const std::string key = dir / "k";
  ASSERT_EQ(run_pepita("worker --gen-key " + key).exit_code, 0);
  const HeldLoopbackPort held;
  ASSERT_FALSE(held.address.empty()) << "cannot hold a loopback port";
  const std::string& taken = held.address;
  const std::string k = " --key " + key + " --cache " + dir / "cache";
  CliRun worker = run_pepita("worker --listen " + taken + k, "timeout 120 ");
  EXPECT_EQ(worker.exit_code, 1) << worker.output;
  EXPECT_NE(worker.output.find("pepita worker: "), std::string::npos) << worker.output;
  EXPECT_NE(worker.output.find(taken), std::string::npos) << worker.output;
  CliRun metrics = run_pepita("worker --listen 127.0.0.1:0 --metrics " + taken + k, "timeout 120 ");
  EXPECT_EQ(metrics.exit_code, 1) << metrics.output;
  EXPECT_NE(metrics.output.find("pepita worker: --metrics: "), std::string::npos) << metrics.output;
  EXPECT_NE(metrics.output.find("in use"), std::string::npos) << metrics.output;
}

// Inside a Slurm job the worker offers what the job was granted; a grant it cannot read fails the
// worker naming the variable, before it binds or makes its cache directory.
TEST(CliWorker, AMalformedSlurmGrantFailsTheWorkerNamingTheVariable) {
  ScratchDir dir;
  const std::string key = dir / "k";
  ASSERT_EQ(run_pepita("worker --gen-key " + key).exit_code, 0);
  CliRun r = run_pepita("worker --listen 127.0.0.1:0 --key " + key + " --cache " + dir / "cache",
                        "SLURM_JOB_ID=7 SLURM_CPUS_PER_TASK=lots timeout 120 ");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("pepita worker: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("SLURM_CPUS_PER_TASK"), std::string::npos) << r.output;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"k"});
}

// A host whose memory cannot be read (an empty /proc/meminfo, in a mount namespace of its own):
// the worker cannot say what it offers and exits 1 saying why, having made nothing.
TEST(CliWorker, UndetectableHostResourcesFailTheWorker) {
  PEPITA_REQUIRE_CAPABILITY(root);
  if (!detail::on_path("unshare")) GTEST_SKIP() << "util-linux's unshare is not installed";
  ScratchDir dir;
  const std::string key = dir / "k";
  ASSERT_EQ(run_pepita("worker --gen-key " + key).exit_code, 0);
  CliRun r =
      run_pepita("worker --listen 127.0.0.1:0 --key " + key + " --cache " + dir / "cache",
                 // a worker that did start would serve until killed: bound it
                 "timeout 120 " + in_mount_namespace("mount --bind /dev/null /proc/meminfo"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("pepita worker: cannot detect this host's resources: "),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("/proc/meminfo"), std::string::npos) << r.output;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"k"});
}

// A worker dialing a driver beyond loopback without --tls says its frames are not encrypted; one
// whose driver stays away gives up after --give-up seconds and exits on its own.
TEST(CliWorker, ADialingWorkerWarnsWithoutTlsAndGivesUpOnAnAbsentDriver) {
  ScratchDir dir;
  const std::string key = dir / "k";
  ASSERT_EQ(run_pepita("worker --gen-key " + key).exit_code, 0);
  // 192.0.2.1 is TEST-NET-1 (RFC 5737): nothing answers there.
  CliRun r = run_pepita(
      "worker --connect 192.0.2.1:7070 --give-up 1 --key " + key + " --cache " + dir / "cache",
      "timeout 120 ");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("dialing 192.0.2.1:7070; frames are authenticated"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("use --tls"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stopped after 0 tasks"), std::string::npos) << r.output;
}

TEST(CliWorker, GenKeyWritesAPrivateKeyAndNeverOverwrites) {
  ScratchDir dir;
  const std::string key = dir / "k";
  CliRun made = run_pepita("worker --gen-key " + key);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string text = read_all(key);
  ASSERT_EQ(text.size(), 65u) << text;  // 256 bits as hex, newline
  EXPECT_EQ(text.find_first_not_of("0123456789abcdef"), 64u) << text;

  CliRun again = run_pepita("worker --gen-key " + key);
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find(key), std::string::npos) << again.output;
  EXPECT_EQ(read_all(key), text) << "--gen-key replaced an existing key";
  CliRun nowhere = run_pepita("worker --gen-key " + dir / "no/such/dir/k");
  EXPECT_EQ(nowhere.exit_code, 1) << nowhere.output;
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"k"});
}

}  // namespace
}  // namespace pepita::test
