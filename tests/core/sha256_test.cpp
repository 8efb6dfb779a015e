// SHA-256 (core/sha256.hpp): the FIPS 180-2 vectors, incremental updates equal to one-shot for
// any split, files of every size class read in blocks, and every way a file cannot be hashed.
#include "pepita/core/sha256.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace pepita {
namespace {

TEST(Sha256, MatchesTheStandardTestVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

RC_GTEST_PROP(Sha256, IncrementalEqualsOneShotForAnySplit, (const std::string& data)) {
  const std::size_t cut = data.empty() ? 0 : *rc::gen::inRange<std::size_t>(0, data.size() + 1);
  Sha256 h;
  h.update(std::string_view(data).substr(0, cut));
  h.update(std::string_view(data).substr(cut));
  RC_ASSERT(h.hex_digest() == sha256_hex(data));
  RC_ASSERT(is_sha256_hex(sha256_hex(data)));
}

TEST(Sha256, ResetStartsAnEmptyMessage) {
  Sha256 h;
  h.update("something");
  (void)h.finish();
  h.reset();
  h.update("abc");
  EXPECT_EQ(h.hex_digest(), sha256_hex("abc"));
}

class Sha256File : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pepita-sha256-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string write(const std::string& name, const std::string& data) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << data;
    return path;
  }
  std::string dir_;
};

TEST_F(Sha256File, EqualsTheDigestOfItsBytesAcrossBlockBoundaries) {
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{1} << 20,
                           (std::size_t{1} << 20) + 1, (std::size_t{3} << 20) - 7}) {
    std::string data(size, '\0');
    for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<char>((i * 131 + 7) & 0xff);
    const std::string path = write("f" + std::to_string(size), data);
    EXPECT_EQ(sha256_file(path).value(), sha256_hex(data)) << size << " bytes";
  }
}

TEST_F(Sha256File, MissingFileIsNotFoundNamingIt) {
  const auto r = sha256_file(dir_ + "/nope");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::NotFound);
  EXPECT_NE(r.error().message().find("nope"), std::string::npos) << r.error().message();
}

TEST_F(Sha256File, DirectoryIsInvalidArgumentSayingToNameItsFiles) {
  const auto r = sha256_file(dir_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message().find("directory"), std::string::npos) << r.error().message();
}

TEST_F(Sha256File, UnreadableFileIsPermissionDeniedUnlessRoot) {
  const std::string path = write("secret", "x");
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);
  const auto r = sha256_file(path);
  if (::geteuid() == 0) {
    EXPECT_TRUE(r) << "root reads a mode-0 file";
  } else {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::PermissionDenied);
  }
}

TEST(Sha256Hex, AcceptsOnlySixtyFourLowercaseHexDigits) {
  EXPECT_TRUE(is_sha256_hex(std::string(64, 'a')));
  EXPECT_FALSE(is_sha256_hex(std::string(63, 'a')));
  EXPECT_FALSE(is_sha256_hex(std::string(64, 'A')));
  EXPECT_FALSE(is_sha256_hex(std::string(63, 'a') + "/"));
  EXPECT_FALSE(is_sha256_hex(""));
}

}  // namespace
}  // namespace pepita
