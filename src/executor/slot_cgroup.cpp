// A process-executor slot's reusable cgroup (detail/slot_cgroup.hpp). Every counter is opened
// once when the cgroup is made and read with pread at offset 0 afterwards, so an attempt costs
// one write (the peak reset) and four reads (peak, current, cpu, cgroup.procs) instead of
// mkdir, open, read, kill and rmdir in every hierarchy.
#include "detail/slot_cgroup.hpp"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "pepita/core/format.hpp"
#include "pepita/core/sys.hpp"

namespace pepita::executor::detail {
namespace {

// Charges left after an attempt above which the slot's cgroup is replaced (see finish()). What
// an attempt that wrote no page cache leaves is the kernel's: each CPU keeps up to 64 pages
// charged ahead to the cgroup it last charged (memcontrol.c's MEMCG_CHARGE_BATCH stock), and the
// exited processes' page tables, kernel stacks and slab objects are freed after an RCU grace
// period. Measured on 2 CPUs under load: 0.3-0.6 MiB, 1.2 MiB right after the exit, falling within
// 20 ms. So the limit is 4 MiB plus the stock of every CPU; page cache left behind is usually
// far more (a 16 MiB file in the tests).
std::uint64_t residual_limit() {
  static const std::uint64_t limit = [] {
    const long cpus = ::sysconf(_SC_NPROCESSORS_CONF);
    const long page = ::sysconf(_SC_PAGESIZE);
    return (std::uint64_t{4} << 20) + std::uint64_t{64} *
                                          static_cast<std::uint64_t>(page > 0 ? page : 4096) *
                                          static_cast<std::uint64_t>(cpus > 0 ? cpus : 1);
  }();
  return limit;
}

UniqueFd open_file(const std::string& dir, const char* file, int flags) {
  return UniqueFd(sys::open(std::string(dir).append("/").append(file).c_str(), flags | O_CLOEXEC));
}

// The file's whole text (cgroup counters are far below a page), or nullopt.
std::optional<std::string> pread_text(const UniqueFd& fd) {
  if (!fd) return std::nullopt;
  char buf[1024];
  // One pread: a counter file is read whole at once (pread_full would ask again for the EOF).
  long n;
  do {
    n = sys::syscall(SYS_pread64, fd.get(), buf, sizeof buf - 1, 0L);
  } while (n == -EINTR);
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<std::size_t>(n));
}

std::uint64_t pread_u64(const UniqueFd& fd) {
  const auto text = pread_text(fd);
  return text ? std::strtoull(text->c_str(), nullptr, 10) : 0;
}

// v2 cpu.stat's usage_usec, or the v1 cpuacct.usage nanoseconds.
std::chrono::nanoseconds read_cpu(const UniqueFd& fd, CgroupVersion version) {
  const auto text = pread_text(fd);
  if (!text) return std::chrono::nanoseconds{0};
  if (version == CgroupVersion::V1) {
    return std::chrono::nanoseconds(std::strtoull(text->c_str(), nullptr, 10));
  }
  const std::size_t at = text->find("usage_usec ");
  if (at == std::string::npos) return std::chrono::nanoseconds{0};
  return std::chrono::microseconds(
      std::strtoull(text->c_str() + at + std::strlen("usage_usec "), nullptr, 10));
}

}  // namespace

Result<SlotCgroup> SlotCgroup::make(CgroupTree& tree, std::string_view name, std::uint32_t pids) {
  SlotCgroup s;
  s.version_ = tree.version();
  CgroupLimits limits;
  limits.pids = pids;
  s.cgroup_ = PEPITA_TRY(tree.make(name, limits));
  s.pids_ = pids;
  // make() skips a controller that is not there: the limit holds only where pids.max exists.
  for (const std::string& d : s.cgroup_.paths()) {
    if (pids > 0 && ::access((d + "/pids.max").c_str(), F_OK) == 0) s.pids_enforced_ = true;
  }
  const std::string& dir = s.cgroup_.path();
  s.procs_ = open_file(dir, "cgroup.procs", O_RDONLY);
  if (s.version_ == CgroupVersion::V1) {
    s.peak_ = open_file(dir, "memory.max_usage_in_bytes", O_RDWR);
    s.current_ = open_file(dir, "memory.usage_in_bytes", O_RDONLY);
    for (const std::string& d : s.cgroup_.paths()) {
      if (!s.cpu_) s.cpu_ = open_file(d, "cpuacct.usage", O_RDONLY);
    }
  } else {
    s.peak_ = open_file(dir, "memory.peak", O_RDWR);
    s.current_ = open_file(dir, "memory.current", O_RDONLY);
    s.cpu_ = open_file(dir, "cpu.stat", O_RDONLY);
  }
  if (!s.procs_ || !s.peak_ || !s.current_) {
    return fail(ErrorCode::Unsupported,
                pepita::fmt("cgroup {} has no memory counters to reuse it across attempts", dir));
  }
  // v2 resets memory.peak per open file only since Linux 6.12 (EINVAL before).
  if (auto reset = s.begin(); !reset) {
    return fail(ErrorCode::Unsupported,
                pepita::fmt("cannot reset the peak memory of cgroup {} ({}); each attempt gets a "
                            "cgroup of its own",
                            dir, reset.error().message()));
  }
  s.cpu_base_ = read_cpu(s.cpu_, s.version_);
  return s;
}

Result<void> SlotCgroup::begin() {
  // v1: writing 0 sets the watermark to the current usage; v2: any non-empty string resets the
  // peak seen through this file descriptor to the current usage.
  const char* value = version_ == CgroupVersion::V1 ? "0" : "reset";
  const std::int64_t n = sys::pwrite_full(peak_.get(), value, std::strlen(value), 0);
  if (n < 0) return fail_errno(static_cast<int>(n), "reset the slot cgroup's peak memory");
  return {};
}

CgroupUsage SlotCgroup::finish(Result<void>& reusable) {
  CgroupUsage u;
  u.peak_memory = pread_u64(peak_);
  const std::chrono::nanoseconds cpu = read_cpu(cpu_, version_);
  u.cpu = cpu > cpu_base_ ? cpu - cpu_base_ : std::chrono::nanoseconds{0};
  reusable = {};
  // The common case: the attempt left nothing running (an empty cgroup.procs).
  const auto procs = pread_text(procs_);
  if (procs && procs->empty()) {
    cpu_base_ = cpu;  // nothing runs in it: the counter stays put until the next attempt
  } else {
    reusable = cgroup_.kill_all();
    cpu_base_ = read_cpu(cpu_, version_);
  }
  if (reusable && pread_u64(current_) > residual_limit()) {
    reusable = fail(ErrorCode::Busy, "the attempt left charges in its slot's cgroup");
  }
  return u;
}

}  // namespace pepita::executor::detail
