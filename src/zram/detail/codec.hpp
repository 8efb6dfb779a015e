#pragma once
// Page codecs for ZramStore: lz4 blocks (LZ4_compress_fast, as the kernel's lz4 backend) and zstd
// frames without the 4-byte magic (ZSTD_f_zstd1_magicless), with per-thread compression state the
// way zram keeps per-CPU streams. Both are standard formats: page_frame() rewraps them as .lz4 /
// .zst files the reference tools decode.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pepita/zram/zram_store.hpp"

namespace pepita::zram::detail {

/// Worst-case room a compressor needs for one page before giving up.
inline constexpr size_t kCompressScratch = 2 * kPageSize;

struct CodecParams {
  Algorithm algorithm = Algorithm::Lz4;
  int zstd_level = 3;
  int lz4_acceleration = 1;
};

/// Compresses one 4 KiB page into `dst`; returns the size, or 0 when the result would not fit in
/// `max_len` bytes (the page is then stored raw). Negative errno when the codec fails (-ENOMEM).
int compress_page(const CodecParams& params, const std::byte* page, std::byte* dst,
                  size_t max_len) noexcept;
/// Decodes `len` stored bytes into a 4 KiB page; 0, or -EIO when they do not decode to exactly
/// one page (corruption).
int decompress_page(Algorithm algorithm, const std::byte* src, size_t len,
                    std::byte* page) noexcept;

/// Wraps stored bytes in a standard frame: lz4 frame format v1.6.x (one independent block,
/// content size 4096) or a zstd frame. `raw` marks a huge page stored uncompressed.
std::vector<std::byte> make_frame(Algorithm algorithm, const std::byte* stored, size_t len,
                                  bool raw);

/// True when the page is one 8-byte word repeated (the kernel's page_same_filled()).
bool page_same_filled(const std::byte* page, uint64_t& value) noexcept;
/// Fills a page with a repeated 8-byte word.
void fill_page(std::byte* page, uint64_t value) noexcept;

}  // namespace pepita::zram::detail
