#pragma once
// CRC32C (Castagnoli, polynomial 0x1EDC6F41 reflected = 0x82F63B78), as used by iSCSI (RFC 3720
// appendix B.4), ext4 and LevelDB logs. SSE4.2 `crc32` instructions when the CPU has them, a
// table otherwise; both give identical results. Lives in core because the journal (fault) and the
// wire frames (transport) both checksum with it.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace pepita {

/// Extends `crc` (0 for a fresh checksum) over `data`. crc32c("123456789") == 0xE3069283.
std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;
std::uint32_t crc32c(std::string_view data, std::uint32_t crc = 0) noexcept;

/// The portable table implementation, exposed so tests can check the fast path against it.
std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;

}  // namespace pepita
