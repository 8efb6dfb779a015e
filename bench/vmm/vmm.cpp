// Micro-VM start-to-result latency, throughput, host-call and virtio-mmio exit cost, against the
// isolation users have today: the same program built as a static Linux binary (guest/native/*),
// started cold (fork+execve), by posix_spawn, and warm from a pre-forked fork server that runs
// the same work in a forked child. Every VM and process variant of a workload runs in the same
// alternated rounds (the order rotates each round). One table, wall time throughout: median
// [min-max] over rounds of each round's median latency, p99 over all runs alongside.
//
//   bench_vmm_vmm [RUNS=1000]   (runs per contestant and latency workload, split over the rounds)
#include <fcntl.h>
#include <immintrin.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/vmm/vm.hpp"
#include "vmm/process_anchors.hpp"

namespace {

using namespace pepita;
namespace pb = pepita::bench;
using pb::vmm::die;
using Clock = std::chrono::steady_clock;

const std::string kGuestDir = std::string(PEPITA_BINARY_DIR) + "/guest/";
const std::string kHelloOut = "hello from a pepita micro-VM\n";

double us_since(Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
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

void check_output(const std::string& got, const std::string& expect, const char* who) {
  if (got != expect) die(std::string(who) + " gave '" + got + "', expected '" + expect + "'");
}

int memfd_with(const std::vector<std::byte>& data) {
  int fd = ::memfd_create("bench-input", MFD_CLOEXEC);
  if (fd < 0 || ::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
    die("memfd input");
  return fd;
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

// ---- the fork server's work: what guest/examples/{hello,dot}.cpp compute, in a forked child ----

std::string hello_work(int) { return kHelloOut; }

__attribute__((target("avx2"))) int64_t dot_avx2(const int32_t* a, const int32_t* b, size_t n) {
  __m256i acc = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i));
    __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i));
    acc = _mm256_add_epi64(acc, _mm256_mul_epi32(x, y));
    acc =
        _mm256_add_epi64(acc, _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(y, 32)));
  }
  alignas(32) int64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  int64_t sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) sum += int64_t{a[i]} * b[i];
  return sum;
}

// Reads the input (two int32 vectors) from the memfd as the native binary reads its stdin, and
// prints what it prints.
std::string dot_work(int input_fd) {
  struct stat st {};
  if (::fstat(input_fd, &st) != 0) ::_exit(1);
  std::vector<int32_t> v(static_cast<size_t>(st.st_size) / 4);
  if (::pread(input_fd, v.data(), static_cast<size_t>(st.st_size), 0) != st.st_size) ::_exit(1);
  const size_t n = v.size() / 2;
  const bool avx2 = __builtin_cpu_supports("avx2");
  int64_t sum = 0;
  if (avx2) {
    sum = dot_avx2(v.data(), v.data() + n, n);
  } else {
    for (size_t i = 0; i < n; ++i) sum += int64_t{v[i]} * v[n + i];
  }
  return "dot " + std::to_string(sum) + (avx2 ? " avx2\n" : " scalar\n");
}

// ---- latency contestants ----

// One contestant's latencies: each round's median and every run (for p99).
struct Latency {
  std::vector<double> round_p50;
  std::vector<double> all;
  double p99() const { return pb::percentile(all, 0.99); }
};

// A contestant that runs `f` `per_round` times each round and records the latencies (us).
std::function<void()> timed_runs(Latency& into, int per_round, std::function<void()> f) {
  return [&into, per_round, f = std::move(f)] {
    std::vector<double> us;
    for (int i = 0; i < per_round; ++i) {
      const auto t = Clock::now();
      f();
      us.push_back(us_since(t));
    }
    into.round_p50.push_back(pb::median(us));
    into.all.insert(into.all.end(), us.begin(), us.end());
  };
}

void latency_row(pb::Table& table, const std::string& workload, const char* anchor,
                 const Latency& ours, const Latency& theirs) {
  char extra[96];
  std::snprintf(extra, sizeof extra, "p99 %.0f vs %.0f us", ours.p99(), theirs.p99());
  table.row(workload, anchor, pb::Clock::wall, "us", ours.round_p50, theirs.round_p50,
            pb::Kind::time, extra);
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

const char* const kCold = "fork+execve (static)";
const char* const kSpawn = "posix_spawn (static)";
const char* const kServer = "fork server (pre-forked)";

// Start-to-result of one workload: a cold VM, a new VM from a snapshot, a recycled VM, and the
// three process anchors, all in the same rotating rounds.
void start_to_result(pb::Table& table, const char* label, const char* name,
                     const std::vector<std::byte>& input, int input_fd, const std::string& expect,
                     pb::vmm::ForkServer& server, int runs, int rounds) {
  const std::string native = kGuestDir + "native/" + name;
  auto img = image(name);
  auto snap = snapshot(name);
  auto recycled = must(vmm::Vm::restore(snap), "restore");
  check(must(recycled.run(input), "run"), expect);
  const int per_round = std::max(1, runs / rounds);
  Latency cold, fresh, reused, fork_exec, spawned, served;
  pb::rotate_rounds(
      rounds,
      {timed_runs(cold, per_round,
                  [&] { check(must(vmm::run_guest(img, input, {}), "run"), expect); }),
       timed_runs(fresh, per_round,
                  [&] {
                    auto vm = must(vmm::Vm::restore(snap), "restore");
                    check(must(vm.run(input), "run"), expect);
                  }),
       timed_runs(reused, per_round,
                  [&] {
                    if (!recycled.reset_to(snap)) die("reset_to");
                    check(must(recycled.run(input), "run"), expect);
                  }),
       timed_runs(fork_exec, per_round,
                  [&] { check_output(pb::vmm::fork_exec(native, input_fd), expect, kCold); }),
       timed_runs(spawned, per_round,
                  [&] { check_output(pb::vmm::spawn(native, input_fd), expect, kSpawn); }),
       timed_runs(served, per_round, [&] { check_output(server.request(), expect, kServer); })});
  const std::string l = label;
  latency_row(table, l + ": cold VM (create, run, destroy)", kCold, cold, fork_exec);
  latency_row(table, l + ": new VM from snapshot (CoW)", kSpawn, fresh, spawned);
  latency_row(table, l + ": recycled VM reset to snapshot", kServer, reused, served);
  latency_row(table, l + ": recycled VM reset to snapshot", kSpawn, reused, spawned);
  latency_row(table, l + ": recycled VM reset to snapshot", kCold, reused, fork_exec);
}

// virtio-mmio exit cost and throughput (the guest virtio_bench times nothing; the host times
// whole runs and subtracts a setup-only run of the same round).
void virtio_rows(pb::Table& table, int rounds) {
  auto img = image("virtio_bench");
  auto run_us = [&](const std::string& mode) {
    vmm::VmConfig config;
    config.virtio_console = true;
    config.virtio_blk = std::shared_ptr<blk_mq::BlockDevice>(
        must(blk_mq::MemDisk::create({.capacity_bytes = 1 << 20}), "MemDisk"));
    config.output_limit = 32ull << 20;
    config.timeout = std::chrono::seconds(20);
    std::vector<std::byte> in(mode.size());
    std::memcpy(in.data(), mode.data(), mode.size());
    auto r = must(vmm::run_guest(img, in, config), "virtio_bench");
    if (r.kind != vmm::ExitKind::Exited || r.exit_code != 0)
      die("virtio_bench " + mode + ": " + r.describe());
    if (mode[0] == 'c' && r.output.size() != std::stoull(mode.substr(1)) << 16)
      die("virtio_bench " + mode + ": console output of " + std::to_string(r.output.size()));
    return std::chrono::duration<double, std::micro>(r.elapsed).count();
  };
  constexpr uint32_t kReads = 2000, kTransmits = 256, kBlkWrites = 1000;
  // The guest's input: a mode letter and a count ("r2000").
  auto mode = [](char letter, uint32_t count) {
    char text[16];
    std::snprintf(text, sizeof text, "%c%u", letter, count);
    return std::string(text);
  };
  constexpr size_t kChunk = 64 << 10;
  std::vector<double> exit_us, console_mib_s, blk_us;      // ours
  std::vector<double> pipe_rtt_us, pipe_mib_s, pwrite_us;  // anchors
  pb::vmm::PipePeer echo;
  pb::vmm::PipePeer drain(size_t{kTransmits} * kChunk);
  std::vector<char> chunk(kChunk, 'x');
  const int memfd = ::memfd_create("bench-blk", MFD_CLOEXEC);
  if (memfd < 0 || ::ftruncate(memfd, 1 << 20) != 0) die("memfd");
  const double mib = static_cast<double>(kTransmits) * kChunk / (1 << 20);
  pb::rotate_rounds(
      rounds, {[&] {
                 const double base = run_us("0");
                 exit_us.push_back((run_us(mode('r', kReads)) - base) / kReads);
                 console_mib_s.push_back(mib / ((run_us(mode('c', kTransmits)) - base) / 1e6));
                 blk_us.push_back((run_us(mode('b', kBlkWrites)) - base) / kBlkWrites);
               },
               [&] {
                 auto t = Clock::now();
                 echo.ping(kReads);
                 pipe_rtt_us.push_back(us_since(t) / kReads);
                 t = Clock::now();
                 drain.send(chunk.data(), kChunk, size_t{kTransmits} * kChunk);
                 pipe_mib_s.push_back(mib / (us_since(t) / 1e6));
                 t = Clock::now();
                 for (uint32_t i = 0; i < kBlkWrites; ++i)
                   if (::pwrite(memfd, chunk.data(), 4096, (i % 64) * 4096) != 4096) die("pwrite");
                 pwrite_us.push_back(us_since(t) / kBlkWrites);
               }});
  ::close(memfd);
  const auto W = pb::Clock::wall;
  table.row("virtio-mmio register read, per VM exit", "pipe round trip", W, "us", exit_us,
            pipe_rtt_us);
  table.row("virtio-console, 64 KiB transmits", "pipe to a process, 64 KiB", W, "MiB/s",
            console_mib_s, pipe_mib_s, pb::Kind::rate);
  table.row("virtio-blk 4 KiB write (MemDisk)", "pwrite 4 KiB to a memfd", W, "us", blk_us,
            pwrite_us);
}

}  // namespace

int main(int argc, char** argv) {
  if (auto ok = vmm::kvm_available(); !ok) {
    std::printf("bench_vmm: skipped, KVM unavailable: %s\n", ok.error().to_string().c_str());
    return 0;
  }
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 1000;
  const int rounds = pb::rounds(5);
  const int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int64_t sum = 0;
  const auto input = dot_input(64 * 1024, sum);
  const int input_fd = memfd_with(input);
  // The fork servers start first, while this process is small and has one thread.
  pb::vmm::ForkServer hello_server(hello_work, dev_null);
  pb::vmm::ForkServer dot_server(dot_work, input_fd);
  pb::print_load();
  pb::Table table("micro-VMs vs process isolation, wall time");

  // --- start to result: hello, and a dot product over 64 Ki int32 pairs (512 KiB input). ---
  start_to_result(table, "hello", "hello", {}, dev_null, kHelloOut, hello_server, runs, rounds);
  const std::string dot_expect = pb::vmm::fork_exec(kGuestDir + "native/dot", input_fd);
  if (!dot_expect.starts_with("dot " + std::to_string(sum) + " ")) die("native dot: " + dot_expect);
  start_to_result(table, "dot 64Ki x int32", "dot", input, input_fd, dot_expect, dot_server, runs,
                  rounds);

  // --- tasks per second on all cores (hello). ---
  {
    auto hello_snap = snapshot("hello");
    const std::string native = kGuestDir + "native/hello";
    constexpr double kWindow = 0.5;  // seconds per contestant and round
    std::vector<double> recycled, fresh, forked, spawned;
    pb::rotate_rounds(
        rounds,
        {[&] {
           recycled.push_back(per_second_all_cores(kWindow, [&] {
             auto vm = std::make_shared<vmm::Vm>(must(vmm::Vm::restore(hello_snap), "restore"));
             check(must(vm->run({}), "run"), kHelloOut);
             return [&, vm] {
               if (!vm->reset_to(hello_snap)) die("reset_to");
               check(must(vm->run({}), "run"), kHelloOut);
             };
           }));
         },
         [&] {
           fresh.push_back(per_second_all_cores(kWindow, [&] {
             return [&] {
               auto vm = must(vmm::Vm::restore(hello_snap), "restore");
               check(must(vm.run({}), "run"), kHelloOut);
             };
           }));
         },
         [&] {
           forked.push_back(per_second_all_cores(kWindow, [&] {
             return [&] { check_output(pb::vmm::fork_exec(native, dev_null), kHelloOut, kCold); };
           }));
         },
         [&] {
           spawned.push_back(per_second_all_cores(kWindow, [&] {
             return [&] { check_output(pb::vmm::spawn(native, dev_null), kHelloOut, kSpawn); };
           }));
         }});
    const auto W = pb::Clock::wall;
    const auto R = pb::Kind::rate;
    table.row("hello tasks/s, all cores, recycled VMs", kSpawn, W, "tasks/s", recycled, spawned, R);
    table.row("hello tasks/s, all cores, recycled VMs", kCold, W, "tasks/s", recycled, forked, R);
    table.row("hello tasks/s, all cores, new VM from snapshot", kCold, W, "tasks/s", fresh, forked,
              R);
  }

  // --- host-call round trip vs a pipe round trip to another process. ---
  {
    auto calls_snap = snapshot("calls");
    auto run_calls = [&](uint32_t calls, uint32_t batch) {
      auto vm = must(vmm::Vm::restore(calls_snap), "restore");
      const uint32_t args[2] = {calls, batch};
      auto r = must(vm.run(std::as_bytes(std::span(args))), "run");
      if (r.kind != vmm::ExitKind::Exited || r.exit_code != 0) die("calls guest: " + r.describe());
      return std::chrono::duration<double, std::micro>(r.elapsed).count();
    };
    constexpr uint32_t kCalls = 2000;
    std::vector<double> one, batched, pipe_rt;
    pb::vmm::PipePeer echo;
    pb::rotate_rounds(pb::rounds(7),
                      {[&] {
                         const double base = run_calls(0, 1);
                         one.push_back((run_calls(kCalls, 1) - base) / kCalls);
                         batched.push_back((run_calls(kCalls, 64) - base) / (kCalls * 64.0));
                       },
                       [&] {
                         const auto t = Clock::now();
                         echo.ping(kCalls);
                         pipe_rt.push_back(us_since(t) / kCalls);
                       }});
    table.row("host call, 1 per VM exit", "pipe round trip", pb::Clock::wall, "us", one, pipe_rt);
    table.row("host call, 64 per VM exit, per call", "pipe round trip", pb::Clock::wall, "us",
              batched, pipe_rt);
  }

  // --- virtio-mmio devices: per-exit cost and throughput. ---
  virtio_rows(table, rounds);

  table.note(std::to_string(runs) +
             " runs per latency contestant, split over the rounds; each "
             "latency figure is a round's median");
  table.note(
      "fork server: forked before any VM exists; per task it forks a child that computes "
      "what the guest computes and exits");
  table.note(
      "fork+execve forks this process, whose page tables hold the VMs' mappings; "
      "posix_spawn (CLONE_VM|CLONE_VFORK) copies none");
  table.note(
      "VM-exit rows subtract a setup-only run of the same round; pipe rows: 1-byte round "
      "trips, 64 KiB writes drained by another process");
  table.print();
  ::close(input_fd);
  ::close(dev_null);
  return 0;
}
