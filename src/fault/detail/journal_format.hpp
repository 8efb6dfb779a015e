#pragma once
// Journal framing shared by read_journal, Journal and verify_journal (journal.hpp describes the
// formats): magics, the frame, little-endian helpers, and format 3's chain header and End record.

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "pepita/error.hpp"

namespace pepita::fault::detail {

/// Appends the whole file at `path` to `data` (journal.cpp). A missing file is an empty journal
/// when `missing_is_empty`, else an error naming it. An out-parameter: returning the string
/// through Result trips a GCC 12 false positive (-Wmaybe-uninitialized) in callers.
Result<void> read_journal_bytes(const std::string& path, std::string& data, bool missing_is_empty);

inline constexpr char kMagicV1[8] = {'P', 'E', 'P', 'J', 'R', 'N', 'L', '1'};
inline constexpr char kMagicV2[8] = {'P', 'E', 'P', 'J', 'R', 'N', 'L', '2'};
inline constexpr char kMagicV3[8] = {'P', 'E', 'P', 'J', 'R', 'N', 'L', '3'};
inline constexpr std::size_t kMagicBytes = 8;
inline constexpr std::size_t kFrame = 8;  // u32 length + u32 crc
// A length above this is garbage, not a record: outputs are capped far below it.
inline constexpr std::uint32_t kMaxPayload = 256u << 20;
inline constexpr std::size_t kHash = 32;
// The body type byte of an End record (RecordType's values are 1..3).
inline constexpr std::uint8_t kEndType = 4;

/// 1, 2 or 3 for a full known magic; 0 otherwise.
inline std::uint32_t magic_format(std::string_view head) {
  if (head.size() < kMagicBytes) return 0;
  if (std::memcmp(head.data(), kMagicV3, kMagicBytes) == 0) return 3;
  if (std::memcmp(head.data(), kMagicV2, kMagicBytes) == 0) return 2;
  if (std::memcmp(head.data(), kMagicV1, kMagicBytes) == 0) return 1;
  return 0;
}
/// Whether `head` (shorter than a magic) is a prefix of a known magic: a magic torn at creation.
inline bool magic_prefix(std::string_view head) {
  return std::memcmp(head.data(), kMagicV3, head.size()) == 0 ||
         std::memcmp(head.data(), kMagicV2, head.size()) == 0 ||
         std::memcmp(head.data(), kMagicV1, head.size()) == 0;
}

inline void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
inline void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
inline std::uint32_t get_u32_at(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= std::uint32_t{static_cast<unsigned char>(s[at + static_cast<std::size_t>(i)])} << (8 * i);
  }
  return v;
}
inline std::uint64_t get_u64_at(std::string_view s, std::size_t at) {
  return std::uint64_t{get_u32_at(s, at)} | (std::uint64_t{get_u32_at(s, at + 4)} << 32);
}

/// Raw SHA-256 of `data` (32 bytes). The digest is fetched from the provider once (EVP_sha256()
/// makes OpenSSL 3 look it up again on every use, a locked provider lookup) and each thread keeps
/// one context (EVP_Digest allocated and freed one per call): this runs for every journal
/// record (issue 27). Neither is freed: they live as long as the process or thread.
inline std::string sha256_raw(std::string_view data) {
  static const EVP_MD* const md = [] {
    const EVP_MD* fetched = ::EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : ::EVP_sha256();
  }();
  struct Ctx {
    Ctx() : ctx(::EVP_MD_CTX_new()) {}
    ~Ctx() { ::EVP_MD_CTX_free(ctx); }
    Ctx(const Ctx&) = delete;
    Ctx& operator=(const Ctx&) = delete;
    EVP_MD_CTX* ctx;
  };
  thread_local Ctx c;
  std::string out(kHash, '\0');
  unsigned int len = 0;
  // SAFETY: `out` holds 32 bytes, SHA-256's output size; unsigned char and char alias.
  auto* digest = reinterpret_cast<unsigned char*>(out.data());
  if (c.ctx == nullptr || ::EVP_DigestInit_ex(c.ctx, md, nullptr) != 1 ||
      ::EVP_DigestUpdate(c.ctx, data.data(), data.size()) != 1 ||
      ::EVP_DigestFinal_ex(c.ctx, digest, &len) != 1) {
    ::EVP_Digest(data.data(), data.size(), digest, &len, md, nullptr);
  }
  return out;
}

/// Raw HMAC-SHA256 under `key` of the concatenation of `a` and `b`.
inline std::string hmac_raw(std::string_view key, std::string_view a, std::string_view b) {
  static EVP_MAC* const mac = ::EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  std::unique_ptr<EVP_MAC_CTX, decltype(&::EVP_MAC_CTX_free)> ctx(::EVP_MAC_CTX_new(mac),
                                                                  &::EVP_MAC_CTX_free);
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest_name, 0),
                         OSSL_PARAM_construct_end()};
  auto uc = [](std::string_view s) {
    // SAFETY: char and unsigned char alias; OpenSSL only reads.
    return reinterpret_cast<const unsigned char*>(s.data());
  };
  ::EVP_MAC_init(ctx.get(), uc(key), key.size(), params);
  ::EVP_MAC_update(ctx.get(), uc(a), a.size());
  ::EVP_MAC_update(ctx.get(), uc(b), b.size());
  std::string out(kHash, '\0');
  std::size_t len = 0;
  // SAFETY: `out` holds 32 bytes, HMAC-SHA256's output size.
  ::EVP_MAC_final(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, out.size());
  return out;
}

/// Constant-time equality of two equally long strings (MAC comparison).
inline bool same_bytes(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

/// A format 3 payload split into its chain header and body.
struct ChainedPayload {
  bool keyed = false;
  std::uint64_t sequence = 0;
  std::string_view prev;         // kHash raw bytes
  std::string_view mac;          // kHash raw bytes, or empty when not keyed
  std::string_view signed_part;  // auth|sequence|prev: what the MAC covers besides the body
  std::string_view body;
};

inline std::optional<ChainedPayload> split_payload(std::string_view p) {
  constexpr std::size_t head = 1 + 8 + kHash;
  if (p.size() < head) return std::nullopt;
  ChainedPayload out;
  const auto auth = static_cast<std::uint8_t>(p[0]);
  if (auth > 1) return std::nullopt;
  out.keyed = auth == 1;
  out.sequence = get_u64_at(p, 1);
  out.prev = p.substr(9, kHash);
  out.signed_part = p.substr(0, head);
  std::size_t at = head;
  if (out.keyed) {
    if (p.size() < head + kHash) return std::nullopt;
    out.mac = p.substr(head, kHash);
    at += kHash;
  }
  out.body = p.substr(at);
  if (out.body.empty()) return std::nullopt;
  return out;
}

/// Builds a format 3 payload for `body`.
inline std::string chain_payload(const std::optional<std::string>& key, std::uint64_t sequence,
                                 std::string_view prev, std::string_view body) {
  std::string p;
  p.reserve(1 + 8 + 2 * kHash + body.size());
  p.push_back(key ? '\1' : '\0');
  put_u64(p, sequence);
  p.append(prev);
  if (key) p += hmac_raw(*key, p, body);
  p.append(body);
  return p;
}

/// The End record's body: [u8 kEndType][u64 count][kHash chain head].
inline std::string end_body(std::uint64_t count, std::string_view head) {
  std::string b;
  b.push_back(static_cast<char>(kEndType));
  put_u64(b, count);
  b.append(head);
  return b;
}
struct EndRecord {
  std::uint64_t count = 0;
  std::string_view head;
};
inline bool is_end_body(std::string_view body) {
  return !body.empty() && static_cast<std::uint8_t>(body[0]) == kEndType;
}
inline std::optional<EndRecord> parse_end(std::string_view body) {
  if (body.size() != 1 + 8 + kHash || !is_end_body(body)) return std::nullopt;
  return EndRecord{get_u64_at(body, 1), body.substr(9)};
}

}  // namespace pepita::fault::detail
