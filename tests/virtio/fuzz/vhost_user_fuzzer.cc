// libFuzzer target for the vhost-user backend's message handling: the input is what a frontend
// sends over the unix socket (messages with memfd/eventfd attachments) plus the guest RAM those
// messages may point the virtqueues at. The backend serves virtio-blk on a MemDisk, so a vring
// that gets started runs the real worker over fuzzer-made rings. Checked: no crash, sanitizer
// report or hang; serve_one ends (the frontend closed) with success or a Protocol error; every
// reply is a well-formed vhost-user reply.
//
// Input: u16 RAM length, that many RAM bytes (copied to the start of a 64 KiB memfd), then
// records: one attachment byte (bits 0-1: none/eventfds/RAM memfd copies/sealed memfds holding a
// copy of the RAM bytes, the shape of an INFLIGHT_SHMFD region; bits 2-4: how many),
// a 12-byte header, and header.size payload bytes (fewer when the input ends: the frontend lied).
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/virtio/blk.hpp"
#include "pepita/virtio/vhost_user.hpp"

using namespace pepita;
using namespace pepita::virtio;
namespace vu = virtio::vhost_user;

namespace {

constexpr size_t kRamBytes = 64 << 10;

// Sends `bytes` as one message carrying `fds` (closed here afterwards).
void send_record(int sock, const std::uint8_t* bytes, size_t len, std::vector<int>& fds) {
  iovec iov{const_cast<std::uint8_t*>(bytes), len};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  if (::sendmsg(sock, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(len)) std::abort();
  for (int fd : fds) ::close(fd);
  fds.clear();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const size_t ram_len = std::min({size_t{data[0]} | size_t{data[1]} << 8, size - 2, kRamBytes});
  size_t at = 2;
  const int ram = ::memfd_create("fuzz-guest-ram", MFD_CLOEXEC);
  if (ram < 0 || ::ftruncate(ram, kRamBytes) != 0) std::abort();
  if (ram_len > 0 && ::pwrite(ram, data + at, ram_len, 0) != static_cast<ssize_t>(ram_len))
    std::abort();
  // The same bytes in a sealed memfd: what SET_INFLIGHT_FD accepts, with fuzzer-made contents.
  const int shm = ::memfd_create("fuzz-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (shm < 0 || ::ftruncate(shm, kRamBytes) != 0) std::abort();
  if (ram_len > 0 && ::pwrite(shm, data + at, ram_len, 0) != static_cast<ssize_t>(ram_len))
    std::abort();
  if (::fcntl(shm, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) std::abort();
  at += ram_len;

  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
  // The whole conversation is written before the backend reads it: keep it within the socket
  // buffer (replies are small and also fit).
  std::vector<int> fds;
  size_t sent = 0;
  while (at + 1 + sizeof(vu::Header) <= size && sent < 32 << 10) {
    const std::uint8_t attach = data[at++];
    const unsigned count = (attach >> 2) & 7;
    for (unsigned i = 0; i < count; ++i) {
      const int fd = (attach & 3) == 1   ? ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
                     : (attach & 3) == 2 ? ::dup(ram)
                                         : ::dup(shm);
      if (fd >= 0) fds.push_back(fd);
    }
    vu::Header hdr;
    std::memcpy(&hdr, data + at, sizeof hdr);
    const size_t len = sizeof hdr + std::min<size_t>(hdr.size, size - at - sizeof hdr);
    send_record(sv[1], data + at, len, fds);
    at += len;
    sent += len;
  }
  ::shutdown(sv[1], SHUT_WR);
  ::close(ram);
  ::close(shm);

  auto disk = blk_mq::MemDisk::create({.capacity_bytes = 64 << 10, .queues = 2}).value();
  auto dev = blk::BlkDevice::create(std::move(disk), {.num_queues = 2, .max_queue_size = 64});
  if (!dev) std::abort();
  {
    auto backend = vu::Backend::adopt(UniqueFd(sv[0]), **dev).value();
    auto served = backend->serve_one();
    if (!served && served.error().code() != ErrorCode::Protocol) std::abort();
  }

  // Replies: version 1 with the reply flag, each with its full payload.
  std::vector<std::uint8_t> replies;
  std::uint8_t buf[4096];
  for (ssize_t n; (n = ::recv(sv[1], buf, sizeof buf, MSG_DONTWAIT)) > 0;)
    replies.insert(replies.end(), buf, buf + n);
  ::close(sv[1]);
  for (size_t off = 0; off < replies.size();) {
    vu::Header hdr;
    if (replies.size() - off < sizeof hdr) std::abort();
    std::memcpy(&hdr, replies.data() + off, sizeof hdr);
    if (hdr.flags != (vu::kVersion | vu::kReplyFlag) || hdr.size > vu::kMaxPayload) std::abort();
    off += sizeof hdr + hdr.size;
    if (off > replies.size()) std::abort();
  }
  return 0;
}
