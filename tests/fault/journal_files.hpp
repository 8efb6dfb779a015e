#pragma once
// Journal test helpers shared by tests/fault/journal*_test.cpp: whole-file reads and writes, and
// the journal frame ([u32 length][u32 CRC32C][payload], little endian) built by hand, so a test
// can write journals that pepita itself never writes (torn, edited, older formats).

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/core/crc32c.hpp"

namespace pepita::fault::test {

/// Payload offsets of a format 3 record: auth byte, u64 sequence, the previous payload's SHA-256,
/// then (MACed only) the MAC, then the body.
inline constexpr std::size_t kPrevAt = 1 + 8;
inline constexpr std::size_t kUnkeyedBodyAt = kPrevAt + 32;

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

inline void write_file(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

/// Appends `v` to `out` as 4 little-endian bytes.
inline void put_le32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

/// A frame around `payload` whose length field says `length` (the payload's size unless given)
/// and whose CRC32C is the payload's.
inline std::string make_frame(std::string_view payload, std::uint32_t length) {
  std::string frame;
  put_le32(frame, length);
  put_le32(frame, crc32c(payload));
  return frame.append(payload);
}
inline std::string make_frame(std::string_view payload) {
  return make_frame(payload, static_cast<std::uint32_t>(payload.size()));
}

/// Where one frame of a journal file starts and how long it is, its header included.
struct Frame {
  std::size_t offset;
  std::size_t size;
};
/// The frames of a journal file's bytes after its 8-byte magic, as their length fields say.
inline std::vector<Frame> frames_of(std::string_view data) {
  std::vector<Frame> out;
  std::size_t pos = 8;
  while (pos + 8 <= data.size()) {
    std::uint32_t len = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      len |= std::uint32_t{static_cast<unsigned char>(data[pos + i])} << (8 * i);
    }
    out.push_back({pos, 8 + len});
    pos += 8 + len;
  }
  return out;
}
/// Rewrites the CRC32C of frame `f` in `data` to match its (edited) payload.
inline void fix_crc(std::string& data, const Frame& f) {
  const std::uint32_t crc = crc32c(std::string_view(data).substr(f.offset + 8, f.size - 8));
  for (std::size_t i = 0; i < 4; ++i) {
    data[f.offset + 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
  }
}

}  // namespace pepita::fault::test
