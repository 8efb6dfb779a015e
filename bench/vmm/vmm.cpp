// Micro-VM start-to-result latency, throughput and host-call cost, against the isolation users
// have today: fork/exec of the same program built as a static Linux binary (guest/native/*).
// Prints one table: workload, ours, anchor, ours/anchor (time, medians; p99 alongside).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "pepita/vmm/vm.hpp"

namespace {

using namespace pepita;
using Clock = std::chrono::steady_clock;

const std::string kGuestDir = std::string(PEPITA_BINARY_DIR) + "/guest/";

struct Stats {
  double p50 = 0, p99 = 0;
};

Stats stats(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  if (us.empty()) return {};
  return {us[us.size() / 2], us[std::min(us.size() - 1, us.size() * 99 / 100)]};
}

double us_since(Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_vmm: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T must(Result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().to_string());
  return std::move(*r);
}

vmm::GuestImage image(const char* name) {
  return must(vmm::GuestImage::load_file(kGuestDir + name + ".elf"), name);
}

vmm::Snapshot snapshot(const char* name) {
  vmm::VmConfig config;
  config.snapshottable = true;
  return must(vmm::Vm::capture(must(vmm::Vm::create(image(name), config), "create")), "capture");
}

void check(const vmm::RunResult& r, const std::string& expect) {
  if (r.kind != vmm::ExitKind::Exited || r.output != expect)
    die("guest gave '" + r.output + "' (" + r.describe() + "), expected '" + expect + "'");
}

// fork + execve of a static binary with stdin from `input_fd` (rewound), stdout captured.
std::string fork_exec(const std::string& path, int input_fd) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) die("pipe2");
  ::lseek(input_fd, 0, SEEK_SET);
  pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    ::dup2(input_fd, 0);
    ::dup2(out[1], 1);
    char* argv[] = {const_cast<char*>(path.c_str()), nullptr};
    char* envp[] = {nullptr};
    ::execve(path.c_str(), argv, envp);
    ::_exit(127);
  }
  ::close(out[1]);
  std::string result;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;)
    result.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die(path + " failed");
  return result;
}

int memfd_with(const std::vector<std::byte>& data) {
  int fd = ::memfd_create("bench-input", MFD_CLOEXEC);
  if (fd < 0 || ::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
    die("memfd input");
  return fd;
}

struct Row {
  std::string workload;
  std::string ours, anchor;
  double ratio;
};
std::vector<Row> rows;

std::string fmt(Stats s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f us (p99 %.0f)", s.p50, s.p99);
  return buf;
}

void add(const std::string& workload, Stats ours, Stats anchor) {
  rows.push_back({workload, fmt(ours), fmt(anchor), ours.p50 / anchor.p50});
}

template <typename F>
Stats measure(int n, F&& f) {
  std::vector<double> us;
  us.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto t = Clock::now();
    f();
    us.push_back(us_since(t));
  }
  return stats(std::move(us));
}

// Throughput over `seconds` with one worker per core; returns tasks per second.
template <typename F>
double per_second_all_cores(double seconds, F&& make_worker) {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<long> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> pool;
  auto start = Clock::now();
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      auto step = make_worker();
      while (!stop.load(std::memory_order_relaxed)) {
        step();
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : pool) t.join();
  return static_cast<double>(done.load()) / (us_since(start) / 1e6);
}

std::vector<std::byte> dot_input(size_t n, int64_t& sum) {
  std::vector<std::byte> out(8 * n);
  sum = 0;
  std::vector<int32_t> v(2 * n);
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<int32_t>((i * 2654435761u) % 2001) - 1000;
  for (size_t i = 0; i < n; ++i) sum += int64_t{v[i]} * v[n + i];
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (auto ok = vmm::kvm_available(); !ok) {
    std::printf("bench_vmm: skipped, KVM unavailable: %s\n", ok.error().to_string().c_str());
    return 0;
  }
  const int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  const std::string hello_out = "hello from a pepita micro-VM\n";
  const std::string native = kGuestDir + "native/";
  const int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  // --- hello: start to result. ---
  auto hello = image("hello");
  auto hello_snap = snapshot("hello");
  Stats fork_hello = measure(n, [&] {
    if (fork_exec(native + "hello", dev_null) != hello_out) die("native hello output");
  });
  add("hello: cold VM (create, run, destroy)",
      measure(n, [&] { check(must(vmm::run_guest(hello, {}, {}), "run"), hello_out); }),
      fork_hello);
  add("hello: new VM from snapshot (CoW)",
      measure(n,
              [&] {
                auto vm = must(vmm::Vm::restore(hello_snap), "restore");
                check(must(vm.run({}), "run"), hello_out);
              }),
      fork_hello);
  {
    auto vm = must(vmm::Vm::restore(hello_snap), "restore");
    check(must(vm.run({}), "run"), hello_out);
    add("hello: recycled VM reset to snapshot",
        measure(n,
                [&] {
                  if (!vm.reset_to(hello_snap)) die("reset_to");
                  check(must(vm.run({}), "run"), hello_out);
                }),
        fork_hello);
  }

  // --- dot product over 64 Ki int32 pairs (512 KiB input). ---
  int64_t sum = 0;
  auto input = dot_input(64 * 1024, sum);
  const std::string dot_prefix = "dot " + std::to_string(sum) + " ";
  auto dot = image("dot");
  auto dot_snap = snapshot("dot");
  int input_fd = memfd_with(input);
  std::string dot_expect;
  Stats fork_dot = measure(n, [&] {
    dot_expect = fork_exec(native + "dot", input_fd);
    if (!dot_expect.starts_with(dot_prefix)) die("native dot: " + dot_expect);
  });
  add("dot 64Ki x int32: cold VM",
      measure(n, [&] { check(must(vmm::run_guest(dot, input, {}), "run"), dot_expect); }),
      fork_dot);
  add("dot 64Ki x int32: new VM from snapshot",
      measure(n,
              [&] {
                auto vm = must(vmm::Vm::restore(dot_snap), "restore");
                check(must(vm.run(input), "run"), dot_expect);
              }),
      fork_dot);
  {
    auto vm = must(vmm::Vm::restore(dot_snap), "restore");
    check(must(vm.run(input), "run"), dot_expect);
    add("dot 64Ki x int32: recycled VM",
        measure(n,
                [&] {
                  if (!vm.reset_to(dot_snap)) die("reset_to");
                  check(must(vm.run(input), "run"), dot_expect);
                }),
        fork_dot);
  }
  ::close(input_fd);

  // --- tasks per second on all cores (hello). ---
  const double vm_rate = per_second_all_cores(2.0, [&] {
    auto vm = std::make_shared<vmm::Vm>(must(vmm::Vm::restore(hello_snap), "restore"));
    check(must(vm->run({}), "run"), hello_out);
    return [&, vm] {
      if (!vm->reset_to(hello_snap)) die("reset_to");
      check(must(vm->run({}), "run"), hello_out);
    };
  });
  const double fresh_rate = per_second_all_cores(2.0, [&] {
    return [&] {
      auto vm = must(vmm::Vm::restore(hello_snap), "restore");
      check(must(vm.run({}), "run"), hello_out);
    };
  });
  const double fork_rate = per_second_all_cores(2.0, [&] {
    return [&] {
      if (fork_exec(native + "hello", dev_null) != hello_out) die("native hello");
    };
  });
  auto rate_row = [&](const std::string& what, double ours) {
    char a[64], b[64];
    std::snprintf(a, sizeof a, "%.0f /s", ours);
    std::snprintf(b, sizeof b, "%.0f /s", fork_rate);
    rows.push_back({what, a, b, fork_rate / ours});
  };
  rate_row("hello tasks/s, all cores, recycled VMs", vm_rate);
  rate_row("hello tasks/s, all cores, new VM from snapshot", fresh_rate);

  // --- host-call round trip vs a pipe round trip to another process. ---
  auto calls_snap = snapshot("calls");
  auto run_calls = [&](uint32_t rounds, uint32_t batch) {
    auto vm = must(vmm::Vm::restore(calls_snap), "restore");
    const uint32_t args[2] = {rounds, batch};
    auto r = must(vm.run(std::as_bytes(std::span(args))), "run");
    if (r.kind != vmm::ExitKind::Exited || r.exit_code != 0) die("calls guest: " + r.describe());
    return std::chrono::duration<double, std::micro>(r.elapsed).count();
  };
  const uint32_t rounds = 2000;
  std::vector<double> one, batched;
  for (int rep = 0; rep < 7; ++rep) {
    const double base = run_calls(0, 1);
    one.push_back((run_calls(rounds, 1) - base) / rounds);
    batched.push_back((run_calls(rounds, 64) - base) / (rounds * 64.0));
  }
  std::vector<double> pipe_rt;
  {
    int to_child[2], to_parent[2];
    if (::pipe(to_child) != 0 || ::pipe(to_parent) != 0) die("pipe");
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(to_child[1]);  // else the echo child never sees EOF
      ::close(to_parent[0]);
      char c;
      while (::read(to_child[0], &c, 1) == 1) (void)!::write(to_parent[1], &c, 1);
      ::_exit(0);
    }
    for (int rep = 0; rep < 7; ++rep) {
      auto t = Clock::now();
      char c = 'x';
      for (uint32_t i = 0; i < rounds; ++i)
        if (::write(to_child[1], &c, 1) != 1 || ::read(to_parent[0], &c, 1) != 1) die("ping");
      pipe_rt.push_back(us_since(t) / rounds);
    }
    ::close(to_child[1]);
    ::close(to_child[0]);
    ::close(to_parent[1]);
    ::waitpid(pid, nullptr, 0);
    ::close(to_parent[0]);
  }
  auto precise = [](Stats s) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2f us (p99 %.2f)", s.p50, s.p99);
    return std::string(buf);
  };
  Stats pipe_s = stats(pipe_rt), one_s = stats(one), batched_s = stats(batched);
  rows.push_back({"host call, 1 per VM exit (vs pipe RTT)", precise(one_s), precise(pipe_s),
                  one_s.p50 / pipe_s.p50});
  rows.push_back({"host call, 64 per VM exit, per call", precise(batched_s), precise(pipe_s),
                  batched_s.p50 / pipe_s.p50});

  std::printf(
      "\nbench_vmm: %d runs per latency row; anchor = fork/exec of the same program as a "
      "static Linux binary\n\n",
      n);
  std::printf("| %-48s | %-24s | %-24s | %-11s |\n", "workload", "ours (p50)", "anchor (p50)",
              "ours/anchor");
  std::printf("|%s|%s|%s|%s|\n", std::string(50, '-').c_str(), std::string(26, '-').c_str(),
              std::string(26, '-').c_str(), std::string(13, '-').c_str());
  for (const auto& r : rows)
    std::printf("| %-48s | %-24s | %-24s | %11.2f |\n", r.workload.c_str(), r.ours.c_str(),
                r.anchor.c_str(), r.ratio);
  return 0;
}
