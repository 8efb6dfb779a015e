// Key files (mode 0600 rule, formats) and the libcrypto wrappers against RFC test vectors.
#include "pepita/transport/crypto.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace pepita::transport {
namespace {

std::string temp_path(const char* stem) {
  return (std::filesystem::temp_directory_path() /
          (std::string(stem) + "." + std::to_string(::getpid()) + "." +
           std::to_string(::testing::UnitTest::GetInstance()->random_seed())))
      .string();
}

TEST(Crypto, Sha256AndHmacVectors) {
  EXPECT_EQ(to_hex(sha256(as_bytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // RFC 4231 test case 2.
  EXPECT_EQ(to_hex(hmac_sha256(as_bytes("Jefe"),
                               {as_bytes("what do ya want "), as_bytes("for nothing?")})),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // RFC 5869 test case 3 (no salt, no info) gives the first 32 bytes of OKM.
  Bytes ikm(22, std::byte{0x0b});
  EXPECT_EQ(to_hex(hkdf_sha256(ikm, {}, "")),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d");
}

// Each thread re-keys one HMAC context per call (issue 27): a call must use its own key, never
// the previous call's, an empty key included, and threads must not share a context.
TEST(Crypto, HmacUsesEachCallsOwnKeyOnOneThreadAndAcrossThreads) {
  const std::string jefe = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
  // RFC 4231 test case 1.
  const Bytes key1(20, std::byte{0x0b});
  const std::string case1 = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
  // HMAC-SHA256 with an empty key of an empty message.
  const std::string empty = "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad";
  auto jefe_mac = [] {
    return to_hex(hmac_sha256(as_bytes("Jefe"), {as_bytes("what do ya want for nothing?")}));
  };
  EXPECT_EQ(jefe_mac(), jefe);
  EXPECT_EQ(to_hex(hmac_sha256(key1, {as_bytes("Hi There")})), case1);
  EXPECT_EQ(jefe_mac(), jefe);
  EXPECT_EQ(to_hex(hmac_sha256({}, {})), empty);
  EXPECT_EQ(jefe_mac(), jefe);

  std::atomic<int> wrong{0};
  auto loop = [&](bool first) {
    for (int i = 0; i < 500; ++i) {
      const std::string got =
          first ? jefe_mac() : to_hex(hmac_sha256(key1, {as_bytes("Hi "), as_bytes("There")}));
      if (got != (first ? jefe : case1)) wrong.fetch_add(1);
    }
  };
  std::thread a(loop, true), b(loop, false);
  a.join();
  b.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(Crypto, HexRoundTripAndErrors) {
  Bytes b = from_hex("00ff10Ab").value();
  EXPECT_EQ(to_hex(b), "00ff10ab");
  EXPECT_FALSE(from_hex("abc"));
  EXPECT_FALSE(from_hex("zz"));
}

TEST(Crypto, KeyFileMustBe0600) {
  const std::string path = temp_path("pepita-key");
  std::filesystem::remove(path);
  Key k = Key::generate().value();
  ASSERT_TRUE(Key::write_file(path, k));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto loaded = Key::from_file(path);
  ASSERT_TRUE(loaded) << loaded.error().to_string();
  EXPECT_TRUE(constant_time_equal(loaded->bytes(), k.bytes()));
  // Never overwrites an existing key.
  auto again = Key::write_file(path, k);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::AlreadyExists);
  for (mode_t mode : {0640, 0604, 0660, 0644}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto r = Key::from_file(path);
    ASSERT_FALSE(r) << std::oct << mode;
    EXPECT_EQ(r.error().code(), ErrorCode::PermissionDenied);
    EXPECT_NE(r.error().message().find("chmod 600"), std::string::npos);
  }
  ASSERT_EQ(::chmod(path.c_str(), 0400), 0);
  EXPECT_TRUE(Key::from_file(path));
  std::filesystem::remove(path);
}

TEST(Crypto, KeyFileFormatsAndBadFiles) {
  const std::string path = temp_path("pepita-rawkey");
  std::filesystem::remove(path);
  {
    std::ofstream f(path);
    f << "short\n";
  }
  ::chmod(path.c_str(), 0600);
  auto shortk = Key::from_file(path);
  ASSERT_FALSE(shortk);
  EXPECT_EQ(shortk.error().code(), ErrorCode::InvalidArgument);
  {
    std::ofstream f(path, std::ios::trunc);
    f << "a passphrase that is long enough\n";
  }
  auto raw = Key::from_file(path);
  ASSERT_TRUE(raw);
  EXPECT_EQ(raw->bytes().size(), 32u);
  std::filesystem::remove(path);
  EXPECT_EQ(Key::from_file(path).error().code(), ErrorCode::NotFound);
  EXPECT_FALSE(Key::from_file("/tmp"));
}

}  // namespace
}  // namespace pepita::transport
