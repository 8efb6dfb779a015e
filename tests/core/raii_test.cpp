#include <fcntl.h>
#include <gtest/gtest.h>

#include "pepita/core/mapping.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita {
namespace {

bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(UniqueFd, ClosesOnDestructionAndMove) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd fd(raw);
    UniqueFd moved = std::move(fd);
    EXPECT_FALSE(fd.valid());
    EXPECT_EQ(moved.get(), raw);
    EXPECT_TRUE(fd_is_open(raw));
  }
  EXPECT_FALSE(fd_is_open(raw));
}

TEST(Mapping, AnonymousIsZeroedAndUnmapsOnMove) {
  auto mapping = Mapping::anonymous(8192, "test");
  ASSERT_TRUE(mapping.has_value()) << mapping.error().message();
  EXPECT_EQ(mapping->size(), 8192u);
  EXPECT_EQ(mapping->bytes()[4096], std::byte{0});
  Mapping other = std::move(*mapping);
  EXPECT_FALSE(mapping->valid());
  EXPECT_TRUE(other.valid());
}

TEST(Mapping, ZeroLengthIsAnError) {
  auto mapping = Mapping::anonymous(0, "empty");
  ASSERT_FALSE(mapping.has_value());
  EXPECT_EQ(mapping.error().code(), ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace pepita
