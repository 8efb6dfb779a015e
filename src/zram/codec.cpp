// lz4/zstd page codecs with per-thread contexts, same-filled detection, and frame wrapping.
#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_c_format / ZSTD_f_zstd1_magicless
#include "detail/codec.hpp"

#include <lz4.h>
#include <lz4frame.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace pepita::zram::detail {
namespace {

struct CCtxFree {
  void operator()(ZSTD_CCtx* cctx) const noexcept { ZSTD_freeCCtx(cctx); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* dctx) const noexcept { ZSTD_freeDCtx(dctx); }
};

// One compression stream per thread (zram keeps one per CPU). The zstd context is rebuilt only
// when a thread switches level.
struct ThreadStreams {
  std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx;
  int cctx_level = 0;  // 0: not set up yet (no valid level is 0; -1 is zstd's fastest-but-one)
  std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx;
  LZ4_stream_t lz4_state;
};

ThreadStreams& streams() {
  thread_local ThreadStreams local;
  return local;
}

ZSTD_CCtx* zstd_cctx(int level) {
  ThreadStreams& s = streams();
  if (!s.cctx) s.cctx.reset(ZSTD_createCCtx());
  if (!s.cctx) return nullptr;
  if (s.cctx_level != level) {
    ZSTD_CCtx_reset(s.cctx.get(), ZSTD_reset_session_and_parameters);
    ZSTD_CCtx_setParameter(s.cctx.get(), ZSTD_c_compressionLevel, level);
    // The 4-byte magic is the same for every page; it is added back only when exporting.
    ZSTD_CCtx_setParameter(s.cctx.get(), ZSTD_c_format, ZSTD_f_zstd1_magicless);
    ZSTD_CCtx_setParameter(s.cctx.get(), ZSTD_c_checksumFlag, 0);
    ZSTD_CCtx_setParameter(s.cctx.get(), ZSTD_c_contentSizeFlag, 1);
    s.cctx_level = level;
  }
  return s.cctx.get();
}

ZSTD_DCtx* zstd_dctx() {
  ThreadStreams& s = streams();
  if (!s.dctx) {
    s.dctx.reset(ZSTD_createDCtx());
    if (!s.dctx) return nullptr;
    ZSTD_DCtx_setParameter(s.dctx.get(), ZSTD_d_format, ZSTD_f_zstd1_magicless);
  }
  return s.dctx.get();
}

void put_le32(std::vector<std::byte>& out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>(value >> (8 * i)));
}

}  // namespace

int compress_page(const CodecParams& params, const std::byte* page, std::byte* dst,
                  size_t max_len) noexcept {
  if (params.algorithm == Algorithm::None) return 0;  // never compressed: stored raw (huge)
  if (params.algorithm == Algorithm::Lz4) {
    // SAFETY: liblz4 takes char buffers; these are plain bytes of the stated lengths.
    const int n = LZ4_compress_fast_extState(
        &streams().lz4_state, reinterpret_cast<const char*>(page), reinterpret_cast<char*>(dst),
        static_cast<int>(kPageSize), static_cast<int>(max_len), params.lz4_acceleration);
    return n;  // 0: did not fit (LZ4 gives up early on incompressible input)
  }
  ZSTD_CCtx* cctx = zstd_cctx(params.zstd_level);
  if (cctx == nullptr) return -ENOMEM;
  const size_t n = ZSTD_compress2(cctx, dst, max_len, page, kPageSize);
  if (ZSTD_isError(n)) {
    if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall) return 0;
    return -EIO;
  }
  return static_cast<int>(n);
}

int decompress_page(Algorithm algorithm, const std::byte* src, size_t len,
                    std::byte* page) noexcept {
  if (algorithm == Algorithm::None) {
    // Only huge (raw) objects exist under None, and those are copied, not decoded.
    if (len != kPageSize) return -EIO;
    std::memcpy(page, src, kPageSize);
    return 0;
  }
  if (algorithm == Algorithm::Lz4) {
    // SAFETY: as above; LZ4_decompress_safe never writes past kPageSize bytes of `page`.
    const int n =
        LZ4_decompress_safe(reinterpret_cast<const char*>(src), reinterpret_cast<char*>(page),
                            static_cast<int>(len), static_cast<int>(kPageSize));
    return n == static_cast<int>(kPageSize) ? 0 : -EIO;
  }
  ZSTD_DCtx* dctx = zstd_dctx();
  if (dctx == nullptr) return -ENOMEM;
  const size_t n = ZSTD_decompressDCtx(dctx, page, kPageSize, src, len);
  return !ZSTD_isError(n) && n == kPageSize ? 0 : -EIO;
}

std::vector<std::byte> make_frame(Algorithm algorithm, const std::byte* stored, size_t len,
                                  bool raw) {
  std::vector<std::byte> out;
  if (algorithm == Algorithm::None) return {stored, stored + len};  // no container: the page
  if (algorithm == Algorithm::Lz4) {
    // Let liblz4 write the frame header (it computes the header checksum), then append our block
    // as is: size word (high bit = stored uncompressed), data, end mark.
    LZ4F_preferences_t prefs{};
    prefs.frameInfo.blockSizeID = LZ4F_max64KB;
    prefs.frameInfo.blockMode = LZ4F_blockIndependent;
    prefs.frameInfo.contentSize = kPageSize;
    LZ4F_cctx* cctx = nullptr;
    if (LZ4F_isError(LZ4F_createCompressionContext(&cctx, LZ4F_VERSION))) return {};
    std::byte header[LZ4F_HEADER_SIZE_MAX];
    const size_t header_len = LZ4F_compressBegin(cctx, header, sizeof(header), &prefs);
    LZ4F_freeCompressionContext(cctx);
    if (LZ4F_isError(header_len)) return {};
    out.assign(header, header + header_len);
    put_le32(out, static_cast<uint32_t>(len) | (raw ? 0x8000'0000u : 0));
    out.insert(out.end(), stored, stored + len);
    put_le32(out, 0);  // EndMark
    return out;
  }
  put_le32(out, ZSTD_MAGICNUMBER);
  if (!raw) {
    out.insert(out.end(), stored, stored + len);
    return out;
  }
  // A one-block frame with a Raw block (RFC 8878 3.1.1): single segment, 2-byte content size.
  out.push_back(std::byte{0x60});  // FHD: FCS_flag=1 (2 bytes), Single_Segment
  const uint32_t fcs = kPageSize - 256;
  out.push_back(static_cast<std::byte>(fcs & 0xff));
  out.push_back(static_cast<std::byte>(fcs >> 8));
  const uint32_t block_header = 1u /*last*/ | (0u << 1) /*raw*/ | (static_cast<uint32_t>(len) << 3);
  for (int i = 0; i < 3; ++i) out.push_back(static_cast<std::byte>(block_header >> (8 * i)));
  out.insert(out.end(), stored, stored + len);
  return out;
}

bool page_same_filled(const std::byte* page, uint64_t& value) noexcept {
  uint64_t first = 0;
  uint64_t last = 0;
  std::memcpy(&first, page, 8);
  std::memcpy(&last, page + kPageSize - 8, 8);
  // Check the last word first: most pages that are not same-filled differ there (as the kernel's
  // page_same_filled() does), so text and random pages cost two loads.
  if (last != first) return false;
  for (size_t offset = 0; offset < kPageSize; offset += 64) {
    uint64_t words[8];
    std::memcpy(words, page + offset, sizeof(words));  // plain loads, no aliasing casts
    uint64_t diff = 0;
    for (uint64_t word : words) diff |= word ^ first;
    if (diff != 0) return false;
  }
  value = first;
  return true;
}

void fill_page(std::byte* page, uint64_t value) noexcept {
  if (value == 0) {
    std::memset(page, 0, kPageSize);
    return;
  }
  for (size_t i = 0; i < kPageSize; i += 8) std::memcpy(page + i, &value, 8);
}

}  // namespace pepita::zram::detail
