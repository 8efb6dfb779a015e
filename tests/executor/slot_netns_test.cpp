// The process executor's prepared loopback-only network namespace (detail/slot_netns.hpp): made
// once with loopback up, the making thread back in its own namespace, pristine until a socket is
// left in it, and EnterNetns's round trip. Needs root (CAP_SYS_ADMIN for unshare and setns).
#include "detail/slot_netns.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/child.hpp"
#include "common/mount_namespace.hpp"
#include "common/require.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::executor::detail {
namespace {

ino_t inode_of(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

ino_t thread_netns() {
  struct stat st {};
  EXPECT_EQ(::stat("/proc/thread-self/ns/net", &st), 0);
  return st.st_ino;
}

UniqueFd open_host() { return UniqueFd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)); }

TEST(SlotNetns, MakesALoopbackOnlyNamespaceAndLeavesTheThreadInItsOwn) {
  PEPITA_REQUIRE_CAPABILITY(root);
  const UniqueFd host = open_host();
  ASSERT_TRUE(host.valid());
  const ino_t before = thread_netns();
  auto made = SlotNetns::make(host.get());
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ(thread_netns(), before);
  EXPECT_NE(inode_of(made->fd()), before);
  EXPECT_TRUE(made->pristine());
  // Inside: loopback is up; no other interface (index 2 does not exist).
  auto inside = EnterNetns::enter(made->fd(), host.get());
  ASSERT_TRUE(inside) << inside.error().message();
  EXPECT_EQ(thread_netns(), inode_of(made->fd()));
  const UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strcpy(ifr.ifr_name, "lo");
  ASSERT_EQ(::ioctl(s.get(), SIOCGIFFLAGS, &ifr), 0);
  EXPECT_NE(ifr.ifr_flags & IFF_UP, 0);
  char name[IF_NAMESIZE] = {};
  EXPECT_EQ(::if_indextoname(2, name), nullptr) << name;
}

TEST(SlotNetns, EnterReturnsTheThreadToItsOwnNamespaceAndANegativeFdEntersNothing) {
  PEPITA_REQUIRE_CAPABILITY(root);
  const UniqueFd host = open_host();
  const ino_t before = thread_netns();
  auto made = SlotNetns::make(host.get());
  ASSERT_TRUE(made) << made.error().message();
  {
    auto inside = EnterNetns::enter(made->fd(), host.get());
    ASSERT_TRUE(inside);
    EXPECT_NE(thread_netns(), before);
  }
  EXPECT_EQ(thread_netns(), before);
  {
    auto nothing = EnterNetns::enter(-1, host.get());
    ASSERT_TRUE(nothing);
    EXPECT_EQ(thread_netns(), before);
  }
  EXPECT_EQ(thread_netns(), before);
  // Not a namespace: refused, and the thread stays where it is.
  const UniqueFd not_ns(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto bad = EnterNetns::enter(not_ns.get(), host.get());
  EXPECT_FALSE(bad);
  EXPECT_EQ(thread_netns(), before);
}

TEST(SlotNetns, ATcpSocketLeftInsideOrLoopbackDownMakesItNotPristine) {
  PEPITA_REQUIRE_CAPABILITY(root);
  const UniqueFd host = open_host();
  auto made = SlotNetns::make(host.get());
  ASSERT_TRUE(made) << made.error().message();
  ASSERT_TRUE(made->pristine());
  UniqueFd listener;
  {
    auto inside = EnterNetns::enter(made->fd(), host.get());
    ASSERT_TRUE(inside);
    listener.reset(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 addr{};
    addr.sin6_family = AF_INET6;
    addr.sin6_addr = in6addr_loopback;
    ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener.get(), 1), 0);
  }
  EXPECT_FALSE(made->pristine());  // an IPv6 listener, seen from outside the namespace
  listener.reset();
  EXPECT_TRUE(made->pristine());
  {
    auto inside = EnterNetns::enter(made->fd(), host.get());
    ASSERT_TRUE(inside);
    const UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, "lo");
    ASSERT_EQ(::ioctl(s.get(), SIOCGIFFLAGS, &ifr), 0);
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags & ~IFF_UP);
    ASSERT_EQ(::ioctl(s.get(), SIOCSIFFLAGS, &ifr), 0);  // we may: the namespace is ours
  }
  EXPECT_FALSE(made->pristine());
}

// Without CAP_SYS_ADMIN (here: an unprivileged effective uid in a forked child) no namespace is
// made: the error says what is needed, and the thread stays in its own namespace.
TEST(SlotNetns, WithoutCapSysAdminMakeFailsSayingWhatItNeeds) {
  PEPITA_REQUIRE_CAPABILITY(root);
  const auto code = pepita::test::run_forked([] {
    const UniqueFd host = open_host();
    ASSERT_TRUE(host.valid());
    const ino_t before = thread_netns();
    ASSERT_EQ(::seteuid(65534), 0) << std::strerror(errno);
    auto made = SlotNetns::make(host.get());
    ASSERT_EQ(::seteuid(0), 0) << std::strerror(errno);
    ASSERT_FALSE(made);
    EXPECT_EQ(made.error().sys_errno(), EPERM);
    EXPECT_NE(made.error().message().find("unshare CLONE_NEWNET needs CAP_SYS_ADMIN"),
              std::string::npos)
        << made.error().message();
    EXPECT_EQ(thread_netns(), before);
  });
  ASSERT_TRUE(code) << "the child ran for 2 minutes";
  EXPECT_EQ(*code, 0) << "the child failed (its failures are printed above)";
}

// A namespace that cannot be opened once made (here /proc is not mounted, then its /proc/net is
// hidden, in a forked child's own mount namespace) fails naming what could not be opened, and the
// thread is back in its own.
TEST(SlotNetns, ANamespaceThatCannotBeOpenedFailsNamingWhatAndTheThreadIsBack) {
  PEPITA_REQUIRE_CAPABILITY(root);
  const auto code = pepita::test::run_forked_in_own_mount_namespace([] {
    const UniqueFd host = open_host();
    ASSERT_TRUE(host.valid());
    const ino_t before = inode_of(host.get());
    ASSERT_EQ(::umount2("/proc", MNT_DETACH), 0) << std::strerror(errno);
    auto made = SlotNetns::make(host.get());
    ASSERT_FALSE(made);
    EXPECT_NE(made.error().message().find(
                  "sandbox: slot network namespace: open /proc/thread-self/ns/net"),
              std::string::npos)
        << made.error().message();
    // Back: a fresh mount of /proc shows the thread in the namespace it started in.
    ASSERT_EQ(::mount("proc", "/proc", "proc", 0, nullptr), 0) << std::strerror(errno);
    EXPECT_EQ(thread_netns(), before);
    // Its /proc/net hidden (an empty tmpfs over this thread's): its sockstat cannot be opened.
    ASSERT_EQ(::mount("tmpfs", "/proc/thread-self/net", "tmpfs", 0, nullptr), 0)
        << std::strerror(errno);
    auto blind = SlotNetns::make(host.get());
    ASSERT_FALSE(blind);
    EXPECT_NE(blind.error().message().find(
                  "sandbox: slot network namespace: open its /proc/net/sockstat"),
              std::string::npos)
        << blind.error().message();
    EXPECT_EQ(thread_netns(), before);
  });
  ASSERT_TRUE(code) << "the child ran for 2 minutes";
  EXPECT_EQ(*code, 0) << "the child failed (its failures are printed above)";
}

}  // namespace
}  // namespace pepita::executor::detail
