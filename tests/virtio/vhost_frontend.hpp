#pragma once
// Test-side vhost-user frontend (what QEMU does, scripted): sends messages with an fd attached,
// reads replies, and sets up guest RAM (a memfd) and one vring the way QEMU's vhost-user-blk does.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "driver_ring.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/vhost_user.hpp"
#include "pepita/virtio/vhost_user_proto.hpp"

namespace pepita::virtio::vhost_user::testing {

constexpr uint64_t kUvaBase = 0x7f0000000000;

class Frontend {
 public:
  explicit Frontend(int fd) : fd_(fd) {}

  void send(uint32_t req, const void* payload, uint32_t size, int pass_fd = -1,
            uint32_t extra_flags = 0) {
    send_fds(req, payload, size, pass_fd >= 0 ? std::span(&pass_fd, 1) : std::span<const int>(),
             extra_flags);
  }
  /// A message with every fd of `pass` attached (at most kMaxFds).
  void send_fds(uint32_t req, const void* payload, uint32_t size, std::span<const int> pass,
                uint32_t extra_flags = 0) {
    Header h{req, kVersion | extra_flags, size};
    std::vector<char> buf(sizeof h + size);
    std::memcpy(buf.data(), &h, sizeof h);
    if (size > 0) std::memcpy(buf.data() + sizeof h, payload, size);
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    ASSERT_LE(pass.size(), kMaxFds);
    if (!pass.empty()) {
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * pass.size());
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * pass.size());
      std::memcpy(CMSG_DATA(c), pass.data(), sizeof(int) * pass.size());
    }
    ASSERT_EQ(::sendmsg(fd_, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(buf.size()));
  }
  template <typename T>
  void send(uint32_t req, const T& payload, int pass_fd = -1, uint32_t flags = 0) {
    send(req, &payload, sizeof payload, pass_fd, flags);
  }
  std::vector<char> recv_reply(uint32_t req) {
    UniqueFd none;
    return recv_reply_with_fd(req, none);
  }
  /// A reply that may carry one fd (GET_INFLIGHT_FD): the payload; `fd` gets the descriptor.
  std::vector<char> recv_reply_with_fd(uint32_t req, UniqueFd& fd) {
    Header h{};
    iovec iov{&h, sizeof h};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    EXPECT_EQ(::recvmsg(fd_, &msg, MSG_WAITALL | MSG_CMSG_CLOEXEC), static_cast<ssize_t>(sizeof h));
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        int got = -1;
        std::memcpy(&got, CMSG_DATA(c), sizeof got);
        fd.reset(got);
      }
    }
    EXPECT_EQ(h.request, req);
    EXPECT_EQ(h.flags, kVersion | kReplyFlag);
    std::vector<char> p(h.size);
    if (h.size > 0) {
      EXPECT_EQ(::recv(fd_, p.data(), h.size, MSG_WAITALL), static_cast<ssize_t>(h.size));
    }
    return p;
  }
  uint64_t recv_u64(uint32_t req) {
    auto p = recv_reply(req);
    uint64_t value = ~0ull;
    EXPECT_EQ(p.size(), 8u);
    if (p.size() == 8) std::memcpy(&value, p.data(), 8);
    return value;
  }
  bool closed_by_peer() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return false;
    char c;
    return ::recv(fd_, &c, 1, 0) == 0;
  }

 private:
  int fd_;
};

/// A Backend serving `device` over one end of a socketpair on its own thread; the test drives
/// the other end (`frontend_fd`, e.g. through a Frontend). The destructor stops the backend and
/// joins the thread; `served` is what serve_one() returned.
struct ServedBackend {
  explicit ServedBackend(VirtioDevice& device) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    frontend_fd.reset(sv[0]);
    backend = Backend::adopt(UniqueFd(sv[1]), device).value();
    server = std::thread([this] { served = backend->serve_one(); });
  }
  ~ServedBackend() {
    backend->stop();
    server.join();
  }
  ServedBackend(const ServedBackend&) = delete;
  ServedBackend& operator=(const ServedBackend&) = delete;

  UniqueFd frontend_fd;
  std::unique_ptr<Backend> backend;
  Result<void> served;
  std::thread server;
};

/// Guest RAM shared with the backend plus one started vring, set up as QEMU does it:
/// SET_MEM_TABLE with a memfd, then NUM, BASE, ADDR, CALL, (ERR,) KICK, ENABLE.
struct SharedRing {
  SharedRing(Frontend& fe, uint32_t index, uint16_t size, bool with_err_fd = false) {
    memfd.reset(::memfd_create("vhost-test-ram", MFD_CLOEXEC));
    EXPECT_TRUE(memfd.valid());
    EXPECT_EQ(::ftruncate(memfd.get(), virtio::testing::DriverRing::kMemSize), 0);
    mine = std::make_unique<memory::GuestMemory>();
    EXPECT_TRUE(mine->add_fd_region(
        UniqueFd(::dup(memfd.get())),
        {.gpa = 0, .size = virtio::testing::DriverRing::kMemSize, .uva = kUvaBase}));
    Memory mem{};
    mem.nregions = 1;
    mem.regions[0] = {0, virtio::testing::DriverRing::kMemSize, kUvaBase, 0};
    fe.send(SET_MEM_TABLE, &mem, 8 + 32, memfd.get(), kNeedReply);
    EXPECT_EQ(fe.recv_u64(SET_MEM_TABLE), 0u);
    ring = std::make_unique<virtio::testing::DriverRing>(size, mine.get());
    using R = virtio::testing::DriverRing;
    fe.send(SET_VRING_NUM, VringState{index, size});
    fe.send(SET_VRING_BASE, VringState{index, 0});
    fe.send(SET_VRING_ADDR,
            VringAddr{index, 0, kUvaBase + R::kDesc, kUvaBase + R::kUsed, kUvaBase + R::kAvail, 0});
    kick.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    call.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    fe.send(SET_VRING_CALL, uint64_t{index}, call.get());
    if (with_err_fd) {
      err.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      fe.send(SET_VRING_ERR, uint64_t{index}, err.get());
    }
    fe.send(SET_VRING_KICK, uint64_t{index}, kick.get());
    fe.send(SET_VRING_ENABLE, VringState{index, 1});
  }
  void notify() {
    uint64_t one = 1;
    EXPECT_EQ(::write(kick.get(), &one, 8), 8);
  }
  /// Waits up to `ms` for `fd` (call or err) to be signalled and consumes the signal.
  static bool wait_signal(const UniqueFd& fd, int ms) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, ms) != 1) return false;
    uint64_t got = 0;
    return ::read(fd.get(), &got, 8) == 8 && got > 0;
  }

  UniqueFd memfd;
  std::unique_ptr<memory::GuestMemory> mine;  // the frontend's own view of guest RAM
  std::unique_ptr<virtio::testing::DriverRing> ring;
  UniqueFd kick, call, err;
};

}  // namespace pepita::virtio::vhost_user::testing
