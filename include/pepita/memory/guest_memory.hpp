#pragma once
// GuestMemory owns one contiguous block of guest-physical RAM and is the only way pepita code
// reads or writes it. Every access checks the whole range with overflow-checked arithmetic and
// returns Result, after rust-vmm's vm-memory (GuestMemoryMmap) as used by Firecracker.
//
//   auto mem = PEPITA_TRY(GuestMemory::anonymous(abi::PhysAddr(0), 16 << 20));
//   PEPITA_TRY_VOID(mem.write<uint64_t>(abi::PhysAddr(0x1000), 42));
//   uint64_t v = PEPITA_TRY(mem.read<uint64_t>(abi::PhysAddr(0x1000)));
//   auto bytes = PEPITA_TRY(mem.span(abi::PhysAddr(0x2000), 64));  // std::span<std::byte>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include "pepita/abi/memory.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"

namespace pepita::memory {

using abi::PhysAddr;

/// Guest RAM: [base, base + size). Move-only; unmaps (then closes its backing memfd) on
/// destruction.
class GuestMemory {
 public:
  GuestMemory() = default;

  /// Zero-filled private anonymous RAM, reserved lazily (MAP_NORESERVE): a page costs host memory
  /// only once touched. `size` must be a non-zero multiple of the page size, and base page-aligned.
  static Result<GuestMemory> anonymous(PhysAddr base, uint64_t size);

  /// Zero-filled RAM backed by a sealable memfd shared mapping, so it can later become a snapshot
  /// image (`into_sealed_image`) that other VMs map copy-on-write.
  static Result<GuestMemory> shared(PhysAddr base, uint64_t size, const char* name);

  /// Copy-on-write view of a sealed image fd (from `into_sealed_image`): reads see the image,
  /// writes go to private pages of this mapping and never reach the image.
  static Result<GuestMemory> copy_on_write(PhysAddr base, uint64_t size, int image_fd);

  /// Re-maps this memory copy-on-write over `image_fd` in place (same host address, so a KVM
  /// memory slot on it stays valid and the kernel invalidates its shadow pages). Drops every
  /// private page written since the last reset.
  Result<void> reset_copy_on_write(int image_fd);

  /// Ends this memory's mapping and returns its memfd sealed against writes, growth and
  /// shrinking. Only for memory made by `shared`; the result can be mapped by `copy_on_write`.
  Result<UniqueFd> into_sealed_image() &&;

  PhysAddr base() const noexcept { return base_; }
  uint64_t size() const noexcept { return size_; }
  /// One past the last byte: base + size (never overflows: checked at creation).
  PhysAddr end() const noexcept { return PhysAddr(base_.raw() + size_); }
  bool valid() const noexcept { return mapping_.valid(); }

  /// True when [gpa, gpa + len) lies wholly inside this memory (len 0 at end() is inside).
  bool contains(PhysAddr gpa, uint64_t len) const noexcept;

  /// Bytes [gpa, gpa + len) as a host span; InvalidArgument naming the range when any byte is
  /// outside. The span is valid until this memory is moved, reset or destroyed. The guest may
  /// change these bytes concurrently: copy before validating (no double fetch).
  Result<std::span<std::byte>> span(PhysAddr gpa, uint64_t len) const;

  /// Copies guest bytes out / in, range-checked as `span`.
  Result<void> read_bytes(PhysAddr gpa, std::span<std::byte> out) const;
  Result<void> write_bytes(PhysAddr gpa, std::span<const std::byte> in) const;
  /// Sets [gpa, gpa + len) to zero.
  Result<void> fill_zero(PhysAddr gpa, uint64_t len) const;

  /// Reads one trivially copyable T at gpa (any alignment: copied with memcpy).
  template <typename T>
  Result<T> read(PhysAddr gpa) const {
    static_assert(std::is_trivially_copyable_v<T>, "guest reads copy bytes");
    T value;
    PEPITA_TRY_VOID(read_bytes(gpa, std::as_writable_bytes(std::span<T, 1>(&value, 1))));
    return value;
  }

  /// Writes one trivially copyable T at gpa (any alignment).
  template <typename T>
  Result<void> write(PhysAddr gpa, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>, "guest writes copy bytes");
    return write_bytes(gpa, std::as_bytes(std::span<const T, 1>(&value, 1)));
  }

  /// The whole host mapping, for handing to the hypervisor (KVM_SET_USER_MEMORY_REGION) or a
  /// device that registers guest RAM with the kernel. Not a guest-address translation: callers that
  /// follow guest-supplied addresses use span/read/write.
  std::span<std::byte> backing() const noexcept { return {mapping_.bytes(), mapping_.size()}; }

 private:
  GuestMemory(PhysAddr base, uint64_t size, Mapping mapping, UniqueFd fd)
      : base_(base), size_(size), fd_(std::move(fd)), mapping_(std::move(mapping)) {}
  static Result<void> check_layout(PhysAddr base, uint64_t size);

  PhysAddr base_{};
  uint64_t size_ = 0;
  // Members are destroyed in reverse order: the mapping is unmapped before its memfd closes.
  UniqueFd fd_;
  Mapping mapping_;
};

}  // namespace pepita::memory
