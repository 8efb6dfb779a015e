#pragma once
// SHA-256 for files and streams: the one digest pepita uses to name content — the result cache's
// input and output hashes, staged files' integrity, the journal's provenance chain (issue 24).
// OpenSSL underneath (SHA-NI where the CPU has it).
//
//   Sha256 h;  h.update(bytes);  std::string hex = h.hex_digest();
//   std::string digest = PEPITA_TRY(sha256_file("corpus-0.txt"));  // 64 lowercase hex digits

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "pepita/error.hpp"

namespace pepita {

/// A raw SHA-256 digest.
using Sha256Digest = std::array<std::byte, 32>;

/// Lowercase hex of `bytes` (64 digits for a digest).
std::string to_hex(std::span<const std::byte> bytes);

/// Incremental SHA-256. Move-only; finish() may be called once, after which the object can only
/// be reset() or destroyed.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::span<const std::byte> data);
  void update(std::string_view data);
  Sha256Digest finish();
  /// finish() as 64 lowercase hex digits.
  std::string hex_digest();
  /// Starts over (an empty message).
  void reset();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

/// SHA-256 of `data` as hex.
std::string sha256_hex(std::string_view data);

/// SHA-256 of the file at `path` as hex, read in 1 MiB blocks (bounded memory for any size).
/// NotFound / PermissionDenied / Io naming the path; InvalidArgument for a directory.
Result<std::string> sha256_file(const std::string& path);

/// Whether `text` is 64 lowercase hex digits (what sha256_hex writes) — for checking a digest
/// that came from a file or the wire before using it as a name.
bool is_sha256_hex(std::string_view text) noexcept;

}  // namespace pepita
