// Connection over loopback: send_all (issue 27) delivers a batch of frames in order, each
// sealed with its own sequence number, so the session stays in step with frames sent singly;
// send_bulk_file (issue 24) sends a bulk frame's data from a file by sendfile(2).
#include "pepita/transport/connection.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/child.hpp"
#include "common/syscall_fault.hpp"
#include "common/temp_dir.hpp"
#include "pepita/transport/messages.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

// An authenticated pair over 127.0.0.1: {client (driver side), server (worker side)}.
// `io_timeout` bounds a stalled frame on both ends.
std::pair<std::unique_ptr<Connection>, std::unique_ptr<Connection>> connected_pair(
    const Key& key, bool tls = false, std::chrono::milliseconds io_timeout = 10000ms) {
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  auto server = std::async(std::launch::async, [&]() -> std::unique_ptr<Connection> {
    for (int i = 0; i < 500; ++i) {
      std::string peer;
      if (auto fd = listener.accept(peer)) {
        return Connection::accept(std::move(*fd), peer, key, {.io_timeout = io_timeout, .tls = tls})
            .value();
      }
      std::this_thread::sleep_for(5ms);
    }
    return nullptr;
  });
  auto client = Connection::connect(listener.endpoint(), key,
                                    {.name = "test", .io_timeout = io_timeout, .tls = tls});
  EXPECT_TRUE(client) << client.error().to_string();
  return {client ? std::move(*client) : nullptr, server.get()};
}

Message next(Connection& c) {
  auto m = c.receive(5s);
  EXPECT_TRUE(m) << m.error().to_string();
  EXPECT_TRUE(m && *m) << "no frame within 5 s";
  return m && *m ? std::move(**m) : Message{};
}

TEST(Connection, SendAllDeliversEachFrameInOrderAndKeepsTheSequenceInStep) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key);
  ASSERT_TRUE(client && server);
  EXPECT_EQ(server->remote_name(), "test");  // the name the client gave in Hello
  // The client names the worker by the address it dialed.
  EXPECT_EQ(client->remote_name().rfind("127.0.0.1:", 0), 0u) << client->remote_name();
  EXPECT_EQ(client->remote_name(), client->peer());
  const std::string a = "started", b = "result payload";
  const Connection::Outgoing frames[] = {{MessageType::Started, 7, as_bytes(a)},
                                         {MessageType::Result, 7, as_bytes(b)},
                                         {MessageType::Heartbeat, 0, {}}};
  ASSERT_TRUE(server->send_all(frames));
  ASSERT_TRUE(server->send(MessageType::Log, 8, as_bytes(std::string_view("after"))));

  Message m1 = next(*client);
  EXPECT_EQ(m1.header.type, MessageType::Started);
  EXPECT_EQ(m1.header.request_id, 7u);
  EXPECT_EQ(std::string(as_text(m1.payload)), a);
  Message m2 = next(*client);
  EXPECT_EQ(m2.header.type, MessageType::Result);
  EXPECT_EQ(std::string(as_text(m2.payload)), b);
  EXPECT_EQ(next(*client).header.type, MessageType::Heartbeat);
  // A frame sent singly after the batch opens: its sequence number follows the batch's.
  Message m4 = next(*client);
  EXPECT_EQ(m4.header.type, MessageType::Log);
  EXPECT_EQ(std::string(as_text(m4.payload)), "after");
}

// Frames of many sizes sent in one write arrive split across reads at every offset: each is
// put back together, in order, byte for byte, however the receive buffer is compacted or grown.
TEST(Connection, ABurstOfFramesOfManySizesIsReassembledAcrossReads) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key);
  ASSERT_TRUE(client && server);
  std::vector<std::string> payloads;
  for (std::size_t i = 0; i < 40; ++i) {
    std::string p((i * 37'171) % 300'000 + i, '\0');
    for (std::size_t k = 0; k < p.size(); ++k) p[k] = static_cast<char>('a' + (i + k) % 26);
    payloads.push_back(std::move(p));
  }
  std::vector<Connection::Outgoing> frames;
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    frames.push_back({MessageType::Log, i, as_bytes(payloads[i])});
  }
  auto sent = std::async(std::launch::async, [&] { return server->send_all(frames); });
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    Message m = next(*client);
    EXPECT_EQ(m.header.request_id, i);
    ASSERT_TRUE(std::string(as_text(m.payload)) == payloads[i]) << "frame " << i << " differs";
  }
  EXPECT_TRUE(sent.get());
}

// A peer that closes after part of a frame, even its first byte only, is a truncated frame;
// one that closes before any is not (here: a client that closes during the handshake).
TEST(Connection, ClosingMidFrameFromItsFirstByteIsATruncatedFrameAndBeforeItIsNot) {
  test::KeyFile kf;
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  for (const std::size_t sent : {std::size_t{0}, std::size_t{1}, std::size_t{5}}) {
    UniqueFd raw(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(raw);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(listener.endpoint().port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(raw.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    const char partial[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ASSERT_EQ(::write(raw.get(), partial, sent), static_cast<ssize_t>(sent));
    ASSERT_EQ(::shutdown(raw.get(), SHUT_WR), 0);
    Result<UniqueFd> fd = fail(ErrorCode::TimedOut, "no client");
    std::string peer;
    for (int i = 0; i < 500 && !fd; ++i) {
      fd = listener.accept(peer);
      if (!fd) std::this_thread::sleep_for(5ms);
    }
    ASSERT_TRUE(fd) << fd.error().to_string();
    auto c = Connection::accept(std::move(*fd), peer, kf.key, {});
    ASSERT_FALSE(c) << sent << " bytes";
    EXPECT_EQ(c.error().code(), ErrorCode::Disconnected) << c.error().to_string();
    EXPECT_NE(c.error().message().find("closed the connection"), std::string::npos);
    const bool truncated = c.error().message().find("truncated frame") != std::string::npos;
    EXPECT_EQ(truncated, sent > 0) << sent << " bytes: " << c.error().message();
  }
}

TEST(Connection, SendAllRefusesAnOversizedFrameButStillSendsTheFramesBeforeIt) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key);
  ASSERT_TRUE(client && server);
  const std::string small = "first";
  const Bytes huge(kMaxPayload + 1);
  const Connection::Outgoing frames[] = {{MessageType::Started, 1, as_bytes(small)},
                                         {MessageType::Result, 1, huge}};
  auto sent = server->send_all(frames);
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(sent.error().message().find("exceeds the transport limit"), std::string::npos)
      << sent.error().to_string();
  ASSERT_TRUE(server->send(MessageType::Heartbeat, 0, {}));

  Message m1 = next(*client);
  EXPECT_EQ(m1.header.type, MessageType::Started);
  EXPECT_EQ(std::string(as_text(m1.payload)), small);
  // The refused frame took no sequence number: the next one still verifies.
  EXPECT_EQ(next(*client).header.type, MessageType::Heartbeat);
}

TEST(Connection, SendAllBeforeTheHandshakeIsAnInternalError) {
  // No session yet (as inside the handshake): nothing may be sealed.
  Connection c(Connection::Private{}, UniqueFd(), "nowhere", {});
  const Connection::Outgoing frames[] = {{MessageType::Heartbeat, 0, {}}};
  auto sent = c.send_all(frames);
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code(), ErrorCode::Internal);
}

// A temporary file holding `data`, open for reading.
struct DataFile {
  explicit DataFile(const std::string& data) {
    fd = UniqueFd(::open(dir.file("data.bin").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600));
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(::write(fd.get(), data.data(), data.size()), static_cast<ssize_t>(data.size()));
  }
  pepita::test::TempDir dir{"bulk-file"};
  UniqueFd fd;
};

// sendfile_all holds SIGPIPE off the calling thread only while it runs.
bool sigpipe_blocked() {
  sigset_t now;
  pthread_sigmask(SIG_BLOCK, nullptr, &now);
  return sigismember(&now, SIGPIPE) == 1;
}

TEST(Connection, SendBulkFileDeliversTheFilesBytesAfterASealedHead) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key);
  ASSERT_TRUE(client && server);
  std::string data(3 << 20, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 4096);
  DataFile file(data);
  // Unaligned offset and length, more than the socket buffers hold: sent while it is read.
  constexpr std::uint64_t kOff = 4097;
  constexpr std::size_t kLen = (2 << 20) + 555;
  const BlobChunkMsg meta{.offset = kOff, .size = data.size()};
  auto sent = std::async(std::launch::async, [&] {
    auto r = server->send_bulk_file(MessageType::BlobChunk, 0, encode(meta), file.fd.get(), kOff,
                                    kLen, "test file");
    return r ? server->send(MessageType::Heartbeat, 0, {}) : r;
  });
  Message m = next(*client);
  EXPECT_EQ(m.header.type, MessageType::BlobChunk);
  auto got = decode_blob_chunk(m.payload);
  ASSERT_TRUE(got) << got.error().to_string();
  EXPECT_EQ(got->offset, kOff);
  ASSERT_EQ(m.bulk.size(), kLen);
  EXPECT_TRUE(std::string(as_text(m.bulk)) == data.substr(kOff, kLen)) << "bulk bytes differ";
  // The frame after it verifies: the MAC trailer was sent and the sequence is in step.
  EXPECT_EQ(next(*client).header.type, MessageType::Heartbeat);
  auto r = sent.get();
  EXPECT_TRUE(r) << r.error().to_string();
}

TEST(Connection, SendBulkFileOfOneByteSendsThatByteAndRestoresTheSignalMask) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key);
  ASSERT_TRUE(client && server);
  DataFile file("xyz");
  ASSERT_TRUE(server->send_bulk_file(MessageType::BlobChunk, 0, encode(BlobChunkMsg{}),
                                     file.fd.get(), 1, 1, "test file"));
  EXPECT_FALSE(sigpipe_blocked());
  ASSERT_TRUE(server->send(MessageType::Heartbeat, 0, {}));
  Message m = next(*client);
  EXPECT_EQ(m.header.type, MessageType::BlobChunk);
  EXPECT_EQ(std::string(as_text(m.bulk)), "y");
  EXPECT_EQ(next(*client).header.type, MessageType::Heartbeat);
}

TEST(Connection, SendBulkFileOfAFileShorterThanTheFrameIsAnIoErrorNamingIt) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key);
  ASSERT_TRUE(client && server);
  DataFile file(std::string(1000, 'a'));
  auto r = server->send_bulk_file(MessageType::BlobChunk, 0, encode(BlobChunkMsg{}), file.fd.get(),
                                  0, 5000, "input shrunk.bin");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Io);
  EXPECT_NE(r.error().message().find("input shrunk.bin ended 4000 bytes short"), std::string::npos)
      << r.error().to_string();
  EXPECT_FALSE(sigpipe_blocked());
}

TEST(Connection, SendBulkFileToAClosedPeerIsDisconnectedAndRaisesNoSigpipe) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key);
  ASSERT_TRUE(client && server);
  DataFile file(std::string(4 << 20, 'b'));
  client.reset();  // the peer closes; sendfile would raise SIGPIPE, which kills by default
  Result<void> r;
  for (int i = 0; i < 50 && r; ++i) {
    r = server->send_bulk_file(MessageType::BlobChunk, 0, encode(BlobChunkMsg{}), file.fd.get(), 0,
                               4 << 20, "test file");
  }
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::Disconnected) << r.error().to_string();
  sigset_t pending;
  sigpending(&pending);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);  // none left pending on this thread
  EXPECT_FALSE(sigpipe_blocked());
}

// A SIGPIPE already pending on the thread is not the one sendfile raised: it is left pending.
TEST(Connection, SendBulkFileToAClosedPeerLeavesASigpipePendingBeforeItPending) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key);
  ASSERT_TRUE(client && server);
  DataFile file(std::string(4 << 20, 'b'));
  client.reset();
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &pipe_set, &old), 0);
  ASSERT_EQ(pthread_kill(pthread_self(), SIGPIPE), 0);
  Result<void> r;
  for (int i = 0; i < 50 && r; ++i) {
    r = server->send_bulk_file(MessageType::BlobChunk, 0, encode(BlobChunkMsg{}), file.fd.get(), 0,
                               4 << 20, "test file");
  }
  EXPECT_FALSE(r);
  sigset_t pending;
  sigpending(&pending);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 1) << "the SIGPIPE raised before was taken";
  EXPECT_TRUE(sigpipe_blocked()) << "the caller's own mask was not restored";
  const timespec zero{};
  while (::sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
  }
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &old, nullptr), 0);
}

TEST(Connection, SendBulkFileUnderTlsIsRefusedAsTheBytesMustBeEncrypted) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key, /*tls=*/true);
  ASSERT_TRUE(client && server);
  ASSERT_TRUE(server->encrypted());
  DataFile file(std::string(100, 'c'));
  auto r = server->send_bulk_file(MessageType::BlobChunk, 0, encode(BlobChunkMsg{}), file.fd.get(),
                                  0, 100, "test file");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  // Nothing was sent: the session still works.
  ASSERT_TRUE(server->send(MessageType::Heartbeat, 0, {}));
  EXPECT_EQ(next(*client).header.type, MessageType::Heartbeat);
}

// A peer that stops reading: a frame that no longer fits in the socket buffers fails after
// io_timeout, naming the peer and the timeout, for a frame sent from memory and one sent from a
// file by sendfile alike; the sender is not stuck behind it.
TEST(Connection, AFrameToAPeerThatStoppedReadingTimesOutAfterIoTimeout) {
  test::KeyFile kf;
  for (const bool from_file : {false, true}) {
    SCOPED_TRACE(from_file ? "send_bulk_file" : "send");
    auto [client, server] = connected_pair(kf.key, false, 300ms);
    ASSERT_TRUE(client && server);
    const std::string big(32 << 20, 'b');  // far more than loopback's socket buffers
    Result<void> r;
    if (from_file) {
      DataFile file(big);
      r = server->send_bulk_file(MessageType::BlobChunk, 0, encode(BlobChunkMsg{}), file.fd.get(),
                                 0, big.size(), "input big.bin");
    } else {
      r = server->send(MessageType::Heartbeat, 0, as_bytes(big));
    }
    ASSERT_FALSE(r) << "32 MiB went to a peer that reads nothing";
    EXPECT_EQ(r.error().code(), ErrorCode::TimedOut) << r.error().to_string();
    EXPECT_NE(r.error().message().find("stopped reading for 300 ms"), std::string::npos)
        << r.error().to_string();
    EXPECT_FALSE(sigpipe_blocked());
  }
}

// An authenticated pair as connected_pair, plus a second fd on each socket (dup) for reading or
// writing raw bytes after the handshake; `buffer_bytes` (0: the defaults) caps the client's
// receive buffer and the worker's send buffer.
struct RawEnds {
  std::unique_ptr<Connection> client, worker;
  UniqueFd client_raw, worker_raw;
};
RawEnds pair_with_raw_ends(const Key& key, const ConnectionOptions& options, int buffer_bytes = 0) {
  RawEnds ends;
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  auto dialed = dial(listener.endpoint(), 2000ms);
  EXPECT_TRUE(dialed) << dialed.error().to_string();
  if (!dialed) return ends;
  if (buffer_bytes > 0) {
    EXPECT_EQ(
        ::setsockopt(dialed->get(), SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes), 0);
  }
  ends.client_raw = UniqueFd(::dup(dialed->get()));
  auto server = std::async(std::launch::async, [&]() -> std::unique_ptr<Connection> {
    pollfd pfd{listener.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 5000) != 1) return nullptr;
    std::string peer;
    auto fd = listener.accept(peer).value();
    if (buffer_bytes > 0) {
      EXPECT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes),
                0);
    }
    ends.worker_raw = UniqueFd(::dup(fd.get()));
    return Connection::accept(std::move(fd), peer, key, options).value();
  });
  auto client = Connection::client(std::move(*dialed), "worker", key, options);
  EXPECT_TRUE(client) << client.error().to_string();
  if (client) ends.client = std::move(*client);
  ends.worker = server.get();
  return ends;
}

// A reader that drains slowly but steadily: each wait is shorter than io_timeout, the whole
// frame takes several times io_timeout. io_timeout bounds a stall, not a frame: the sends finish.
TEST(Connection, AFrameToAPeerThatReadsSlowlyButSteadilyIsNotTimedOut) {
  test::KeyFile kf;
  for (const bool from_file : {false, true}) {
    SCOPED_TRACE(from_file ? "send_bulk_file" : "send");
    // Buffers well above loopback's 64 KiB MSS, far below the frame.
    auto [client, worker, raw, unused] =
        pair_with_raw_ends(kf.key, {.name = "test", .io_timeout = 1000ms}, 256 << 10);
    ASSERT_TRUE(client && worker);
    const std::string data(8 << 20, 's');
    DataFile file(data);
    auto sent = std::async(std::launch::async, [&] {
      return from_file ? worker->send_bulk_file(MessageType::BlobChunk, 0, encode(BlobChunkMsg{}),
                                                file.fd.get(), 0, data.size(), "test file")
                       : worker->send(MessageType::Heartbeat, 0, as_bytes(data));
    });
    std::size_t got = 0;
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::byte> chunk(128 << 10);
    while (sent.wait_for(50ms) != std::future_status::ready) {
      const ssize_t n = ::recv(raw.get(), chunk.data(), chunk.size(), MSG_DONTWAIT);
      if (n > 0) got += static_cast<std::size_t>(n);
    }
    auto r = sent.get();
    EXPECT_TRUE(r) << r.error().to_string();
    EXPECT_GT(std::chrono::steady_clock::now() - start, 2000ms) << "the reader was not slow";
    EXPECT_GT(got, 0u);
  }
}

// A frame that did not come from the session (a MAC nobody keyed) is refused, not delivered.
TEST(Connection, AFrameWhoseMacDoesNotVerifyIsRefused) {
  test::KeyFile kf;
  auto [client, worker, unused, raw] = pair_with_raw_ends(kf.key, {.name = "test"});
  ASSERT_TRUE(client && worker);
  Bytes forged;
  // Sequence 1: the worker's AuthOk was 0, so only the MAC is wrong.
  ASSERT_TRUE(encode_frame({.type = MessageType::Heartbeat, .flags = kFlagMac, .sequence = 1},
                           as_bytes(std::string_view("forged")), forged));
  forged.resize(forged.size() + kMacSize);
  ASSERT_EQ(::send(raw.get(), forged.data(), forged.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(forged.size()));
  auto r = client->receive(2s);
  ASSERT_FALSE(r) << "a forged frame was delivered";
  EXPECT_EQ(r.error().code(), ErrorCode::Protocol);
  EXPECT_NE(r.error().message().find("MAC does not verify"), std::string::npos)
      << r.error().to_string();
}

// A wake fd ends a wait with nothing, but a frame already on the socket is read first.
TEST(Connection, AWakeFdEndsAnEmptyWaitButNotOneWithAFrameThere) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key);
  ASSERT_TRUE(client && server);
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  const std::uint64_t one = 1;
  ASSERT_EQ(::write(wake.get(), &one, sizeof one), static_cast<ssize_t>(sizeof one));
  const auto t0 = std::chrono::steady_clock::now();
  auto woke = client->receive(5s, wake.get());
  ASSERT_TRUE(woke) << woke.error().to_string();
  EXPECT_FALSE(*woke);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);

  ASSERT_TRUE(server->send(MessageType::Log, 3, as_bytes(std::string_view("there"))));
  pollfd pfd{wake.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 0), 1);   // still signalled
  std::this_thread::sleep_for(50ms);  // the frame is on the socket
  auto m = client->receive(5s, wake.get());
  ASSERT_TRUE(m) << m.error().to_string();
  ASSERT_TRUE(*m) << "the wake hid a frame that was there";
  EXPECT_EQ((*m)->header.type, MessageType::Log);
}

// A frame that arrived in pieces, then silence: the silence is an idle connection (nullopt at
// the receive timeout), not the earlier frame still stalled.
TEST(Connection, AnIdleConnectionAfterALargeFrameIsNotTakenForAStalledOne) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key, false, 300ms);
  ASSERT_TRUE(client && server);
  const std::string big(8 << 20, 'z');
  auto sent = std::async(std::launch::async,
                         [&] { return server->send(MessageType::Heartbeat, 0, as_bytes(big)); });
  EXPECT_EQ(next(*client).payload.size(), big.size());
  ASSERT_TRUE(sent.get());
  auto idle = client->receive(800ms);
  ASSERT_TRUE(idle) << idle.error().to_string();
  EXPECT_FALSE(*idle);
}

// The kernel failing a read or a poll, in a forked child under a seccomp filter: the error
// carries the errno and names the peer.
TEST(Connection, AReadTheKernelFailsIsDisconnectedNamingThePeerAndErrno) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key);
  ASSERT_TRUE(client && server);
  auto code = pepita::test::run_forked(
      [&] {
        ASSERT_TRUE(server->send(MessageType::Heartbeat, 0, {}));
        ASSERT_EQ(pepita::test::fail_syscalls({{SCMP_SYS(read), ECONNRESET}}), "");
        auto r = client->receive(2s);
        ASSERT_FALSE(r) << "a frame was read";
        EXPECT_EQ(r.error().code(), ErrorCode::Disconnected);
        EXPECT_EQ(r.error().sys_errno(), ECONNRESET);
        EXPECT_NE(r.error().message().find("read from " + client->peer()), std::string::npos)
            << r.error().to_string();
      },
      10s);  // a hang (a retry loop that never ends) fails, not times out
  EXPECT_EQ(code, 0);
}

TEST(Connection, APollTheKernelFailsIsAnErrorNotATimeout) {
  test::KeyFile kf;
  auto [client, server] = connected_pair(kf.key);
  ASSERT_TRUE(client && server);
  auto code = pepita::test::run_forked(
      [&] {
        ASSERT_EQ(
            pepita::test::fail_syscalls({{.nr = SCMP_SYS(poll), .error = ENOMEM, .min_arg0 = 0},
                                         {.nr = SCMP_SYS(ppoll), .error = ENOMEM, .min_arg0 = 0}}),
            "");
        auto r = client->receive(500ms);
        ASSERT_FALSE(r) << "no error";
        EXPECT_EQ(r.error().sys_errno(), ENOMEM);
        EXPECT_NE(r.error().message().find("poll " + client->peer()), std::string::npos)
            << r.error().to_string();
      },
      10s);  // a hang (a retry loop that never ends) fails, not times out
  EXPECT_EQ(code, 0);
}

// Addresses: an IPv6 peer is named [addr]:port; an address in use and a host that does not
// resolve are refused naming the address.
TEST(Connection, IpV6PeersAreBracketedAndBadAddressesAreRefusedNamingThem) {
  auto in_use = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  auto again = Listener::bind(in_use.endpoint(), false);
  ASSERT_FALSE(again) << "two listeners on one port";
  EXPECT_EQ(again.error().sys_errno(), EADDRINUSE) << again.error().to_string();
  EXPECT_NE(again.error().message().find("bind " + in_use.endpoint().to_string()),
            std::string::npos)
      << again.error().to_string();

  auto nowhere = dial({.host = "no-such-host.invalid", .port = 7070}, 2000ms);
  ASSERT_FALSE(nowhere);
  EXPECT_EQ(nowhere.error().code(), ErrorCode::NotFound) << nowhere.error().to_string();
  EXPECT_NE(nowhere.error().message().find("cannot resolve no-such-host.invalid:7070"),
            std::string::npos)
      << nowhere.error().to_string();

  {
    // The probe: this host has an IPv6 loopback at all (containers may lack one).
    UniqueFd probe(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    // SAFETY: sockaddr_in6 is a valid sockaddr of the given length.
    if (!probe || ::bind(probe.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      GTEST_SKIP() << "no IPv6 loopback here (::1): " << std::strerror(errno);
    }
  }
  auto v6 = Listener::bind({.host = "::1", .port = 0}, false);
  ASSERT_TRUE(v6) << v6.error().to_string();
  EXPECT_NE(v6->endpoint().port, 0u);
  auto caller = dial(v6->endpoint(), 2000ms);
  ASSERT_TRUE(caller) << caller.error().to_string();
  pollfd pfd{v6->fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 5000), 1);
  std::string peer;
  auto fd = v6->accept(peer);
  ASSERT_TRUE(fd) << fd.error().to_string();
  EXPECT_TRUE(peer.starts_with("[::1]:")) << peer;
  auto parsed = parse_endpoint(peer);
  ASSERT_TRUE(parsed) << peer;
  EXPECT_EQ(parsed->host, "::1");
}

}  // namespace
}  // namespace pepita::transport
