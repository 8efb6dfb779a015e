// GuestMemory: sorted non-overlapping regions, range checks with overflow-checked arithmetic,
// fd-backed regions as vhost-user's SET_MEM_TABLE gives them, views sharing a mapping, and
// memfd-backed images and copy-on-write views for VM snapshots.
#include "pepita/memory/guest_memory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "pepita/core/mapping.hpp"
#include "pepita/core/sys/check.hpp"
#include "pepita/core/sys/fd.hpp"

namespace pepita::memory {
namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// True when [a, a + alen) and [b, b + blen) overlap; callers checked that neither end overflows.
bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  return a < b + blen && b < a + alen;
}

}  // namespace

struct GuestMemory::Backing {
  // Members are destroyed in reverse order: the mapping is unmapped before its fd closes.
  UniqueFd fd;
  Mapping mapping;
};

Result<void> GuestMemory::check_layout(PhysAddr base, uint64_t size) {
  if (size == 0 || !abi::is_aligned(size, abi::PAGE_SIZE))
    return fail(ErrorCode::InvalidArgument,
                "guest memory size " + hex(size) + " must be a non-zero multiple of 4096");
  if (!base.is_page_aligned())
    return fail(ErrorCode::InvalidArgument,
                "guest memory base " + hex(base.raw()) + " must be page-aligned");
  bool overflow = false;
  (void)base.checked_add(size, overflow);
  if (overflow)
    return fail(ErrorCode::InvalidArgument, "guest memory [" + hex(base.raw()) + ", +" + hex(size) +
                                                ") wraps the address space");
  return {};
}

// Adds `r` in gpa order. The caller checked that r's own ends do not overflow.
Result<void> GuestMemory::insert(Region r) {
  if (regions_.size() >= kMaxRegions)
    return fail(ErrorCode::InvalidArgument, std::string("guest memory already has ")
                                                .append(std::to_string(kMaxRegions))
                                                .append(" regions, the most it can hold"));
  for (const Region& o : regions_) {
    if (overlaps(r.gpa_, r.size_, o.gpa_, o.size_) ||
        (r.has_uva_ && o.has_uva_ && overlaps(r.uva_, r.size_, o.uva_, o.size_))) {
      return fail(ErrorCode::InvalidArgument, "guest memory region at gpa " + hex(r.gpa_) +
                                                  " overlaps the one at " + hex(o.gpa_));
    }
  }
  auto at = std::upper_bound(regions_.begin(), regions_.end(), r.gpa_,
                             [](uint64_t gpa, const Region& o) { return gpa < o.gpa_; });
  regions_.insert(at, std::move(r));
  return {};
}

Result<GuestMemory> GuestMemory::single(PhysAddr base, uint64_t size, std::shared_ptr<Backing> b) {
  GuestMemory mem;
  Region r;
  r.gpa_ = base.raw();
  r.size_ = size;
  r.host_ = b->mapping.bytes();
  r.backing_ = std::move(b);
  PEPITA_TRY_VOID(mem.insert(std::move(r)));
  return mem;
}

Result<GuestMemory> GuestMemory::anonymous(PhysAddr base, uint64_t size) {
  GuestMemory mem;
  PEPITA_TRY_VOID(mem.add_anonymous(base, size));
  return mem;
}

Result<void> GuestMemory::add_anonymous(PhysAddr base, uint64_t size) {
  PEPITA_TRY_VOID(check_layout(base, size));
  auto b = std::make_shared<Backing>();
  b->mapping =
      PEPITA_TRY(Mapping::map(size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, "guest memory"));
  Region r;
  r.gpa_ = base.raw();
  r.size_ = size;
  r.host_ = b->mapping.bytes();
  r.backing_ = std::move(b);
  return insert(std::move(r));
}

Result<GuestMemory> GuestMemory::shared(PhysAddr base, uint64_t size, const char* name) {
  PEPITA_TRY_VOID(check_layout(base, size));
  auto b = std::make_shared<Backing>();
  b->fd = PEPITA_TRY(sys::check_fd(
      static_cast<int>(sys::ret(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING))),
      "memfd_create for guest memory"));
  if (int r = sys::ftruncate(b->fd.get(), size); r < 0)
    return fail_errno(r, std::string("ftruncate guest memory memfd to ").append(hex(size)));
  // SAFETY: a fresh shared mapping of our own memfd, exactly `size` bytes long.
  b->mapping = PEPITA_TRY(Mapping::map(size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                                       b->fd.get(), 0, "guest memory (memfd)"));
  return single(base, size, std::move(b));
}

Result<GuestMemory> GuestMemory::copy_on_write(PhysAddr base, uint64_t size, int image_fd) {
  PEPITA_TRY_VOID(check_layout(base, size));
  struct stat st {};
  if (int r = sys::fstat(image_fd, &st); r < 0) return fail_errno(r, "fstat snapshot image");
  if (static_cast<uint64_t>(st.st_size) < size)
    return fail(ErrorCode::InvalidArgument, "snapshot image holds " + hex(st.st_size) +
                                                " bytes, fewer than the " + hex(size) + " mapped");
  auto b = std::make_shared<Backing>();
  // SAFETY: MAP_PRIVATE: writes make private copies; the sealed image itself never changes.
  b->mapping = PEPITA_TRY(Mapping::map(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE,
                                       image_fd, 0, "guest memory (copy-on-write)"));
  return single(base, size, std::move(b));
}

Result<void> GuestMemory::add_fd_region(UniqueFd fd, const FdRegion& d) {
  uint64_t gpa_end = 0, uva_end = 0, map_len = 0;
  if (d.size == 0 || __builtin_add_overflow(d.gpa, d.size, &gpa_end) ||
      __builtin_add_overflow(d.uva, d.size, &uva_end) ||
      __builtin_add_overflow(d.mmap_offset, d.size, &map_len)) {
    return fail(ErrorCode::InvalidArgument,
                "memory region gpa " + hex(d.gpa) + " size " + hex(d.size) +
                    " is empty or wraps the address space; the frontend sent a bad memory table");
  }
  // Host address = page-aligned mapping + mmap_offset + (gpa - d.gpa): with both page-aligned it
  // is as aligned as the gpa Queue::activate checked. An odd mmap_offset made the ring indices'
  // std::atomic_ref accesses misaligned (found by fuzz_vhost_user). QEMU's regions are pages.
  if (d.gpa % kRegionAlign != 0 || d.mmap_offset % kRegionAlign != 0) {
    return fail(ErrorCode::InvalidArgument, "memory region gpa " + hex(d.gpa) + " mmap_offset " +
                                                hex(d.mmap_offset) +
                                                " is not page-aligned; the frontend sent a bad "
                                                "memory table");
  }
  Region r;
  r.gpa_ = d.gpa;
  r.size_ = d.size;
  r.uva_ = d.uva;
  r.has_uva_ = true;
  // Overlap and count first (insert checks them again): nothing is mapped for a bad table.
  if (regions_.size() >= kMaxRegions)
    return fail(ErrorCode::InvalidArgument, "too many memory regions in the memory table");
  for (const Region& o : regions_) {
    if (overlaps(d.gpa, d.size, o.gpa_, o.size_) ||
        (o.has_uva_ && overlaps(d.uva, d.size, o.uva_, o.size_))) {
      return fail(ErrorCode::InvalidArgument,
                  "memory region at gpa " + hex(d.gpa) + " overlaps the one at " + hex(o.gpa_));
    }
  }
  // The region must lie inside its file: a shared mapping may reach past the end of the file,
  // but every access there raises SIGBUS, which would kill the backend at the first ring read
  // (found by fuzz_vhost_user). Non-regular fds (devices) have no size to check.
  if (const int64_t file_size = sys::regular_file_size(fd.get());
      file_size >= 0 && map_len > static_cast<uint64_t>(file_size)) {
    return fail(ErrorCode::InvalidArgument,
                "memory region gpa " + hex(d.gpa) + " needs " + hex(map_len) +
                    " bytes of its fd (mmap_offset + size) but the file has " +
                    hex(static_cast<uint64_t>(file_size)) +
                    "; the frontend sent a memory table larger than its memory");
  }
  auto b = std::make_shared<Backing>();
  b->fd = std::move(fd);
  // SAFETY: a fresh shared mapping of the frontend's RAM fd; we only ever reach into it through
  // find(), which checks every range against the region's size.
  b->mapping = PEPITA_TRY(Mapping::map(map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
                                       b->fd.get(), 0, "mmap guest memory region"));
  r.host_ = b->mapping.bytes() + d.mmap_offset;
  r.backing_ = std::move(b);
  return insert(std::move(r));
}

Result<GuestMemory> GuestMemory::view(std::span<const GuestRange> ranges) const {
  GuestMemory out;
  for (const GuestRange& g : ranges) {
    if (g.size == 0) continue;
    const Region* r = find(g.gpa, g.size);
    if (r == nullptr) {
      return fail(ErrorCode::InvalidArgument,
                  std::string("view range [")
                      .append(hex(g.gpa))
                      .append(", +")
                      .append(hex(g.size))
                      .append(") is not inside one region of guest memory"));
    }
    Region v = *r;  // shares the backing
    v.gpa_ = g.gpa;
    v.size_ = g.size;
    v.host_ = r->host_ + (g.gpa - r->gpa_);
    v.uva_ = r->uva_ + (g.gpa - r->gpa_);  // inside r: no overflow (checked when r was added)
    PEPITA_TRY_VOID(out.insert(std::move(v)));
  }
  return out;
}

Result<void> GuestMemory::reset_copy_on_write(int image_fd) {
  if (!valid()) return fail(ErrorCode::InvalidArgument, "reset of empty guest memory");
  if (regions_.size() != 1)
    return fail(ErrorCode::InvalidArgument, "reset_copy_on_write needs one-region guest memory");
  Region& r = regions_.front();
  Mapping& m = r.backing_->mapping;
  if (r.backing_->fd || r.has_uva_ || r.host_ != m.bytes() || r.size_ != m.size())
    return fail(ErrorCode::InvalidArgument,
                "reset_copy_on_write needs memory made by copy_on_write, not a memfd or a view");
  // A failed remap below unmaps the range: no view may point into it.
  if (r.backing_.use_count() != 1)
    return fail(ErrorCode::InvalidArgument,
                "a view of this guest memory still maps it; destroy the view before a reset");
  // SAFETY: MAP_FIXED over our own mapping of the same length: the host range stays ours, only its
  // pages are replaced by a fresh private view of the image.
  void* addr = ::mmap(m.data(), m.size(), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_NORESERVE | MAP_FIXED, image_fd, 0);
  if (addr == MAP_FAILED) {
    const int err = sys::last_error();  // mmap(2) fails with MAP_FAILED, not -1
    m.reset();  // the old range may be gone; never leave a half-valid object
    regions_.clear();
    return fail_errno(err, "mmap copy-on-write reset of guest memory");
  }
  return {};
}

Result<UniqueFd> GuestMemory::into_sealed_image() && {
  if (regions_.size() != 1 || !regions_.front().backing_->fd || regions_.front().has_uva_)
    return fail(ErrorCode::InvalidArgument, "only memfd-backed guest memory can be sealed");
  if (regions_.front().backing_.use_count() != 1)
    return fail(ErrorCode::InvalidArgument,
                "a view of this guest memory still maps it; destroy the view before sealing");
  std::shared_ptr<Backing> b = std::move(regions_.front().backing_);
  regions_.clear();
  b->mapping.reset();  // F_SEAL_WRITE fails while a shared writable mapping exists
  if (long r = sys::ret(::fcntl(b->fd.get(), F_ADD_SEALS,
                                F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL));
      r < 0)
    return fail_errno(static_cast<int>(r), "seal guest memory image");
  return std::move(b->fd);
}

PhysAddr GuestMemory::base() const noexcept {
  return regions_.empty() ? PhysAddr(0) : regions_.front().base();
}

uint64_t GuestMemory::size() const noexcept {
  uint64_t total = 0;
  for (const Region& r : regions_) total += r.size_;
  return total;
}

PhysAddr GuestMemory::end() const noexcept {
  return regions_.empty() ? PhysAddr(0) : regions_.back().end();
}

std::span<std::byte> GuestMemory::backing() const noexcept {
  return regions_.size() == 1 ? regions_.front().host() : std::span<std::byte>();
}

std::unexpected<Error> GuestMemory::outside(PhysAddr gpa, uint64_t len) const {
  std::string msg =
      std::string("guest range [").append(hex(gpa.raw())).append(", +").append(hex(len));
  msg.append(") is outside guest memory");
  if (regions_.empty()) msg.append(" (none)");
  constexpr size_t kNamed = 4;  // enough to see where the range fell, short with 64 regions
  for (size_t i = 0; i < std::min(regions_.size(), kNamed); ++i) {
    msg.append(i == 0 ? " [" : ", [").append(hex(regions_[i].gpa_));
    msg.append(", ").append(hex(regions_[i].gpa_ + regions_[i].size_)).append(")");
  }
  if (regions_.size() > kNamed)
    msg.append(" and ").append(std::to_string(regions_.size() - kNamed)).append(" more regions");
  if (regions_.size() > 1) msg.append(" or straddles two regions");
  return fail(ErrorCode::InvalidArgument, std::move(msg));
}

Result<void> GuestMemory::read_bytes(PhysAddr gpa, std::span<std::byte> out) const {
  auto src = PEPITA_TRY(span(gpa, out.size()));
  if (!out.empty()) std::memcpy(out.data(), src.data(), out.size());
  return {};
}

Result<void> GuestMemory::write_bytes(PhysAddr gpa, std::span<const std::byte> in) const {
  auto dst = PEPITA_TRY(span(gpa, in.size()));
  if (!in.empty()) std::memcpy(dst.data(), in.data(), in.size());
  return {};
}

Result<void> GuestMemory::fill_zero(PhysAddr gpa, uint64_t len) const {
  auto dst = PEPITA_TRY(span(gpa, len));
  if (len != 0) std::memset(dst.data(), 0, len);
  return {};
}

Result<PhysAddr> GuestMemory::uva_to_gpa(uint64_t uva, uint64_t len) const {
  for (const Region& r : regions_) {
    if (!r.has_uva_ || uva < r.uva_) continue;
    const uint64_t off = uva - r.uva_;
    if (off < r.size_ && len <= r.size_ - off) return PhysAddr(r.gpa_ + off);
  }
  return fail(ErrorCode::InvalidArgument,
              "frontend address " + hex(uva) + "+" + hex(len) + " is in no memory region");
}

}  // namespace pepita::memory
