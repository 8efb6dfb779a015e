// pepita workers as Slurm jobs, against a real one-node Slurm cluster started from Debian's
// packages by local-cluster.sh (root and the Slurm packages: the slurm capability of
// tests/common/require.hpp; skipped with the reason otherwise): a 500-task job on
// two worker jobs with one scancel'ed mid-run, elastic release and regrowth, a refused
// submission, and nothing left in squeue afterwards. The output parsers are tested without
// Slurm.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/child.hpp"
#include "common/require.hpp"
#include "pepita/pool/pool.hpp"
#include "pepita/slurm/commands.hpp"
#include "pepita/slurm/slurm_executor.hpp"

namespace pepita::slurm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kPepita = std::string(PEPITA_BINARY_DIR) + "/tools/pepita/pepita";
const std::string kClusterScript = std::string(PEPITA_SOURCE_DIR) + "/tests/slurm/local-cluster.sh";

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a shell command; its exit status and stdout.
std::pair<int, std::string> shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return {-1, out};
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// ---- parsers (no Slurm needed) ----------------------------------------------------------------

TEST(SlurmParse, SbatchParsable) {
  EXPECT_EQ(parse_sbatch_parsable("42\n").value(), 42u);
  EXPECT_EQ(parse_sbatch_parsable("77;cluster-a\n").value(), 77u);
  EXPECT_EQ(parse_sbatch_parsable("note: using default account\n9001\n").value(), 9001u);
  for (const char* bad : {"", "abc", "12x", "0", "-3", ";"}) {
    EXPECT_EQ(parse_sbatch_parsable(bad).error().code(), ErrorCode::Protocol) << bad;
  }
}

TEST(SlurmParse, SqueueJsonOldAndNewStateShapes) {
  const auto jobs = parse_squeue_json(R"({"meta": {}, "errors": [], "jobs": [
      {"job_id": 5, "job_state": "RUNNING", "state_reason": "None", "name": "pepita-worker"},
      {"job_id": 6, "job_state": ["PENDING"], "state_reason": "Resources", "name": "w"}]})")
                        .value();
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs.at(5).state, "RUNNING");
  EXPECT_EQ(jobs.at(5).name, "pepita-worker");
  EXPECT_EQ(jobs.at(6).state, "PENDING");
  EXPECT_EQ(jobs.at(6).reason, "Resources");
  EXPECT_TRUE(parse_squeue_json(R"({"jobs": []})").value().empty());
  for (const char* bad :
       {"", "[]", "{\"jobs\": 3}", "{\"jobs\": [{\"job_state\": \"RUNNING\"}]}",
        "{\"jobs\": [{\"job_id\": 1}]}", "{\"jobs\": [{\"job_id\": \"x\"}]}", "{not json"}) {
    EXPECT_EQ(parse_squeue_json(bad).error().code(), ErrorCode::Protocol) << bad;
  }
}

TEST(SlurmParse, SqueueText) {
  const auto jobs =
      parse_squeue_text(
          "12|RUNNING|None|pepita-worker\n13|PENDING|Priority|a|b\n14_2|RUNNING|None|arr\n")
          .value();
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs.at(12).state, "RUNNING");
  EXPECT_EQ(jobs.at(13).name, "a|b");
  EXPECT_EQ(parse_squeue_text("12 RUNNING\n").error().code(), ErrorCode::Protocol);
  EXPECT_TRUE(parse_squeue_text("\n").value().empty());
}

TEST(SlurmParse, FinishedStates) {
  for (const char* s : {"COMPLETED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "FAILED"}) {
    EXPECT_TRUE(is_finished(s)) << s;
  }
  for (const char* s : {"PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED"}) {
    EXPECT_FALSE(is_finished(s)) << s;
  }
}

// Blanks and carriage returns around sbatch's id and squeue's lines are not part of them.
TEST(SlurmParse, BlanksAndCarriageReturnsAreTrimmed) {
  EXPECT_EQ(parse_sbatch_parsable(" \r\n 42 \r\n").value(), 42u);
  EXPECT_EQ(parse_sbatch_parsable("note\r\n43\r\n").value(), 43u);
  const auto jobs = parse_squeue_text(" 12|RUNNING|None|w \r\n\r\n13|PENDING|Priority|x\r").value();
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs.at(12).name, "w");
  EXPECT_EQ(jobs.at(13).name, "x");
  for (const char* s : {"OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}) EXPECT_TRUE(is_finished(s)) << s;
  for (const char* bad : {R"({"jobs": [{"job_id": 1, "job_state": []}]})",
                          R"({"jobs": [{"job_id": 1, "job_state": [3]}]})",
                          R"({"jobs": [{"job_id": 1, "job_state": 3}]})", R"({"jobs": [3]})"}) {
    auto r = parse_squeue_json(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::Protocol) << bad;
  }
  EXPECT_NE(parse_squeue_json(R"({"jobs": [{"job_id": 8, "job_state": []}]})")
                .error()
                .message()
                .find("job 8 has no job_state"),
            std::string::npos);
  const auto bare =
      parse_squeue_json(
          R"({"jobs": [{"job_id": 9, "job_state": "RUNNING", "state_reason": 1, "name": 2}]})")
          .value();
  EXPECT_EQ(bare.at(9).reason, "");
  EXPECT_EQ(bare.at(9).name, "");
}

TEST(SlurmCommandsTest, MissingSbatchIsAClearError) {
  auto c = SlurmCommands::locate("/nonexistent-slurm-bin");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), ErrorCode::NotFound);
  EXPECT_NE(c.error().message().find("sbatch not found"), std::string::npos);
  EXPECT_NE(c.error().message().find("slurm-client"), std::string::npos);
}

TEST(SlurmCli, RunWithoutSbatchSaysWhatIsMissing) {
  const fs::path dir =
      fs::temp_directory_path() / ("pepita-slurm-nosbatch-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "job.toml")
      << "[[task]]\nname = \"a\"\nbackend = \"remote\"\ncommand = \"/bin/true\"\n";
  auto [rc, out] = shell("PATH=/nonexistent " + kPepita + " run --slurm --nodes 1 --state-dir " +
                         (dir / "state").string() + " " + (dir / "job.toml").string() + " 2>&1");
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("sbatch not found"), std::string::npos) << out;
  fs::remove_all(dir);
}

struct JobDir {
  JobDir()
      : path(fs::temp_directory_path() /
             ("pepita-slurm-job-" + std::to_string(::getpid()) + "-" + std::to_string(counter++))) {
    fs::create_directories(path);
  }
  ~JobDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static inline int counter = 0;
  fs::path path;
};

// ---- the "slurm" backend by name (no Slurm needed) ---------------------------------------------
TEST(SlurmRegistry, RegistersSlurmByNameAndNamesBadSettings) {
  executor::Registry registry;
  ASSERT_TRUE(register_slurm(registry));
  EXPECT_EQ(slurm_backend().name(), "slurm");
  EXPECT_TRUE(registry.contains(slurm_backend()));
  EXPECT_EQ(register_slurm(registry).error().code(), ErrorCode::AlreadyExists);

  executor::BackendOptions typo;
  typo.set("partiton", "cpu");
  auto unknown = registry.create(slurm_backend(), typo);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(unknown.error().message().find("partiton"), std::string::npos)
      << unknown.error().message();
  EXPECT_NE(unknown.error().message().find("backend 'slurm'"), std::string::npos)
      << unknown.error().message();

  executor::BackendOptions zero;
  zero.set("nodes", "0");
  auto bad = registry.create(slurm_backend(), zero);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(bad.error().message().find("nodes='0'"), std::string::npos) << bad.error().message();

  executor::BackendOptions flag;
  flag.set("tls", "maybe");
  auto not_bool = registry.create(slurm_backend(), flag);
  ASSERT_FALSE(not_bool);
  EXPECT_NE(not_bool.error().message().find("tls='maybe'"), std::string::npos)
      << not_bool.error().message();

  executor::BackendOptions lots;
  lots.set("memory", "lots");
  auto not_size = registry.create(slurm_backend(), lots);
  ASSERT_FALSE(not_size);
  EXPECT_EQ(not_size.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(not_size.error().message().find("memory"), std::string::npos)
      << not_size.error().message();
  EXPECT_NE(not_size.error().message().find("lots"), std::string::npos)
      << not_size.error().message();

  // Good settings reach SlurmExecutor::create, which looks for sbatch first.
  executor::BackendOptions good;
  good.set("memory", "4G")
      .set("nodes", "2")
      .set("slurm_bin_dir", "/nonexistent-slurm-bin")
      .set("idle_release", "5s");
  auto made = registry.create(slurm_backend(), good);
  ASSERT_FALSE(made);
  EXPECT_EQ(made.error().code(), ErrorCode::NotFound);
  EXPECT_NE(made.error().message().find("sbatch not found"), std::string::npos)
      << made.error().message();
}

// Each count setting's range, both ends: a value inside reaches SlurmExecutor::create (which then
// finds no sbatch), one outside is InvalidArgument naming the setting and its value.
TEST(SlurmRegistry, CountSettingsAcceptTheirRangeAndNameAValueOutside) {
  executor::Registry registry;
  ASSERT_TRUE(register_slurm(registry));
  struct Case {
    const char* key;
    const char* value;
    bool accepted;
  };
  for (const Case& c :
       {Case{"nodes", "100000", true}, Case{"nodes", "100001", false}, Case{"min_nodes", "0", true},
        Case{"min_nodes", "100000", true}, Case{"min_nodes", "100001", false},
        Case{"cpus_per_worker", "0", false}, Case{"cpus_per_worker", "4096", true},
        Case{"cpus_per_worker", "4097", false}, Case{"gpus", "0", true}, Case{"gpus", "4096", true},
        Case{"gpus", "4097", false}, Case{"max_failed_jobs", "0", true},
        Case{"max_failed_jobs", "1000000", true}, Case{"max_failed_jobs", "1000001", false}}) {
    SCOPED_TRACE(std::string(c.key) + "=" + c.value);
    executor::BackendOptions set;
    set.set(c.key, c.value).set("slurm_bin_dir", "/nonexistent-slurm-bin");
    auto made = registry.create(slurm_backend(), set);
    ASSERT_FALSE(made);
    if (c.accepted) {
      EXPECT_EQ(made.error().code(), ErrorCode::NotFound) << made.error().message();
      continue;
    }
    EXPECT_EQ(made.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(made.error().message().find(std::string(c.key) + "='" + c.value + "'"),
              std::string::npos)
        << made.error().message();
  }
}

TEST(SlurmCli, SlurmBackendTaskWithoutSbatchSaysWhatIsMissing) {
  JobDir jd;
  std::ofstream(jd.path / "job.toml")
      << "[[task]]\nname = \"a\"\nbackend = \"slurm\"\ncommand = \"/bin/true\"\n";
  auto [rc, out] =
      shell("PATH=/nonexistent " + kPepita + " run --nodes 1 --state-dir " +
            (jd.path / "state").string() + " " + (jd.path / "job.toml").string() + " 2>&1");
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("backend 'slurm'"), std::string::npos) << out;
  EXPECT_NE(out.find("sbatch not found"), std::string::npos) << out;
}

TEST(SlurmCli, SizingFlagsNeedSlurmOrASlurmTask) {
  JobDir jd;
  std::ofstream(jd.path / "job.toml")
      << "[[task]]\nname = \"a\"\nbackend = \"process\"\ncommand = \"/bin/true\"\n";
  auto [rc, out] =
      shell(kPepita + " run --partition cpu --state-dir " + (jd.path / "state").string() + " " +
            (jd.path / "job.toml").string() + " 2>&1");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("--partition needs --slurm"), std::string::npos) << out;
}

// Stand-in sbatch/squeue/scancel in a directory of their own, for SlurmExecutor without Slurm:
// sbatch records its arguments and answers job 4242, scancel records its arguments and ends the
// job, squeue lists the job until then (in squeue's text form: --json is refused, as old Slurm
// does). Each script can be replaced.
struct FakeSlurmBin {
  JobDir bin, work;
  fs::path sbatch_args = bin.path / "sbatch-args";
  fs::path scancel_args = bin.path / "scancel-args";

  FakeSlurmBin() {
    script("sbatch", "printf '%s\\n' \"$@\" > " + sbatch_args.string() + "; echo 4242");
    script("squeue",
           "[ \"$1\" = --json ] && { echo \"squeue: unrecognized option '--json'\" >&2; exit 1; "
           "}\ngrep -qsx 4242 " +
               scancel_args.string() + " || echo '4242|PENDING|Priority|pepita-worker'");
    script("scancel", "printf '%s\\n' \"$@\" >> " + scancel_args.string());
  }
  void script(const char* name, const std::string& body) const {
    std::ofstream(bin.path / name) << "#!/bin/sh\n" << body << "\n";
    fs::permissions(bin.path / name, fs::perms::owner_all);
  }
  SlurmOptions options() const {
    SlurmOptions o;
    o.nodes = 1;
    o.worker_binary = "/bin/true";
    o.listen = "127.0.0.1:0";
    o.work_dir = work.path.string();
    o.slurm_bin_dir = bin.path.string();
    o.poll_interval = 100ms;
    return o;
  }
};

// What an executor logged, from any thread.
struct LogLines {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view line) {
      std::lock_guard lock(mu);
      lines.emplace_back(line);
    };
  }
  std::size_t count(std::string_view part) {
    std::lock_guard lock(mu);
    return static_cast<std::size_t>(std::count_if(lines.begin(), lines.end(), [&](const auto& l) {
      return l.find(part) != std::string::npos;
    }));
  }
  std::string all() {
    std::lock_guard lock(mu);
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }
};

// Without driver_address, the worker jobs dial this host by its name (gethostname), not
// "localhost", which on a cluster is the compute node itself. Stand-in sbatch/squeue/scancel
// record what the worker job would run; no Slurm needed.
TEST(SlurmExecutorFake, WorkerJobsDialThisHostsNameWhenNoDriverAddressIsGiven) {
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  if (std::string(host) == "localhost") GTEST_SKIP() << "this host is named localhost";
  FakeSlurmBin fake;
  SlurmOptions o = fake.options();
  o.log = [](std::string_view) {};
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  EXPECT_EQ((*exec)->submitted(), std::vector<JobId>{4242});
  const std::string args = slurp(fake.sbatch_args);
  (*exec)->shutdown();
  const auto wrap = args.find("--wrap=exec ");
  ASSERT_NE(wrap, std::string::npos) << args;
  EXPECT_NE(args.find(" --connect '" + std::string(host) + ":", wrap), std::string::npos) << args;
  EXPECT_EQ(args.find("localhost"), std::string::npos) << args;
}

TEST(SlurmExecutorFake, CreateRefusesZeroSizesAndAWorkerBinaryThatCannotRun) {
  FakeSlurmBin fake;
  for (auto zero : {&SlurmOptions::nodes, &SlurmOptions::cpus_per_worker}) {
    SlurmOptions o = fake.options();
    o.*zero = 0;
    auto exec = SlurmExecutor::create(o);
    ASSERT_FALSE(exec);
    EXPECT_EQ(exec.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(exec.error().message().find("nodes >= 1 and cpus_per_worker >= 1"), std::string::npos)
        << exec.error().message();
  }
  SlurmOptions o = fake.options();
  o.worker_binary = (fake.work.path / "not-a-program").string();
  std::ofstream(o.worker_binary) << "data\n";
  auto exec = SlurmExecutor::create(o);
  ASSERT_FALSE(exec);
  EXPECT_EQ(exec.error().code(), ErrorCode::NotFound);
  EXPECT_NE(exec.error().message().find("is not executable; set worker_binary"), std::string::npos)
      << exec.error().message();
  EXPECT_FALSE(fs::exists(fake.sbatch_args)) << "nothing was submitted";
  EXPECT_FALSE(fs::exists(fake.work.path / "key"));
}

// Without work_dir, create() makes a private one with mkdtemp under $HOME/.pepita/slurm; when
// mkdtemp fails, create() fails with its errno and the path it tried, and submits nothing. Made to
// fail for real, even as root: a HOME so long that $HOME/.pepita/slurm still fits in PATH_MAX
// but the template inside it does not, so mkdir(2) answers ENAMETOOLONG (in a child: HOME is
// the process's).
TEST(SlurmExecutorFake, AWorkDirThatMkdtempCannotMakeIsAnErrorNamingIt) {
  FakeSlurmBin fake;
  // base = home + "/.pepita/slurm" (14 bytes) and its NUL fit in PATH_MAX (4096); the template,
  // base + "/run-XXXXXX" (11 more), does not.
  const std::size_t home_size = PATH_MAX - 20;
  std::string home = fake.work.path.string();
  while (home_size - home.size() > 210) home.append(1, '/').append(200, 'h');
  home.push_back('/');
  home.append(home_size - home.size(), 'h');
  ASSERT_EQ(home.size(), home_size);
  const std::string base = home + "/.pepita/slurm";
  const auto code = pepita::test::run_forked([&] {
    ASSERT_EQ(::setenv("HOME", home.c_str(), 1), 0);
    SlurmOptions o = fake.options();
    o.work_dir.clear();
    o.log = [](std::string_view) {};
    auto exec = SlurmExecutor::create(o);
    if (exec) {
      (*exec)->shutdown();
      ADD_FAILURE() << "create() succeeded with a work dir under a HOME of " << home.size()
                    << " bytes";
      return;
    }
    EXPECT_EQ(exec.error().code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(exec.error().sys_errno(), ENAMETOOLONG);
    // "mkdtemp <base>/run-XXXXXX: <strerror>", with the letters mkdtemp left in the template.
    const std::string& message = exec.error().message();
    const std::string prefix = "mkdtemp " + base + "/run-";
    EXPECT_EQ(message.rfind(prefix, 0), 0u) << message;
    EXPECT_EQ(message.substr(std::min(message.size(), prefix.size() + 6)),
              std::string(": ") + std::strerror(ENAMETOOLONG))
        << message;
  });
  ASSERT_EQ(code, 0);
  EXPECT_TRUE(fs::is_directory(base)) << "create() made the base dir, as far as it goes";
  EXPECT_FALSE(fs::exists(fake.sbatch_args)) << "nothing was submitted";
}

// Before any worker job has connected, a task is judged by what each job asks Slurm for: more
// CPUs, memory or GPUs than one job has can never run, and the error names the option to raise.
TEST(SlurmExecutorFake, BeforeAWorkerConnectsTasksLargerThanAWorkerJobCanNeverFit) {
  FakeSlurmBin fake;
  SlurmOptions o = fake.options();
  o.cpus_per_worker = 2;
  o.gpus = 1;
  o.memory = 1ull << 30;
  o.log = [](std::string_view) {};
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  const std::string args = slurp(fake.sbatch_args);
  EXPECT_NE(args.find("--cpus-per-task=2\n"), std::string::npos) << args;
  EXPECT_NE(args.find("--gpus=1\n"), std::string::npos) << args;
  const auto request = [](double cpus, std::uint64_t memory, double gpus,
                          std::vector<std::string> gpu_ids = {}) {
    task::ResourceRequest r;
    r.cpus = cpus;
    r.memory = memory;
    r.gpus = gpus;
    r.gpu_ids = std::move(gpu_ids);
    return r;
  };
  struct Case {
    task::ResourceRequest request;
    const char* message;  // empty: fits
  };
  const Case cases[] = {
      {request(4, 0, 0), "needs 4 CPUs; each Slurm worker job has 2 (cpus_per_worker)"},
      {request(0, 2ull << 30, 0), "memory"},
      {request(0, 0, 2), "needs 2 GPUs; each Slurm worker job has 1 (gpus)"},
      {request(0, 0, 0, {"0", "1"}), "needs 2 GPUs"},
      {request(2, 1ull << 30, 1), ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.request.to_string());
    auto fit = (*exec)->can_ever_fit(c.request);
    if (std::string_view(c.message).empty()) {
      EXPECT_TRUE(fit) << fit.error().to_string();
      continue;
    }
    ASSERT_FALSE(fit);
    EXPECT_EQ(fit.error().code(), ErrorCode::Unsupported);
    EXPECT_NE(fit.error().message().find(c.message), std::string::npos) << fit.error().message();
  }
  (*exec)->shutdown();
}

// memory and gpus of 0 mean the worker jobs ask Slurm for no limit: before a worker connects,
// no memory or GPU request is refused for them (only CPUs, which every job asks for).
TEST(SlurmExecutorFake, BeforeAWorkerConnectsUnsetMemoryAndGpusRefuseNoRequest) {
  FakeSlurmBin fake;
  SlurmOptions o = fake.options();
  o.cpus_per_worker = 2;
  o.log = [](std::string_view) {};
  ASSERT_EQ(o.memory, 0u);
  ASSERT_EQ(o.gpus, 0u);
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  task::ResourceRequest memory;
  memory.memory = 64ull << 30;
  task::ResourceRequest gpus;
  gpus.gpus = 4;
  task::ResourceRequest gpu_ids;
  gpu_ids.gpu_ids = {"0", "1"};
  for (const auto& r : {memory, gpus, gpu_ids}) {
    SCOPED_TRACE(r.to_string());
    auto fit = (*exec)->can_ever_fit(r);
    EXPECT_TRUE(fit) << fit.error().to_string();
  }
  (*exec)->shutdown();
}

// abandon() (a driver told twice to stop) scancels every job it submitted and removes the
// one-time key at once; shutdown afterwards still finishes cleanly.
TEST(SlurmExecutorFake, AbandonCancelsEveryWorkerJobAndRemovesTheKey) {
  FakeSlurmBin fake;
  SlurmOptions o = fake.options();
  o.log = [](std::string_view) {};
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  ASSERT_TRUE(fs::exists(fake.work.path / "key"));
  (*exec)->abandon();
  EXPECT_FALSE(fs::exists(fake.work.path / "key")) << "the key is useless once abandoned";
  EXPECT_EQ(slurp(fake.scancel_args), "4242\n");
  (*exec)->shutdown();
}

// abandon() waits 3 s for its scancel; one that hangs longer goes on in a thread of its own, and
// the executor may then be destroyed (the driver exits). That thread owns the commands it runs
// (it used the executor's, freed by then: a use-after-free under ASan), so destroying the
// executor does not wait for the hung scancel, and the scancel still ends this run's job once
// it returns. The first scancel hangs until the test releases it; later ones (shutdown's) do not.
TEST(SlurmExecutorFake, AScancelOutlivingAbandonFinishesAfterTheExecutorIsGone) {
  FakeSlurmBin fake;
  const fs::path release = fake.bin.path / "release";
  const fs::path hung_args = fake.bin.path / "hung-scancel-args";
  fake.script("scancel", "if mkdir " + (fake.bin.path / "first").string() +
                             " 2>/dev/null; then\n  i=0\n  while [ ! -e " + release.string() +
                             " ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done\n"
                             "  printf '%s\\n' \"$@\" >> " +
                             hung_args.string() + "\n  exit 0\nfi\nprintf '%s\\n' \"$@\" >> " +
                             fake.scancel_args.string());
  LogLines log;
  SlurmOptions o = fake.options();
  o.log = log.sink();
  o.idle_release = std::chrono::hours(1);  // the monitor releases nothing: abandon() is first
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  (*exec)->abandon();
  EXPECT_EQ(log.count("scancel did not return within 3 s"), 1u) << log.all();
  EXPECT_FALSE(fs::exists(hung_args)) << "the first scancel was to hang";

  // Released once the executor is gone, or after 30 s when destroying it waits for the scancel.
  std::atomic<bool> destroyed{false};
  std::thread releaser([&] {
    for (int i = 0; i < 600 && !destroyed.load(); ++i) std::this_thread::sleep_for(50ms);
    std::ofstream(release) << "go\n";
  });
  exec->reset();
  const bool released_first = fs::exists(release);
  destroyed.store(true);
  releaser.join();
  EXPECT_FALSE(released_first) << "destroying the executor waited for abandon()'s hung scancel";
  EXPECT_EQ(slurp(fake.scancel_args), "4242\n") << "shutdown's own scancel";
  for (int i = 0; i < 600 && slurp(hung_args).empty(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(slurp(hung_args), "4242\n")
      << "abandon()'s scancel ran to its end without the executor";
}

// Job ids a killed driver left in job_ids_file are scancelled first; when scancel refuses, the
// log says so and the run goes on, with the file emptied for this run's ids.
TEST(SlurmExecutorFake, StaleJobIdsThatScancelRefusesAreLoggedAndForgotten) {
  FakeSlurmBin fake;
  fake.script("scancel", "printf '%s\\n' \"$@\" >> " + fake.scancel_args.string() +
                             "\ncase \"$*\" in *111*) echo 'scancel: error: Kill job error on job "
                             "id 111: Access/permission denied' >&2; exit 1;; esac");
  const fs::path ids = fake.work.path / "job-ids";
  std::ofstream(ids) << "111\n222\n";
  LogLines log;
  SlurmOptions o = fake.options();
  o.job_ids_file = ids.string();
  o.log = log.sink();
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  EXPECT_EQ(log.count("cannot cancel the worker jobs a previous run left: "), 1u) << log.all();
  EXPECT_EQ(log.count("Access/permission denied"), 1u) << log.all();
  EXPECT_EQ(slurp(fake.scancel_args), "111\n222\n");
  EXPECT_EQ(slurp(ids), "4242\n") << "only this run's job is left to cancel";
  (*exec)->shutdown();
}

// A squeue that fails is logged once, not once per poll, and shutdown still cancels the job.
TEST(SlurmExecutorFake, FailingSqueueIsLoggedOnceAndShutdownStillCancels) {
  FakeSlurmBin fake;
  fake.script("squeue",
              "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1");
  LogLines log;
  SlurmOptions o = fake.options();
  o.log = log.sink();
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  for (int i = 0; i < 200 && log.count("cannot read job states") == 0; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(500ms);  // several more polls
  EXPECT_EQ(log.count("cannot read job states: "), 1u) << log.all();
  EXPECT_EQ(log.count("Unable to contact slurm controller"), 1u) << log.all();
  (*exec)->shutdown();
  EXPECT_EQ(slurp(fake.scancel_args), "4242\n");
}

// A job squeue still lists 10 s after scancel is reported by id: a user must not pay unknowingly
// for a job that outlives the driver.
TEST(SlurmExecutorFake, JobsStillListedAfterScancelAreReportedAtShutdown) {
  FakeSlurmBin fake;
  fake.script("squeue",
              "[ \"$1\" = --json ] && { echo \"squeue: unrecognized option '--json'\" >&2; exit "
              "1; }\necho '4242|RUNNING|None|pepita-worker'");
  LogLines log;
  SlurmOptions o = fake.options();
  o.log = log.sink();
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  (*exec)->shutdown();
  EXPECT_EQ(log.count("worker job 4242 has not ended yet after scancel; check squeue"), 1u)
      << log.all();
  EXPECT_EQ(slurp(fake.scancel_args), "4242\n");
}

// When the driver's listener cannot start, create() fails with that error and leaves no key.
TEST(SlurmExecutorFake, ListenerThatCannotStartLeavesNoKeyBehind) {
  FakeSlurmBin fake;
  SlurmOptions o = fake.options();
  o.listen = "127.0.0.1:99999";
  o.log = [](std::string_view) {};
  auto exec = SlurmExecutor::create(o);
  ASSERT_FALSE(exec);
  EXPECT_EQ(exec.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(exec.error().message().find("bad address '127.0.0.1:99999'"), std::string::npos)
      << exec.error().message();
  EXPECT_FALSE(fs::exists(fake.work.path / "key"));
  EXPECT_FALSE(fs::exists(fake.sbatch_args)) << "nothing was submitted";
}

// sbatch without optional settings: the job's name, one node, one task, the CPUs, the log file in
// the work dir, and the worker's command line; no partition, time, account, GPUs, memory or TLS.
// With every setting: each becomes its option, memory in whole MiB rounded up, the extra arguments
// as they are, and the worker binary single-quoted for the job's shell.
TEST(SlurmExecutorFake, SbatchGetsEachSettingAndTheWorkerCommandLine) {
  const auto sbatch_lines = [](const SlurmOptions& o, const FakeSlurmBin& fake) {
    auto exec = SlurmExecutor::create(o);
    EXPECT_TRUE(exec) << exec.error().to_string();
    if (exec) (*exec)->shutdown();
    return slurp(fake.sbatch_args);
  };
  // The arguments (one per line) start with `head` and end with `tail`: the port between them is
  // the executor's.
  const auto expect_around_port = [](const std::string& args, const std::string& head,
                                     const std::string& tail) {
    EXPECT_EQ(args.substr(0, head.size()), head) << args;
    ASSERT_GE(args.size(), tail.size()) << args;
    EXPECT_EQ(args.substr(args.size() - tail.size()), tail) << args;
  };
  {
    FakeSlurmBin fake;
    SlurmOptions o = fake.options();
    o.driver_address = "10.1.2.3";
    o.log = [](std::string_view) {};
    const std::string args = sbatch_lines(o, fake);
    const std::string work = fake.work.path.string();
    const std::string head =
        "--parsable\n--job-name=pepita-worker\n--nodes=1\n--ntasks=1\n"
        "--cpus-per-task=1\n--output=" +
        work +
        "/worker-%j.log\n--wrap=exec '/bin/true' worker --connect "
        "'10.1.2.3:";
    const std::string tail = "' --key '" + work +
                             "/key' --slots 1 --name slurm-${SLURM_JOB_ID} --give-up 60 "
                             "--sandbox none\n";
    expect_around_port(args, head, tail);
  }
  FakeSlurmBin fake;
  const fs::path binary = fake.bin.path / "it's pepita";
  fake.script("it's pepita", "exit 0");
  struct Case {
    std::uint64_t memory;
    const char* mem;
  };
  for (const Case c : {Case{1, "--mem=1M\n"}, Case{4ull << 20, "--mem=4M\n"},
                       Case{(4ull << 20) + 1, "--mem=5M\n"}}) {
    SCOPED_TRACE(c.memory);
    SlurmOptions o = fake.options();
    o.job_name = "pj";
    o.partition = "cpu";
    o.time_limit = "0:30:00";
    o.account = "acct";
    o.gpus = 2;
    o.cpus_per_worker = 3;
    o.memory = c.memory;
    o.extra_sbatch_args = {"--qos=low", "--exclusive"};
    o.worker_binary = binary.string();
    o.worker_give_up = std::chrono::seconds(45);
    o.driver_address = "10.1.2.3";
    o.tls = true;
    o.log = [](std::string_view) {};
    const std::string args = sbatch_lines(o, fake);
    const std::string work = fake.work.path.string();
    const std::string head =
        "--parsable\n--job-name=pj\n--nodes=1\n--ntasks=1\n--cpus-per-task=3\n--output=" + work +
        "/worker-%j.log\n--partition=cpu\n--time=0:30:00\n--account=acct\n--gpus=2\n" + c.mem +
        "--qos=low\n--exclusive\n--wrap=exec '" + fake.bin.path.string() +
        "/it'\\''s pepita' worker --connect '10.1.2.3:";
    const std::string tail = "' --key '" + work +
                             "/key' --slots 3 --name slurm-${SLURM_JOB_ID} --give-up 45 "
                             "--sandbox none --tls\n";
    expect_around_port(args, head, tail);
  }
}

// The registered "slurm" backend reads each setting: they reach sbatch, the executor serves the
// "slurm" backend with nodes x cpus_per_worker x 2 slots, and state_dir keeps the job ids.
TEST(SlurmRegistry, EachSettingReachesTheWorkerJobs) {
  FakeSlurmBin fake;
  fake.script("pepita-bin", "exit 0");
  executor::Registry registry;
  ASSERT_TRUE(register_slurm(registry));
  executor::BackendOptions set;
  set.set("nodes", "2")
      .set("cpus_per_worker", "3")
      .set("gpus", "1")
      .set("memory", "64M")
      .set("partition", "gpu")
      .set("time_limit", "10")
      .set("account", "lab")
      .set("sbatch_args", "--qos=low,--exclusive")
      .set("driver_address", "10.9.8.7")
      .set("job_name", "named")
      .set("worker_binary", (fake.bin.path / "pepita-bin").string())
      .set("listen", "127.0.0.1:0")
      .set("work_dir", fake.work.path.string())
      .set("slurm_bin_dir", fake.bin.path.string())
      .set("tls", "yes")
      .set("state_dir", fake.work.path.string());
  auto made = registry.create(slurm_backend(), set);
  ASSERT_TRUE(made) << made.error().to_string();
  EXPECT_EQ((*made)->backend().name(), "slurm");
  EXPECT_EQ((*made)->slots(), 12u);
  EXPECT_EQ(slurp(fake.work.path / "slurm-backend-jobs"), "4242\n4242\n");
  (*made)->shutdown();
  const std::string args = slurp(fake.sbatch_args);
  const std::string work = fake.work.path.string();
  const std::string head =
      "--parsable\n--job-name=named\n--nodes=1\n--ntasks=1\n"
      "--cpus-per-task=3\n--output=" +
      work +
      "/worker-%j.log\n--partition=gpu\n--time=10\n--account=lab\n--gpus=1\n"
      "--mem=64M\n--qos=low\n--exclusive\n--wrap=exec '" +
      fake.bin.path.string() + "/pepita-bin' worker --connect '10.9.8.7:";
  EXPECT_EQ(args.substr(0, head.size()), head) << args;
  EXPECT_NE(args.find(" --slots 3 "), std::string::npos) << args;
  EXPECT_TRUE(args.ends_with(" --tls\n")) << args;
}

// What squeue says of a job is what jobs() shows after a poll: its state and reason, and that no
// worker connected from it.
TEST(SlurmExecutorFake, JobsShowTheStateAndReasonSqueueGave) {
  FakeSlurmBin fake;
  SlurmOptions o = fake.options();
  o.log = [](std::string_view) {};
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  std::vector<WorkerJob> jobs;
  for (int i = 0; i < 200; ++i) {
    jobs = (*exec)->jobs();
    if (jobs.size() != 1 || jobs[0].state != "SUBMITTED") break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, JobId{4242});
  EXPECT_EQ(jobs[0].state, "PENDING");
  EXPECT_EQ(jobs[0].reason, "Priority");
  EXPECT_FALSE(jobs[0].connected);
  (*exec)->shutdown();
  EXPECT_TRUE((*exec)->jobs().empty());
  EXPECT_EQ((*exec)->submitted(), std::vector<JobId>{4242});
  EXPECT_TRUE(fs::exists(fake.work.path)) << "a work_dir it was given is not removed";
}

// A job that Slurm ended on its own (FAILED) or that squeue no longer lists is logged with what
// squeue said and forgotten: shutdown has nothing to scancel.
TEST(SlurmExecutorFake, AJobSlurmEndedIsLoggedAndNotCancelled) {
  struct Case {
    const char* squeue;
    const char* logged;
  };
  for (const Case c :
       {Case{"echo '4242|FAILED|NonZeroExitCode|pepita-worker'",
             "worker job 4242 ended (FAILED, NonZeroExitCode); its tasks go to other workers"},
        Case{"true",
             "worker job 4242 ended (no longer in squeue); its tasks go to other workers"}}) {
    SCOPED_TRACE(c.squeue);
    FakeSlurmBin fake;
    fake.script(
        "squeue",
        std::string("[ \"$1\" = --json ] && { echo unrecognized >&2; exit 1; }\n") + c.squeue);
    LogLines log;
    SlurmOptions o = fake.options();
    o.log = log.sink();
    auto exec = SlurmExecutor::create(o);
    ASSERT_TRUE(exec) << exec.error().to_string();
    for (int i = 0; i < 200 && log.count(c.logged) == 0; ++i) std::this_thread::sleep_for(50ms);
    EXPECT_EQ(log.count(c.logged), 1u) << log.all();
    EXPECT_TRUE((*exec)->jobs().empty());
    (*exec)->shutdown();
    EXPECT_FALSE(fs::exists(fake.scancel_args)) << slurp(fake.scancel_args);
  }
}

// Stand-in sbatch answering 1, 2, 3... and squeue listing, as PENDING, each job from `first` on
// that scancel has not ended (so jobs below `first` end at once, before a worker connected).
void count_jobs_from(FakeSlurmBin& fake, int first) {
  const std::string count = (fake.bin.path / "count").string();
  fake.script("sbatch", "printf '%s\\n' \"$@\" > " + fake.sbatch_args.string() + "\nn=$(($(cat " +
                            count + " 2>/dev/null || echo 0) + 1))\necho $n > " + count +
                            "\necho $n");
  fake.script("squeue", "[ \"$1\" = --json ] && { echo unrecognized >&2; exit 1; }\nn=$(cat " +
                            count + " 2>/dev/null || echo 0)\ni=" + std::to_string(first) +
                            "\nwhile [ $i -le $n ]; do\n  grep -qsx $i " +
                            fake.scancel_args.string() +
                            " || echo \"$i|PENDING|Priority|pepita-worker\"\n  i=$((i + 1))\ndone");
}

// Tasks waiting on the driver, each stopped (cancelled) by the test before shutdown.
struct Backlog {
  std::stop_source stop;
  std::atomic<int> done{0};
  Result<void> add(SlurmExecutor& exec, int n) {
    for (int i = 0; i < n; ++i) {
      auto t = task::Task::binary("/bin/true").backend(task::Backend::Remote).build();
      if (!t) return std::unexpected(t.error());
      PEPITA_TRY_VOID(exec.start(*t, stop.get_token(),
                                 [this](executor::ExecutionResult) { done.fetch_add(1); }));
    }
    return {};
  }
  bool drain(int n) {
    stop.request_stop();
    for (int i = 0; i < 400 && done.load() < n; ++i) std::this_thread::sleep_for(25ms);
    return done.load() == n;
  }
};

// Idle longer than idle_release, the jobs above min_nodes are released, the earliest first (all
// pending alike), in one scancel; the last is cancelled at shutdown.
// Three jobs numbered from 1, all pending, one kept (min_nodes 1), the rest released as soon as
// they are idle; returns once the release was logged (or after 10 s).
Result<std::shared_ptr<SlurmExecutor>> releasing_executor(FakeSlurmBin& fake, LogLines& log,
                                                          std::uint32_t max_failed_jobs = 0) {
  count_jobs_from(fake, 1);
  SlurmOptions o = fake.options();
  o.nodes = 3;
  o.min_nodes = 1;
  o.idle_release = 0ms;
  o.max_failed_jobs = max_failed_jobs;
  o.log = log.sink();
  auto exec = SlurmExecutor::create(o);
  for (int i = 0; exec && i < 200 && log.count("releasing") == 0; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  return exec;
}

TEST(SlurmExecutorFake, IdleJobsAboveMinNodesAreReleasedInOneScancel) {
  FakeSlurmBin fake;
  LogLines log;
  auto exec = releasing_executor(fake, log);
  ASSERT_TRUE(exec) << exec.error().to_string();
  std::this_thread::sleep_for(500ms);  // more polls: nothing more is released
  EXPECT_EQ(log.count("idle for 0 ms: releasing 2 worker job(s)"), 1u) << log.all();
  EXPECT_EQ(log.count("releasing"), 1u) << log.all();
  EXPECT_EQ(slurp(fake.scancel_args), "1\n2\n");
  const auto jobs = (*exec)->jobs();
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].id, JobId{3});
  EXPECT_EQ(log.count("ended"), 0u) << "a released job's end is not news\n" << log.all();
  EXPECT_EQ(log.count("submitted worker job "), 3u) << log.all();
  EXPECT_EQ(log.count("submitted worker job 3"), 1u) << log.all();
  (*exec)->shutdown();
  EXPECT_EQ(slurp(fake.scancel_args), "1\n2\n3\n");
  EXPECT_EQ((*exec)->submitted(), (std::vector<JobId>{1, 2, 3}));
}

// Jobs released while idle end before their worker connected, but by our own scancel: they do not
// count towards max_failed_jobs, so work that comes later still gets new jobs.
TEST(SlurmExecutorFake, ReleasedJobsDoNotCountTowardsMaxFailedJobs) {
  FakeSlurmBin fake;
  LogLines log;
  auto exec = releasing_executor(fake, log, 2);
  ASSERT_TRUE(exec) << exec.error().to_string();
  ASSERT_EQ(slurp(fake.scancel_args), "1\n2\n") << log.all();
  std::this_thread::sleep_for(500ms);  // more polls: squeue no longer lists 1 and 2
  Backlog backlog;
  ASSERT_TRUE(backlog.add(**exec, 3));
  for (int i = 0; i < 200 && (*exec)->submitted().size() < 5; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ((*exec)->submitted(), (std::vector<JobId>{1, 2, 3, 4, 5})) << log.all();
  EXPECT_EQ(log.count("submitting no more"), 0u) << log.all();
  EXPECT_TRUE(backlog.drain(3));
  (*exec)->shutdown();
}

// Waiting tasks want one job per cpus_per_worker of them (rounded up), up to nodes: the four
// first jobs end before their worker connected, and two replace them for three tasks on
// two-CPU workers.
TEST(SlurmExecutorFake, WaitingTasksGetOneJobPerCpusPerWorkerOfThem) {
  FakeSlurmBin fake;
  count_jobs_from(fake, 5);
  LogLines log;
  SlurmOptions o = fake.options();
  o.nodes = 4;
  o.cpus_per_worker = 2;
  o.max_failed_jobs = 100;
  o.log = log.sink();
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  Backlog backlog;
  ASSERT_TRUE(backlog.add(**exec, 3));
  for (int i = 0; i < 200 && (*exec)->submitted().size() < 6; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  std::this_thread::sleep_for(500ms);  // more polls: no more jobs
  EXPECT_EQ((*exec)->submitted(), (std::vector<JobId>{1, 2, 3, 4, 5, 6})) << log.all();
  EXPECT_EQ((*exec)->jobs().size(), 2u);
  EXPECT_EQ(log.count("ended (no longer in squeue)"), 4u) << log.all();
  EXPECT_TRUE(backlog.drain(3));
  (*exec)->shutdown();
  EXPECT_EQ(slurp(fake.scancel_args), "5\n6\n");
}

// Jobs that end before their worker connects are replaced until max_failed_jobs of them ended
// (nodes + 3 when 0); then no more are submitted, and the log says why once, naming the logs.
TEST(SlurmExecutorFake, JobsEndingBeforeTheirWorkerConnectsAreReplacedUpToMaxFailedJobs) {
  for (const std::uint32_t max : {2u, 0u}) {
    SCOPED_TRACE(max);
    const std::uint32_t expected = max ? max : 1 + 3;
    FakeSlurmBin fake;
    count_jobs_from(fake, 1000);
    LogLines log;
    SlurmOptions o = fake.options();
    o.max_failed_jobs = max;
    o.log = log.sink();
    auto exec = SlurmExecutor::create(o);
    ASSERT_TRUE(exec) << exec.error().to_string();
    Backlog backlog;
    ASSERT_TRUE(backlog.add(**exec, 1));
    const std::string gave_up = std::to_string(expected) +
                                " worker jobs ended before their worker connected; submitting no "
                                "more (max_failed_jobs). Their logs are kept in " +
                                fake.work.path.string();
    for (int i = 0; i < 200 && log.count(gave_up) == 0; ++i) std::this_thread::sleep_for(50ms);
    std::this_thread::sleep_for(500ms);  // more polls: no more jobs, no second line
    EXPECT_EQ(log.count(gave_up), 1u) << log.all();
    EXPECT_EQ((*exec)->submitted().size(), expected) << log.all();
    EXPECT_TRUE(backlog.drain(1));
    (*exec)->shutdown();
  }
}

// Without work_dir, create() makes a private directory under $HOME/.pepita/slurm holding the key;
// shutdown removes it, unless a job ended before its worker connected: then it is kept for that
// job's log (the key still goes). In a child: HOME is the process's.
TEST(SlurmExecutorFake, ThePrivateWorkDirIsRemovedUnlessAJobFailed) {
  for (const bool failed : {false, true}) {
    SCOPED_TRACE(failed);
    FakeSlurmBin fake;
    if (failed) {
      fake.script("squeue",
                  "[ \"$1\" = --json ] && { echo unrecognized >&2; exit 1; }\n"
                  "echo '4242|FAILED|NonZeroExitCode|pepita-worker'");
    }
    const auto code = test::run_forked([&] {
      ASSERT_EQ(::setenv("HOME", fake.work.path.c_str(), 1), 0);
      LogLines log;
      SlurmOptions o = fake.options();
      o.work_dir.clear();
      o.log = log.sink();
      auto exec = SlurmExecutor::create(o);
      ASSERT_TRUE(exec) << exec.error().to_string();
      std::vector<fs::path> runs;
      for (const auto& e : fs::directory_iterator(fake.work.path / ".pepita" / "slurm")) {
        runs.push_back(e.path());
      }
      ASSERT_EQ(runs.size(), 1u);
      EXPECT_EQ(runs[0].filename().string().rfind("run-", 0), 0u) << runs[0];
      EXPECT_TRUE(fs::exists(runs[0] / "key"));
      for (int i = 0; i < 200 && log.count(failed ? "ended (FAILED" : "") == 0; ++i) {
        std::this_thread::sleep_for(50ms);
      }
      (*exec)->shutdown();
      EXPECT_FALSE(fs::exists(runs[0] / "key"));
      EXPECT_EQ(fs::exists(runs[0]), failed) << log.all();
    });
    EXPECT_EQ(code, 0);
  }
}

// A scancel that fails at shutdown is logged with what it said.
TEST(SlurmExecutorFake, AScancelFailingAtShutdownIsLogged) {
  FakeSlurmBin fake;
  const fs::path ended = fake.bin.path / "ended";
  fake.script("squeue", "[ \"$1\" = --json ] && { echo unrecognized >&2; exit 1; }\n[ -e " +
                            ended.string() + " ] || echo '4242|PENDING|Priority|pepita-worker'");
  fake.script("scancel", "touch " + ended.string() +
                             "\necho 'scancel: error: Kill job error on job id 4242' >&2; exit 1");
  LogLines log;
  SlurmOptions o = fake.options();
  o.log = log.sink();
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  (*exec)->shutdown();
  EXPECT_EQ(log.count("cannot cancel worker jobs: scancel failed: scancel: error: Kill job error "
                      "on job id 4242"),
            1u)
      << log.all();
  EXPECT_TRUE(fs::exists(ended));
}

// ---- against a real cluster -------------------------------------------------------------------

// The cluster is started by the first test that needs it (so the parser tests, each run in a
// process of its own by CTest, do not pay for it) and stopped when the process's tests end.
class LocalSlurm : public ::testing::Environment {
 public:
  static inline fs::path dir;
  static inline std::string error;  // why the cluster could not be started

  /// Starts the cluster once per process; false (and `error`) when that failed.
  static bool ensure_started() {
    if (started_) return true;
    if (!error.empty()) return false;
    dir = fs::temp_directory_path() / ("pepita-slurm-cluster-" + std::to_string(::getpid()));
    auto [rc, out] = shell(kClusterScript + " start " + dir.string() + " 2>&1");
    if (rc != 0) {
      error = "starting the local Slurm cluster failed (exit " + std::to_string(rc) + "):\n" + out;
      return false;
    }
    ::setenv("SLURM_CONF", (dir / "slurm.conf").c_str(), 1);
    started_ = true;
    return true;
  }

  void TearDown() override {
    if (!started_) return;
    shell("scancel --user=root 2>/dev/null; " + kClusterScript + " stop " + dir.string());
    std::error_code ec;
    fs::remove_all(dir, ec);
    started_ = false;
  }

 private:
  static inline bool started_ = false;
};

// gtest takes ownership of registered environments.
[[maybe_unused]] const auto* const kLocalSlurm =
    ::testing::AddGlobalTestEnvironment(new LocalSlurm);

// Skips the test when the probe finds no root or no Slurm daemons (fails it when PEPITA_REQUIRE
// names slurm); with them there, a cluster that does not come up is a test failure.
#define REQUIRE_SLURM()                                             \
  do {                                                              \
    PEPITA_REQUIRE_CAPABILITY(slurm);                               \
    ASSERT_TRUE(LocalSlurm::ensure_started()) << LocalSlurm::error; \
  } while (0)

// One worker job named `job_name` running this build's pepita worker, dialing back to
// 127.0.0.1, polled every 200 ms.
SlurmOptions pepita_worker_jobs(const char* job_name) {
  SlurmOptions o;
  o.nodes = 1;
  o.worker_binary = kPepita;
  o.driver_address = "127.0.0.1";
  o.listen = "127.0.0.1:0";
  o.job_name = job_name;
  o.poll_interval = 200ms;
  return o;
}

// Jobs named `name` that squeue lists in a state other than finished.
std::vector<std::string> unfinished_jobs(const std::string& name) {
  auto [rc, out] = shell("squeue -h -n " + name + " -o '%i %T' 2>&1");
  std::vector<std::string> lines;
  std::stringstream ss(out);
  for (std::string line; std::getline(ss, line);) {
    if (line.find("COMPLETED") == std::string::npos &&
        line.find("CANCELLED") == std::string::npos && !line.empty())
      lines.push_back(line);
  }
  return lines;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

// `pepita ARGS >out 2>err` as a direct child, not through a shell: a signal reaches it as
// `kill PID` would, with default dispositions and an empty mask (a background job of a
// non-interactive shell may have SIGINT ignored). Every wait is bounded; a driver still running
// at the end is killed.
class Driver {
 public:
  Driver(const std::vector<std::string>& args, const fs::path& out, const fs::path& err) {
    std::vector<std::string> argv{kPepita};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = test::spawn_child(std::move(argv), out.string(), err.string());
  }
  ~Driver() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  /// Waits at most `limit`: the exit code, 128 + the signal that killed it, or nullopt when it
  /// was still running (it is killed then).
  std::optional<int> wait(std::chrono::milliseconds limit) {
    auto code = test::wait_child(pid_, limit);
    if (code) pid_ = -1;
    return code;
  }

 private:
  pid_t pid_ = -1;
};

TEST(SlurmCluster, FiveHundredTasksOnTwoWorkerJobsSurviveScancelOfOne) {
  REQUIRE_SLURM();
  JobDir jd;
  const fs::path done_log = jd.path / "progress.log";
  std::ofstream(jd.path / "job.toml")
      << "[job]\nname = \"slurm-e2e\"\n[pool]\nretries = 0\n"
      << "[[task]]\nname = \"t\"\ncount = 500\nbackend = \"remote\"\ncommand = \"/bin/sh\"\n"
      << "args = [\"-c\", \"sleep 0.01; echo $0 >> " << done_log.string()
      << "; echo $0\", \"${i}\"]\n";
  Driver driver({"run", "--slurm", "--nodes", "2", "--driver-address", "127.0.0.1", "--json", "-q",
                 "--state-dir", (jd.path / "state").string(), (jd.path / "job.toml").string()},
                jd.path / "out.json", jd.path / "err.txt");
  ASSERT_GT(driver.pid(), 0);

  // Both worker jobs running and tasks flowing, then one is cancelled the way a user or a
  // preemption would.
  std::vector<std::string> running;
  const bool both_running = eventually(
      [&] {
        running = unfinished_jobs("pepita-worker");
        return running.size() == 2 && running[0].find("RUNNING") != std::string::npos &&
               running[1].find("RUNNING") != std::string::npos && fs::exists(done_log) &&
               fs::file_size(done_log) > 200;
      },
      60s);
  std::printf("squeue during the run:\n%s",
              shell("squeue -o '%.8i %.9P %.14j %.8u %.8T %.10M %R'").second.c_str());
  if (both_running) {
    const std::string victim = running[0].substr(0, running[0].find(' '));
    EXPECT_EQ(shell("scancel " + victim).first, 0);
    std::printf("scancel %s after %zu bytes of progress\n", victim.c_str(),
                static_cast<std::size_t>(fs::file_size(done_log)));
  }
  const auto rc = driver.wait(180s);
  ASSERT_TRUE(rc) << "driver still running after 180 s; stderr:\n" << slurp(jd.path / "err.txt");
  ASSERT_TRUE(both_running) << "worker jobs never ran together; driver stderr:\n"
                            << slurp(jd.path / "err.txt");
  ASSERT_EQ(*rc, 0) << slurp(jd.path / "err.txt");

  const auto doc = nlohmann::json::parse(slurp(jd.path / "out.json"), nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << slurp(jd.path / "out.json");
  ASSERT_EQ(doc["tasks"].size(), 500u);
  std::set<std::string> names;
  for (const auto& t : doc["tasks"]) {
    const std::string name = t["name"].get<std::string>();
    EXPECT_TRUE(names.insert(name).second) << name << " reported twice";
    EXPECT_EQ(t["status"], "succeeded") << name;
    EXPECT_EQ(t["stdout"].get<std::string>(), name.substr(2) + "\n") << name;
  }
  EXPECT_EQ(doc["stats"]["succeeded"], 500);
  const std::string err = slurp(jd.path / "err.txt");
  EXPECT_NE(err.find("ended (CANCELLED"), std::string::npos) << err;
  EXPECT_TRUE(eventually([] { return unfinished_jobs("pepita-worker").empty(); }, 15s))
      << "left behind in squeue:\n"
      << shell("squeue").second;
}

TEST(SlurmCluster, CtrlCCancelsEveryWorkerJob) {
  REQUIRE_SLURM();
  JobDir jd;
  std::ofstream(jd.path / "job.toml")
      << "[[task]]\nname = \"slow\"\ncount = 20\nbackend = \"remote\"\ncommand = \"/bin/sleep\"\n"
      << "args = [\"30\"]\n";
  Driver driver({"run", "--slurm", "--nodes", "2", "--driver-address", "127.0.0.1", "-q",
                 "--state-dir", (jd.path / "state").string(), (jd.path / "job.toml").string()},
                jd.path / "out.txt", jd.path / "err.txt");
  ASSERT_GT(driver.pid(), 0);
  const bool running = eventually(
      [&] {
        const auto jobs = unfinished_jobs("pepita-worker");
        return jobs.size() == 2 && jobs[0].find("RUNNING") != std::string::npos &&
               jobs[1].find("RUNNING") != std::string::npos;
      },
      60s);
  ASSERT_EQ(::kill(driver.pid(), SIGINT), 0);
  const auto t0 = std::chrono::steady_clock::now();
  // The stop deadline (5 s + kill_grace) bounds the driver; give it that and some slack.
  const auto rc = driver.wait(20s);
  ASSERT_TRUE(rc) << "driver still running 20 s after SIGINT (issue 19); stderr:\n"
                  << slurp(jd.path / "err.txt");
  ASSERT_TRUE(running) << slurp(jd.path / "err.txt");
  EXPECT_EQ(*rc, 130) << slurp(jd.path / "err.txt");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s);
  // Cancelled before the driver exited: nothing keeps running (or billing) on the cluster.
  EXPECT_TRUE(unfinished_jobs("pepita-worker").empty() ||
              eventually([] { return unfinished_jobs("pepita-worker").empty(); }, 10s))
      << shell("squeue").second;
}

TEST(SlurmCluster, WorkerJobsThatKeepFailingAreNotResubmittedForever) {
  REQUIRE_SLURM();
  SlurmOptions o;
  o.nodes = 1;
  o.worker_binary = "/bin/false";  // every job exits at once, before a worker could connect
  o.driver_address = "127.0.0.1";
  o.listen = "127.0.0.1:0";
  o.job_name = "pepita-crashloop";
  JobDir logs;
  o.work_dir = logs.path.string();  // kept after failures: make it one the test removes
  o.poll_interval = 100ms;
  o.max_failed_jobs = 2;
  LogLines log;
  o.log = log.sink();
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  auto pool = pool::Pool::builder().executor(*exec).build().value();
  auto handle =
      pool.submit(task::Task::binary("/bin/true").backend(task::Backend::Remote).build().value());
  ASSERT_TRUE(handle);
  ASSERT_TRUE(eventually([&] { return log.count("submitting no more") > 0; }, 30s)) << log.all();
  std::this_thread::sleep_for(1s);
  EXPECT_EQ((*exec)->submitted().size(), 2u) << log.all();
  pool.shutdown(pool::ShutdownMode::Immediate);
  EXPECT_EQ(handle->wait().status, executor::Status::Cancelled);
  EXPECT_TRUE(unfinished_jobs("pepita-crashloop").empty());
  EXPECT_FALSE(fs::exists(logs.path / "key")) << "the one-time key must not outlive the run";
}

// A worker job whose worker connected and that then ended (scancel'ed by someone else, as a
// preemption would) is not a failed start: even at max_failed_jobs 1, the next task gets a new job.
TEST(SlurmCluster, AWorkerJobThatConnectedAndThenEndedIsNotAFailedStart) {
  REQUIRE_SLURM();
  SlurmOptions o = pepita_worker_jobs("pepita-preempted");
  o.idle_release = std::chrono::hours(1);  // the job is ended by scancel, never released
  o.max_failed_jobs = 1;
  LogLines log;
  o.log = log.sink();
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  auto pool = pool::Pool::builder().executor(*exec).build().value();
  auto echo = [] {
    return task::Task::binary("/bin/echo").args({"ran"}).backend(task::Backend::Remote).build();
  };
  auto first = pool.submit(echo().value());
  ASSERT_TRUE(first);
  EXPECT_EQ(first->wait().stdout_data, "ran\n") << log.all();
  std::vector<WorkerJob> jobs;
  ASSERT_TRUE(eventually(  // the monitor's next poll marks the job connected
      [&] {
        jobs = (*exec)->jobs();
        return jobs.size() == 1 && jobs[0].connected;
      },
      10s))
      << log.all();
  EXPECT_EQ(shell("scancel " + std::to_string(jobs[0].id)).first, 0);
  ASSERT_TRUE(eventually([&] { return (*exec)->jobs().empty(); }, 30s)) << log.all();

  auto second = pool.submit(echo().value());
  ASSERT_TRUE(second);
  const bool resubmitted = eventually([&] { return (*exec)->submitted().size() == 2; }, 30s);
  EXPECT_TRUE(resubmitted) << log.all();
  EXPECT_EQ(log.count("submitting no more"), 0u) << log.all();
  if (!resubmitted) pool.shutdown(pool::ShutdownMode::Immediate);
  EXPECT_EQ(second->wait().stdout_data, resubmitted ? "ran\n" : "") << log.all();
  pool.shutdown();
  EXPECT_TRUE(eventually([] { return unfinished_jobs("pepita-preempted").empty(); }, 15s))
      << shell("squeue").second;
}

// backend = "slurm" through the registry, without --slurm: the sizing flags reach the backend,
// every task's output comes back, the job ids go to the state directory, nothing is left.
TEST(SlurmCluster, JobFileTasksWithBackendSlurmRunOnWorkerJobs) {
  REQUIRE_SLURM();
  JobDir jd;
  std::ofstream(jd.path / "job.toml")
      << "[job]\nname = \"slurm-backend\"\n[pool]\nretries = 0\n"
      << "[[task]]\nname = \"t\"\ncount = 20\nbackend = \"slurm\"\ncommand = \"/bin/sh\"\n"
      << "args = [\"-c\", \"echo slurm $0\", \"${i}\"]\n";
  Driver driver(
      {"run", "--nodes", "2", "--cpus-per-worker", "2", "--driver-address", "127.0.0.1", "--json",
       "-q", "--state-dir", (jd.path / "state").string(), (jd.path / "job.toml").string()},
      jd.path / "out.json", jd.path / "err.txt");
  ASSERT_GT(driver.pid(), 0);
  const auto rc = driver.wait(120s);
  ASSERT_TRUE(rc) << "driver still running after 120 s; stderr:\n" << slurp(jd.path / "err.txt");
  ASSERT_EQ(*rc, 0) << slurp(jd.path / "err.txt");

  const auto doc = nlohmann::json::parse(slurp(jd.path / "out.json"), nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << slurp(jd.path / "out.json");
  ASSERT_EQ(doc["tasks"].size(), 20u);
  for (const auto& t : doc["tasks"]) {
    const std::string name = t["name"].get<std::string>();
    EXPECT_EQ(t["status"], "succeeded") << name << ": " << t["error"];
    EXPECT_EQ(t["stdout"].get<std::string>(), "slurm " + name.substr(2) + "\n") << name;
  }
  EXPECT_EQ(doc["stats"]["succeeded"], 20);
  const std::string err = slurp(jd.path / "err.txt");
  EXPECT_NE(err.find("submitted worker job"), std::string::npos) << err;
  // Its own ids file (not --slurm's slurm-jobs), for the next run to scancel after a SIGKILL.
  EXPECT_FALSE(slurp(jd.path / "state" / "slurm-backend-jobs").empty());
  EXPECT_FALSE(fs::exists(jd.path / "state" / "slurm-jobs"));
  EXPECT_TRUE(eventually([] { return unfinished_jobs("pepita-worker").empty(); }, 15s))
      << "left behind in squeue:\n"
      << shell("squeue").second;
}

TEST(SlurmCluster, RefusedSubmissionShowsSlurmsMessageAndLeavesNothing) {
  REQUIRE_SLURM();
  JobDir jd;
  std::ofstream(jd.path / "job.toml")
      << "[[task]]\nname = \"a\"\nbackend = \"remote\"\ncommand = \"/bin/true\"\n";
  auto [rc, out] =
      shell(kPepita + " run --slurm --nodes 2 --partition no-such-partition --state-dir " +
            (jd.path / "state").string() + " " + (jd.path / "job.toml").string() + " 2>&1");
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("invalid partition specified: no-such-partition"), std::string::npos) << out;
  EXPECT_TRUE(unfinished_jobs("pepita-worker").empty());
}

// Issue 22: a worker job asked for --mem advertises what Slurm granted (SLURM_MEM_PER_NODE),
// not the node's memory: a task over it is refused at submit naming the largest worker, one
// under it runs with its allocation.
TEST(SlurmCluster, AWorkerJobWithMemAdvertisesSlurmsGrant) {
  REQUIRE_SLURM();
  SlurmOptions o = pepita_worker_jobs("pepita-mem");
  o.memory = 256ull << 20;
  o.log = [](std::string_view line) {
    std::printf("  slurm: %.*s\n", static_cast<int>(line.size()), line.data());
  };
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  EXPECT_TRUE((*exec)->places_resources());
  auto pool = pool::Pool::builder().executor(*exec).build().value();
  auto task_with = [](std::uint64_t memory) {
    task::ResourceRequest r;
    r.memory = memory;
    return task::Task::binary("/bin/echo")
        .args({"fits"})
        .backend(task::Backend::Remote)
        .resources(r)
        .build()
        .value();
  };
  task::ResourceRequest half_gig;
  half_gig.memory = 512ull << 20;
  // Before any worker connected: judged by what each job asks Slurm for.
  auto early = (*exec)->can_ever_fit(half_gig);
  ASSERT_FALSE(early);
  EXPECT_NE(early.error().message().find("each Slurm worker job has 256M"), std::string::npos)
      << early.error().message();

  ASSERT_TRUE(pool.submit(task_with(128ull << 20)));
  const auto results = pool.wait_all();
  ASSERT_EQ(results.size(), 1u);
  ASSERT_TRUE(results[0].ok()) << results[0].error;
  EXPECT_EQ(results[0].stdout_data, "fits\n");
  ASSERT_TRUE(results[0].allocation.has_value());
  EXPECT_EQ(results[0].allocation->memory, 128ull << 20);

  // The worker has connected and advertised Slurm's grant, far below the node's memory.
  auto late = (*exec)->can_ever_fit(half_gig);
  ASSERT_FALSE(late);
  EXPECT_NE(late.error().message().find("needs 512M of memory; the largest worker has 256M"),
            std::string::npos)
      << late.error().message();
  auto refused = pool.submit(task_with(512ull << 20));
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("the largest worker has 256M"), std::string::npos)
      << refused.error().message();
  pool.shutdown();
  EXPECT_TRUE(eventually([] { return unfinished_jobs("pepita-mem").empty(); }, 15s))
      << shell("squeue").second;
}

TEST(SlurmCluster, WorkerJobsAreReleasedWhenIdleAndComeBackForNewWork) {
  REQUIRE_SLURM();
  SlurmOptions o;
  o.nodes = 2;
  o.worker_binary = kPepita;
  o.driver_address = "127.0.0.1";
  o.listen = "127.0.0.1:0";
  o.job_name = "pepita-elastic";
  o.tls = true;  // the submitted workers get --tls too
  o.poll_interval = 200ms;
  o.idle_release = 1000ms;
  o.log = [](std::string_view line) {
    std::printf("  slurm: %.*s\n", static_cast<int>(line.size()), line.data());
  };
  auto exec = SlurmExecutor::create(o);
  ASSERT_TRUE(exec) << exec.error().to_string();
  auto pool = pool::Pool::builder().executor(*exec).build().value();

  auto run_batch = [&](int n, int base) {
    std::vector<task::Task> tasks;
    for (int i = 0; i < n; ++i) {
      tasks.push_back(task::Task::binary("/bin/echo")
                          .args({std::to_string(base + i)})
                          .backend(task::Backend::Remote)
                          .build()
                          .value());
    }
    ASSERT_TRUE(pool.submit_all(std::move(tasks)));
    const auto results = pool.wait_all();
    ASSERT_EQ(results.size(), static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(results[static_cast<std::size_t>(i)].ok())
          << results[static_cast<std::size_t>(i)].error;
      EXPECT_EQ(results[static_cast<std::size_t>(i)].stdout_data, std::to_string(base + i) + "\n");
    }
  };
  run_batch(20, 0);
  ASSERT_TRUE(eventually([&] { return (*exec)->jobs().empty(); }, 20s))
      << "idle worker jobs were not released";
  EXPECT_TRUE(eventually([] { return unfinished_jobs("pepita-elastic").empty(); }, 15s));
  const std::size_t before = (*exec)->submitted().size();
  run_batch(10, 100);  // demand again: jobs are submitted again
  EXPECT_GT((*exec)->submitted().size(), before);

  pool.shutdown();
  EXPECT_TRUE((*exec)->jobs().empty());
  EXPECT_TRUE(eventually([] { return unfinished_jobs("pepita-elastic").empty(); }, 15s))
      << shell("squeue").second;
}

}  // namespace
}  // namespace pepita::slurm
