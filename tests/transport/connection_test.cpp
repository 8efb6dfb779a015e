// Connection over loopback: send_all (issue 27) delivers a batch of frames in order, each
// sealed with its own sequence number, so the session stays in step with frames sent singly.
#include "pepita/transport/connection.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;

// An authenticated pair over 127.0.0.1: {client (driver side), server (worker side)}.
std::pair<std::unique_ptr<Connection>, std::unique_ptr<Connection>> connected_pair(const Key& key) {
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  auto server = std::async(std::launch::async, [&]() -> std::unique_ptr<Connection> {
    for (int i = 0; i < 500; ++i) {
      std::string peer;
      if (auto fd = listener.accept(peer)) {
        return Connection::accept(std::move(*fd), peer, key, {}).value();
      }
      std::this_thread::sleep_for(5ms);
    }
    return nullptr;
  });
  auto client = Connection::connect(listener.endpoint(), key, {.name = "test"});
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

}  // namespace
}  // namespace pepita::transport
