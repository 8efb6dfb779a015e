// SHA-256 over OpenSSL's EVP interface (sha256.hpp).
#include "pepita/core/sha256.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "pepita/core/unique_fd.hpp"

namespace pepita {

namespace {
// SHA-256 fetched from the default provider once: EVP_sha256() makes OpenSSL 3 fetch it again at
// every EVP_DigestInit_ex (a locked provider lookup, ~1 us), which dominated hashing the short
// strings of a cache key. Never freed: it lives as long as the process.
const EVP_MD* sha256_md() {
  static const EVP_MD* const md = [] {
    const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    return fetched != nullptr ? fetched : EVP_sha256();
  }();
  return md;
}
}  // namespace

struct Sha256::Ctx {
  Ctx() : md(EVP_MD_CTX_new()) { EVP_DigestInit_ex(md, sha256_md(), nullptr); }
  ~Ctx() { EVP_MD_CTX_free(md); }
  Ctx(const Ctx&) = delete;
  Ctx& operator=(const Ctx&) = delete;
  EVP_MD_CTX* md;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(std::span<const std::byte> data) {
  EVP_DigestUpdate(ctx_->md, data.data(), data.size());
}

void Sha256::update(std::string_view data) { EVP_DigestUpdate(ctx_->md, data.data(), data.size()); }

Sha256Digest Sha256::finish() {
  Sha256Digest out{};
  unsigned int len = 0;
  // SAFETY: out holds 32 bytes, the size EVP_sha256 writes.
  EVP_DigestFinal_ex(ctx_->md, reinterpret_cast<unsigned char*>(out.data()), &len);
  return out;
}

std::string Sha256::hex_digest() {
  const Sha256Digest d = finish();
  return to_hex(d);
}

void Sha256::reset() { EVP_DigestInit_ex(ctx_->md, sha256_md(), nullptr); }

std::string to_hex(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const auto b = static_cast<unsigned>(bytes[i]);
    out[2 * i] = kDigits[b >> 4];
    out[2 * i + 1] = kDigits[b & 0xf];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.hex_digest();
}

Result<std::string> sha256_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno(errno, "cannot read '" + path + "' to hash it");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail_errno(errno, "cannot stat '" + path + "'");
  if (S_ISDIR(st.st_mode)) {
    return fail(ErrorCode::InvalidArgument,
                "'" + path + "' is a directory; name the files in it (a glob like 'dir/*')");
  }
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  std::vector<std::byte> buf(std::size_t{1} << 20);
  Sha256 h;
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno(errno, "cannot read '" + path + "' to hash it");
    }
    if (n == 0) break;
    h.update(std::span<const std::byte>(buf.data(), static_cast<std::size_t>(n)));
  }
  return h.hex_digest();
}

bool is_sha256_hex(std::string_view text) noexcept {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace pepita
