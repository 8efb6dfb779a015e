#pragma once
// Memory-ordering helpers for words shared with the kernel through the io_uring mappings
// (liburing's barrier.h, in C++20 std::atomic_ref). Every load/store of a ring head, tail or flags
// word goes through one of these, with a comment naming the kernel side it pairs with.

#include <atomic>
#include <cstdint>

namespace pepita::io_uring {

/// Load that orders every later read after it: pairs with the kernel's smp_store_release of the
/// same word (CQ tail, SQ head).
inline std::uint32_t load_acquire(const std::uint32_t* p) noexcept {
  // atomic_ref<const T> is C++26; the word is never written through this reference.
  return std::atomic_ref<std::uint32_t>(*const_cast<std::uint32_t*>(p))
      .load(std::memory_order_acquire);
}

/// Store that orders every earlier write before it: the kernel's smp_load_acquire of the same
/// word (SQ tail, CQ head) then sees the SQEs we filled / knows we are done with the CQEs.
inline void store_release(std::uint32_t* p, std::uint32_t v) noexcept {
  std::atomic_ref<std::uint32_t>(*p).store(v, std::memory_order_release);
}

/// Untorn load with no ordering (the kernel's READ_ONCE pairing), for advisory words such as
/// the SQ flags and the overflow counter.
inline std::uint32_t read_once(const std::uint32_t* p) noexcept {
  return std::atomic_ref<std::uint32_t>(*const_cast<std::uint32_t*>(p))
      .load(std::memory_order_relaxed);
}

/// Untorn store with no ordering (WRITE_ONCE).
inline void write_once(std::uint32_t* p, std::uint32_t v) noexcept {
  std::atomic_ref<std::uint32_t>(*p).store(v, std::memory_order_relaxed);
}

/// Full fence: after publishing the SQ tail, an SQPOLL ring must order that store before reading
/// the NEED_WAKEUP flag, or both sides could miss each other (liburing's io_uring_smp_mb).
inline void full_fence() noexcept {
#if defined(__SANITIZE_THREAD__) && defined(__x86_64__)
  // SAFETY: GCC rejects atomic_thread_fence under ThreadSanitizer (-Wtsan); the other side is
  // the kernel, which TSan cannot see anyway, so emit the hardware full barrier directly.
  asm volatile("mfence" ::: "memory");
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace pepita::io_uring
