// read_key_file: the key's text (trailing whitespace dropped), and every refusal naming the file
// and what to do: a group- or world-readable file (its mode in octal, "chmod 600"), a directory,
// a symlink, a file over 4 KiB, a key shorter than asked for, and a missing file.
#include "pepita/core/key_file.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "common/temp_dir.hpp"

namespace pepita {
namespace {

std::string write_key(const test::TempDir& dir, const std::string& name, const std::string& text,
                      mode_t mode) {
  const std::string path = dir.file(name);
  std::ofstream(path) << text;
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return path;
}

TEST(KeyFile, ReadsThePrivateKeyWithoutItsTrailingWhitespace) {
  const test::TempDir dir("key-file");
  const std::string key(64, 'a');
  const auto path = write_key(dir, "run.key", key + " \t\r\n", 0600);
  auto read = read_key_file(path, 32);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(*read, key);
}

TEST(KeyFile, AReadableByOthersKeyIsRefusedNamingItsModeAndTheFix) {
  const test::TempDir dir("key-file");
  for (const auto& [mode, text] : {std::pair{0644, "0644"}, {0640, "0640"}, {0604, "0604"}}) {
    const auto path = write_key(dir, "open.key", std::string(64, 'k'), static_cast<mode_t>(mode));
    auto read = read_key_file(path, 32);
    ASSERT_FALSE(read) << text;
    EXPECT_EQ(read.error().code(), ErrorCode::PermissionDenied);
    EXPECT_NE(read.error().message().find(std::string(" has mode ").append(text) + ";"),
              std::string::npos)
        << read.error().message();
    EXPECT_NE(read.error().message().find("chmod 600 " + path), std::string::npos)
        << read.error().message();
  }
}

TEST(KeyFile, ADirectoryASymlinkAndAMissingFileAreRefusedNamingThePath) {
  const test::TempDir dir("key-file");
  const auto real = write_key(dir, "real.key", std::string(64, 'k'), 0600);
  const std::string link = dir.file("link.key");
  ASSERT_EQ(::symlink(real.c_str(), link.c_str()), 0);
  auto via_link = read_key_file(link, 32);
  ASSERT_FALSE(via_link);
  EXPECT_NE(via_link.error().message().find(link), std::string::npos);

  auto directory = read_key_file(dir.path(), 32);
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(directory.error().message().find("is not a regular file"), std::string::npos);

  auto missing = read_key_file(dir.file("absent.key"), 32);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("absent.key"), std::string::npos);
}

TEST(KeyFile, AKeyOver4KiBOrShorterThanAskedIsRefused) {
  const test::TempDir dir("key-file");
  const auto big = write_key(dir, "big.key", std::string(4097, 'k'), 0600);
  auto too_big = read_key_file(big, 32);
  ASSERT_FALSE(too_big);
  EXPECT_NE(too_big.error().message().find("over 4 KiB"), std::string::npos);
  const auto limit = write_key(dir, "limit.key", std::string(4096, 'k'), 0600);
  EXPECT_TRUE(read_key_file(limit, 32));

  const auto short_key = write_key(dir, "short.key", std::string(31, 'k') + "\n", 0600);
  auto too_short = read_key_file(short_key, 32);
  ASSERT_FALSE(too_short);
  EXPECT_EQ(too_short.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(too_short.error().message().find("holds 31 bytes; a key needs at least 32"),
            std::string::npos)
      << too_short.error().message();
  EXPECT_TRUE(read_key_file(short_key, 31));
}

}  // namespace
}  // namespace pepita
