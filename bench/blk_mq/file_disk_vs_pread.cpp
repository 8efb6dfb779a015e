// FileDisk (io_uring engine, requests kept in flight per queue) against the plain synchronous
// anchor every storage user starts with: a loop of pread(2)/pwrite(2) with O_DIRECT, one request
// at a time, on the same file and the same random 4 KiB offsets. Alternated rounds; IOPS on the
// wall clock (device-bound; ours also has a reaper thread), median [min-max] over rounds.
//
//   bench_blk_mq_file_disk_vs_pread [--mib 256] [--ops 20000] [--depth 32] [--reps 5] [--dir D]

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "pepita/blk_mq/file_disk.hpp"
#include "pepita/core/unique_fd.hpp"

namespace {

using namespace pepita::blk_mq;
using Clock = std::chrono::steady_clock;
namespace pb = pepita::bench;
constexpr size_t kBlock = 4096;

struct FreeBytes {
  void operator()(std::byte* bytes) const { std::free(bytes); }
};
using Buffer = std::unique_ptr<std::byte[], FreeBytes>;
Buffer aligned(size_t bytes) {
  Buffer buffer(static_cast<std::byte*>(std::aligned_alloc(kBlock, bytes)));
  if (!buffer) std::abort();
  std::memset(buffer.get(), 0x5a, bytes);
  return buffer;
}

// One completion per tag; the driver refills a slot as soon as its request completes.
// Completions bump a shared counter the driver sleeps on, so the driver does not spin against
// the reaper thread for a CPU.
struct Slot final : Completion {
  std::atomic<int> res{1};  // 1 = in flight
  std::atomic<uint32_t>* completions = nullptr;
  void complete(int result) noexcept override {
    res.store(result, std::memory_order_release);
    completions->fetch_add(1, std::memory_order_release);
    completions->notify_one();
  }
};

// Keeps `depth` requests in flight on queue 0 until `offsets` are done. Returns seconds.
double run_ours(FileDisk& disk, Op op, const std::vector<uint64_t>& offsets, uint32_t depth,
                std::byte* buffers) {
  std::vector<Slot> slots(depth);
  std::atomic<uint32_t> completions{0};
  for (auto& slot : slots) slot.completions = &completions;
  size_t next = 0, done = 0;
  const auto start = Clock::now();
  auto issue = [&](uint32_t tag) {
    slots[tag].res.store(1, std::memory_order_relaxed);
    disk.submit(0, Request{.op = op,
                           .sector = offsets[next++] / 512,
                           .nr_sectors = kBlock / 512,
                           .tag = tag,
                           .data = buffers + size_t{tag} * kBlock,
                           .completion = &slots[tag]});
  };
  for (uint32_t tag = 0; tag < depth && next < offsets.size(); ++tag) issue(tag);
  while (done < offsets.size()) {
    const uint32_t seen = completions.load(std::memory_order_acquire);
    bool progress = false;
    for (uint32_t tag = 0; tag < depth; ++tag) {
      const int res = slots[tag].res.load(std::memory_order_acquire);
      if (res == 1 || res == 2) continue;
      if (res != static_cast<int>(kBlock)) {
        std::fprintf(stderr, "request failed: %s\n", std::strerror(-res));
        std::exit(1);
      }
      ++done;
      progress = true;
      slots[tag].res.store(2, std::memory_order_relaxed);  // reaped, idle
      if (next < offsets.size()) issue(tag);
    }
    if (!progress) completions.wait(seen, std::memory_order_acquire);
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double run_anchor(int fd, Op op, const std::vector<uint64_t>& offsets, std::byte* buffer) {
  const auto start = Clock::now();
  for (uint64_t offset : offsets) {
    const ssize_t n = op == Op::Read ? ::pread(fd, buffer, kBlock, static_cast<off_t>(offset))
                                     : ::pwrite(fd, buffer, kBlock, static_cast<off_t>(offset));
    if (n != static_cast<ssize_t>(kBlock)) {
      std::perror("anchor I/O");
      std::exit(1);
    }
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 256, ops = 20000;
  uint32_t depth = 32;
  int reps = pb::rounds(5);
  std::string dir = "/var/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--mib")
      mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (arg == "--ops")
      ops = std::strtoull(argv[i + 1], nullptr, 10);
    else if (arg == "--depth")
      depth = static_cast<uint32_t>(std::atoi(argv[i + 1]));
    else if (arg == "--reps")
      reps = std::atoi(argv[i + 1]);
    else if (arg == "--dir")
      dir = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: %s [--mib N] [--ops N] [--depth N] [--reps N] [--dir D]\n",
                   argv[0]);
      return 2;
    }
  }
  if (mib == 0 || ops == 0 || depth == 0 || depth > 4096 || reps < 1) {
    std::fprintf(stderr, "all options must be positive (depth <= 4096)\n");
    return 2;
  }
  const std::string path = dir + "/pepita-bench-filedisk-" + std::to_string(::getpid());
  const uint64_t bytes = uint64_t{mib} << 20;
  auto disk = FileDisk::create({.path = path,
                                .capacity_bytes = bytes,
                                .direct = true,
                                .logical_block_size = 4096,
                                .queue_depth = depth,
                                .engine = FileEngine::IoUring});
  if (!disk) {
    std::fprintf(stderr, "FileDisk: %s\n", disk.error().to_string().c_str());
    std::filesystem::remove(path);
    return 1;
  }
  pepita::UniqueFd anchor_fd(::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  auto buffers = aligned(size_t{depth} * kBlock);
  {  // Fill the file so reads hit allocated blocks, not holes.
    auto chunk = aligned(1 << 20);
    for (uint64_t off = 0; off < bytes; off += 1 << 20)
      if (::pwrite(anchor_fd.get(), chunk.get(), 1 << 20, static_cast<off_t>(off)) != 1 << 20) {
        std::perror("fill");
        return 1;
      }
    ::fsync(anchor_fd.get());
  }
  std::mt19937_64 rng(1);
  std::vector<uint64_t> offsets(ops);
  for (auto& offset : offsets) offset = (rng() % (bytes / kBlock)) * kBlock;

  pb::print_load();
  char title[160];
  std::snprintf(title, sizeof title,
                "FileDisk (io_uring, depth %u, O_DIRECT) vs pread/pwrite loop (O_DIRECT, depth 1): "
                "%zu random 4 KiB ops on a %zu MiB file in %s",
                depth, ops, mib, dir.c_str());
  pb::Table table(title);
  for (Op op : {Op::Read, Op::Write}) {
    auto [ours, anchor] = pb::alternate(
        reps, [&] { return run_ours(**disk, op, offsets, depth, buffers.get()); },
        [&] { return run_anchor(anchor_fd.get(), op, offsets, buffers.get()); });
    auto iops = [&](double s) { return static_cast<double>(ops) / s; };
    table.row(op == Op::Read ? "randread 4k" : "randwrite 4k", "pread/pwrite loop", pb::Clock::wall,
              "IOPS", pb::map(ours, iops), pb::map(anchor, iops), pb::Kind::rate);
  }
  table.print();
  disk->reset();
  std::filesystem::remove(path);
  return 0;
}
