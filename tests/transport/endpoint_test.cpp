// Addresses and sockets under Connection (connection.cpp): parse_endpoint's accepted forms and its
// refusals on each boundary, Endpoint::to_string, is_loopback_host, and what Listener::bind,
// Listener::accept and dial set on their sockets and report when the kernel refuses them.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <seccomp.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "common/child.hpp"
#include "common/syscall_fault.hpp"
#include "pepita/transport/connection.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

TEST(Endpoint, ParsesHostAndPortOfEachAcceptedForm) {
  struct Case {
    std::string_view text;
    std::string host;
    std::uint16_t port;
  };
  for (const Case& c : std::vector<Case>{{"127.0.0.1:7070", "127.0.0.1", 7070},
                                         {"[::1]:7070", "::1", 7070},
                                         {"[fe80::1%eth0]:9", "fe80::1%eth0", 9},
                                         {"worker-3.example:0", "worker-3.example", 0},
                                         {"h:12", "h", 12},
                                         {"h:65535", "h", 65535},
                                         {"h:00080", "h", 80}}) {
    auto ep = parse_endpoint(c.text);
    ASSERT_TRUE(ep) << c.text << ": " << ep.error().to_string();
    EXPECT_EQ(ep->host, c.host) << c.text;
    EXPECT_EQ(ep->port, c.port) << c.text;
  }
}

TEST(Endpoint, RefusesEachMalformedAddressSayingWhichFormsAreAccepted) {
  for (const std::string_view text :
       {"",         "nohost", ":7070",     "h:",   "h:65536", "h:99999",  "h:123456",
        "h:000080", "h:8a",   "h:/0",      "h:9:", "h:-1",    "a:b:7070", "::1:7070",
        "[::1]",    "[::1]:", "[::1]7070", "[::1", "[]:7070", "[::1]:x"}) {
    auto ep = parse_endpoint(text);
    ASSERT_FALSE(ep) << "'" << text << "' parsed as " << ep->host << " port " << ep->port;
    EXPECT_EQ(ep.error().code(), ErrorCode::InvalidArgument) << text;
    EXPECT_EQ(ep.error().message(), "bad address '" + std::string(text) +
                                        "': expected host:port, e.g. 127.0.0.1:7070 or [::1]:7070");
  }
}

// The text ends at "]": nothing past it is read, even when the bytes after the view would make
// an address ("[::1]" cut from "[::1]:7070").
TEST(Endpoint, ABracketedHostThatEndsTheTextIsRefusedWithoutReadingPastIt) {
  const std::string_view whole = "[::1]:7070";
  auto ep = parse_endpoint(whole.substr(0, 5));
  ASSERT_FALSE(ep) << "parsed as " << ep->host << " port " << ep->port;
  EXPECT_EQ(ep.error().code(), ErrorCode::InvalidArgument);
}

TEST(Endpoint, ToStringBracketsAnIpV6HostAndParsesBack) {
  const Endpoint v4{.host = "10.1.2.3", .port = 7070};
  const Endpoint v6{.host = "::1", .port = 65535};
  EXPECT_EQ(v4.to_string(), "10.1.2.3:7070");
  EXPECT_EQ(v6.to_string(), "[::1]:65535");
  auto back = parse_endpoint(v6.to_string());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->host, "::1");
  EXPECT_EQ(back->port, 65535);
}

TEST(Endpoint, LoopbackHostsAreLocalhostTheIpV6LoopbackAnd127Slash8Only) {
  for (const std::string_view host :
       {"localhost", "::1", "127.0.0.1", "127.255.255.254", "127.1.2.3"}) {
    EXPECT_TRUE(is_loopback_host(host)) << host;
  }
  for (const std::string_view host :
       {"128.0.0.1", "126.255.255.255", "0.0.0.0", "10.0.0.1", "255.0.0.127", "::", "::2",
        "localhost.example", "example", ""}) {
    EXPECT_FALSE(is_loopback_host(host)) << host;
  }
}

int int_option(int fd, int level, int name) {
  int value = -1;
  socklen_t len = sizeof value;
  EXPECT_EQ(::getsockopt(fd, level, name, &value, &len), 0) << std::strerror(errno);
  return value;
}

TEST(Listener, RefusesANonLoopbackAddressUnlessAllowedAndThenListensThere) {
  auto refused = Listener::bind({.host = "0.0.0.0", .port = 0}, false);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::PermissionDenied);
  EXPECT_NE(refused.error().message().find("refusing to listen on non-loopback address 0.0.0.0:0"),
            std::string::npos)
      << refused.error().to_string();

  auto allowed = Listener::bind({.host = "0.0.0.0", .port = 0}, true);
  ASSERT_TRUE(allowed) << allowed.error().to_string();
  EXPECT_EQ(allowed->endpoint().host, "0.0.0.0");
  EXPECT_NE(allowed->endpoint().port, 0);
  // A restarted worker can take its port back while old connections sit in TIME_WAIT.
  EXPECT_EQ(int_option(allowed->fd(), SOL_SOCKET, SO_REUSEADDR), 1);
  EXPECT_EQ(int_option(allowed->fd(), SOL_SOCKET, SO_ACCEPTCONN), 1);
}

// Both ends of a dialed connection: no Nagle delay on small frames, keepalive on, and the
// accepted side names its peer by the dialer's own address.
TEST(Listener, DialAndAcceptTuneTheSocketAndNameThePeerByItsAddress) {
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  auto dialed = dial(listener.endpoint(), 2000ms);
  ASSERT_TRUE(dialed) << dialed.error().to_string();
  pollfd pfd{listener.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 5000), 1);
  std::string peer;
  auto accepted = listener.accept(peer);
  ASSERT_TRUE(accepted) << accepted.error().to_string();

  sockaddr_in local{};
  socklen_t len = sizeof local;
  ASSERT_EQ(::getsockname(dialed->get(), reinterpret_cast<sockaddr*>(&local), &len), 0);
  EXPECT_EQ(peer, "127.0.0.1:" + std::to_string(ntohs(local.sin_port)));
  for (const int fd : {dialed->get(), accepted->get()}) {
    EXPECT_EQ(int_option(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    EXPECT_EQ(int_option(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
  }
}

// A port nobody listens on: Disconnected (retriable), with the errno and the address.
TEST(Dial, APortNobodyListensOnIsDisconnectedWithConnectionRefused) {
  std::uint16_t port = 0;
  {
    auto closed = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
    port = closed.endpoint().port;
  }
  auto r = dial({.host = "127.0.0.1", .port = port}, 2000ms);
  ASSERT_FALSE(r) << "connected to a closed port";
  EXPECT_EQ(r.error().code(), ErrorCode::Disconnected);
  EXPECT_EQ(r.error().sys_errno(), ECONNREFUSED);
  EXPECT_NE(r.error().message().find("connect 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << r.error().to_string();
}

// A listener whose accept queue is full drops the SYN: the dial times out as ETIMEDOUT.
TEST(Dial, APeerThatNeverAnswersTimesOutAsDisconnectedWithEtimedout) {
  UniqueFd full(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(full.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(full.get(), 0), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(full.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const Endpoint at{.host = "127.0.0.1", .port = ntohs(addr.sin_port)};
  std::vector<UniqueFd> queued;  // fill the queue; none is accepted
  Result<UniqueFd> r = fail(ErrorCode::Internal, "not dialed");
  for (int i = 0; i < 8; ++i) {
    r = dial(at, 200ms);
    if (!r) break;
    queued.push_back(std::move(*r));
  }
  ASSERT_FALSE(r) << "8 connections into a listener of backlog 0";
  EXPECT_EQ(r.error().code(), ErrorCode::Disconnected);
  EXPECT_EQ(r.error().sys_errno(), ETIMEDOUT) << r.error().to_string();
}

// The kernel refusing each step of a dial or a bind, in a forked child under a seccomp filter:
// the error carries that step's errno, not a default.
void expect_dial_fails_with(std::initializer_list<test::SyscallFault> faults, int expected) {
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  auto code = test::run_forked(
      [&] {
        ASSERT_EQ(test::fail_syscalls(faults), "");
        auto r = dial(listener.endpoint(), 2000ms);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code(), ErrorCode::Disconnected);
        EXPECT_EQ(r.error().sys_errno(), expected) << r.error().to_string();
      },
      10s);  // a hang (a retry loop that never ends) fails, not times out
  EXPECT_EQ(code, 0);
}

TEST(Dial, ASocketTheKernelRefusesFailsWithItsErrno) {
  expect_dial_fails_with({{.nr = SCMP_SYS(socket), .error = EMFILE, .min_arg0 = 0}}, EMFILE);
}

TEST(Dial, AConnectTheKernelRefusesAtOnceFailsWithItsErrno) {
  expect_dial_fails_with({{SCMP_SYS(connect), ENETUNREACH}}, ENETUNREACH);
}

TEST(Dial, AFailedWaitForTheConnectionFailsWithItsErrno) {
  expect_dial_fails_with({{.nr = SCMP_SYS(poll), .error = ENOMEM, .min_arg0 = 0},
                          {.nr = SCMP_SYS(ppoll), .error = ENOMEM, .min_arg0 = 0}},
                         ENOMEM);
}

TEST(Dial, AnUnreadableConnectOutcomeFailsWithItsErrno) {
  expect_dial_fails_with({{SCMP_SYS(getsockopt), ENOBUFS}}, ENOBUFS);
}

TEST(Listener, ASocketTheKernelRefusesFailsTheBindWithItsErrno) {
  auto code = test::run_forked(
      [&] {
        ASSERT_EQ(test::fail_syscalls({{.nr = SCMP_SYS(socket), .error = EMFILE, .min_arg0 = 0}}),
                  "");
        auto r = Listener::bind({.host = "127.0.0.1", .port = 0}, false);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().sys_errno(), EMFILE) << r.error().to_string();
        EXPECT_NE(r.error().message().find("bind 127.0.0.1:0"), std::string::npos);
      },
      10s);  // a hang (a retry loop that never ends) fails, not times out
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace pepita::transport
