#pragma once
// Cryptographic primitives of the transport, all from OpenSSL's libcrypto: the pre-shared Key
// (loaded only from a mode-0600 file), SHA-256 (RFC 6234) for blob addresses, HMAC-SHA256
// (RFC 2104) for proofs and frame MACs, HKDF-SHA256 (RFC 5869) for session keys.
//
//   auto key = PEPITA_TRY(Key::from_file("/etc/pepita/worker.key"));  // refuses mode != 0600
//   Digest mac = hmac_sha256(key.bytes(), as_bytes("message"));

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/transport/frame.hpp"

namespace pepita::transport {

using Digest = std::array<std::byte, 32>;

/// The pre-shared key both ends of a connection hold. Its bytes are wiped on destruction.
class Key {
 public:
  /// Minimum key length accepted (128 bits); generate() makes 256-bit keys.
  static constexpr std::size_t kMinBytes = 16;

  /// Reads a key file: 64+ hex digits (what generate_file writes) or raw bytes, trailing
  /// whitespace ignored. PermissionDenied when the file is readable or writable by group or
  /// others (chmod 600 it), InvalidArgument when it is not a regular file, is empty, over 4 KiB,
  /// or shorter than kMinBytes; errno-based errors when it cannot be opened.
  static Result<Key> from_file(const std::string& path);
  /// A key from bytes already in memory (tests, embedding). InvalidArgument when too short.
  static Result<Key> from_bytes(ByteSpan bytes);
  /// 32 fresh random bytes.
  static Result<Key> generate();
  /// Writes `key` as hex to a new file created with mode 0600 (never overwrites: AlreadyExists).
  static Result<void> write_file(const std::string& path, const Key& key);

  Key(const Key& other) : bytes_(other.bytes_) {}
  Key(Key&&) noexcept = default;
  Key& operator=(const Key& other) {
    if (this != &other) bytes_ = other.bytes_;
    return *this;
  }
  Key& operator=(Key&&) noexcept = default;
  ~Key();

  ByteSpan bytes() const noexcept { return bytes_; }

 private:
  explicit Key(Bytes bytes) : bytes_(std::move(bytes)) {}
  Bytes bytes_;
};

/// SHA-256 of `data`.
Digest sha256(ByteSpan data);
/// Lower-case hex of any bytes.
std::string to_hex(ByteSpan bytes);
/// Parses hex (either case) into bytes; InvalidArgument on odd length or a non-hex digit.
Result<Bytes> from_hex(std::string_view hex);

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
Digest hmac_sha256(ByteSpan key, std::initializer_list<ByteSpan> parts);
/// HKDF-SHA256 (extract then expand) to 32 bytes.
Digest hkdf_sha256(ByteSpan ikm, ByteSpan salt, std::string_view info);
/// Constant-time comparison of two byte strings (false when the sizes differ).
bool constant_time_equal(ByteSpan a, ByteSpan b) noexcept;
/// Fills `out` from the OS CSPRNG; Internal when OpenSSL cannot seed.
Result<void> random_bytes(std::span<std::byte> out);

}  // namespace pepita::transport
