// Protocol versions over a real socket: a protocol 2 driver's Hello (which would neither place
// resource requests nor read an OOM kill's peak memory) gets an Error frame naming both
// versions, which an old decoder refuses with its own version message, and the worker keeps
// serving current drivers.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pepita/transport/frame.hpp"
#include "pepita/transport/remote.hpp"
#include "pepita/transport/session.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

// Connects to 127.0.0.1:port, sends `out`, and returns everything read until the peer closes.
Bytes exchange(std::uint16_t port, ByteSpan out) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // SAFETY: sockaddr_in is a valid sockaddr of the given length.
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return {};
  }
  timeval tv{.tv_sec = 5, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
  Bytes in;
  std::byte chunk[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) break;
    in.insert(in.end(), chunk, chunk + n);
  }
  ::close(fd);
  return in;
}

TEST(ProtocolVersion, ProtocolTwoDriverIsToldBothVersions) {
  static_assert(kProtocolVersion == 6, "update this test for the new version");
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto [client, hello] = ClientHandshake::start(kf.key, "old").value();
  hello[0] = std::byte{2};  // Hello's own version field
  Bytes frame;
  ASSERT_TRUE(encode_frame({.type = MessageType::Hello}, hello, frame));
  frame[4] = std::byte{2};  // the header's version: a protocol 2 driver

  const Bytes reply = exchange(w->endpoint().port, frame);
  auto d = decode_frame(reply);
  ASSERT_TRUE(d) << d.error().message();
  ASSERT_TRUE(d->frame);
  EXPECT_EQ(d->frame->header.type, MessageType::Error);
  const std::string why(as_text(d->frame->payload));
  EXPECT_NE(why.find("this worker speaks pepita protocol 6, the driver protocol 2"),
            std::string::npos)
      << why;
  // What an old decoder makes of it: the header's version is refused by name.
  Bytes as_old_sees = reply;
  as_old_sees[4] = std::byte{7};  // any version this build does not speak
  auto old = decode_frame(as_old_sees);
  ASSERT_FALSE(old);
  EXPECT_NE(old.error().message().find("unsupported protocol version 7 (this build speaks 6)"),
            std::string::npos);

  // A current driver is still served.
  RemoteOptions o;
  o.workers = {w->endpoint().to_string()};
  o.key = kf.key;
  o.log = [](std::string_view) {};
  auto disp = RemoteDispatcher::start(std::move(o)).value();
  auto out = disp->run(test::sleep_task(1, 1));
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_EQ(out->result.status, TaskStatus::Succeeded);
}

}  // namespace
}  // namespace pepita::transport
