#pragma once
// ZramStore: a compressed RAM store of 4 KiB pages, modelled on Linux zram
// (drivers/block/zram/zram_drv.c) and its zsmalloc allocator (mm/zsmalloc.c): same-filled pages
// cost no memory, other pages are compressed with lz4 or zstd (standard formats) and packed into
// size-class slabs; pages that do not compress, and every page under Algorithm::None, are stored
// raw ("huge"). Statistics mean what the kernel's /sys/block/zramN/mm_stat fields mean.
// Optional recompression follows the kernel's CONFIG_ZRAM_MULTI_COMP (recomp_algorithm,
// `recompress type=idle threshold=N`, the `idle` attribute): write fast with lz4, re-encode idle
// pages with zstd later, on a recompress() call or a background thread.
//
//   auto store = PEPITA_TRY(ZramStore::create({.disksize = 1 << 30, .algorithm = Algorithm::Lz4}));
//   PEPITA_TRY_VOID(store->write(0, page));       // any offset/length inside disksize
//   PEPITA_TRY_VOID(store->read(0, page));
//   ZramStats s = store->stats();                  // orig_data_size / mem_used_total = ratio
//
//   ZramConfig c{.disksize = 1 << 30};              // lz4 writes, zstd for idle pages later:
//   c.recompress = {.enabled = true, .algorithm = Algorithm::Zstd};
//   store->mark_idle();  /* ... */  store->recompress({.pages = RecompressOptions::Pages::Idle});
//   store->compact();                              // return the slab pages lz4 objects left

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::zram {

inline constexpr uint32_t kPageSize = 4096;
inline constexpr uint32_t kPageShift = 12;

/// None stores every page that is not same-filled uncompressed (a "huge" page: 4096 bytes of
/// slab, counted in huge_pages and compr_data_size), for baselines and incompressible data.
enum class Algorithm : uint8_t { Lz4, Zstd, None };

/// "lz4" / "zstd" / "none".
const char* algorithm_name(Algorithm algorithm) noexcept;
/// Parses "lz4", "zstd" or "none"; InvalidArgument names the accepted values.
Result<Algorithm> parse_algorithm(std::string_view name);

/// The crate's ZramCompressor is our Algorithm (ZramCompressor::Lz4, ::None; Zstd is ours).
using ZramCompressor = Algorithm;
/// The crate's `ZramCompressor::name`: algorithm_name.
inline const char* name(Algorithm algorithm) noexcept { return algorithm_name(algorithm); }
/// The crate's `ZramCompressor::typical_ratio`: a planning estimate of orig/compressed for
/// typical memory (lz4 2.5, zstd 3.5, none 1.0). Measure real data with zram::measure().
double typical_ratio(Algorithm algorithm) noexcept;

/// The secondary codec of a store (the kernel's recomp_algorithm). Pages are written with the
/// primary ZramConfig::algorithm; recompress() or the background thread re-encodes them with this
/// one, and each page remembers which codec encoded it, so reads decode either.
struct RecompressConfig {
  bool enabled = false;
  Algorithm algorithm = Algorithm::Zstd;  // differs from the primary; not None
  int zstd_level = 3;                     // 1..22, or a fast level -100..-1
  int lz4_acceleration = 1;               // 1..65537
  /// Starts a background thread owned by the store: every interval_ms it examines the next
  /// batch_pages pages (round the store), marking each stored page idle and recompressing the
  /// ones still idle from its previous lap (not read or written for one whole lap), or every
  /// candidate when background_idle_only is false. Stopped and joined by the destructor.
  bool background = false;
  bool background_idle_only = true;
  uint32_t batch_pages = 256;  // 1..1048576 pages per pass; the page lock is held per page only
  uint32_t interval_ms = 20;   // 0..60000 between passes (0: none while a pass finds work)
};

struct ZramConfig {
  uint64_t disksize = 0;  // bytes; a non-zero multiple of 4096
  Algorithm algorithm = Algorithm::Lz4;
  int zstd_level = 3;        // the kernel's default (ZSTD_CLEVEL_DEFAULT); 1..22, fast -100..-1
  int lz4_acceleration = 1;  // LZ4_compress_fast's; 1 is the kernel's
  uint64_t mem_limit = 0;    // bytes of slab memory (mem_used_total) allowed; 0 = unlimited
  RecompressConfig recompress{};  // off unless recompress.enabled

  // ---- the crate's builder names (zram.rs ZramConfig) ----
  /// A config of `size_bytes` with the defaults (lz4, no mem_limit); create() validates it.
  static ZramConfig with_size(uint64_t size_bytes) noexcept {
    ZramConfig c;
    c.disksize = size_bytes;
    return c;
  }
  /// Sets the algorithm (the crate's `compressor`).
  ZramConfig& compressor(Algorithm a) noexcept {
    algorithm = a;
    return *this;
  }
  /// Sets mem_limit; the crate's `mem_limit(limit)` (our field has that name, so the setter is
  /// spelled with_mem_limit). Enforced: a write that would pass it fails with ENOSPC.
  ZramConfig& with_mem_limit(uint64_t limit) noexcept {
    mem_limit = limit;
    return *this;
  }
  /// The crate's `num_streams`: accepted for source compatibility and ignored. Like the kernel
  /// since 3.15 (one stream per CPU), every thread compresses with its own thread-local stream,
  /// so the number of parallel compressions is the number of writing threads.
  ZramConfig& num_streams(uint32_t /*streams*/) noexcept { return *this; }
  /// Pages the store holds: disksize / 4096.
  uint64_t max_pages() const noexcept { return disksize / kPageSize; }
  /// The limit the store enforces: mem_limit, or 0 for none. (The crate invents disksize/2 for
  /// "no limit"; we follow the kernel, where 0 means unlimited.)
  uint64_t effective_mem_limit() const noexcept { return mem_limit; }
};

/// The kernel's mm_stat, field for field (Documentation/admin-guide/blockdev/zram.rst).
struct ZramStats {
  uint64_t orig_data_size = 0;   // bytes of pages stored (same-filled ones included)
  uint64_t compr_data_size = 0;  // compressed bytes of stored objects (huge pages count 4096)
  uint64_t mem_used_total = 0;   // memory the allocator holds, page granular (slab + huge)
  uint64_t mem_limit = 0;
  uint64_t mem_used_max = 0;  // high-water mark of mem_used_total
  uint64_t same_pages = 0;
  uint64_t pages_compacted = 0;  // pages freed by compaction, cumulative
  uint64_t huge_pages = 0;
  uint64_t huge_pages_since = 0;  // huge pages written since creation, cumulative

  // ---- I/O counts: the kernel's io_stat plus its block-layer read/write counts ----
  /// Page reads (read_page calls and the pages of read()) that passed the range check, failed
  /// ones included, as the block layer counts every submitted read.
  uint64_t num_reads = 0;
  /// Page writes (whole or partial; write_page, write_partial and the pages of write()) that
  /// passed the range check, failed ones included. discard() is not a write.
  uint64_t num_writes = 0;
  uint64_t failed_reads = 0;   // reads whose stored bytes did not decode (-EIO)
  uint64_t failed_writes = 0;  // writes refused: over mem_limit, no memory, partial-read failure
  /// Requests rejected before touching a page: out-of-range index or byte range, bad partial
  /// offset/length (the kernel's invalid_io; such requests count in no other field).
  uint64_t invalid_io = 0;

  // ---- recompression (zero unless ZramConfig::recompress.enabled) ----
  uint64_t recomp_pages = 0;        // pages stored with the secondary codec now
  uint64_t pages_recompressed = 0;  // pages re-encoded with the secondary codec, cumulative
  /// Stored (compressed) bytes saved by those re-encodings, cumulative: each page's old stored
  /// size minus its new one (a huge page's old size is 4096).
  uint64_t recomp_bytes_saved = 0;
  /// Pages whose secondary encoding would not take a smaller slab slot: kept as they were and
  /// not tried again until rewritten (the kernel's incompressible mark), cumulative.
  uint64_t recomp_not_shrunk = 0;

  // ---- the crate's derived numbers (zram.rs ZramStats) ----
  /// orig_data_size / compr_data_size; 1.0 when nothing is stored in compressed form.
  double compression_ratio() const noexcept {
    return compr_data_size == 0
               ? 1.0
               : static_cast<double>(orig_data_size) / static_cast<double>(compr_data_size);
  }
  /// orig_data_size / mem_used_total: what the RAM actually held buys; 1.0 when empty.
  double memory_efficiency() const noexcept {
    return mem_used_total == 0
               ? 1.0
               : static_cast<double>(orig_data_size) / static_cast<double>(mem_used_total);
  }
  /// Pages stored as one repeated word (zero pages included, as the kernel counts them).
  uint64_t special_pages() const noexcept { return same_pages; }
};

/// What one page slot holds. The crate's PageEntry (its Zero/Same are our Same, its
/// Uncompressed our Huge).
struct PageInfo {
  enum class Kind : uint8_t { Empty, Same, Huge, Compressed } kind = Kind::Empty;
  uint64_t same_value = 0;    // the repeated 8-byte word, for Same
  uint32_t stored_bytes = 0;  // compressed size (4096 for Huge)
  bool recompressed = false;  // encoded with the secondary codec (ZramConfig::recompress)
  bool idle = false;          // marked idle and not read or written since

  /// Bytes of slab the entry occupies (0 for Empty and Same).
  uint32_t memory_size() const noexcept { return stored_bytes; }
  bool is_empty() const noexcept { return kind == Kind::Empty; }
};
using PageEntry = PageInfo;

/// Which pages one recompress() call re-encodes (the kernel's `recompress` arguments).
struct RecompressOptions {
  /// Idle: only pages marked by mark_idle() (or the background thread) and not read or written
  /// since (`type=idle`). All: every candidate (no type).
  enum class Pages : uint8_t { Idle, All } pages = Pages::All;
  /// Only pages stored in at least this many bytes (`threshold=`); 0..4096, 0 = any.
  uint32_t threshold = 0;
  /// Examine at most this many pages, from page 0; 0 = the whole store.
  uint64_t max_pages = 0;
};

/// What one recompress() call did. examined = recompressed + not_shrunk + raced + skipped.
struct RecompressResult {
  uint64_t examined = 0;      // stored pages looked at (empty and same-filled ones are not)
  uint64_t recompressed = 0;  // re-encoded with the secondary codec
  uint64_t not_shrunk = 0;    // secondary encoding took no smaller a slot: kept as they were
  /// Rewritten or discarded while being re-encoded: the new data is kept, the work dropped.
  uint64_t raced = 0;
  /// Not candidates: already recompressed, marked not shrinking, not idle, under the
  /// threshold, or no memory for the new object (mem_limit).
  uint64_t skipped = 0;
  uint64_t bytes_saved = 0;  // stored bytes saved (old size minus new)
};

namespace detail {
class ZsPool;
class IoCounters;
struct Slot;
struct StoreProbe;
}  // namespace detail

/// Thread-safe: each page has its own lock, so writers and readers of different pages run in
/// parallel, and concurrent partial writes to one page are serialised (no lost update).
class ZramStore {
 public:
  /// InvalidArgument for a zero or non-4096-multiple disksize or an out-of-range level.
  static Result<std::unique_ptr<ZramStore>> create(const ZramConfig& config);
  ~ZramStore();
  ZramStore(const ZramStore&) = delete;
  ZramStore& operator=(const ZramStore&) = delete;

  /// Stores `data` at byte `offset`. Partial pages are read-modify-written under the page lock.
  /// InvalidArgument past disksize; ResourceExhausted (ENOSPC) when mem_limit would be exceeded,
  /// in which case the pages not yet written keep their old content.
  Result<void> write(uint64_t offset, std::span<const std::byte> data);
  /// Reads into `out`; never-written and discarded bytes read as zero.
  Result<void> read(uint64_t offset, std::span<std::byte> out);
  /// Frees the whole pages inside the range at once and zeroes the partial ones at its edges.
  Result<void> discard(uint64_t offset, uint64_t length);

  /// Page-granular hot path used by ZramDisk: 0 or a negative errno (-EINVAL bad index, -ENOSPC
  /// over mem_limit, -ENOMEM, -EIO corrupt object). `page` is 4096 bytes.
  int write_page(uint64_t index, const std::byte* page) noexcept;
  int read_page(uint64_t index, std::byte* page) noexcept;
  int discard_page(uint64_t index) noexcept;
  /// Stores bytes [offset, offset+len) of page `index`, keeping the rest (read-modify-write).
  int write_partial(uint64_t index, uint32_t offset, const std::byte* data, uint32_t len) noexcept;

  /// Marks every stored page idle, as writing "all" to /sys/block/zramN/idle: a read or write of
  /// the page clears its mark. Returns the pages marked.
  uint64_t mark_idle() noexcept;
  /// Re-encodes the pages `options` selects with the secondary codec (ZramConfig::recompress),
  /// as writing to /sys/block/zramN/recompress. A page that would not take a smaller slab slot
  /// is kept as it was and marked, so later calls skip it until it is rewritten. Readers and
  /// writers of a page wait at most for one page's decode: the slow encode runs unlocked, and a
  /// page rewritten meanwhile keeps the new data. Calls (and the background thread's passes) run
  /// one at a time. The replaced objects leave holes in their slabs: compact() afterwards turns
  /// the saving into freed pages (mem_used_total). InvalidArgument when the store was created
  /// without recompress.enabled, or for a threshold over 4096.
  Result<RecompressResult> recompress(const RecompressOptions& options = {});

  /// Moves objects out of sparsely used slabs into fuller ones and frees the emptied slabs, as
  /// writing to /sys/block/zramN/compact. Pages being written concurrently are skipped. Returns
  /// the number of 4 KiB pages freed.
  uint64_t compact();

  ZramStats stats() const noexcept;
  /// The nine mm_stat numbers on one line, formatted as the kernel prints them.
  std::string mm_stat() const;
  PageInfo page_info(uint64_t index) const noexcept;
  /// The page's stored bytes wrapped as a standalone .lz4 or .zst frame, which `lz4 -d` /
  /// `zstd -d` decode to the page (Algorithm::None: the 4096 stored bytes themselves). NotFound
  /// for empty and same-filled pages (no bytes stored).
  Result<std::vector<std::byte>> page_frame(uint64_t index) const;

  /// Drops every page and returns all slab memory to the system; statistics restart from zero
  /// (mem_used_max, pages_compacted, huge_pages_since and the recompression counts included;
  /// waits for a recompression pass in flight), as writing to
  /// /sys/block/zramN/reset. Like the kernel, which refuses to reset an open device, it needs
  /// the store to be idle: Busy when an operation holds a page lock, and no call may start while
  /// it runs.
  Result<void> reset();

  /// Pages that hold data (same-filled included); the crate's `stored_pages`.
  uint64_t stored_pages() const noexcept { return pages_stored_.load(std::memory_order_relaxed); }

  const ZramConfig& config() const noexcept { return config_; }
  uint64_t num_pages() const noexcept { return num_pages_; }
  /// Compressed objects of this size or more are stored raw (they would fill a page anyway).
  uint32_t huge_threshold() const noexcept;

 private:
  struct Token {};

 public:
  ZramStore(Token, const ZramConfig& config);

 private:
  void lock(uint64_t index) const noexcept;
  void unlock(uint64_t index) const noexcept;
  bool try_lock(uint64_t index) const noexcept;
  // Frees whatever slot `index` holds; caller holds its lock.
  void free_slot(uint64_t index) noexcept;
  // Decodes slot `index` into `page`; caller holds its lock.
  int load_locked(uint64_t index, std::byte* page) const noexcept;
  // Compresses and installs `page` into slot `index`; caller holds its lock iff `locked`.
  int store_page(uint64_t index, const std::byte* page, bool locked) noexcept;
  Result<void> check_range(uint64_t offset, uint64_t length, const char* what);
  // write_partial without the I/O counts (discard zeroes partial edges through it).
  int modify_page(uint64_t index, uint32_t offset, const std::byte* data, uint32_t len) noexcept;
  // Recompression of one page (recompress.cpp); caller holds recomp_mutex_. `age`: the
  // background's lap, which marks a non-idle candidate idle instead of skipping it.
  void recompress_page(uint64_t index, const RecompressOptions& options, bool age,
                       RecompressResult& result) noexcept;
  void background_loop(std::stop_token stop) noexcept;

  friend class ZramRelocator;
  friend struct detail::StoreProbe;  // tests: corrupt a stored object to exercise -EIO

  ZramConfig config_;
  uint64_t num_pages_;
  std::unique_ptr<detail::ZsPool> pool_;
  std::unique_ptr<detail::Slot[]> slots_;
  std::unique_ptr<detail::IoCounters> io_;  // sharded read/write counts, failure counts

  std::atomic<uint64_t> pages_stored_{0};
  std::atomic<uint64_t> compr_data_size_{0};
  std::atomic<uint64_t> same_pages_{0};
  std::atomic<uint64_t> huge_pages_{0};
  std::atomic<uint64_t> huge_pages_since_{0};
  std::atomic<uint64_t> recomp_pages_{0};
  std::atomic<uint64_t> pages_recompressed_{0};
  std::atomic<uint64_t> recomp_bytes_saved_{0};
  std::atomic<uint64_t> recomp_not_shrunk_{0};

  // One recompression pass at a time; reset() holds it so no pass allocates from a dropped pool.
  std::mutex recomp_mutex_;
  std::condition_variable_any recomp_wake_;  // the background thread sleeps on it between passes
  uint64_t recomp_cursor_ = 0;               // the background's next page; under recomp_mutex_
  // Declared last: destroyed first, so the thread is stopped and joined while everything it
  // touches still exists.
  std::jthread background_;
};

/// The crate's ZramDevice (read_page/write_page/discard_page/stored_pages/reset/stats/config) is
/// this store; its PageTable and CompressionStream are the store's page table and per-thread
/// codec streams, internal here (see docs/seed-map.md).
using ZramDevice = ZramStore;

}  // namespace pepita::zram
