// Sandboxes on the wire (issue 23, protocol 4): Submit carries every field of the task's
// task::SandboxPolicy and decode refuses unknown levels and networks; raise_to_floor lifts a
// driver's policy to the worker's floor part by part; the worker applies its floor to the task
// it hands its executor (its log says so), refuses host binds from drivers, and the pool's
// RemoteExecutor puts the task's sandbox in the Submit. What the sandbox does to the process is
// the executor's (tests/executor/sandbox*_test.cpp); the cases at the end check that the
// mechanism reaches a driver's task.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "pepita/pool/pool.hpp"
#include "pepita/transport/messages.hpp"
#include "pepita/transport/remote.hpp"
#include "pepita/transport/remote_executor.hpp"
#include "pepita/transport/worker.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;
using task::SandboxLevel;
using task::SandboxNetwork;
using task::SandboxPolicy;

// The encoded size of a SandboxPolicy with no disk and no binds: the last bytes of a Submit.
constexpr std::size_t kPlainSandboxBytes = 1 + 4 + 1 + 2 + 4 + 1 + 4 + 4 + 3 * 8;
// What follows it since protocol 5: the empty lists of staged inputs and outputs.
constexpr std::size_t kNoStagedFilesBytes = 4 + 4;

SandboxPolicy every_field() {
  SandboxPolicy p = SandboxPolicy::strict();
  p.level = SandboxLevel::Custom;
  p.pid_ns = false;
  p.id = 4242;
  p.disk = 123456789;
  p.read_only = {"/data", "/models/llama"};
  p.writable = {"/out"};
  p.max_open_files = 64;
  p.max_file_size = 1 << 20;
  p.max_processes = 17;
  return p;
}

TEST(SandboxWire, SubmitCarriesEveryFieldOfThePolicy) {
  for (const SandboxPolicy& p :
       {SandboxPolicy::none(), SandboxPolicy::standard(), SandboxPolicy::strict(), every_field()}) {
    SubmitMsg m{.attempt = 2, .kind = TaskKind::Process, .path = "/bin/true"};
    m.sandbox = p;
    auto back = decode_submit(encode(m));
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(back->sandbox, p) << task::to_string(p.level);
    EXPECT_EQ(*back, m);
  }
}

// Protocol 4 brought the sandbox; 5 (issue 24) kept it where it was and appended staged files.
TEST(SandboxWire, ProtocolVersionIsSix) { EXPECT_EQ(kProtocolVersion, 6); }

Bytes plain_submit() {
  SubmitMsg m{.attempt = 1, .kind = TaskKind::Process, .path = "/bin/true"};
  Bytes b = encode(m);
  b.resize(b.size() - kNoStagedFilesBytes);  // the sandbox's bytes last, as in protocol 4
  return b;
}

// plain_submit() with its (empty) staged-file lists back, ready to decode.
Bytes with_staged_tail(Bytes b) {
  b.resize(b.size() + kNoStagedFilesBytes, std::byte{0});
  return b;
}

TEST(SandboxWire, AnUnknownLevelIsAProtocolError) {
  Bytes b = plain_submit();
  b[b.size() - kPlainSandboxBytes] = std::byte{4};  // level: 0..3 exist
  auto back = decode_submit(with_staged_tail(b));
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code(), ErrorCode::Protocol);
  EXPECT_NE(back.error().message().find("unknown sandbox level 4"), std::string::npos)
      << back.error().message();
}

TEST(SandboxWire, AnUnknownNetworkIsAProtocolError) {
  Bytes b = plain_submit();
  b[b.size() - kPlainSandboxBytes + 5] = std::byte{2};  // network: 0 host, 1 none
  auto back = decode_submit(with_staged_tail(b));
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code(), ErrorCode::Protocol);
  EXPECT_NE(back.error().message().find("unknown sandbox network 2"), std::string::npos)
      << back.error().message();
}

TEST(SandboxWire, ABadBooleanInThePolicyIsAProtocolError) {
  Bytes b = plain_submit();
  b[b.size() - kPlainSandboxBytes + 1] = std::byte{7};  // user_ns
  auto back = decode_submit(with_staged_tail(b));
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code(), ErrorCode::Protocol);
  EXPECT_NE(back.error().message().find("bad boolean"), std::string::npos);
}

TEST(SandboxWire, ATruncatedPolicyIsAProtocolError) {
  SubmitMsg m{.attempt = 1, .kind = TaskKind::Process, .path = "/bin/true"};
  m.sandbox = every_field();
  const Bytes full = encode(m);
  // Every cut inside the policy (a protocol 3 Submit stops where it starts) is refused.
  for (std::size_t cut = 1 + kNoStagedFilesBytes; cut <= kPlainSandboxBytes + kNoStagedFilesBytes;
       ++cut) {
    Bytes b(full.begin(), full.end() - static_cast<std::ptrdiff_t>(cut));
    auto back = decode_submit(b);
    ASSERT_FALSE(back) << "cut " << cut;
    EXPECT_EQ(back.error().code(), ErrorCode::Protocol);
  }
}

TEST(SandboxWire, AnOversizedBindListIsAProtocolError) {
  Bytes b = plain_submit();
  // read_only's count sits after level, 4 bools, network, 2 bools, id and the disk flag.
  const std::size_t at = b.size() - kPlainSandboxBytes + 1 + 4 + 1 + 2 + 4 + 1;
  for (int i = 0; i < 4; ++i) b[at + static_cast<std::size_t>(i)] = std::byte{0xff};
  auto back = decode_submit(with_staged_tail(b));
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code(), ErrorCode::Protocol);
}

TEST(SandboxWire, ARelativeBindIsAProtocolError) {
  for (const char* path : {"data", ""}) {
    SubmitMsg m{.attempt = 1, .kind = TaskKind::Process, .path = "/bin/true"};
    m.sandbox = SandboxPolicy::standard();
    m.sandbox.writable = {"/out", path};
    auto back = decode_submit(encode(m));
    ASSERT_FALSE(back) << "'" << path << "' was accepted";
    EXPECT_EQ(back.error().code(), ErrorCode::Protocol);
    EXPECT_NE(back.error().message().find("is not an absolute path"), std::string::npos)
        << back.error().message();
  }
}

TEST(SandboxWire, LevelNoneWithPartsSetIsAProtocolError) {
  SubmitMsg m{.attempt = 1, .kind = TaskKind::Process, .path = "/bin/true"};
  m.sandbox.seccomp = true;  // level stays none: an executor would skip the filter
  auto back = decode_submit(encode(m));
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code(), ErrorCode::Protocol);
  EXPECT_NE(back.error().message().find("level none with parts set"), std::string::npos)
      << back.error().message();
}

// ---- raise_to_floor ----

TEST(SandboxFloor, ANoneFloorLeavesTheTaskAsItAsked) {
  EXPECT_EQ(raise_to_floor(SandboxPolicy::none(), SandboxPolicy::none()), SandboxPolicy::none());
  EXPECT_EQ(raise_to_floor(every_field(), SandboxPolicy::none()), every_field());
}

TEST(SandboxFloor, ATaskAskingForLessIsRaisedToTheFloor) {
  EXPECT_EQ(raise_to_floor(SandboxPolicy::none(), SandboxPolicy::standard()),
            SandboxPolicy::standard());
  EXPECT_EQ(raise_to_floor(SandboxPolicy::none(), SandboxPolicy::strict()),
            SandboxPolicy::strict());
  EXPECT_EQ(raise_to_floor(SandboxPolicy::standard(), SandboxPolicy::strict()),
            SandboxPolicy::strict());
}

TEST(SandboxFloor, ATaskAskingForMoreKeepsItsPolicy) {
  EXPECT_EQ(raise_to_floor(SandboxPolicy::strict(), SandboxPolicy::standard()),
            SandboxPolicy::strict());
  SandboxPolicy tight = SandboxPolicy::strict();
  tight.level = SandboxLevel::Custom;
  tight.disk = 1 << 20;
  tight.max_processes = 8;
  EXPECT_EQ(raise_to_floor(tight, SandboxPolicy::standard()), tight);
}

TEST(SandboxFloor, EachPartIsRaisedOnItsOwn) {
  // Asks for no network but nothing else: the standard floor adds the namespaces and filter,
  // the task keeps its network = none, and the mix is no preset.
  SandboxPolicy asked;
  asked.level = SandboxLevel::Custom;
  asked.network = SandboxNetwork::None;
  asked.max_open_files = 32;
  asked.id = 0;  // a driver asking to run as root
  const SandboxPolicy p = raise_to_floor(asked, SandboxPolicy::standard());
  EXPECT_EQ(p.level, SandboxLevel::Custom);
  EXPECT_TRUE(p.user_ns && p.mount_ns && p.pid_ns && p.ipc_uts_ns && p.no_new_privs && p.seccomp);
  EXPECT_EQ(p.network, SandboxNetwork::None);
  EXPECT_EQ(p.max_open_files, 32u);                                     // its own, tighter
  EXPECT_EQ(p.max_processes, SandboxPolicy::standard().max_processes);  // the floor's
  EXPECT_EQ(p.id, SandboxPolicy::standard().id);  // the worker picks who tasks run as
}

TEST(SandboxFloor, LimitsTakeTheTighterOfTaskAndFloor) {
  SandboxPolicy asked = SandboxPolicy::strict();
  asked.disk = std::uint64_t{8} << 30;  // more disk than the strict floor's 1 GiB
  asked.max_processes = 0;              // no pids limit
  asked.max_file_size = 4096;
  const SandboxPolicy p = raise_to_floor(asked, SandboxPolicy::strict());
  EXPECT_EQ(p.disk, SandboxPolicy::strict().disk);
  EXPECT_EQ(p.max_processes, SandboxPolicy::strict().max_processes);
  EXPECT_EQ(p.max_file_size, 4096u);
  EXPECT_EQ(p.level, SandboxLevel::Custom);  // strict plus a file size limit
}

TEST(SandboxFloor, ASeccomplessTaskUnderAStrictFloorIsStrict) {
  SandboxPolicy asked = SandboxPolicy::standard();
  asked.level = SandboxLevel::Custom;
  asked.seccomp = false;
  EXPECT_EQ(raise_to_floor(asked, SandboxPolicy::strict()), SandboxPolicy::strict());
}

// ---- the worker ----

std::unique_ptr<Worker> worker_with_floor(const Key& key, SandboxPolicy floor,
                                          test::LogLines& log) {
  WorkerOptions o;
  o.listen = "127.0.0.1:0";
  o.key = key;
  o.slots = 1;
  o.heartbeat_interval = 100ms;
  task::Inventory inv;
  inv.cpus = {0};
  inv.memory = std::uint64_t{1} << 30;
  o.inventory.emplace(std::move(inv));
  o.sandbox = std::move(floor);
  o.log = log.sink();
  auto w = Worker::start(std::move(o));
  if (!w) ADD_FAILURE() << w.error().to_string();
  return w ? std::move(*w) : nullptr;
}

// A worker with `floor` and a dispatcher connected to it; `log` holds the worker's lines.
struct FloorRig {
  test::KeyFile kf;
  test::LogLines log;
  std::unique_ptr<Worker> worker;
  std::unique_ptr<RemoteDispatcher> dispatcher;
};

std::unique_ptr<FloorRig> floor_rig(SandboxPolicy floor) {
  auto rig = std::make_unique<FloorRig>();
  rig->worker = worker_with_floor(rig->kf.key, std::move(floor), rig->log);
  if (!rig->worker) return nullptr;
  auto d = RemoteDispatcher::start(
      test::fast_options(rig->kf.key, {rig->worker->endpoint().to_string()}));
  if (!d) return nullptr;
  rig->dispatcher = std::move(*d);
  return rig;
}

RemoteTask true_task(std::uint64_t id, SandboxPolicy sandbox) {
  RemoteTask t{.id = id};
  t.spec.kind = TaskKind::Process;
  t.spec.path = "/bin/true";
  t.spec.timeout_ns = 60'000'000'000;
  t.spec.sandbox = std::move(sandbox);
  return t;
}

TEST(SandboxWorker, TheDefaultFloorIsStandard) {
  EXPECT_EQ(WorkerOptions{}.sandbox, SandboxPolicy::standard());
}

TEST(SandboxWorker, SaysAtStartWhichFloorItHolds) {
  test::KeyFile kf;
  test::LogLines log;
  auto w = worker_with_floor(kf.key, SandboxPolicy::strict(), log);
  ASSERT_TRUE(w);
  EXPECT_TRUE(log.contains("sandbox floor strict")) << log.all();
}

TEST(SandboxWorker, RaisesATaskAskingForNoneToItsFloorAndSaysSoOnce) {
  auto rig = floor_rig(SandboxPolicy::standard());
  ASSERT_TRUE(rig);
  auto& d = rig->dispatcher;
  test::LogLines& log = rig->log;
  for (std::uint64_t id = 1; id <= 2; ++id) {
    auto out = d->run(true_task(id, SandboxPolicy::none()));
    ASSERT_TRUE(out) << out.error().to_string();
    EXPECT_EQ(out->result.status, TaskStatus::Succeeded) << out->result.error;
  }
  EXPECT_TRUE(
      log.contains("asking for sandbox none run in standard (this worker's floor is "
                   "standard)"))
      << log.all();
  std::lock_guard lock(log.mu);
  EXPECT_EQ(std::count_if(log.lines.begin(), log.lines.end(),
                          [](const std::string& l) { return l.find("asking for") != l.npos; }),
            1);
}

TEST(SandboxWorker, ATaskAskingForMoreThanTheFloorIsNotRaised) {
  auto rig = floor_rig(SandboxPolicy::standard());
  ASSERT_TRUE(rig);
  auto& d = rig->dispatcher;
  test::LogLines& log = rig->log;
  auto out = d->run(true_task(1, SandboxPolicy::strict()));
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(out->result.status, TaskStatus::Succeeded) << out->result.error;
  EXPECT_FALSE(log.contains("asking for")) << log.all();
}

TEST(SandboxWorker, RefusesHostBindsFromADriverWithStatusSandbox) {
  auto rig = floor_rig(SandboxPolicy::standard());
  ASSERT_TRUE(rig);
  auto& d = rig->dispatcher;
  SandboxPolicy p = SandboxPolicy::standard();
  p.writable = {"/root"};
  auto out = d->run(true_task(1, p));
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(out->result.status, TaskStatus::Sandboxed);
  EXPECT_NE(out->result.error.find("sandbox: this worker binds no host paths"), std::string::npos)
      << out->result.error;
}

// The driver's cwd is a path of its own machine: under a floor the task works in a directory
// the worker made for it (the executor binds it as the work dir), not where the driver says.
TEST(SandboxWorker, UnderAFloorATaskWorksInItsOwnDirectoryNotTheDriversCwd) {
  auto rig = floor_rig(SandboxPolicy::standard());
  ASSERT_TRUE(rig);
  auto& d = rig->dispatcher;
  RemoteTask t = true_task(1, SandboxPolicy::none());
  t.spec.path = "/bin/sh";
  t.spec.args = {"-c", "pwd"};
  t.spec.cwd = "/";
  auto out = d->run(t);
  ASSERT_TRUE(out) << out.error().to_string();
  ASSERT_EQ(out->result.status, TaskStatus::Succeeded) << out->result.error;
  EXPECT_NE(out->result.stdout_data, "/\n");
  EXPECT_NE(out->result.stdout_data.find("/tasks/"), std::string::npos) << out->result.stdout_data;
}

TEST(SandboxWorker, ANoneFloorRunsTasksAsTheyAsk) {
  auto rig = floor_rig(SandboxPolicy::none());
  ASSERT_TRUE(rig);
  auto& d = rig->dispatcher;
  test::LogLines& log = rig->log;
  EXPECT_TRUE(log.contains("sandbox floor none")) << log.all();
  auto out = d->run(true_task(1, SandboxPolicy::none()));
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(out->result.status, TaskStatus::Succeeded) << out->result.error;
  EXPECT_FALSE(log.contains("asking for")) << log.all();
}

TEST(SandboxWorker, ThePoolsRemoteExecutorSendsTheTasksSandbox) {
  test::KeyFile kf;
  test::LogLines log;
  // A strict floor raises a standard task: the log names what the Submit asked for.
  auto w = worker_with_floor(kf.key, SandboxPolicy::strict(), log);
  ASSERT_TRUE(w);
  RemoteExecutorOptions o;
  o.remote = test::fast_options(kf.key, {w->endpoint().to_string()});
  auto remote = RemoteExecutor::create(std::move(o)).value();
  auto pool = pool::Pool::builder().executor(remote).build().value();
  auto t = task::Task::binary("/bin/true")
               .backend(task::Backend::Remote)
               .sandbox(SandboxPolicy::standard())
               .build()
               .value();
  ASSERT_TRUE(pool.submit(t));
  auto results = pool.wait_all();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  EXPECT_TRUE(log.contains("asking for sandbox standard run in strict")) << log.all();
  pool.shutdown();
}

// ---- what the executor's sandbox does to a driver's task ----

// The kernel's own word that the floor reached the process: a task asking for nothing runs
// with no_new_privs set and in a user namespace other than the worker's.
TEST(SandboxWorker, ARaisedTaskRunsWithNoNewPrivs) {
  auto rig = floor_rig(SandboxPolicy::standard());
  ASSERT_TRUE(rig);
  auto& d = rig->dispatcher;
  RemoteTask t = true_task(1, SandboxPolicy::none());
  t.spec.path = "/bin/sh";
  t.spec.args = {"-c", "grep NoNewPrivs /proc/self/status"};
  auto out = d->run(t);
  ASSERT_TRUE(out) << out.error().to_string();
  ASSERT_EQ(out->result.status, TaskStatus::Succeeded) << out->result.error;
  EXPECT_NE(out->result.stdout_data.find("NoNewPrivs:\t1"), std::string::npos)
      << out->result.stdout_data;
}

// A driver's hostile commands under the default floor: the worker's secrets are not in the
// task's root, and the worker's pid is not in its pid namespace.
TEST(SandboxWorker, ADriversTaskCannotReadShadowOrKillTheWorker) {
  auto rig = floor_rig(SandboxPolicy::standard());
  ASSERT_TRUE(rig);
  auto& d = rig->dispatcher;
  RemoteTask shadow = true_task(1, SandboxPolicy::none());
  shadow.spec.path = "/bin/cat";
  shadow.spec.args = {"/etc/shadow", rig->kf.path};
  auto read = d->run(shadow);
  ASSERT_TRUE(read) << read.error().to_string();
  EXPECT_NE(read->result.status, TaskStatus::Succeeded) << read->result.stdout_data;
  EXPECT_EQ(read->result.stdout_data.find("root:"), std::string::npos);

  RemoteTask kill = true_task(2, SandboxPolicy::none());
  kill.spec.path = "/bin/kill";
  kill.spec.args = {"-9", std::to_string(::getpid())};
  auto killed = d->run(kill);
  ASSERT_TRUE(killed) << killed.error().to_string();
  EXPECT_NE(killed->result.status, TaskStatus::Succeeded);
  auto still = d->run(true_task(3, SandboxPolicy::none()));  // this process is the worker
  ASSERT_TRUE(still) << still.error().to_string();
  EXPECT_EQ(still->result.status, TaskStatus::Succeeded);
}

// A worker running as root hands a sandboxed task a directory of its own, owned by the
// policy's id: the shipped script runs from there and writes its working directory.
TEST(SandboxWorker, AShippedScriptRunsAndWritesItsWorkDir) {
  test::KeyFile kf;
  test::LogLines log;
  auto w = worker_with_floor(kf.key, SandboxPolicy::standard(), log);
  ASSERT_TRUE(w);
  RemoteExecutorOptions o;
  o.remote = test::fast_options(kf.key, {w->endpoint().to_string()});
  o.ship_binaries = true;
  auto remote = RemoteExecutor::create(std::move(o)).value();
  auto pool = pool::Pool::builder().executor(remote).build().value();
  const std::string script = "/tmp/pepita-sandbox-ship-" + std::to_string(::getpid());
  {
    std::ofstream f(script);
    f << "#!/bin/sh\necho written > out.txt && cat out.txt && id -u\n";
  }
  ::chmod(script.c_str(), 0755);
  auto t = task::Task::binary(script).backend(task::Backend::Remote).build().value();
  ASSERT_TRUE(pool.submit(t));
  auto results = pool.wait_all();
  std::filesystem::remove(script);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  EXPECT_TRUE(results[0].stdout_data.starts_with("written\n")) << results[0].stdout_data;
  pool.shutdown();
}

}  // namespace
}  // namespace pepita::transport
