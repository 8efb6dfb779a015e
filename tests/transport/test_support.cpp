// Test helpers; also the entry point of worker child processes (before gtest's main runs).
#include "test_support.hpp"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

extern char** environ;

namespace pepita::transport::test {
namespace {

constexpr const char* kWorkerEnv = "PEPITA_TRANSPORT_TEST_WORKER";

// Every file and cache directory the tests make lives under one per-process root, removed when
// the test binary exits normally (worker children leave with _Exit and do not remove it). The
// root is made by mkdtemp, not named after the pid: pids wrap (pid_max is 32768 here) within one
// ctest run, and a root left by a killed process made a later process's O_EXCL key file fail.
struct TempRoot {
  TempRoot() : owner(::getpid()) {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "pepita-transport-test.XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror(("transport tests: mkdtemp " + tmpl).c_str());
      std::abort();
    }
    path = tmpl;
  }
  ~TempRoot() {
    if (::getpid() != owner) return;
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  pid_t owner;
  std::filesystem::path path;
};

std::string unique_path(const char* stem) {
  static TempRoot root;
  static std::atomic<int> counter{0};
  return (root.path / (std::string(stem) + "." + std::to_string(counter.fetch_add(1)))).string();
}

// Child mode: PEPITA_TRANSPORT_TEST_WORKER="<key file> <slots> <port> <port file> [host]".
// Runs a worker until SIGTERM (drain) and exits without returning to gtest.
[[noreturn]] void worker_child_main(const char* spec) {
  char key_path[512];
  unsigned slots = 0, port = 0;
  char port_file[512];
  char host[64] = "127.0.0.1";
  if (std::sscanf(spec, "%511s %u %u %511s %63s", key_path, &slots, &port, port_file, host) < 4) {
    std::fprintf(stderr, "bad %s\n", kWorkerEnv);
    std::_Exit(2);
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // worker threads inherit the mask
  auto key = Key::from_file(key_path);
  if (!key) {
    std::fprintf(stderr, "worker child: %s\n", key.error().to_string().c_str());
    std::_Exit(3);
  }
  WorkerOptions o;
  o.listen = std::string(host) + ":" + std::to_string(port);
  o.allow_non_loopback = true;  // the netns test listens on a veth address
  o.key = std::move(*key);
  o.slots = slots;
  o.name = "child-" + std::to_string(::getpid());
  o.cache_dir = std::string(port_file) + ".cache";  // inside the parent's test root
  // No sandbox floor: these workers test other features with host paths (a test root of mode
  // 0700, files a task writes for the test to read); sandbox_test.cpp tests the floor.
  o.sandbox = task::SandboxPolicy::none();
  o.heartbeat_interval = std::chrono::milliseconds(200);
  o.dead_after = std::chrono::milliseconds(3000);
  o.log = [](std::string_view) {};
  auto w = Worker::start(std::move(o));
  if (!w) {
    std::fprintf(stderr, "worker child: %s\n", w.error().to_string().c_str());
    std::_Exit(4);
  }
  {
    const std::string tmp = std::string(port_file) + ".tmp";
    std::ofstream(tmp) << (*w)->endpoint().port << "\n";
    std::rename(tmp.c_str(), port_file);
  }
  int sig = 0;
  sigwait(&set, &sig);
  (*w)->stop(Worker::StopMode::Drain);
  (*w)->wait();
  w->reset();
  std::_Exit(0);
}

// Runs before gtest's main in every process of this binary; only child workers act on it.
const bool kChildChecked = [] {
  if (const char* spec = std::getenv(kWorkerEnv)) worker_child_main(spec);
  return true;
}();

}  // namespace

KeyFile::KeyFile() : key(Key::generate().value()), path(unique_path("pepita-test-key")) {
  if (auto r = Key::write_file(path, key); !r) {
    std::fprintf(stderr, "transport tests: %s\n", r.error().to_string().c_str());
    std::abort();
  }
}
KeyFile::~KeyFile() { std::filesystem::remove(path); }

namespace {

std::unique_ptr<Worker> start_worker_with(const Key& key, std::uint32_t slots,
                                          std::chrono::milliseconds handshake_timeout,
                                          std::optional<task::Inventory> inventory) {
  WorkerOptions o;
  // emplace, not optional's move assignment: g++ 12 at -O2 warns (maybe-uninitialized) inside it.
  if (inventory) o.inventory.emplace(std::move(*inventory));
  o.listen = "127.0.0.1:0";
  o.key = key;
  o.slots = slots;
  o.heartbeat_interval = std::chrono::milliseconds(100);
  o.dead_after = std::chrono::milliseconds(2000);
  o.connection.handshake_timeout = handshake_timeout;
  o.connection.io_timeout = handshake_timeout;
  o.cache_dir = unique_path("pepita-test-cache");
  // No sandbox floor: these workers test other features with host paths (a test root of mode
  // 0700, files a task writes for the test to read); sandbox_test.cpp tests the floor.
  o.sandbox = task::SandboxPolicy::none();
  o.log = [](std::string_view) {};
  auto w = Worker::start(std::move(o));
  if (!w) {
    std::fprintf(stderr, "start_worker: %s\n", w.error().to_string().c_str());
    return nullptr;
  }
  return std::move(*w);
}

}  // namespace

std::unique_ptr<Worker> start_worker(const Key& key, std::uint32_t slots,
                                     std::chrono::milliseconds handshake_timeout) {
  return start_worker_with(key, slots, handshake_timeout, std::nullopt);
}

std::unique_ptr<Worker> start_worker(const Key& key, std::uint32_t slots,
                                     task::Inventory inventory) {
  return start_worker_with(key, slots, std::chrono::milliseconds(2000), std::move(inventory));
}

std::unique_ptr<WorkerProcess> WorkerProcess::spawn(const std::string& key_path,
                                                    std::uint32_t slots, std::uint16_t port,
                                                    const std::string& netns,
                                                    const std::string& host) {
  auto wp = std::make_unique<WorkerProcess>();
  wp->host_ = host;
  wp->port_file_ = unique_path("pepita-test-port");
  std::filesystem::remove(wp->port_file_);
  const std::string spec = std::string(kWorkerEnv) + "=" + key_path + " " + std::to_string(slots) +
                           " " + std::to_string(port) + " " + wp->port_file_ + " " + host;
  std::vector<std::string> env_s{spec};
  for (char** e = environ; *e != nullptr; ++e) {
    if (!std::string_view(*e).starts_with(kWorkerEnv)) env_s.emplace_back(*e);
  }
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<std::string> argv_s;
  if (!netns.empty()) argv_s = {"ip", "netns", "exec", netns};  // ip execs the binary in place
  argv_s.push_back(self);
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (::posix_spawnp(&wp->pid_, argv[0], nullptr, nullptr, argv.data(), envp.data()) != 0) {
    return nullptr;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream f(wp->port_file_);
    unsigned p = 0;
    if (f >> p) {
      wp->port_ = static_cast<std::uint16_t>(p);
      return wp;
    }
    int status = 0;
    if (::waitpid(wp->pid_, &status, WNOHANG) == wp->pid_) {
      wp->pid_ = -1;
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return nullptr;
}

WorkerProcess::~WorkerProcess() {
  if (pid_ > 0) kill_and_wait(SIGKILL);
  std::filesystem::remove(port_file_);
}

int WorkerProcess::kill_and_wait(int sig) {
  int status = 0;
  if (pid_ > 0) {
    ::kill(pid_, sig);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  return status;
}

RemoteOptions fast_options(const Key& key, std::vector<std::string> workers) {
  using namespace std::chrono_literals;
  RemoteOptions o;
  o.workers = std::move(workers);
  o.key = key;
  o.heartbeat_interval = 100ms;
  o.suspect_after = 1000ms;
  o.dead_after = 2000ms;
  o.reconnect_initial = 20ms;
  o.reconnect_max = 200ms;
  o.log = [](std::string_view) {};
  return o;
}

RemoteTask sleep_task(std::uint64_t id, int ms) {
  RemoteTask t{.id = id};
  t.spec.kind = TaskKind::Function;
  t.spec.path = "sleep_ms";
  t.spec.stdin_data = std::to_string(ms);
  return t;
}

bool EchoTasks::submit(RemoteDispatcher& d, int n, const std::string& sleep_s) {
  {
    std::lock_guard lock(mu_);
    completions_.assign(static_cast<std::size_t>(n) + 1, 0);
    outputs_.assign(static_cast<std::size_t>(n) + 1, "");
  }
  for (int i = 1; i <= n; ++i) {
    RemoteTask t{.id = static_cast<std::uint64_t>(i)};
    t.spec.path = "/bin/sh";
    t.spec.args = {"-c", "sleep " + sleep_s + "; echo $0", std::to_string(i)};
    auto submitted = d.submit(std::move(t), [this](RemoteOutcome out) {
      std::lock_guard lock(mu_);
      ++completions_[out.id];
      outputs_[out.id] = out.result.stdout_data;
      if (out.result.status != TaskStatus::Succeeded) {
        failures_.push_back("task " + std::to_string(out.id) + ": " + out.result.error);
      }
      done_.fetch_add(1);
    });
    if (!submitted) return false;
  }
  return true;
}

::testing::AssertionResult EchoTasks::each_exactly_once() const {
  std::lock_guard lock(mu_);
  if (!failures_.empty()) return ::testing::AssertionFailure() << failures_.front();
  for (std::size_t i = 1; i < completions_.size(); ++i) {
    if (completions_[i] != 1) {
      return ::testing::AssertionFailure()
             << "task " << i << " completed " << completions_[i] << " times";
    }
    if (outputs_[i] != std::to_string(i) + "\n") {
      return ::testing::AssertionFailure() << "task " << i << " printed '" << outputs_[i] << "'";
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace pepita::transport::test
