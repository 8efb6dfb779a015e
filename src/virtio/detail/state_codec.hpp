#pragma once
// The byte encoding of a device's snapshot state (VirtioDevice::save_state / load_state): plain
// little-endian fields appended in order, read back by the same device type. The bytes never leave
// the process (vmm::Snapshot keeps them in memory), yet the reader checks every length so a
// truncated or foreign blob is an error, not an overrun.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "pepita/virtio/queue.hpp"

namespace pepita::virtio::detail {

class StateWriter {
 public:
  template <typename T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out_.insert(out_.end(), p, p + sizeof v);
  }
  void bytes(std::span<const std::byte> b) {
    put<uint64_t>(b.size());
    out_.insert(out_.end(), b.begin(), b.end());
  }
  void segments(const std::vector<Segment>& segs) {
    put<uint32_t>(static_cast<uint32_t>(segs.size()));
    for (const auto& s : segs) {
      put<uint64_t>(s.gpa.raw());
      put<uint32_t>(s.len);
      put<uint8_t>(s.writable ? 1 : 0);
    }
  }
  std::vector<std::byte> take() { return std::move(out_); }

 private:
  std::vector<std::byte> out_;
};

class StateReader {
 public:
  explicit StateReader(std::span<const std::byte> in) : in_(in) {}
  /// False (and every later call false) once the input ran out.
  template <typename T>
  bool get(T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (!ok_ || in_.size() - pos_ < sizeof v) return ok_ = false;
    std::memcpy(&v, in_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return true;
  }
  bool bytes(std::vector<std::byte>& out) {
    uint64_t n = 0;
    if (!get(n) || in_.size() - pos_ < n) return ok_ = false;
    out.assign(in_.begin() + static_cast<std::ptrdiff_t>(pos_),
               in_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
    pos_ += n;
    return true;
  }
  bool segments(std::vector<Segment>& out, uint32_t max_count) {
    uint32_t n = 0;
    if (!get(n) || n > max_count) return ok_ = false;
    out.clear();
    for (uint32_t i = 0; i < n; ++i) {
      uint64_t gpa = 0;
      uint32_t len = 0;
      uint8_t writable = 0;
      if (!get(gpa) || !get(len) || !get(writable)) return false;
      out.push_back({PhysAddr(gpa), len, writable != 0});
    }
    return true;
  }
  /// Everything read and nothing left over.
  bool done() const noexcept { return ok_ && pos_ == in_.size(); }

 private:
  std::span<const std::byte> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace pepita::virtio::detail
