// The reference crate's vsock API (virtio.rs) as written, over the real device: values against
// Linux's UAPI (linux/virtio_vsock.h, linux/vm_sockets.h), connections to real Unix-socket
// listeners (Firecracker's host side), credit as the device computes it, and refusals.
#include <gtest/gtest.h>
#include <linux/virtio_vsock.h>
#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "common/temp_dir.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys/socket.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/virtio/vsock_crate.hpp"
#include "vsock_guest.hpp"

namespace pepita::virtio {
namespace {

// A private directory for the test's sockets, removed with everything in it at exit.
std::string socket_dir() {
  static const pepita::test::TempDir dir("vsockapi");
  EXPECT_FALSE(dir.path().empty()) << "mkdtemp in the temp directory failed";
  return dir.path().empty() ? "/tmp" : dir.path();
}

std::string fresh_path() {
  static int n = 0;
  return pepita::fmt("{}/vm{}.vsock", socket_dir(), ++n);
}

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s)); }

// A guest (CID 3) whose device's host side is `path`, activated, with a host listener on port
// 1234 (path_1234).
struct Fixture {
  std::string path = fresh_path();
  UniqueFd listener{sys::unix_listen(path + "_1234", 4)};
  std::unique_ptr<VirtioVsock> vsock = VirtioVsock::make(3, {.uds_path = path}).value();
  const VsockAddr host = VsockAddr::make(2, 1234);

  /// Activates the device, connects the guest to the host's listener and returns the host's end
  /// (invalid when a step failed, each a test failure).
  UniqueFd connected_peer() {
    EXPECT_TRUE(listener.valid());
    auto active = vsock->activate();
    EXPECT_TRUE(active.has_value()) << active.error().to_string();
    auto connected = vsock->connect(host);
    EXPECT_TRUE(connected.has_value()) << connected.error().to_string();
    if (!listener.valid() || !active || !connected) return UniqueFd();
    return UniqueFd(sys::accept(listener.get()));
  }
  /// Receives from the host until `got` reaches `want` (at most 100 reads); the new total.
  std::size_t recv_until(std::size_t got, std::size_t want) {
    std::byte buf[1000];
    for (int i = 0; i < 100 && got < want; ++i) got += vsock->recv(host, buf).value();
    return got;
  }
};

TEST(VsockCrateApi, AddrConstantsEqualLinuxVmSockets) {
  EXPECT_EQ(VsockAddr::HOST_CID, uint64_t{VMADDR_CID_HOST});
  EXPECT_EQ(VsockAddr::ANY_CID, uint64_t{VMADDR_CID_ANY});
  EXPECT_EQ(VsockAddr::ANY_PORT, uint32_t{VMADDR_PORT_ANY});
  EXPECT_EQ(VsockAddr::HOST_CID, 2u);
}

TEST(VsockCrateApi, AddrMakeHostAndIsHost) {
  const VsockAddr a = VsockAddr::make(3, 1234);
  EXPECT_EQ(a.cid, 3u);
  EXPECT_EQ(a.port, 1234u);
  EXPECT_FALSE(a.is_host());
  const VsockAddr h = VsockAddr::host(8080);
  EXPECT_TRUE(h.is_host());
  EXPECT_EQ(h, VsockAddr::make(2, 8080));
  EXPECT_NE(h, a);
}

TEST(VsockCrateApi, PacketTypeValuesAreTheKernelsOps) {
  EXPECT_EQ(static_cast<uint16_t>(VsockPacketType::Invalid), VIRTIO_VSOCK_OP_INVALID);
  EXPECT_EQ(static_cast<uint16_t>(VsockPacketType::Request), VIRTIO_VSOCK_OP_REQUEST);
  EXPECT_EQ(static_cast<uint16_t>(VsockPacketType::Response), VIRTIO_VSOCK_OP_RESPONSE);
  EXPECT_EQ(static_cast<uint16_t>(VsockPacketType::Rst), VIRTIO_VSOCK_OP_RST);
  EXPECT_EQ(static_cast<uint16_t>(VsockPacketType::Shutdown), VIRTIO_VSOCK_OP_SHUTDOWN);
  EXPECT_EQ(static_cast<uint16_t>(VsockPacketType::Rw), VIRTIO_VSOCK_OP_RW);
  EXPECT_EQ(static_cast<uint16_t>(VsockPacketType::CreditUpdate), VIRTIO_VSOCK_OP_CREDIT_UPDATE);
  EXPECT_EQ(static_cast<uint16_t>(VsockPacketType::CreditRequest), VIRTIO_VSOCK_OP_CREDIT_REQUEST);
  // The crate's From<u16>: unknown operations read as Invalid.
  EXPECT_EQ(vsock_packet_type(5), VsockPacketType::Rw);
  EXPECT_EQ(vsock_packet_type(8), VsockPacketType::Invalid);
  EXPECT_EQ(vsock_packet_type(99), VsockPacketType::Invalid);
}

TEST(VsockCrateApi, PacketHeaderIsTheKernelsHeader) {
  EXPECT_EQ(VsockPacketHeader::SIZE, sizeof(virtio_vsock_hdr));
  EXPECT_EQ(VsockPacketHeader::SIZE, 44u);
  const auto h = VsockPacketHeader::make(VsockAddr::make(3, 1000), VsockAddr::host(2000),
                                         VsockPacketType::Request);
  virtio_vsock_hdr k{};
  std::memcpy(&k, &h, sizeof k);
  EXPECT_EQ(k.src_cid, 3u);
  EXPECT_EQ(k.dst_cid, uint64_t{VMADDR_CID_HOST});
  EXPECT_EQ(k.src_port, 1000u);
  EXPECT_EQ(k.dst_port, 2000u);
  EXPECT_EQ(k.op, VIRTIO_VSOCK_OP_REQUEST);
  EXPECT_EQ(k.type, VIRTIO_VSOCK_TYPE_STREAM);
  EXPECT_EQ(k.len, 0u);
}

// The crate's header, sent by a guest driver to the real device, is served: the device answers
// RESPONSE, and the answer reads back through the crate's accessors.
TEST(VsockCrateApi, PacketHeaderMakeIsServedByTheDeviceAndItsAnswerReadsBack) {
  const std::string path = fresh_path();
  UniqueFd listener(sys::unix_listen(path + "_2000", 4));
  ASSERT_TRUE(listener.valid());
  auto dev = vsock::VsockDevice::create({.uds_path = path, .guest_cid = 3}).value();
  vsock::testing::GuestDriver guest(*dev, 3);
  auto h = VsockPacketHeader::make(VsockAddr::make(3, 1000), VsockAddr::host(2000),
                                   VsockPacketType::Request);
  h.buf_alloc = 4096;
  ASSERT_TRUE(guest.send_raw(h, {}));
  ASSERT_TRUE(guest.poll());
  ASSERT_EQ(guest.inbox.size(), 1u);
  const vsock::Header& wire = guest.inbox.front().hdr;
  auto answer = VsockPacketHeader::parse(std::as_bytes(std::span(&wire, 1)));
  ASSERT_TRUE(answer.has_value()) << answer.error().to_string();
  EXPECT_EQ(answer->get_type(), VsockPacketType::Response);
  EXPECT_EQ(answer->src(), VsockAddr::host(2000));
  EXPECT_EQ(answer->dst(), VsockAddr::make(3, 1000));
  EXPECT_EQ(dev->connection_count(), 1u);

  // Bad input: fewer bytes than a header.
  auto short_hdr = VsockPacketHeader::parse(std::as_bytes(std::span(&wire, 1)).first(43));
  ASSERT_FALSE(short_hdr.has_value());
  EXPECT_EQ(short_hdr.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(short_hdr.error().message().find("43 bytes"), std::string::npos);
}

TEST(VsockCrateApi, ConnStateValues) {
  EXPECT_EQ(static_cast<int>(VsockConnState::Disconnected), 0);
  EXPECT_EQ(static_cast<int>(VsockConnState::Connecting), 1);
  EXPECT_EQ(static_cast<int>(VsockConnState::Connected), 2);
  EXPECT_EQ(static_cast<int>(VsockConnState::Disconnecting), 3);
  EXPECT_EQ(VsockConnState{}, VsockConnState::Disconnected);
}

TEST(VsockCrateApi, ConnectionMakeStartsDisconnectedAndRefusesWildcards) {
  auto c = VsockConnection::make(VsockAddr::make(3, 1000), VsockAddr::host(2000));
  ASSERT_TRUE(c.has_value()) << c.error().to_string();
  EXPECT_EQ(c->state(), VsockConnState::Disconnected);
  EXPECT_FALSE(c->is_connected());
  EXPECT_EQ(c->local(), VsockAddr::make(3, 1000));
  EXPECT_EQ(c->remote(), VsockAddr::host(2000));
  EXPECT_EQ(c->available_credit(), 0u);  // no word from the peer yet
  EXPECT_EQ(c->credit().buf_alloc, 64u * 1024);

  auto any_port = VsockConnection::make(VsockAddr::make(3, 1000), VsockAddr::host(UINT32_MAX));
  ASSERT_FALSE(any_port.has_value());
  EXPECT_EQ(any_port.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(any_port.error().message().find("ANY_CID/ANY_PORT"), std::string::npos);
  auto any_cid =
      VsockConnection::make(VsockAddr::make(VsockAddr::ANY_CID, 1), VsockAddr::host(2000));
  EXPECT_FALSE(any_cid.has_value());
  auto no_buf = VsockConnection::make(VsockAddr::make(3, 1), VsockAddr::host(2000), 0);
  ASSERT_FALSE(no_buf.has_value());
  EXPECT_NE(no_buf.error().message().find("buf_alloc 0"), std::string::npos);
}

TEST(VsockCrateApi, ConnectionQueueTxCountsPendingTx) {
  auto c = VsockConnection::make(VsockAddr::make(3, 1000), VsockAddr::host(2000)).value();
  EXPECT_EQ(c.pending_tx(), 0u);
  c.queue_tx(bytes("hello"));
  EXPECT_EQ(c.pending_tx(), 5u);
  c.queue_tx(bytes(" world"));
  EXPECT_EQ(c.pending_tx(), 11u);
  c.queue_tx({});
  EXPECT_EQ(c.pending_tx(), 11u);
}

TEST(VsockCrateApi, ConnectionAcknowledgeRefusesMoreThanReceived) {
  auto c = VsockConnection::make(VsockAddr::make(3, 1000), VsockAddr::host(2000)).value();
  EXPECT_EQ(c.forward_count(), 0u);
  auto r = c.acknowledge(100);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message().find("only 0 received"), std::string::npos);
  EXPECT_EQ(c.forward_count(), 0u);
  EXPECT_TRUE(c.acknowledge(0).has_value());
}

// Host writes 3000 bytes; the guest reads 1000 at a time: forward_count follows what was
// consumed, and the device hears of it (its peer_fwd_cnt).
TEST(VsockCrateApi, ConnectionForwardCountFollowsConsumedBytes) {
  Fixture f;
  UniqueFd peer = f.connected_peer();
  ASSERT_TRUE(peer.valid());
  const std::string data(3000, 'x');
  ASSERT_EQ(sys::send_all(peer.get(), data.data(), data.size()), 3000);
  size_t got = f.recv_until(0, 1000);
  EXPECT_EQ(got, 1000u);
  const VsockConnection* c = f.vsock->connection(f.host);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->forward_count(), 1000u);
  EXPECT_EQ(c->pending_rx(), 2000u);
  got = f.recv_until(got, 3000);
  EXPECT_EQ(got, 3000u);
  EXPECT_EQ(c->forward_count(), 3000u);
}

// Every header we send carries fwd_cnt, so once the device processed one the connection records
// that the peer heard of it (last_fwd_sent): consumed bytes are no longer unreported, and no
// CREDIT_UPDATE is due for them.
TEST(VsockCrateApi, ConnectionRecordsTheForwardCountItsSentHeaderCarried) {
  Fixture f;
  UniqueFd peer = f.connected_peer();
  ASSERT_TRUE(peer.valid());
  const std::string data(1000, 'x');
  ASSERT_EQ(sys::send_all(peer.get(), data.data(), data.size()), 1000);
  ASSERT_EQ(f.recv_until(0, 1000), 1000u);
  const VsockConnection* c = f.vsock->connection(f.host);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->forward_count(), 1000u);
  // 1000 of 64 KiB consumed: under the low-water mark, no update went out yet.
  EXPECT_EQ(c->credit().last_fwd_sent, 0u);

  ASSERT_EQ(f.vsock->send(f.host, bytes("z")).value(), 1u);
  char z = 0;
  ASSERT_EQ(sys::recv_full(peer.get(), &z, 1), 1);
  EXPECT_EQ(z, 'z');
  EXPECT_EQ(c->credit().last_fwd_sent, 1000u) << "the RW header carried fwd_cnt 1000";
  EXPECT_FALSE(c->credit().update_due());
}

// available_credit is the spec's peer_buf_alloc - (tx_cnt - peer_fwd_cnt) with the device's
// numbers: the device's 256 KiB buffer at first; a host that does not read lets it run out,
// the rest waits in pending_tx, and goes out when the host reads.
TEST(VsockCrateApi, ConnectionAvailableCreditIsTheDevicesSpecArithmetic) {
  Fixture f;
  UniqueFd peer = f.connected_peer();
  ASSERT_TRUE(peer.valid());
  const VsockConnection* c = f.vsock->connection(f.host);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->is_connected());
  EXPECT_EQ(c->available_credit(), vsock::VsockOptions{}.buf_alloc);

  const std::string data(8u << 20, 'y');  // more than the host socket and the device hold
  ASSERT_EQ(f.vsock->send(f.host, bytes(data)).value(), data.size());
  const vsock::Credit& k = c->credit();
  EXPECT_EQ(c->available_credit(), k.peer_buf_alloc - (k.tx_cnt - k.peer_fwd_cnt));
  EXPECT_EQ(c->available_credit(), 0u);
  EXPECT_GT(c->pending_tx(), 0u);
  EXPECT_EQ(c->pending_tx(), data.size() - k.tx_cnt);

  // The host reads; every poll brings the device's credit updates and sends more.
  std::string seen;
  std::string chunk(1 << 16, '\0');
  std::byte none[1];
  for (int i = 0; i < 100000 && seen.size() < data.size(); ++i) {
    const long n = sys::recv(peer.get(), chunk.data(), chunk.size(), MSG_DONTWAIT);
    if (n > 0) seen.append(chunk.data(), static_cast<size_t>(n));
    ASSERT_TRUE(f.vsock->recv(f.host, none).has_value());
  }
  EXPECT_EQ(seen.size(), data.size());
  EXPECT_TRUE(seen == data);
  EXPECT_EQ(c->pending_tx(), 0u);
  EXPECT_EQ(c->available_credit(), k.peer_buf_alloc - (k.tx_cnt - k.peer_fwd_cnt));
}

TEST(VsockCrateApi, VirtioVsockMakeActivateDeactivate) {
  auto vsock = VirtioVsock::make(3);
  ASSERT_TRUE(vsock.has_value()) << vsock.error().to_string();
  EXPECT_EQ((*vsock)->cid(), 3u);
  EXPECT_FALSE((*vsock)->is_ready());
  EXPECT_EQ((*vsock)->connection_count(), 0u);
  ASSERT_TRUE((*vsock)->activate().has_value());
  EXPECT_TRUE((*vsock)->is_ready());
  EXPECT_EQ((*vsock)->device().config().size(), 8u);
  (*vsock)->deactivate();
  EXPECT_FALSE((*vsock)->is_ready());
  ASSERT_TRUE((*vsock)->activate().has_value());  // again, on fresh rings
  EXPECT_TRUE((*vsock)->is_ready());

  // Bad input: the host's CID, a reserved one, no receive buffer.
  auto host_cid = VirtioVsock::make(2);
  ASSERT_FALSE(host_cid.has_value());
  EXPECT_EQ(host_cid.error().code(), ErrorCode::InvalidArgument);
  EXPECT_FALSE(VirtioVsock::make(0xffffffffu).has_value());
  EXPECT_FALSE(VirtioVsock::make(3, {.buf_alloc = 0}).has_value());
}

TEST(VsockCrateApi, VirtioVsockConnectReachesTheHostListener) {
  Fixture f;
  auto early = f.vsock->connect(f.host);
  ASSERT_FALSE(early.has_value());
  EXPECT_EQ(early.error().code(), ErrorCode::DeviceNotReady);
  ASSERT_TRUE(f.vsock->activate().has_value());

  auto local = f.vsock->connect(f.host);
  ASSERT_TRUE(local.has_value()) << local.error().to_string();
  EXPECT_EQ(local->cid, 3u);
  EXPECT_EQ(f.vsock->connection_count(), 1u);
  EXPECT_EQ(f.vsock->device().connection_count(), 1u);
  UniqueFd peer(sys::accept(f.listener.get()));
  EXPECT_TRUE(peer.valid());  // the host listener got the connection
  EXPECT_EQ(f.vsock->connection(f.host)->local(), *local);

  auto again = f.vsock->connect(f.host);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), ErrorCode::AlreadyExists);
  auto guest = f.vsock->connect(VsockAddr::make(4, 1234));
  ASSERT_FALSE(guest.has_value());
  EXPECT_EQ(guest.error().code(), ErrorCode::InvalidArgument);
  auto nobody = f.vsock->connect(VsockAddr::host(4321));  // nothing listens on path_4321
  ASSERT_FALSE(nobody.has_value());
  EXPECT_EQ(nobody.error().code(), ErrorCode::Disconnected);
  EXPECT_NE(nobody.error().message().find("_4321"), std::string::npos);
  EXPECT_EQ(f.vsock->connection_count(), 1u);

  f.vsock->deactivate();
  EXPECT_EQ(f.vsock->connection_count(), 0u);
  EXPECT_EQ(f.vsock->device().connection_count(), 0u);
}

TEST(VsockCrateApi, VirtioVsockSendAndRecvCarryBytesBothWays) {
  Fixture f;
  UniqueFd peer = f.connected_peer();
  ASSERT_TRUE(peer.valid());

  auto sent = f.vsock->send(f.host, bytes("hello"));
  ASSERT_TRUE(sent.has_value()) << sent.error().to_string();
  EXPECT_EQ(*sent, 5u);
  char got[5];
  ASSERT_EQ(sys::recv_full(peer.get(), got, 5), 5);
  EXPECT_EQ(std::string(got, 5), "hello");

  ASSERT_EQ(sys::send_all(peer.get(), "world!", 6), 6);
  std::byte buf[16];
  size_t n = 0;
  for (int i = 0; i < 100 && n == 0; ++i) n = f.vsock->recv(f.host, buf).value();
  ASSERT_EQ(n, 6u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf), n), "world!");
  EXPECT_EQ(f.vsock->recv(f.host, buf).value(), 0u);  // nothing more: 0, no blocking
}

TEST(VsockCrateApi, VirtioVsockSendAndRecvRefuseBadCalls) {
  Fixture f;
  std::byte buf[4];
  auto not_ready = f.vsock->send(f.host, bytes("x"));
  ASSERT_FALSE(not_ready.has_value());
  EXPECT_EQ(not_ready.error().code(), ErrorCode::DeviceNotReady);
  EXPECT_EQ(f.vsock->recv(f.host, buf).error().code(), ErrorCode::DeviceNotReady);
  ASSERT_TRUE(f.vsock->activate().has_value());
  auto unconnected = f.vsock->send(VsockAddr::host(9), bytes("x"));
  ASSERT_FALSE(unconnected.has_value());
  EXPECT_EQ(unconnected.error().code(), ErrorCode::NotFound);
  EXPECT_NE(unconnected.error().message().find("connect() first"), std::string::npos);
  EXPECT_EQ(f.vsock->recv(VsockAddr::host(9), buf).error().code(), ErrorCode::NotFound);

  // The host closes its end: the device says SHUTDOWN, recv reads end of stream (0).
  ASSERT_TRUE(f.vsock->connect(f.host).has_value());
  {
    UniqueFd peer(sys::accept(f.listener.get()));
    ASSERT_TRUE(peer.valid());
  }
  for (int i = 0; i < 100 && f.vsock->connection(f.host)->state() == VsockConnState::Connected;
       ++i) {
    ASSERT_EQ(f.vsock->recv(f.host, buf).value(), 0u);
  }
  EXPECT_EQ(f.vsock->connection(f.host)->state(), VsockConnState::Disconnecting);
  EXPECT_EQ(f.vsock->recv(f.host, buf).value(), 0u);
}

// SHUTDOWN's flags (spec 5.10.6.5) are kept, cumulative and permanent: SHUTDOWN_SEND (the peer
// sends no more) leaves sending allowed and ends the stream once what arrived is consumed;
// SHUTDOWN_RCV (it receives no more) makes send Disconnected, saying so; a later SHUTDOWN with a
// bit clear takes nothing back. Our device never sends SHUTDOWN_RCV, so a copy of a connection
// it established is fed the packets by hand.
TEST(VsockCrateApi, ConnectionKeepsThePeersShutdownFlagsAndRefusesSendOnceItReceivesNoMore) {
  Fixture f;
  UniqueFd peer = f.connected_peer();
  ASSERT_TRUE(peer.valid());
  ASSERT_NE(f.vsock->connection(f.host), nullptr);
  VsockConnection c = *f.vsock->connection(f.host);
  ASSERT_TRUE(c.is_connected());
  EXPECT_TRUE(c.check_send().has_value());
  EXPECT_EQ(c.peer_shutdown(), 0u);
  EXPECT_FALSE(c.end_of_stream());
  const auto packet = [&](VsockPacketType type, uint32_t flags, uint32_t len) {
    auto h = VsockPacketHeader::make(c.remote(), c.local(), type);
    h.flags = flags;
    h.len = len;
    h.buf_alloc = c.credit().peer_buf_alloc;
    h.fwd_cnt = c.credit().peer_fwd_cnt;
    return h;
  };

  c.on_packet(packet(VsockPacketType::Rw, 0, 3), bytes("abc"));
  c.on_packet(packet(VsockPacketType::Shutdown, vsock::SHUTDOWN_SEND, 0), {});
  EXPECT_EQ(c.state(), VsockConnState::Disconnecting);
  EXPECT_EQ(c.peer_shutdown(), uint32_t{vsock::SHUTDOWN_SEND});
  EXPECT_TRUE(c.check_send().has_value()) << "the peer still receives";
  EXPECT_FALSE(c.end_of_stream()) << "3 bytes are still to be read";
  ASSERT_TRUE(c.acknowledge(3).has_value());
  EXPECT_TRUE(c.end_of_stream());

  c.on_packet(packet(VsockPacketType::Shutdown, 0, 0), {});
  EXPECT_EQ(c.peer_shutdown(), uint32_t{vsock::SHUTDOWN_SEND}) << "a bit once sent stays";
  c.on_packet(packet(VsockPacketType::Shutdown, vsock::SHUTDOWN_RCV, 0), {});
  EXPECT_EQ(c.peer_shutdown(), uint32_t{vsock::SHUTDOWN_SEND | vsock::SHUTDOWN_RCV});
  auto refused = c.check_send();
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), ErrorCode::Disconnected);
  EXPECT_NE(refused.error().message().find(": the host receives no more on this connection"),
            std::string::npos)
      << refused.error().message();

  // SHUTDOWN_RCV alone: the peer may still send, so the stream has not ended.
  VsockConnection rcv_only = *f.vsock->connection(f.host);
  rcv_only.on_packet(packet(VsockPacketType::Shutdown, vsock::SHUTDOWN_RCV, 0), {});
  EXPECT_FALSE(rcv_only.check_send().has_value());
  EXPECT_FALSE(rcv_only.end_of_stream());
}

// A host that shuts down only its sending side (shutdown(SHUT_WR)): the guest reads all it sent,
// then end of stream (0, end_of_stream()), and may still send, since the host still receives.
TEST(VsockCrateApi, VirtioVsockAfterTheHostStopsSendingReadsToEndOfStreamAndStillSends) {
  Fixture f;
  UniqueFd peer = f.connected_peer();
  ASSERT_TRUE(peer.valid());
  ASSERT_EQ(sys::send_all(peer.get(), "bye", 3), 3);
  ASSERT_EQ(::shutdown(peer.get(), SHUT_WR), 0);
  std::string got;
  std::byte buf[16];
  for (int i = 0; i < 100 && !f.vsock->connection(f.host)->end_of_stream(); ++i) {
    auto n = f.vsock->recv(f.host, buf);
    ASSERT_TRUE(n.has_value()) << n.error().to_string();
    got.append(reinterpret_cast<const char*>(buf), *n);
  }
  EXPECT_EQ(got, "bye");
  const VsockConnection* c = f.vsock->connection(f.host);
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->end_of_stream());
  EXPECT_EQ(c->peer_shutdown(), uint32_t{vsock::SHUTDOWN_SEND});
  EXPECT_EQ(c->state(), VsockConnState::Disconnecting);
  EXPECT_EQ(f.vsock->recv(f.host, buf).value(), 0u);

  auto sent = f.vsock->send(f.host, bytes("after"));
  ASSERT_TRUE(sent.has_value()) << sent.error().to_string();
  char back[5];
  ASSERT_EQ(sys::recv_full(peer.get(), back, 5), 5);
  EXPECT_EQ(std::string(back, 5), "after");
}

// A host that resets the connection (closes with data it never read): the next send or recv on
// it says so and tells the caller to connect() again; the connection is gone, others stay.
TEST(VsockCrateApi, VirtioVsockSendAndRecvAfterAHostResetSayConnectAgain) {
  Fixture f;
  UniqueFd other_listener(sys::unix_listen(f.path + "_1235", 4));
  ASSERT_TRUE(other_listener.valid());
  UniqueFd peer = f.connected_peer();
  ASSERT_TRUE(peer.valid());
  const VsockAddr other = VsockAddr::host(1235);
  ASSERT_TRUE(f.vsock->connect(other).has_value());
  UniqueFd other_peer(sys::accept(other_listener.get()));
  ASSERT_TRUE(other_peer.valid());

  // send: the reset arrives while the other connection is served.
  ASSERT_TRUE(f.vsock->send(f.host, bytes("never read")).has_value());
  peer.reset();
  std::byte buf[16];
  for (int i = 0; i < 100 && f.vsock->connection(f.host)->state() != VsockConnState::Disconnected;
       ++i) {
    ASSERT_EQ(f.vsock->recv(other, buf).value(), 0u);
  }
  ASSERT_EQ(f.vsock->connection(f.host)->state(), VsockConnState::Disconnected);
  auto sent = f.vsock->send(f.host, bytes("x"));
  ASSERT_FALSE(sent.has_value());
  EXPECT_EQ(sent.error().code(), ErrorCode::Disconnected);
  EXPECT_NE(sent.error().message().find("reset the connection; connect() again"), std::string::npos)
      << sent.error().message();
  EXPECT_EQ(f.vsock->connection(f.host), nullptr);
  EXPECT_EQ(f.vsock->connection_count(), 1u) << "the other connection stays";

  // recv: the same, once what arrived before the reset was read.
  ASSERT_TRUE(f.vsock->send(other, bytes("never read")).has_value());
  other_peer.reset();
  Result<size_t> got = size_t{0};
  for (int i = 0; i < 100 && got.has_value(); ++i) {
    got = f.vsock->recv(other, buf);
    if (got) {
      EXPECT_EQ(*got, 0u);
    }
  }
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code(), ErrorCode::Disconnected);
  EXPECT_NE(got.error().message().find("reset the connection; connect() again"), std::string::npos)
      << got.error().message();
  EXPECT_EQ(f.vsock->connection_count(), 0u);
  EXPECT_EQ(f.vsock->recv(other, buf).error().code(), ErrorCode::NotFound);
}

// recv reports what it consumed to the device (CREDIT_UPDATE) once half the buffer is used, so a
// host can send many times buf_alloc through a small window.
TEST(VsockCrateApi, VirtioVsockRecvReturnsCreditSoTheHostSendsBeyondOneWindow) {
  Fixture f;
  f.vsock.reset();  // its listener on f.path goes first
  f.vsock = VirtioVsock::make(3, {.uds_path = f.path, .buf_alloc = 4096}).value();
  UniqueFd peer = f.connected_peer();
  ASSERT_TRUE(peer.valid());
  std::string data(64 * 1024, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 251);
  ASSERT_EQ(sys::send_all(peer.get(), data.data(), data.size()), static_cast<int64_t>(data.size()));
  std::string got;
  std::byte buf[1000];
  for (int i = 0; i < 20000 && got.size() < data.size(); ++i) {
    auto n = f.vsock->recv(f.host, buf);
    ASSERT_TRUE(n.has_value()) << n.error().to_string();
    got.append(reinterpret_cast<const char*>(buf), *n);
  }
  EXPECT_EQ(got.size(), data.size()) << "16 windows of 4 KiB: credit came back each time";
  EXPECT_TRUE(got == data);
  EXPECT_GT(f.vsock->device().stats().bytes_to_guest, 4096u);
}

}  // namespace
}  // namespace pepita::virtio
