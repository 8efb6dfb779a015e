#pragma once
// pepita::memory's address vocabulary, spelled as the reference crate's `memory` module: the
// strong PhysAddr / VirtAddr / Pfn types of pepita/abi/memory.hpp (one set of types for guest
// memory, the VMM, DMA buffers and the page allocator) and PAGE_SIZE / PAGE_SHIFT / PAGE_MASK.
// The types' own add/sub/page_align_up saturate (see abi::Address); the checked_* functions here
// return a Result instead, for addresses that come from a guest, a file or a user.
//
//   using namespace pepita::memory;
//   PhysAddr phys(0x1000'0000);
//   Pfn pfn = Pfn::from_addr(phys);                         // pfn.to_addr() == phys
//   PhysAddr end = PEPITA_TRY(checked_add(phys, len, "request end"));
//   VirtAddr here = VirtAddr::from_ptr(buffer.data());

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "pepita/abi/memory.hpp"
#include "pepita/core/format.hpp"
#include "pepita/error.hpp"

namespace pepita::memory {

using abi::Pfn;
using abi::PhysAddr;
using abi::VirtAddr;

/// Bytes in a page (4 KiB on x86-64 and aarch64 with 4K pages; the kernel ABI pepita targets).
inline constexpr std::size_t PAGE_SIZE = abi::PAGE_SIZE;
/// log2(PAGE_SIZE).
inline constexpr uint32_t PAGE_SHIFT = static_cast<uint32_t>(abi::PAGE_SHIFT);
/// ~(PAGE_SIZE - 1): `addr & PAGE_MASK` is the start of addr's page.
inline constexpr uint64_t PAGE_MASK = abi::PAGE_MASK;
static_assert(std::size_t{1} << PAGE_SHIFT == PAGE_SIZE);

namespace detail {
/// "0x1f000": addresses in error messages.
inline std::string hex(uint64_t value) {
  char text[19];
  std::snprintf(text, sizeof(text), "0x%llx", static_cast<unsigned long long>(value));
  return text;
}
}  // namespace detail

/// `addr + offset`, or InvalidArgument naming `what` when the sum passes 2^64 - 1.
template <typename Tag>
Result<abi::Address<Tag>> checked_add(abi::Address<Tag> addr, uint64_t offset,
                                      std::string_view what) {
  bool overflow = false;
  const auto sum = addr.checked_add(offset, overflow);
  if (overflow)
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: {} + {} passes the end of the 64-bit address space; pass a "
                    "smaller offset",
                    what, detail::hex(addr.raw()), detail::hex(offset)));
  return sum;
}

/// `addr - offset`, or InvalidArgument naming `what` when the result would be below 0.
template <typename Tag>
Result<abi::Address<Tag>> checked_sub(abi::Address<Tag> addr, uint64_t offset,
                                      std::string_view what) {
  if (offset > addr.raw())
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: {} - {} is below address 0; pass a smaller offset", what,
                    detail::hex(addr.raw()), detail::hex(offset)));
  return abi::Address<Tag>(addr.raw() - offset);
}

/// The first page boundary at or above `addr`, or InvalidArgument naming `what` when `addr` lies
/// in the last page of the address space (no boundary above it).
template <typename Tag>
Result<abi::Address<Tag>> checked_page_align_up(abi::Address<Tag> addr, std::string_view what) {
  const auto up = addr.page_align_up();
  if (!up.is_page_aligned())
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: {} lies in the last page of the address space, so it has no page "
                    "boundary above it",
                    what, detail::hex(addr.raw())));
  return up;
}

/// Ok when `addr` is a multiple of PAGE_SIZE, else InvalidArgument naming `what`.
template <typename Tag>
Result<void> require_page_aligned(abi::Address<Tag> addr, std::string_view what) {
  if (!addr.is_page_aligned())
    return fail(ErrorCode::InvalidArgument,
                fmt("{}: {} is not a multiple of the page size ({}); align it with "
                    "page_align_down/page_align_up",
                    what, detail::hex(addr.raw()), PAGE_SIZE));
  return {};
}

}  // namespace pepita::memory
