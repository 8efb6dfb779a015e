#pragma once
// Mapping owns one mmap'ed region and unmaps it exactly once.

#include <sys/mman.h>

#include <cstddef>
#include <utility>

#include "pepita/error.hpp"

namespace pepita {

class Mapping {
 public:
  Mapping() noexcept = default;
  Mapping(void* addr, std::size_t length) noexcept : addr_(addr), length_(length) {}
  Mapping(Mapping&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), length_(std::exchange(other.length_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      reset();
      addr_ = std::exchange(other.addr_, nullptr);
      length_ = std::exchange(other.length_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  /// mmap(2) wrapper: `what` names the mapping in the error message.
  static Result<Mapping> map(std::size_t length, int prot, int flags, int fd, off_t offset,
                             const char* what);
  /// Anonymous private read/write memory (zero-filled).
  static Result<Mapping> anonymous(std::size_t length, const char* what) {
    return map(length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, what);
  }

  void* data() const noexcept { return addr_; }
  std::byte* bytes() const noexcept { return static_cast<std::byte*>(addr_); }
  std::size_t size() const noexcept { return length_; }
  bool valid() const noexcept { return addr_ != nullptr; }

  void reset() noexcept {
    if (addr_ != nullptr) ::munmap(addr_, length_);
    addr_ = nullptr;
    length_ = 0;
  }

 private:
  void* addr_ = nullptr;
  std::size_t length_ = 0;
};

}  // namespace pepita
