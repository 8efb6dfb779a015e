// Key files and libcrypto wrappers (SHA-256, HMAC, HKDF, CSPRNG, constant-time compare).
#include "pepita/transport/crypto.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "pepita/core/key_file.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::transport {
namespace {

const unsigned char* uc(ByteSpan b) {
  // SAFETY: std::byte and unsigned char share size and representation; read-only view.
  return reinterpret_cast<const unsigned char*>(b.data());
}

bool is_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

}  // namespace

Key::~Key() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
}

Result<Key> Key::from_bytes(ByteSpan bytes) {
  if (bytes.size() < kMinBytes) {
    return fail(ErrorCode::InvalidArgument,
                "key of " + std::to_string(bytes.size()) + " bytes is too short; need at least " +
                    std::to_string(kMinBytes) + " (make one with `pepita worker --gen-key FILE`)");
  }
  return Key(Bytes(bytes.begin(), bytes.end()));
}

Result<Key> Key::from_file(const std::string& path) {
  // Owner-only regular file of at most 4 KiB, trailing whitespace trimmed (core/key_file.hpp);
  // the key's own length is from_bytes' rule, after hex decoding.
  std::string text = PEPITA_TRY(read_key_file(path, 1));
  Result<Key> key = [&]() -> Result<Key> {
    if (text.size() >= 2 * kMinBytes && text.size() % 2 == 0 && is_hex(text)) {
      auto raw = PEPITA_TRY(from_hex(text));
      Result<Key> k = from_bytes(raw);
      OPENSSL_cleanse(raw.data(), raw.size());
      return k;
    }
    return from_bytes(as_bytes(text));
  }();
  OPENSSL_cleanse(text.data(), text.size());
  if (!key) return std::unexpected(std::move(key.error()).with_context("key file " + path));
  return key;
}

Result<Key> Key::generate() {
  Bytes b(32);
  PEPITA_TRY_VOID(random_bytes(b));
  return Key(std::move(b));
}

Result<void> Key::write_file(const std::string& path, const Key& key) {
  UniqueFd fd = PEPITA_TRY(
      sys::check_fd(sys::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600),
                    "create key file " + path));
  std::string text = to_hex(key.bytes()) + "\n";
  Result<void> written = [&]() -> Result<void> {
    // The umask cannot widen 0600, but an inherited ACL default could; pin the mode explicitly.
    PEPITA_TRY_VOID(sys::check_void(sys::ret(::fchmod(fd.get(), 0600)), "chmod 600 " + path));
    PEPITA_TRY_VOID(sys::check_void(sys::write_full(fd.get(), text.data(), text.size()),
                                    "write key file " + path));
    PEPITA_TRY_VOID(sys::check_void(sys::fsync(fd.get()), "fsync key file " + path));
    return {};
  }();
  OPENSSL_cleanse(text.data(), text.size());
  // A key file is whole or absent: one this call created and could not finish is removed.
  if (!written) ::unlink(path.c_str());
  return written;
}

Digest sha256(ByteSpan data) {
  Digest d{};
  // SAFETY: Digest is 32 std::byte, the size SHA256 writes.
  ::EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(d.data()), nullptr,
               ::EVP_sha256(), nullptr);
  return d;
}

std::string to_hex(ByteSpan bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.reserve(bytes.size() * 2);
  for (std::byte b : bytes) {
    const auto v = std::to_integer<unsigned>(b);
    s.push_back(kDigits[v >> 4]);
    s.push_back(kDigits[v & 15]);
  }
  return s;
}

Result<Bytes> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return fail(ErrorCode::InvalidArgument, "odd-length hex string");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Bytes out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return fail(ErrorCode::InvalidArgument, "non-hex digit in hex string");
    out[i] = static_cast<std::byte>((hi << 4) | lo);
  }
  return out;
}

Digest hmac_sha256(ByteSpan key, std::initializer_list<ByteSpan> parts) {
  Digest d{};
  // Fetching the algorithm takes the provider lock; do it once (EVP_MAC is refcounted and safe to
  // share between threads).
  static EVP_MAC* const mac = ::EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  // Issue 27: one context per thread, its digest set once. Naming the digest on every init
  // looked "SHA256" up in the provider's name map and freed it again per frame, and the context
  // was allocated per frame; now each call only re-keys it (EVP_MAC_init with a key and no
  // parameters starts a new computation on a context that already knows its digest).
  using CtxPtr = std::unique_ptr<EVP_MAC_CTX, decltype(&::EVP_MAC_CTX_free)>;
  thread_local const CtxPtr ctx = [] {
    CtxPtr c(::EVP_MAC_CTX_new(mac), &::EVP_MAC_CTX_free);
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest_name, 0),
                           OSSL_PARAM_construct_end()};
    if (c) ::EVP_MAC_CTX_set_params(c.get(), params);
    return c;
  }();
  // A null key would mean "the previous key" to EVP_MAC_init: an empty key still passes a
  // pointer, so it is HMAC's empty key and never the last caller's.
  static const unsigned char kNoKey = 0;
  ::EVP_MAC_init(ctx.get(), key.empty() ? &kNoKey : uc(key), key.size(), nullptr);
  for (ByteSpan p : parts) ::EVP_MAC_update(ctx.get(), uc(p), p.size());
  std::size_t len = 0;
  // SAFETY: Digest holds 32 bytes, HMAC-SHA256's output size.
  ::EVP_MAC_final(ctx.get(), reinterpret_cast<unsigned char*>(d.data()), &len, d.size());
  return d;
}

Digest hkdf_sha256(ByteSpan ikm, ByteSpan salt, std::string_view info) {
  Digest out{};
  std::unique_ptr<EVP_PKEY_CTX, decltype(&::EVP_PKEY_CTX_free)> ctx(
      ::EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr), &::EVP_PKEY_CTX_free);
  std::size_t len = out.size();
  ::EVP_PKEY_derive_init(ctx.get());
  ::EVP_PKEY_CTX_set_hkdf_md(ctx.get(), ::EVP_sha256());
  ::EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), uc(salt), static_cast<int>(salt.size()));
  ::EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), uc(ikm), static_cast<int>(ikm.size()));
  ::EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), uc(as_bytes(info)), static_cast<int>(info.size()));
  // SAFETY: `out` holds `len` = 32 bytes.
  ::EVP_PKEY_derive(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len);
  return out;
}

bool constant_time_equal(ByteSpan a, ByteSpan b) noexcept {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<void> random_bytes(std::span<std::byte> out) {
  // SAFETY: writes exactly out.size() bytes into out.
  if (::RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size())) !=
      1) {
    return fail(ErrorCode::Internal, "OpenSSL RAND_bytes failed: the CSPRNG could not be seeded");
  }
  return {};
}

}  // namespace pepita::transport
