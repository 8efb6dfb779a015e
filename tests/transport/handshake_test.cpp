// The handshake of Connection (connection.cpp) against peers that misbehave, driven from a raw
// socket or a hand-run handshake: the worker side refuses what is not a small cleartext Hello
// then Auth, cuts off a peer that stalls mid-frame, tells a driver of another protocol version
// why; the driver side refuses a worker that does not confirm its Auth with AuthOk.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <thread>

#include "pepita/transport/connection.hpp"
#include "pepita/transport/session.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A raw TCP client of a listener on 127.0.0.1 and the accepted end, for driving Connection::accept
// by hand.
struct RawPeer {
  RawPeer() {
    raw = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(listener.endpoint().port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // SAFETY: sockaddr_in is a valid sockaddr of the given length.
    EXPECT_EQ(::connect(raw.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    for (int i = 0; i < 500 && !accepted; ++i) {
      if (auto fd = listener.accept(peer)) {
        accepted = std::move(*fd);
      } else {
        std::this_thread::sleep_for(5ms);
      }
    }
    EXPECT_TRUE(accepted.valid());
  }
  void send(ByteSpan bytes) const {
    EXPECT_EQ(::send(raw.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // Runs the worker side of the handshake on the accepted end; `elapsed` is how long it took.
  Result<std::unique_ptr<Connection>> accept(const ConnectionOptions& options) {
    const auto start = Clock::now();
    auto c = Connection::accept(std::move(accepted), peer, kf.key, options);
    elapsed = Clock::now() - start;
    return c;
  }
  // Everything the worker sent until it closed.
  Bytes received() const {
    timeval tv{.tv_sec = 5, .tv_usec = 0};
    ::setsockopt(raw.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    Bytes in;
    std::byte chunk[4096];
    for (ssize_t n; (n = ::recv(raw.get(), chunk, sizeof chunk, 0)) > 0;) {
      in.insert(in.end(), chunk, chunk + n);
    }
    return in;
  }

  test::KeyFile kf;
  Listener listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  UniqueFd raw;
  UniqueFd accepted;
  std::string peer;
  Clock::duration elapsed{};
};

Bytes frame_of(MessageType type, std::string_view payload, std::uint16_t flags = 0) {
  Bytes out;
  EXPECT_TRUE(encode_frame({.type = type, .flags = flags}, as_bytes(payload), out));
  return out;
}

void expect_error(const Result<std::unique_ptr<Connection>>& c, ErrorCode code,
                  const std::string& message) {
  ASSERT_FALSE(c) << "the handshake succeeded";
  EXPECT_EQ(c.error().code(), code) << c.error().to_string();
  EXPECT_NE(c.error().message().find(message), std::string::npos) << c.error().to_string();
}

// One byte of a Hello then silence: cut off after io_timeout, long before the handshake deadline.
TEST(Handshake, OneByteOfAFrameThenSilenceIsCutOffAfterIoTimeout) {
  RawPeer p;
  const Bytes hello = frame_of(MessageType::Hello, "x");
  p.send(ByteSpan(hello).first(1));
  auto c = p.accept({.handshake_timeout = 5000ms, .io_timeout = 200ms});
  expect_error(c, ErrorCode::TimedOut,
               "peer " + p.peer + " sent 1 bytes of a frame then stalled (slowloris?)");
  EXPECT_LT(p.elapsed, 3s);
}

// Part of a Hello when the handshake deadline comes before io_timeout: a handshake timeout.
TEST(Handshake, PartOfAFrameAtTheHandshakeDeadlineIsAHandshakeTimeout) {
  RawPeer p;
  const Bytes hello = frame_of(MessageType::Hello, "x");
  p.send(ByteSpan(hello).first(5));
  auto c = p.accept({.handshake_timeout = 300ms, .io_timeout = 10000ms});
  expect_error(c, ErrorCode::TimedOut, "handshake with " + p.peer + " timed out waiting for hello");
}

// A peer that sends nothing is not a stalled frame, however short io_timeout is.
TEST(Handshake, ASilentPeerTimesOutWaitingForHelloNotAsAStalledFrame) {
  RawPeer p;
  auto c = p.accept({.handshake_timeout = 400ms, .io_timeout = 100ms});
  expect_error(c, ErrorCode::TimedOut, "handshake with " + p.peer + " timed out waiting for hello");
  EXPECT_GE(p.elapsed, 400ms);
}

TEST(Handshake, AFirstFrameOtherThanHelloIsAProtocolError) {
  RawPeer p;
  p.send(frame_of(MessageType::Heartbeat, ""));
  expect_error(p.accept({}), ErrorCode::Protocol,
               "handshake with " + p.peer + ": expected hello, got heartbeat");
  // It speaks this protocol version: no version complaint comes back, only the close.
  EXPECT_TRUE(p.received().empty());
}

TEST(Handshake, AHelloCarryingAMacIsAProtocolError) {
  RawPeer p;
  Bytes hello = frame_of(MessageType::Hello, "x", kFlagMac);
  hello.resize(hello.size() + kMacSize);
  p.send(hello);
  expect_error(p.accept({}), ErrorCode::Protocol,
               "handshake with " + p.peer + ": expected hello, got hello");
}

TEST(Handshake, AnErrorFrameInsteadOfHelloIsTheRefusalItCarries) {
  RawPeer p;
  p.send(frame_of(MessageType::Error, "go away"));
  expect_error(p.accept({}), ErrorCode::PermissionDenied,
               "peer " + p.peer + " refused the handshake: go away");
}

// Before the session exists a frame is at most 1024 bytes, refused from its header alone.
TEST(Handshake, AHandshakeFrameOver1024BytesIsRefusedFromItsHeader) {
  for (const std::uint32_t len : {1024u, 1025u}) {
    RawPeer p;
    Bytes header = frame_of(MessageType::Hello, std::string(len, 'h'));
    header.resize(kHeaderSize);
    p.send(header);
    ::shutdown(p.raw.get(), SHUT_WR);
    auto c = p.accept({});
    if (len > 1024) {
      expect_error(c, ErrorCode::Protocol, "frame payload of 1025 bytes exceeds the limit of 1024");
    } else {
      expect_error(c, ErrorCode::Disconnected, "truncated frame");
    }
  }
}

// The protocol version is read from the fifth byte once there is one: a driver that sent only
// the magic is told nothing, one that sent the magic and another version is told both.
TEST(Handshake, AnotherProtocolVersionIsNamedFromTheFifthByteOnceThereIsOne) {
  const Bytes hello = frame_of(MessageType::Hello, "x");
  {
    RawPeer p;
    p.send(ByteSpan(hello).first(4));
    ::shutdown(p.raw.get(), SHUT_WR);
    expect_error(p.accept({}), ErrorCode::Disconnected, "truncated frame");
    EXPECT_TRUE(p.received().empty());
  }
  RawPeer p;
  Bytes five(hello.begin(), hello.begin() + 5);
  five[4] = std::byte{99};
  p.send(five);
  ::shutdown(p.raw.get(), SHUT_WR);
  ASSERT_FALSE(p.accept({}));
  const Bytes reply = p.received();
  auto d = decode_frame(reply);
  ASSERT_TRUE(d && d->frame) << "no Error frame came back";
  EXPECT_EQ(d->frame->header.type, MessageType::Error);
  EXPECT_EQ(std::string(as_text(d->frame->payload)),
            "this worker speaks pepita protocol " + std::to_string(kProtocolVersion) +
                ", the driver protocol 99: upgrade one side");
}

// Whole frames read from a non-blocking socket by hand: each one's bytes, or nullopt when none
// comes within 5 s or the frame is malformed.
struct FrameReader {
  explicit FrameReader(int fd_) : fd(fd_) {}
  std::optional<Bytes> next() {
    for (;;) {
      auto d = decode_frame(ByteSpan(in), {.max_payload = kMaxPayload});
      if (!d) return std::nullopt;
      if (d->frame) {
        const std::size_t used = kHeaderSize + d->frame->header.payload_len + d->frame->mac.size();
        Bytes frame(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(used));
        in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(used));
        return frame;
      }
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 5000) != 1) return std::nullopt;
      std::byte chunk[4096];
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return std::nullopt;
      in.insert(in.end(), chunk, chunk + n);
    }
  }
  int fd;
  Bytes in;
};

void send_frame(int fd, const FrameHeader& header, ByteSpan payload) {
  Bytes wire;
  ASSERT_TRUE(encode_frame(header, payload, wire));
  ASSERT_EQ(::send(fd, wire.data(), wire.size(), MSG_NOSIGNAL), static_cast<ssize_t>(wire.size()));
}

// A worker run by hand: it answers Hello with a Challenge, reads the Auth (cleartext, sequence 1
// as docs/protocol.md says), then sends `after_auth` sealed, or nothing.
std::uint16_t fake_worker(const Key& key, std::optional<MessageType> after_auth,
                          std::promise<FrameHeader>& auth_header, Listener& listener,
                          std::future<void>& done) {
  const std::uint16_t port = listener.endpoint().port;
  done = std::async(std::launch::async, [&key, after_auth, &auth_header, &listener] {
    UniqueFd fd;
    std::string peer;
    for (int i = 0; i < 500 && !fd; ++i) {
      if (auto a = listener.accept(peer))
        fd = std::move(*a);
      else
        std::this_thread::sleep_for(5ms);
    }
    FrameReader frames(fd.get());
    auto hello = frames.next();
    if (!hello) return;
    auto [server, challenge] =
        ServerHandshake::on_hello(key, decode_frame(*hello).value().frame->payload).value();
    send_frame(fd.get(), {.type = MessageType::Challenge}, challenge);
    auto auth = frames.next();
    if (!auth) return;
    const FrameView view = *decode_frame(*auth).value().frame;
    auth_header.set_value(view.header);
    auto session = server.on_auth(view.payload);
    if (session && after_auth) {
      Bytes wire;
      (void)session->seal_into(*after_auth, 0, {}, wire);
      ::send(fd.get(), wire.data(), wire.size(), MSG_NOSIGNAL);
    }
    // Hold the connection until the driver gives up on it (the socket is non-blocking).
    pollfd pfd{fd.get(), POLLIN, 0};
    (void)::poll(&pfd, 1, 10000);
  });
  return port;
}

TEST(Handshake, AWorkerThatNeverConfirmsAuthTimesOutAndTheAuthWasSequenceOne) {
  test::KeyFile kf;
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  std::promise<FrameHeader> auth;
  std::future<void> done;
  const auto port = fake_worker(kf.key, std::nullopt, auth, listener, done);
  const Endpoint at{.host = "127.0.0.1", .port = port};
  auto c = Connection::connect(at, kf.key, {.handshake_timeout = 500ms});
  expect_error(c, ErrorCode::TimedOut, "worker " + at.to_string() + " did not confirm auth");
  auto sent = auth.get_future();
  ASSERT_EQ(sent.wait_for(5s), std::future_status::ready) << "no Auth frame reached the worker";
  const FrameHeader h = sent.get();
  EXPECT_EQ(h.type, MessageType::Auth);
  EXPECT_EQ(h.sequence, 1u);
  EXPECT_EQ(h.flags & kFlagMac, 0);
}

TEST(Handshake, AWorkerThatAnswersAuthWithAnotherFrameIsAProtocolError) {
  test::KeyFile kf;
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  std::promise<FrameHeader> auth;
  std::future<void> done;
  const auto port = fake_worker(kf.key, MessageType::Heartbeat, auth, listener, done);
  const Endpoint at{.host = "127.0.0.1", .port = port};
  auto c = Connection::connect(at, kf.key, {.handshake_timeout = 2000ms});
  expect_error(c, ErrorCode::Protocol,
               "expected auth-ok from " + at.to_string() + ", got heartbeat");
}

// A driver run by hand: the worker's first sealed frame is an empty AuthOk, request 0, that opens
// in the session the driver derived.
TEST(Handshake, TheWorkerConfirmsAuthWithAnEmptySealedAuthOkForRequestZero) {
  RawPeer p;
  auto [client, hello] = ClientHandshake::start(p.kf.key, "raw driver").value();
  send_frame(p.raw.get(), {.type = MessageType::Hello}, hello);
  auto worker = std::async(std::launch::async, [&] { return p.accept({}); });
  FrameReader frames(p.raw.get());
  auto challenge = frames.next();
  ASSERT_TRUE(challenge) << "no Challenge";
  auto [auth, session] =
      client.on_challenge(decode_frame(*challenge).value().frame->payload).value();
  send_frame(p.raw.get(), {.type = MessageType::Auth, .sequence = 1}, auth);
  auto ok = frames.next();
  auto accepted = worker.get();
  ASSERT_TRUE(accepted) << accepted.error().to_string();
  EXPECT_EQ((*accepted)->remote_name(), "raw driver");
  ASSERT_TRUE(ok) << "no AuthOk";
  const FrameView view = *decode_frame(*ok).value().frame;
  ASSERT_TRUE(session.open(view));
  EXPECT_EQ(view.header.type, MessageType::AuthOk);
  EXPECT_EQ(view.header.request_id, 0u);
  EXPECT_TRUE(view.payload.empty());
}

// A driver that passes the Challenge's check but cannot prove the key: the worker refuses it and
// says only "authentication failed", in a cleartext Error frame, before closing.
TEST(Handshake, AnAuthThatDoesNotProveTheKeyIsRefusedWithAnErrorFrameSayingOnlyThat) {
  RawPeer p;
  auto [client, hello] = ClientHandshake::start(p.kf.key, "raw driver").value();
  send_frame(p.raw.get(), {.type = MessageType::Hello}, hello);
  auto worker = std::async(std::launch::async, [&] { return p.accept({}); });
  FrameReader frames(p.raw.get());
  ASSERT_TRUE(frames.next()) << "no Challenge";
  send_frame(p.raw.get(), {.type = MessageType::Auth, .sequence = 1}, Bytes(kMacSize));
  auto refusal = frames.next();
  auto accepted = worker.get();
  ASSERT_FALSE(accepted) << "a driver without the key was accepted";
  EXPECT_EQ(accepted.error().code(), ErrorCode::PermissionDenied) << accepted.error().to_string();
  ASSERT_TRUE(refusal) << "no Error frame before the close";
  const FrameView view = *decode_frame(*refusal).value().frame;
  EXPECT_EQ(view.header.type, MessageType::Error);
  EXPECT_EQ(std::string(as_text(view.payload)), "authentication failed");
}

}  // namespace
}  // namespace pepita::transport
