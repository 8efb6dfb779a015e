#pragma once
// Strong address types for guest/host memory and page arithmetic. Freestanding: no hosted headers.
// PhysAddr, VirtAddr and Pfn never convert into each other implicitly.

#include <stddef.h>
#include <stdint.h>

#include <compare>      // freestanding
#include <type_traits>  // freestanding

namespace pepita::abi {

inline constexpr uint64_t SECTOR_SIZE = 512;
inline constexpr uint64_t SECTOR_SHIFT = 9;
inline constexpr uint64_t PAGE_SIZE = 4096;
inline constexpr uint64_t PAGE_SHIFT = 12;
/// Clears the offset inside a page (the kernel's PAGE_MASK): addr & PAGE_MASK is the page base.
inline constexpr uint64_t PAGE_MASK = ~(PAGE_SIZE - 1);
inline constexpr uint64_t HUGE_PAGE_SIZE = 2ull << 20;

/// True when `value` is a non-zero power of two.
constexpr bool is_power_of_two(uint64_t value) { return value != 0 && (value & (value - 1)) == 0; }
/// Rounds down to a multiple of `alignment` (a power of two).
constexpr uint64_t align_down(uint64_t value, uint64_t alignment) {
  return value & ~(alignment - 1);
}
/// Rounds up to a multiple of `alignment` (a power of two); wraps to 0 on overflow, so callers
/// check `align_up(v, a) >= v` when v comes from untrusted input.
constexpr uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}
constexpr bool is_aligned(uint64_t value, uint64_t alignment) {
  return (value & (alignment - 1)) == 0;
}

class Pfn;
struct PhysTag;
struct VirtTag;

template <typename Tag>
class Address {
 public:
  constexpr Address() = default;
  constexpr explicit Address(uint64_t raw) : raw_(raw) {}
  constexpr uint64_t raw() const { return raw_; }

  constexpr Address page_base() const { return Address(align_down(raw_, PAGE_SIZE)); }
  constexpr uint64_t page_offset() const { return raw_ & (PAGE_SIZE - 1); }
  constexpr bool is_page_aligned() const { return is_aligned(raw_, PAGE_SIZE); }
  constexpr Address align_down_to(uint64_t alignment) const {
    return Address(align_down(raw_, alignment));
  }
  constexpr Address align_up_to(uint64_t alignment) const {
    return Address(align_up(raw_, alignment));
  }

  /// Adds an offset; sets `overflow` instead of wrapping silently.
  constexpr Address checked_add(uint64_t offset, bool& overflow) const {
    uint64_t sum = 0;
    overflow = __builtin_add_overflow(raw_, offset, &sum);
    return Address(sum);
  }
  constexpr Address operator+(uint64_t offset) const { return Address(raw_ + offset); }
  constexpr Address operator-(uint64_t offset) const { return Address(raw_ - offset); }
  constexpr uint64_t operator-(Address other) const { return raw_ - other.raw_; }
  constexpr auto operator<=>(const Address&) const = default;

  // ---- the reference crate's spelling (pepita::memory::{PhysAddr, VirtAddr}) ----------------
  // Overflow rule: add, sub and page_align_up SATURATE instead of wrapping (the crate wraps): a
  // result past 2^64 - 1 is 2^64 - 1, below 0 is 0, so an address never wraps around to a low
  // one. page_align_up of an address in the last page is therefore 2^64 - 1, which is not page
  // aligned: callers that must have an aligned result check is_page_aligned(), or use
  // memory::checked_page_align_up for a Result. `PhysAddr::new(x)` is spelled `PhysAddr(x)`.
  static constexpr Address null() { return Address(); }
  constexpr uint64_t as_u64() const { return raw_; }
  constexpr bool is_null() const { return raw_ == 0; }
  constexpr Address page_align_down() const { return Address(raw_ & PAGE_MASK); }
  constexpr Address page_align_up() const {
    uint64_t end = 0;
    if (__builtin_add_overflow(raw_, PAGE_SIZE - 1, &end)) return Address(~uint64_t{0});
    return Address(end & PAGE_MASK);
  }
  constexpr Address add(uint64_t offset) const {
    uint64_t sum = 0;
    return __builtin_add_overflow(raw_, offset, &sum) ? Address(~uint64_t{0}) : Address(sum);
  }
  constexpr Address sub(uint64_t offset) const {
    return offset > raw_ ? Address(0) : Address(raw_ - offset);
  }
  /// start <= this < end (an empty or inverted range holds nothing).
  constexpr bool is_in_range(Address start, Address end) const {
    return raw_ >= start.raw_ && raw_ < end.raw_;
  }
  /// The address of `ptr` in this process (VirtAddr only).
  template <typename T>
  requires std::is_same_v<Tag, VirtTag>
  static Address from_ptr(const T* ptr) {
    // SAFETY: only the pointer's numeric value is taken; nothing is dereferenced.
    return Address(reinterpret_cast<uintptr_t>(ptr));
  }

 private:
  uint64_t raw_ = 0;
};

struct PhysTag {};
struct VirtTag {};
/// A guest- or host-physical address.
using PhysAddr = Address<PhysTag>;
/// A virtual address.
using VirtAddr = Address<VirtTag>;

/// Page frame number: a physical address shifted right by PAGE_SHIFT.
class Pfn {
 public:
  constexpr Pfn() = default;
  constexpr explicit Pfn(uint64_t raw) : raw_(raw) {}
  static constexpr Pfn containing(PhysAddr addr) { return Pfn(addr.raw() >> PAGE_SHIFT); }
  constexpr uint64_t raw() const { return raw_; }
  constexpr PhysAddr address() const { return PhysAddr(raw_ << PAGE_SHIFT); }
  constexpr Pfn operator+(uint64_t pages) const { return Pfn(raw_ + pages); }
  constexpr auto operator<=>(const Pfn&) const = default;

  // ---- the reference crate's spelling (pepita::memory::Pfn); saturating like Address ---------
  /// The largest frame number that has an address (its page starts at 2^64 - PAGE_SIZE).
  static constexpr uint64_t kMaxRaw = ~uint64_t{0} >> PAGE_SHIFT;
  static constexpr Pfn null() { return Pfn(); }
  static constexpr Pfn from_addr(PhysAddr addr) { return containing(addr); }
  /// The frame's first byte; a frame number past kMaxRaw has none and gives 2^64 - 1 (not page
  /// aligned) instead of wrapping to a low address.
  constexpr PhysAddr to_addr() const {
    return raw_ > kMaxRaw ? PhysAddr(~uint64_t{0}) : PhysAddr(raw_ << PAGE_SHIFT);
  }
  constexpr uint64_t as_u64() const { return raw_; }
  constexpr bool is_null() const { return raw_ == 0; }
  constexpr Pfn add(uint64_t pages) const {
    uint64_t sum = 0;
    return __builtin_add_overflow(raw_, pages, &sum) ? Pfn(~uint64_t{0}) : Pfn(sum);
  }
  constexpr Pfn sub(uint64_t pages) const { return pages > raw_ ? Pfn(0) : Pfn(raw_ - pages); }

 private:
  uint64_t raw_ = 0;
};

/// Number of pages needed to hold `bytes`.
constexpr uint64_t pages_for(uint64_t bytes) { return (bytes + PAGE_SIZE - 1) >> PAGE_SHIFT; }
constexpr uint64_t sectors_to_bytes(uint64_t sectors) { return sectors << SECTOR_SHIFT; }
constexpr uint64_t bytes_to_sectors(uint64_t bytes) { return bytes >> SECTOR_SHIFT; }

}  // namespace pepita::abi
