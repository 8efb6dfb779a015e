// TLS 1.3 under the transport (ConnectionOptions::tls): tasks run between dispatcher and worker
// in both connection directions; a relay between them records the wire, which must carry a
// known task argument in clear without TLS and nowhere with it; TLS and plain ends refuse each
// other quickly with a message naming --tls; a wrong key, garbage and a stall are refused while
// the worker keeps serving; a bit flipped on the wire kills the connection; many threads send
// large frames both ways at once (run under ThreadSanitizer in CI).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pepita/transport/connection.hpp"
#include "pepita/transport/remote.hpp"
#include "pepita/transport/worker.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kSecret = "pepita-secret-argument-7f3a9c";

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
  const auto until = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

ConnectionOptions conn_options(bool tls) {
  ConnectionOptions c;
  c.tls = tls;
  c.handshake_timeout = 4000ms;
  c.io_timeout = 3000ms;
  return c;
}

WorkerOptions worker_options(const Key& key, bool tls, test::LogLines* log = nullptr) {
  WorkerOptions o;
  o.listen = "127.0.0.1:0";
  o.key = key;
  o.slots = 2;
  o.heartbeat_interval = 200ms;
  o.dead_after = 3000ms;
  o.connection = conn_options(tls);
  o.log = log ? log->sink() : [](std::string_view) {};
  return o;
}

RemoteOptions dispatcher_options(const Key& key, bool tls, test::LogLines* log = nullptr) {
  RemoteOptions o;
  o.key = key;
  o.heartbeat_interval = 200ms;
  o.suspect_after = 1000ms;
  o.dead_after = 2000ms;
  o.connection = conn_options(tls);
  o.log = log ? log->sink() : [](std::string_view) {};
  return o;
}

void write_fully(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= static_cast<std::size_t>(w);
    } else if (w < 0 && errno == EAGAIN) {
      pollfd pfd{fd, POLLOUT, 0};
      if (::poll(&pfd, 1, 2000) <= 0) return;
    } else if (w < 0 && errno != EINTR) {
      return;
    }
  }
}

// A TCP relay in front of `target` that records every byte it forwards (both directions) and
// can flip one bit of the client-to-server stream at a chosen offset.
class Relay {
 public:
  explicit Relay(Endpoint target)
      : target_(std::move(target)),
        listener_(Listener::bind({.host = "127.0.0.1", .port = 0}, false).value()),
        stop_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    thread_ = std::thread([this] { run(); });
  }
  ~Relay() {
    const std::uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
    thread_.join();
  }
  Endpoint endpoint() const { return listener_.endpoint(); }
  std::string captured() {
    std::lock_guard lock(mu_);
    return wire_;
  }
  std::size_t client_bytes() const { return c2s_.load(); }
  void flip_client_byte_at(std::size_t offset) { flip_at_.store(static_cast<long>(offset)); }
  /// Client bytes from `offset` on are swallowed (a peer that stalls mid-record).
  void cut_client_at(std::size_t offset) { cut_at_.store(static_cast<long>(offset)); }
  /// Ends every relayed connection at the TCP level, without a TLS close_notify: with a FIN
  /// (a peer that exits) or, with `reset`, an RST (a peer whose host drops the connection).
  void drop_all(bool reset) { drop_.store(reset ? 2 : 1); }

 private:
  struct Pair {
    UniqueFd client, server;
  };

  void run() {
    std::vector<Pair> pairs;
    std::vector<char> buf(64 << 10);
    for (;;) {
      std::vector<pollfd> pfds{{stop_.get(), POLLIN, 0}, {listener_.fd(), POLLIN, 0}};
      for (auto& p : pairs) {
        pfds.push_back({p.client.get(), POLLIN, 0});
        pfds.push_back({p.server.get(), POLLIN, 0});
      }
      if (::poll(pfds.data(), pfds.size(), 200) < 0) continue;
      if (pfds[0].revents != 0) return;
      if (const int drop = drop_.exchange(0); drop != 0) {
        const linger hard_close{.l_onoff = 1, .l_linger = 0};
        for (auto& p : pairs) {
          for (int fd : {p.client.get(), p.server.get()}) {
            if (drop == 2)
              (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard_close, sizeof hard_close);
          }
        }
        pairs.clear();
        continue;
      }
      const std::size_t polled = pairs.size();  // pfds covers these; a new pair waits a round
      if (pfds[1].revents != 0) {
        std::string peer;
        if (auto fd = listener_.accept(peer)) {
          if (auto up = dial(target_, 2000ms)) pairs.push_back({std::move(*fd), std::move(*up)});
        }
      }
      std::vector<bool> closed(pairs.size(), false);
      for (std::size_t i = 0; i < polled; ++i) {
        for (int dir = 0; dir < 2 && !closed[i]; ++dir) {
          if (pfds[2 + 2 * i + dir].revents == 0) continue;
          const int from = dir == 0 ? pairs[i].client.get() : pairs[i].server.get();
          const int to = dir == 0 ? pairs[i].server.get() : pairs[i].client.get();
          const ssize_t n = ::read(from, buf.data(), buf.size());
          if (n > 0) {
            if (dir == 0) {
              const long at = flip_at_.load();
              const long base = static_cast<long>(c2s_.load());
              if (at >= base && at < base + n) {
                buf[static_cast<std::size_t>(at - base)] ^= 0x01;
                flip_at_.store(-1);
              }
              c2s_.fetch_add(static_cast<std::size_t>(n));
            }
            std::size_t forward = static_cast<std::size_t>(n);
            if (const long cut = cut_at_.load(); dir == 0 && cut >= 0) {
              const long base = static_cast<long>(c2s_.load()) - n;
              forward = static_cast<std::size_t>(std::clamp<long>(cut - base, 0, n));
            }
            {
              std::lock_guard lock(mu_);
              wire_.append(buf.data(), static_cast<std::size_t>(n));
            }
            write_fully(to, buf.data(), forward);
          } else if (n == 0 || errno != EAGAIN) {
            closed[i] = true;
          }
        }
      }
      for (std::size_t i = pairs.size(); i-- > 0;) {
        if (closed[i]) pairs.erase(pairs.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
  }

  Endpoint target_;
  Listener listener_;
  UniqueFd stop_;
  std::mutex mu_;
  std::string wire_;
  std::atomic<std::size_t> c2s_{0};
  std::atomic<long> flip_at_{-1};
  std::atomic<long> cut_at_{-1};
  std::atomic<int> drop_{0};  // 1: close every pair, 2: reset every pair
  std::thread thread_;
};

// Runs a few tasks whose argument and stdin carry kSecret; checks they come back intact.
void run_secret_tasks(RemoteDispatcher& d) {
  for (std::uint64_t i = 1; i <= 5; ++i) {
    RemoteTask t{.id = i};
    t.spec.path = "/bin/echo";
    t.spec.args = {std::string(kSecret), std::to_string(i)};
    auto out = d.run(std::move(t));
    ASSERT_TRUE(out) << out.error().to_string();
    EXPECT_EQ(out->result.status, TaskStatus::Succeeded) << out->result.error;
    EXPECT_EQ(out->result.stdout_data, std::string(kSecret) + " " + std::to_string(i) + "\n");
  }
  RemoteTask f{.id = 99};
  f.spec.kind = TaskKind::Function;
  f.spec.path = "echo";
  f.spec.stdin_data = std::string(kSecret) + " via stdin";
  auto out = d.run(std::move(f));
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(out->result.stdout_data, std::string(kSecret) + " via stdin");
}

// Driver dials the worker through the relay; returns what crossed the wire.
std::string wire_of_listening_worker(bool tls) {
  const Key key = Key::generate().value();
  auto w = Worker::start(worker_options(key, tls)).value();
  Relay relay(w->endpoint());
  auto o = dispatcher_options(key, tls);
  o.workers = {relay.endpoint().to_string()};
  auto d = RemoteDispatcher::start(std::move(o)).value();
  run_secret_tasks(*d);
  d.reset();
  return relay.captured();
}

TEST(Tls, TasksRunOverTlsAndTheWireCarriesNoPlaintext) {
  const std::string plain = wire_of_listening_worker(false);
  // The control: without TLS the argument crosses in clear, so the check below can fail.
  EXPECT_NE(plain.find(kSecret), std::string::npos);
  const std::string wire = wire_of_listening_worker(true);
  ASSERT_GT(wire.size(), 1000u);
  EXPECT_EQ(wire.find(kSecret), std::string::npos) << "task argument visible on the wire";
  EXPECT_EQ(wire.find("PPT1"), std::string::npos) << "a pepita frame header visible on the wire";
  EXPECT_EQ(wire.substr(0, 2), std::string("\x16\x03")) << "does not start with a TLS record";
}

TEST(Tls, WorkersThatDialInRunTasksOverTls) {
  const Key key = Key::generate().value();
  auto o = dispatcher_options(key, true);
  o.listen = "127.0.0.1:0";
  auto d = RemoteDispatcher::start(std::move(o)).value();
  Relay relay(*d->listen_endpoint());
  auto wo = worker_options(key, true);
  wo.connect_to = relay.endpoint().to_string();
  wo.give_up_after = 5000ms;
  auto w = Worker::start(std::move(wo)).value();
  ASSERT_TRUE(wait_for([&] {
    const auto ws = d->workers();
    return std::any_of(ws.begin(), ws.end(),
                       [](const WorkerInfo& i) { return i.state == WorkerState::Alive; });
  })) << "the worker did not dial in over TLS";
  run_secret_tasks(*d);
  const std::string wire = relay.captured();
  EXPECT_EQ(wire.find(kSecret), std::string::npos) << "task argument visible on the wire";
  EXPECT_EQ(wire.substr(0, 2), std::string("\x16\x03"));
}

TEST(Tls, ATlsDriverAndAPlainWorkerRefuseEachOtherQuicklyNamingTheFlag) {
  const Key key = Key::generate().value();
  test::LogLines log;
  auto w = Worker::start(worker_options(key, false, &log)).value();
  const auto t0 = Clock::now();
  auto c = Connection::connect(w->endpoint(), key, conn_options(true));
  ASSERT_FALSE(c);
  EXPECT_LT(Clock::now() - t0, 3s) << "waited for the handshake timeout";
  EXPECT_EQ(c.error().code(), ErrorCode::Protocol) << c.error().to_string();
  EXPECT_NE(c.error().message().find("--tls"), std::string::npos) << c.error().to_string();
  EXPECT_TRUE(wait_for([&] { return log.contains("--tls"); }, 3s)) << "worker did not say why";
}

TEST(Tls, APlainDriverAndATlsWorkerRefuseEachOtherQuicklyNamingTheFlag) {
  const Key key = Key::generate().value();
  test::LogLines log;
  auto w = Worker::start(worker_options(key, true, &log)).value();
  const auto t0 = Clock::now();
  auto c = Connection::connect(w->endpoint(), key, conn_options(false));
  ASSERT_FALSE(c);
  EXPECT_LT(Clock::now() - t0, 3s) << "waited for the handshake timeout";
  EXPECT_NE(c.error().message().find("requires TLS"), std::string::npos) << c.error().to_string();
  EXPECT_NE(c.error().message().find("--tls"), std::string::npos) << c.error().to_string();
  EXPECT_TRUE(wait_for([&] { return log.contains("--tls"); }, 3s)) << "worker did not say why";
}

TEST(Tls, APlainWorkerDialingATlsDriverIsRefusedNamingTheFlag) {
  const Key key = Key::generate().value();
  test::LogLines log;
  auto o = dispatcher_options(key, true, &log);
  o.listen = "127.0.0.1:0";
  auto d = RemoteDispatcher::start(std::move(o)).value();
  auto wo = worker_options(key, false);
  wo.connect_to = d->listen_endpoint()->to_string();
  wo.give_up_after = 3000ms;
  auto w = Worker::start(std::move(wo)).value();
  EXPECT_TRUE(wait_for([&] { return log.contains("--tls"); }, 5s)) << "driver did not say why";
  for (const auto& i : d->workers()) EXPECT_NE(i.state, WorkerState::Alive);
}

TEST(Tls, AWrongKeyIsRefusedAndTheWorkerKeepsServing) {
  const Key key = Key::generate().value();
  test::LogLines log;
  auto w = Worker::start(worker_options(key, true, &log)).value();
  auto bad = Connection::connect(w->endpoint(), Key::generate().value(), conn_options(true));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::PermissionDenied) << bad.error().to_string();
  EXPECT_TRUE(wait_for([&] { return w->stats().clients_rejected >= 1; }, 3s));
  EXPECT_TRUE(log.contains("another key")) << log.all();

  auto good = Connection::connect(w->endpoint(), key, conn_options(true));
  ASSERT_TRUE(good) << good.error().to_string();
  EXPECT_TRUE((*good)->encrypted());
  auto reg = (*good)->receive(3s);
  ASSERT_TRUE(reg && *reg) << "no Register after the handshake";
  EXPECT_EQ((*reg)->header.type, MessageType::Register);
}

// Sends `bytes` on a raw connection and says whether the worker closed it within `limit`.
bool closed_after_sending(const Endpoint& to, std::string_view bytes,
                          std::chrono::milliseconds limit) {
  auto fd = dial(to, 2000ms);
  if (!fd) return false;
  write_fully(fd->get(), bytes.data(), bytes.size());
  const auto until = Clock::now() + limit;
  char buf[4096];
  while (Clock::now() < until) {
    pollfd pfd{fd->get(), POLLIN, 0};
    if (::poll(&pfd, 1, 100) <= 0) continue;
    const ssize_t n = ::read(fd->get(), buf, sizeof buf);  // alerts may come first
    if (n == 0 || (n < 0 && errno != EAGAIN)) return true;
  }
  return false;
}

TEST(Tls, GarbageAndStallsAreClosedAndTheWorkerKeepsServing) {
  const Key key = Key::generate().value();
  auto wo = worker_options(key, true);
  wo.connection.handshake_timeout = 800ms;
  auto w = Worker::start(std::move(wo)).value();
  std::string junk(600, '\0');
  for (std::size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>(i * 131 + 7);
  EXPECT_TRUE(closed_after_sending(w->endpoint(), junk, 3s)) << "non-TLS garbage";
  EXPECT_TRUE(
      closed_after_sending(w->endpoint(), std::string("\x16\x03\x01\x00\x30", 5) + junk, 3s))
      << "a TLS record header followed by garbage";
  EXPECT_TRUE(closed_after_sending(w->endpoint(), "\x16\x03\x01\x02", 3s))
      << "half a record header, then silence";
  EXPECT_TRUE(closed_after_sending(w->endpoint(), "", 3s)) << "silence";
  EXPECT_TRUE(wait_for([&] { return w->stats().clients_rejected >= 4; }, 3s));

  auto good = Connection::connect(w->endpoint(), key, conn_options(true));
  ASSERT_TRUE(good) << good.error().to_string();
  EXPECT_TRUE(wait_for([&] { return w->stats().clients_accepted == 1; }, 3s));
}

// A connected pair of TLS Connections on loopback (driver side first).
std::pair<std::unique_ptr<Connection>, std::unique_ptr<Connection>> tls_pair(
    const Key& key, const Endpoint* via = nullptr, Listener* listener = nullptr,
    ConnectionOptions options = conn_options(true)) {
  auto l = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  Listener& lis = listener ? *listener : l;
  std::unique_ptr<Connection> server;
  std::thread t([&] {
    pollfd pfd{lis.fd(), POLLIN, 0};
    (void)::poll(&pfd, 1, 5000);
    std::string peer;
    auto fd = lis.accept(peer);
    if (!fd) return;
    auto c = Connection::accept(std::move(*fd), peer, key, options);
    if (c) server = std::move(*c);
  });
  auto client = Connection::connect(via ? *via : lis.endpoint(), key, options);
  t.join();
  return {client ? std::move(*client) : nullptr, std::move(server)};
}

TEST(Tls, ABitFlippedOnTheWireKillsTheConnection) {
  const Key key = Key::generate().value();
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  Relay relay(listener.endpoint());
  const Endpoint via = relay.endpoint();
  auto [client, server] = tls_pair(key, &via, &listener);
  ASSERT_TRUE(client && server);
  relay.flip_client_byte_at(relay.client_bytes() + 20);
  ASSERT_TRUE(client->send(MessageType::Heartbeat, 0, as_bytes(std::string(200, 'h'))));
  auto got = server->receive(3s);
  ASSERT_FALSE(got) << "a tampered record was accepted";
  EXPECT_EQ(got.error().code(), ErrorCode::Protocol) << got.error().to_string();
  EXPECT_NE(got.error().message().find("TLS"), std::string::npos) << got.error().to_string();
}

TEST(Tls, APeerThatStallsInTheMiddleOfARecordIsCutOff) {
  const Key key = Key::generate().value();
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  Relay relay(listener.endpoint());
  const Endpoint via = relay.endpoint();
  auto options = conn_options(true);
  options.io_timeout = 400ms;
  auto [client, server] = tls_pair(key, &via, &listener, options);
  ASSERT_TRUE(client && server);
  relay.cut_client_at(relay.client_bytes() + 12);  // a record header and a few bytes of body
  ASSERT_TRUE(client->send(MessageType::Heartbeat, 0, as_bytes(std::string(300, 'h'))));
  const auto t0 = Clock::now();
  auto got = server->receive(10s);
  ASSERT_FALSE(got) << "a stalled record was not noticed";
  EXPECT_EQ(got.error().code(), ErrorCode::TimedOut) << got.error().to_string();
  EXPECT_LT(Clock::now() - t0, 5s) << "waited for the receive timeout, not io_timeout";
}

TEST(Tls, ReceiveHonoursTimeoutAndWakeFd) {
  const Key key = Key::generate().value();
  auto [client, server] = tls_pair(key);
  ASSERT_TRUE(client && server);
  auto none = server->receive(50ms);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  std::thread waker([&] {
    std::this_thread::sleep_for(50ms);
    const std::uint64_t one = 1;
    (void)!::write(wake.get(), &one, sizeof one);
  });
  const auto t0 = Clock::now();
  auto woke = server->receive(5s, wake.get());
  waker.join();
  ASSERT_TRUE(woke);
  EXPECT_FALSE(*woke);
  EXPECT_LT(Clock::now() - t0, 3s);
  // Two frames in one burst: the second sits decrypted inside OpenSSL after the first is read
  // and must be returned without waiting for the (silent) socket.
  ASSERT_TRUE(client->send(MessageType::Heartbeat, 1, as_bytes("one")));
  ASSERT_TRUE(client->send(MessageType::Heartbeat, 2, as_bytes("two")));
  std::this_thread::sleep_for(50ms);
  for (std::uint64_t id = 1; id <= 2; ++id) {
    auto m = server->receive(2s);
    ASSERT_TRUE(m && *m) << "frame " << id;
    EXPECT_EQ((*m)->header.request_id, id);
  }
  client->shutdown();
  auto gone = server->receive(2s);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code(), ErrorCode::Disconnected) << gone.error().to_string();
}

// A peer whose TCP connection ends without a TLS close_notify: a FIN is an ordinary end of
// stream (the frames are length-prefixed and MAC'd, so truncation is caught above TLS), not a
// TLS failure; an RST is a reset, and the error says so on receive and on send.
TEST(Tls, APeerGoneWithoutCloseNotifyIsDisconnectedAndAResetSaysSo) {
  const Key key = Key::generate().value();
  for (const bool reset : {false, true}) {
    SCOPED_TRACE(reset ? "reset" : "closed");
    auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
    Relay relay(listener.endpoint());
    const Endpoint via = relay.endpoint();
    auto [client, server] = tls_pair(key, &via, &listener);
    ASSERT_TRUE(client && server);
    relay.drop_all(reset);
    auto got = server->receive(5s);
    ASSERT_FALSE(got) << "the end of the connection was not noticed";
    EXPECT_EQ(got.error().code(), ErrorCode::Disconnected) << got.error().to_string();
    EXPECT_EQ(got.error().message().find("TLS error"), std::string::npos)
        << got.error().to_string();
    if (reset) {
      EXPECT_EQ(got.error().sys_errno(), ECONNRESET) << got.error().to_string();
      EXPECT_NE(got.error().message().find(std::strerror(ECONNRESET)), std::string::npos)
          << got.error().to_string();
      // The socket is dead now: a send fails (EPIPE) instead of pretending to succeed.
      auto sent = server->send(MessageType::Heartbeat, 0, as_bytes("after the reset"));
      ASSERT_FALSE(sent);
      EXPECT_EQ(sent.error().code(), ErrorCode::Disconnected) << sent.error().to_string();
      EXPECT_NE(sent.error().sys_errno(), 0) << sent.error().to_string();
    } else {
      EXPECT_EQ(got.error().sys_errno(), 0) << got.error().to_string();
      EXPECT_NE(got.error().message().find("closed the connection"), std::string::npos)
          << got.error().to_string();
    }
    auto other = client->receive(5s);
    ASSERT_FALSE(other);
    EXPECT_EQ(other.error().code(), ErrorCode::Disconnected) << other.error().to_string();
  }
}

// A TLS worker whose caller hangs up (FIN, or RST) before sending a byte: Disconnected, saying
// the peer left before the handshake; a worker that hangs up on a TLS driver's ClientHello:
// Disconnected during the handshake, naming --tls (the likely cause).
TEST(Tls, APeerThatHangsUpBeforeOrDuringTheHandshakeIsDisconnected) {
  const Key key = Key::generate().value();
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  for (const bool reset : {false, true}) {
    SCOPED_TRACE(reset ? "reset" : "closed");
    auto caller = dial(listener.endpoint(), 2000ms);
    ASSERT_TRUE(caller) << caller.error().to_string();
    pollfd pfd{listener.fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 5000), 1);
    std::string peer;
    auto fd = listener.accept(peer);
    ASSERT_TRUE(fd) << fd.error().to_string();
    if (reset) {
      const linger hard_close{.l_onoff = 1, .l_linger = 0};
      ASSERT_EQ(::setsockopt(caller->get(), SOL_SOCKET, SO_LINGER, &hard_close, sizeof hard_close),
                0);
    }
    caller->reset();
    auto c = Connection::accept(std::move(*fd), peer, key, conn_options(true));
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code(), ErrorCode::Disconnected) << c.error().to_string();
    if (reset) {
      EXPECT_EQ(c.error().sys_errno(), ECONNRESET) << c.error().to_string();
    } else {
      EXPECT_NE(c.error().message().find("closed before the TLS handshake"), std::string::npos)
          << c.error().to_string();
    }
  }

  std::thread hang_up([&] {
    pollfd pfd{listener.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 5000) != 1) return;
    std::string peer;
    auto fd = listener.accept(peer);
    if (!fd) return;
    pollfd in{fd->get(), POLLIN, 0};
    (void)::poll(&in, 1, 5000);  // the ClientHello has arrived; close without answering
    char hello[4096];
    (void)::recv(fd->get(), hello, sizeof hello, 0);
  });
  auto c = Connection::connect(listener.endpoint(), key, conn_options(true));
  hang_up.join();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), ErrorCode::Disconnected) << c.error().to_string();
  EXPECT_NE(c.error().message().find("closed the connection during the TLS handshake"),
            std::string::npos)
      << c.error().to_string();
  EXPECT_NE(c.error().message().find("--tls"), std::string::npos) << c.error().to_string();
}

// Several sender threads and a reader on each end at once, with frames much larger than a TLS
// record: every frame arrives intact, in each sender's order.
TEST(Tls, ManyThreadsSendLargeFramesBothWaysAtOnce) {
  const Key key = Key::generate().value();
  auto [client, server] = tls_pair(key);
  ASSERT_TRUE(client && server);
  constexpr int kSenders = 3, kFrames = 30;
  auto payload = [](int sender, int i) {
    std::string p(static_cast<std::size_t>((i * 7919 + sender * 104729) % (200 << 10)) + 1, '\0');
    for (std::size_t k = 0; k < p.size(); ++k) p[k] = static_cast<char>(sender * 31 + i + k);
    return p;
  };
  auto send_all = [&](Connection& c) {
    std::vector<std::thread> ts;
    for (int s = 0; s < kSenders; ++s) {
      ts.emplace_back([&, s] {
        for (int i = 0; i < kFrames; ++i) {
          const std::string p = payload(s, i);
          ASSERT_TRUE(c.send(MessageType::Heartbeat,
                             (static_cast<std::uint64_t>(s) << 32) | static_cast<std::uint64_t>(i),
                             as_bytes(p)));
        }
      });
    }
    for (auto& t : ts) t.join();
  };
  auto receive_all = [&](Connection& c, int& ok) {
    std::vector<int> next(kSenders, 0);
    for (int n = 0; n < kSenders * kFrames; ++n) {
      auto m = c.receive(10s);
      ASSERT_TRUE(m && *m) << "frame " << n;
      const int s = static_cast<int>((*m)->header.request_id >> 32);
      const int i = static_cast<int>((*m)->header.request_id & 0xffffffff);
      ASSERT_LT(s, kSenders);
      ASSERT_EQ(i, next[static_cast<std::size_t>(s)]++);
      ASSERT_EQ(as_text((*m)->payload), payload(s, i));
      ++ok;
    }
  };
  int at_server = 0, at_client = 0;
  std::thread server_reader([&] { receive_all(*server, at_server); });
  std::thread client_reader([&] { receive_all(*client, at_client); });
  std::thread server_sender([&] { send_all(*server); });
  send_all(*client);
  server_sender.join();
  server_reader.join();
  client_reader.join();
  EXPECT_EQ(at_server, kSenders * kFrames);
  EXPECT_EQ(at_client, kSenders * kFrames);
}

}  // namespace
}  // namespace pepita::transport
