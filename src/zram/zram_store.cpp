// ZramStore: the page table, per-page locks, same-filled/huge/compressed storage, statistics.
#include "pepita/zram/zram_store.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "detail/codec.hpp"
#include "detail/io_counters.hpp"
#include "detail/slot.hpp"
#include "detail/zs_pool.hpp"
#include "pepita/core/format.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pepita::zram {

using detail::ObjRef;
using detail::Slot;
using detail::ZsPool;

const char* algorithm_name(Algorithm algorithm) noexcept {
  switch (algorithm) {
    case Algorithm::Lz4: return "lz4";
    case Algorithm::Zstd: return "zstd";
    case Algorithm::None: return "none";
  }
  return "unknown";
}

double typical_ratio(Algorithm algorithm) noexcept {
  switch (algorithm) {
    case Algorithm::Lz4: return 2.5;
    case Algorithm::Zstd: return 3.5;
    case Algorithm::None: return 1.0;
  }
  return 1.0;
}

Result<Algorithm> parse_algorithm(std::string_view name) {
  if (name == "lz4") return Algorithm::Lz4;
  if (name == "zstd") return Algorithm::Zstd;
  if (name == "none") return Algorithm::None;
  return fail(ErrorCode::InvalidArgument,
              pepita::fmt("unknown compressor '{}'; use lz4, zstd or none", name));
}

/// Compaction's view of the page table: lock the owner only if it can without waiting and only if
/// it still points at the object being moved.
class ZramRelocator final : public detail::Relocator {
 public:
  explicit ZramRelocator(ZramStore& store) : store_(store) {}
  bool try_lock_owner(uint32_t owner, ObjRef from) noexcept override {
    if (owner >= store_.num_pages_ || !store_.try_lock(owner)) return false;
    const Slot& slot = store_.slots_[owner];
    if (slot.zspage == from.zspage && slot.obj == from.obj) return true;
    store_.unlock(owner);
    return false;
  }
  void moved(uint32_t owner, ObjRef to) noexcept override {
    Slot& slot = store_.slots_[owner];
    slot.zspage = to.zspage;
    slot.obj = static_cast<uint16_t>(to.obj);
    store_.unlock(owner);
  }

 private:
  ZramStore& store_;
};

ZramStore::ZramStore(Token, const ZramConfig& config)
    : config_(config),
      num_pages_(config.disksize / kPageSize),
      pool_(std::make_unique<ZsPool>(config.mem_limit / kPageSize)),
      slots_(std::make_unique<Slot[]>(num_pages_)),
      io_(std::make_unique<detail::IoCounters>()) {
  if (config.recompress.enabled && config.recompress.background)
    background_ = std::jthread([this](std::stop_token stop) { background_loop(stop); });
}

namespace {
// 0 is zstd's "default" and below -100 is no faster; either is more likely a mistake.
bool zstd_level_ok(int level) noexcept { return level != 0 && level >= -100 && level <= 22; }

Result<void> check_recompress(const ZramConfig& config) {
  using pepita::fmt;
  const RecompressConfig& r = config.recompress;
  if (!r.enabled) return {};
  if (r.algorithm == Algorithm::None || r.algorithm == config.algorithm)
    return fail(ErrorCode::InvalidArgument,
                fmt("recompress algorithm {} must be lz4 or zstd and differ from the primary "
                    "algorithm {}; e.g. primary lz4, recompress zstd",
                    algorithm_name(r.algorithm), algorithm_name(config.algorithm)));
  if (r.algorithm == Algorithm::Zstd && !zstd_level_ok(r.zstd_level))
    return fail(ErrorCode::InvalidArgument,
                fmt("recompress zstd level {} is out of range; use 1..22 or a fast level "
                    "-100..-1",
                    r.zstd_level));
  if (r.lz4_acceleration < 1 || r.lz4_acceleration > 65537)
    return fail(
        ErrorCode::InvalidArgument,
        fmt("recompress lz4 acceleration {} is out of range; use 1..65537", r.lz4_acceleration));
  if (r.background && (r.batch_pages < 1 || r.batch_pages > (1u << 20)))
    return fail(ErrorCode::InvalidArgument,
                fmt("recompress batch_pages {} is out of range; use 1..1048576", r.batch_pages));
  if (r.background && r.interval_ms > 60000)
    return fail(ErrorCode::InvalidArgument,
                fmt("recompress interval_ms {} is out of range; use 0..60000", r.interval_ms));
  return {};
}
}  // namespace

// The pool owns every object; dropping it frees them all without walking the page table.
ZramStore::~ZramStore() = default;

Result<std::unique_ptr<ZramStore>> ZramStore::create(const ZramConfig& config) {
  using pepita::fmt;
  if (config.disksize == 0 || config.disksize % kPageSize != 0)
    return fail(ErrorCode::InvalidArgument,
                fmt("zram disksize {} must be a non-zero multiple of 4096 bytes", config.disksize));
  if (config.disksize / kPageSize > UINT32_MAX)
    return fail(ErrorCode::InvalidArgument,
                fmt("zram disksize {} is over the 16 TiB limit", config.disksize));
  if (config.algorithm == Algorithm::Zstd && !zstd_level_ok(config.zstd_level))
    return fail(ErrorCode::InvalidArgument,
                fmt("zstd level {} is out of range; use 1..22 or a fast level -100..-1",
                    config.zstd_level));
  if (config.lz4_acceleration < 1 || config.lz4_acceleration > 65537)
    return fail(ErrorCode::InvalidArgument,
                fmt("lz4 acceleration {} is out of range; use 1..65537", config.lz4_acceleration));
  if (config.mem_limit != 0 && config.mem_limit < kPageSize)
    return fail(
        ErrorCode::InvalidArgument,
        fmt("mem_limit {} is below one page; use 0 (no limit) or >= 4096", config.mem_limit));
  PEPITA_TRY_VOID(check_recompress(config));
  try {
    return std::make_unique<ZramStore>(Token{}, config);
  } catch (const std::bad_alloc&) {
    return fail(ErrorCode::ResourceExhausted,
                fmt("no memory for the page table of a {}-byte zram store", config.disksize),
                ENOMEM);
  }
}

uint32_t ZramStore::huge_threshold() const noexcept { return pool_->huge_class_size(); }

void ZramStore::lock(uint64_t index) const noexcept {
  std::atomic<uint16_t>& word = slots_[index].lock;
  uint16_t expected = 0;
  if (word.compare_exchange_strong(expected, 1, std::memory_order_acquire)) return;
  for (int spin = 0; spin < 100; ++spin) {
#if defined(__x86_64__)
    _mm_pause();
#endif
    expected = 0;
    if (word.load(std::memory_order_relaxed) == 0 &&
        word.compare_exchange_weak(expected, 1, std::memory_order_acquire))
      return;
  }
  // Mark "waiters may exist" so unlock() knows to wake us (a futex-style three-state lock).
  while (word.exchange(2, std::memory_order_acquire) != 0) word.wait(2, std::memory_order_relaxed);
}

bool ZramStore::try_lock(uint64_t index) const noexcept {
  uint16_t expected = 0;
  return slots_[index].lock.compare_exchange_strong(expected, 1, std::memory_order_acquire);
}

void ZramStore::unlock(uint64_t index) const noexcept {
  std::atomic<uint16_t>& word = slots_[index].lock;
  if (word.exchange(0, std::memory_order_release) == 2) word.notify_all();
}

void ZramStore::free_slot(uint64_t index) noexcept {
  Slot& slot = slots_[index];
  switch (slot.kind) {
    case PageInfo::Kind::Empty: slot.flags = 0; return;
    case PageInfo::Kind::Same: same_pages_.fetch_sub(1, std::memory_order_relaxed); break;
    case PageInfo::Kind::Huge: huge_pages_.fetch_sub(1, std::memory_order_relaxed); [[fallthrough]];
    case PageInfo::Kind::Compressed:
      pool_->free({slot.zspage, slot.obj});
      compr_data_size_.fetch_sub(slot.size, std::memory_order_relaxed);
      break;
  }
  pages_stored_.fetch_sub(1, std::memory_order_relaxed);
  if ((slot.flags & detail::kSlotSecondary) != 0)
    recomp_pages_.fetch_sub(1, std::memory_order_relaxed);
  slot.flags = 0;  // clears kSlotPending: a recompression in flight drops its result
  slot.kind = PageInfo::Kind::Empty;
  slot.size = 0;
  slot.obj = 0;
  slot.zspage = nullptr;
  slot.same_value = 0;
}

int ZramStore::load_locked(uint64_t index, std::byte* page) const noexcept {
  const Slot& slot = slots_[index];
  switch (slot.kind) {
    case PageInfo::Kind::Empty: std::memset(page, 0, kPageSize); return 0;
    case PageInfo::Kind::Same: detail::fill_page(page, slot.same_value); return 0;
    case PageInfo::Kind::Huge:
      std::memcpy(page, ZsPool::address({slot.zspage, slot.obj}), kPageSize);
      return 0;
    case PageInfo::Kind::Compressed:
      return detail::decompress_page((slot.flags & detail::kSlotSecondary) != 0
                                         ? config_.recompress.algorithm
                                         : config_.algorithm,
                                     ZsPool::address({slot.zspage, slot.obj}), slot.size, page);
  }
  return -EIO;
}

int ZramStore::store_page(uint64_t index, const std::byte* page, bool locked) noexcept {
  uint64_t value = 0;
  if (detail::page_same_filled(page, value)) {
    if (!locked) lock(index);
    free_slot(index);
    Slot& slot = slots_[index];
    slot.kind = PageInfo::Kind::Same;
    slot.same_value = value;
    same_pages_.fetch_add(1, std::memory_order_relaxed);
    pages_stored_.fetch_add(1, std::memory_order_relaxed);
    if (!locked) unlock(index);
    return 0;
  }
  // Per-thread compression buffer, as zram's per-CPU stream buffer.
  thread_local std::byte scratch[detail::kCompressScratch];
  const detail::CodecParams params{config_.algorithm, config_.zstd_level, config_.lz4_acceleration};
  const int compressed = detail::compress_page(params, page, scratch, huge_threshold() - 1);
  if (compressed < 0) return compressed;
  const bool huge = compressed == 0;
  const uint32_t size = huge ? kPageSize : static_cast<uint32_t>(compressed);
  ObjRef ref;
  // Allocate and fill before taking the page lock (as zram_write_page): the object is invisible
  // until installed, and compaction leaves objects that no page points at alone.
  if (int rc = pool_->alloc(size, static_cast<uint32_t>(index), ref); rc < 0) return rc;
  std::memcpy(ZsPool::address(ref), huge ? page : scratch, size);
  if (!locked) lock(index);
  free_slot(index);
  Slot& slot = slots_[index];
  slot.kind = huge ? PageInfo::Kind::Huge : PageInfo::Kind::Compressed;
  slot.size = static_cast<uint16_t>(size);
  slot.zspage = ref.zspage;
  slot.obj = static_cast<uint16_t>(ref.obj);
  if (!locked) unlock(index);
  if (huge) {
    huge_pages_.fetch_add(1, std::memory_order_relaxed);
    huge_pages_since_.fetch_add(1, std::memory_order_relaxed);
  }
  compr_data_size_.fetch_add(size, std::memory_order_relaxed);
  pages_stored_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

int ZramStore::write_page(uint64_t index, const std::byte* page) noexcept {
  if (index >= num_pages_) {
    io_->count_invalid_io();
    return -EINVAL;
  }
  io_->count_write();
  const int rc = store_page(index, page, false);
  if (rc < 0) io_->count_failed_write();
  return rc;
}

int ZramStore::read_page(uint64_t index, std::byte* page) noexcept {
  if (index >= num_pages_) {
    io_->count_invalid_io();
    return -EINVAL;
  }
  io_->count_read();
  lock(index);
  const int rc = load_locked(index, page);
  slots_[index].flags &= static_cast<uint8_t>(~detail::kSlotIdle);  // accessed: no longer idle
  unlock(index);
  if (rc < 0) io_->count_failed_read();
  return rc;
}

int ZramStore::discard_page(uint64_t index) noexcept {
  if (index >= num_pages_) {
    io_->count_invalid_io();
    return -EINVAL;
  }
  lock(index);
  free_slot(index);
  unlock(index);
  return 0;
}

int ZramStore::write_partial(uint64_t index, uint32_t offset, const std::byte* data,
                             uint32_t len) noexcept {
  if (index >= num_pages_ || offset > kPageSize || len > kPageSize - offset) {
    io_->count_invalid_io();
    return -EINVAL;
  }
  io_->count_write();
  const int rc = modify_page(index, offset, data, len);
  if (rc < 0) io_->count_failed_write();
  return rc;
}

int ZramStore::modify_page(uint64_t index, uint32_t offset, const std::byte* data,
                           uint32_t len) noexcept {
  alignas(64) std::byte page[kPageSize];
  // The page lock is held across read, modify and write so concurrent partial writes to one page
  // cannot lose each other's bytes.
  lock(index);
  int rc = load_locked(index, page);
  if (rc == 0) {
    std::memcpy(page + offset, data, len);
    rc = store_page(index, page, true);
  }
  unlock(index);
  return rc;
}

Result<void> ZramStore::reset() {
  // Allocate the empty pool first, so running out of memory leaves the store untouched.
  std::unique_ptr<ZsPool> fresh;
  try {
    fresh = std::make_unique<ZsPool>(config_.mem_limit / kPageSize);
  } catch (const std::bad_alloc&) {
    return fail(ErrorCode::ResourceExhausted, "zram reset: no memory for an empty pool", ENOMEM);
  }
  // A recompression pass allocates from the pool: let it finish before the pool is dropped.
  const std::lock_guard recomp(recomp_mutex_);
  // Take every page lock without waiting: a held one means an operation is in flight.
  for (uint64_t i = 0; i < num_pages_; ++i) {
    if (!try_lock(i)) {
      for (uint64_t j = 0; j < i; ++j) unlock(j);
      return fail(ErrorCode::Busy,
                  pepita::fmt("zram reset: page {} is being read or written; stop all I/O to "
                              "the store, then reset",
                              i));
    }
  }
  for (uint64_t i = 0; i < num_pages_; ++i) {
    Slot& slot = slots_[i];
    slot.kind = PageInfo::Kind::Empty;
    slot.flags = 0;
    slot.size = 0;
    slot.obj = 0;
    slot.zspage = nullptr;
    slot.same_value = 0;
  }
  // Dropping the pool frees every slab at once (munmap), rather than object by object.
  pool_ = std::move(fresh);
  pages_stored_.store(0, std::memory_order_relaxed);
  compr_data_size_.store(0, std::memory_order_relaxed);
  same_pages_.store(0, std::memory_order_relaxed);
  huge_pages_.store(0, std::memory_order_relaxed);
  huge_pages_since_.store(0, std::memory_order_relaxed);
  recomp_pages_.store(0, std::memory_order_relaxed);
  pages_recompressed_.store(0, std::memory_order_relaxed);
  recomp_bytes_saved_.store(0, std::memory_order_relaxed);
  recomp_not_shrunk_.store(0, std::memory_order_relaxed);
  recomp_cursor_ = 0;
  io_->clear();
  for (uint64_t i = 0; i < num_pages_; ++i) unlock(i);
  return {};
}

uint64_t ZramStore::compact() {
  ZramRelocator relocator(*this);
  return pool_->compact(relocator);
}

ZramStats ZramStore::stats() const noexcept {
  ZramStats s;
  s.orig_data_size = pages_stored_.load(std::memory_order_relaxed) * kPageSize;
  s.compr_data_size = compr_data_size_.load(std::memory_order_relaxed);
  s.mem_used_total = pool_->total_pages() * kPageSize;
  s.mem_limit = pool_->limit_pages() * kPageSize;
  s.mem_used_max = pool_->max_pages() * kPageSize;
  s.same_pages = same_pages_.load(std::memory_order_relaxed);
  s.pages_compacted = pool_->pages_compacted();
  s.huge_pages = huge_pages_.load(std::memory_order_relaxed);
  s.huge_pages_since = huge_pages_since_.load(std::memory_order_relaxed);
  s.num_reads = io_->reads();
  s.num_writes = io_->writes();
  s.failed_reads = io_->failed_reads();
  s.failed_writes = io_->failed_writes();
  s.invalid_io = io_->invalid_io();
  s.recomp_pages = recomp_pages_.load(std::memory_order_relaxed);
  s.pages_recompressed = pages_recompressed_.load(std::memory_order_relaxed);
  s.recomp_bytes_saved = recomp_bytes_saved_.load(std::memory_order_relaxed);
  s.recomp_not_shrunk = recomp_not_shrunk_.load(std::memory_order_relaxed);
  return s;
}

std::string ZramStore::mm_stat() const {
  const ZramStats s = stats();
  char line[256];
  std::snprintf(line, sizeof(line), "%8llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu\n",
                static_cast<unsigned long long>(s.orig_data_size),
                static_cast<unsigned long long>(s.compr_data_size),
                static_cast<unsigned long long>(s.mem_used_total),
                static_cast<unsigned long long>(s.mem_limit),
                static_cast<unsigned long long>(s.mem_used_max),
                static_cast<unsigned long long>(s.same_pages),
                static_cast<unsigned long long>(s.pages_compacted),
                static_cast<unsigned long long>(s.huge_pages),
                static_cast<unsigned long long>(s.huge_pages_since));
  return line;
}

PageInfo ZramStore::page_info(uint64_t index) const noexcept {
  if (index >= num_pages_) return {};
  lock(index);
  const Slot& slot = slots_[index];
  PageInfo info{slot.kind, slot.same_value, slot.size, (slot.flags & detail::kSlotSecondary) != 0,
                (slot.flags & detail::kSlotIdle) != 0};
  unlock(index);
  return info;
}

Result<std::vector<std::byte>> ZramStore::page_frame(uint64_t index) const {
  using pepita::fmt;
  if (index >= num_pages_)
    return fail(ErrorCode::InvalidArgument,
                fmt("page {} is past the end of the store ({} pages)", index, num_pages_));
  std::vector<std::byte> stored;
  lock(index);
  const Slot& slot = slots_[index];
  const bool has_bytes =
      slot.kind == PageInfo::Kind::Huge || slot.kind == PageInfo::Kind::Compressed;
  const bool raw = slot.kind == PageInfo::Kind::Huge;
  const Algorithm algorithm =
      (slot.flags & detail::kSlotSecondary) != 0 ? config_.recompress.algorithm : config_.algorithm;
  if (has_bytes) {
    const std::byte* bytes = ZsPool::address({slot.zspage, slot.obj});
    stored.assign(bytes, bytes + slot.size);
  }
  unlock(index);
  if (!has_bytes)
    return fail(ErrorCode::NotFound, fmt("page {} stores no bytes (empty or same-filled)", index));
  return detail::make_frame(algorithm, stored.data(), stored.size(), raw);
}

Result<void> ZramStore::check_range(uint64_t offset, uint64_t length, const char* what) {
  uint64_t end = 0;
  if (__builtin_add_overflow(offset, length, &end) || end > config_.disksize) {
    io_->count_invalid_io();
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("zram {} of {} bytes at offset {} is past disksize {}", what, length,
                            offset, config_.disksize));
  }
  return {};
}

namespace {
Error page_error(int rc, const ZramStore& store, uint64_t index, const char* what) {
  using pepita::fmt;
  if (rc == -ENOSPC) {
    const ZramStats s = store.stats();
    return Error(ErrorCode::ResourceExhausted,
                 fmt("zram {} of page {}: mem_limit of {} bytes reached (mem_used_total {}); "
                     "raise mem_limit, compact() or discard pages",
                     what, index, s.mem_limit, s.mem_used_total),
                 ENOSPC);
  }
  if (rc == -EIO)
    return Error(
        ErrorCode::Corrupted,
        fmt("zram {} of page {}: stored bytes do not decode (memory corruption?)", what, index),
        EIO);
  return Error::from_errno(rc, fmt("zram {} of page {}", what, index));
}
}  // namespace

Result<void> ZramStore::write(uint64_t offset, std::span<const std::byte> data) {
  PEPITA_TRY_VOID(check_range(offset, data.size(), "write"));
  size_t done = 0;
  while (done < data.size()) {
    const uint64_t pos = offset + done;
    const uint64_t index = pos / kPageSize;
    const auto in_page = static_cast<uint32_t>(pos % kPageSize);
    const auto chunk =
        static_cast<uint32_t>(std::min<uint64_t>(kPageSize - in_page, data.size() - done));
    const int rc = chunk == kPageSize ? write_page(index, data.data() + done)
                                      : write_partial(index, in_page, data.data() + done, chunk);
    if (rc < 0) return std::unexpected(page_error(rc, *this, index, "write"));
    done += chunk;
  }
  return {};
}

Result<void> ZramStore::read(uint64_t offset, std::span<std::byte> out) {
  PEPITA_TRY_VOID(check_range(offset, out.size(), "read"));
  alignas(64) std::byte page[kPageSize];
  size_t done = 0;
  while (done < out.size()) {
    const uint64_t pos = offset + done;
    const uint64_t index = pos / kPageSize;
    const auto in_page = static_cast<uint32_t>(pos % kPageSize);
    const auto chunk =
        static_cast<uint32_t>(std::min<uint64_t>(kPageSize - in_page, out.size() - done));
    const bool whole = chunk == kPageSize;
    const int rc = read_page(index, whole ? out.data() + done : page);
    if (rc < 0) return std::unexpected(page_error(rc, *this, index, "read"));
    if (!whole) std::memcpy(out.data() + done, page + in_page, chunk);
    done += chunk;
  }
  return {};
}

Result<void> ZramStore::discard(uint64_t offset, uint64_t length) {
  PEPITA_TRY_VOID(check_range(offset, length, "discard"));
  static constexpr std::byte kZeros[kPageSize] = {};
  uint64_t done = 0;
  while (done < length) {
    const uint64_t pos = offset + done;
    const uint64_t index = pos / kPageSize;
    const auto in_page = static_cast<uint32_t>(pos % kPageSize);
    const auto chunk =
        static_cast<uint32_t>(std::min<uint64_t>(kPageSize - in_page, length - done));
    const int rc =
        chunk == kPageSize ? discard_page(index) : modify_page(index, in_page, kZeros, chunk);
    if (rc < 0) return std::unexpected(page_error(rc, *this, index, "discard"));
    done += chunk;
  }
  return {};
}

}  // namespace pepita::zram
