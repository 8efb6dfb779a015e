#pragma once
// vhost-user backend: serves one VirtioDevice to a frontend (QEMU) over a unix socket, the model
// of qemu-storage-daemon and SPDK's vhost target. The frontend runs the guest and hands us its
// RAM (memfd fds with SET_MEM_TABLE), the virtqueue addresses and kick/call eventfds; one thread
// per started virtqueue waits on its kick fd, lets the device serve the ring and signals call.
// A ring the driver malformed stops; the backend signals that vring's error eventfd
// (SET_VRING_ERR) and GET_STATUS reports NEEDS_RESET until the frontend resets the device.
// Restart: the frontend (QEMU with chardev reconnect=) re-sends everything to a new backend and
// resumes each ring at its used index. Without INFLIGHT_SHMFD that replays exactly the requests in
// flight only when they complete in ring order (virtio-blk does). With it (QEMU's vhost-user-blk
// negotiates it), GET_INFLIGHT_FD hands the frontend a sealed memfd in which every ring records
// the heads popped and not yet used (vhost-user.rst "Inflight I/O tracking"); a new backend gets
// it back with SET_INFLIGHT_FD and, on each vring's first start, resubmits every head still in
// flight, in the order the old backend popped them, before new avail entries -- also when the
// device completed out of order. A bad region (too small, unsealed, another version or queue
// size) is refused with a clear error; the connection lives on.
//
//   auto dev = PEPITA_TRY(blk::BlkDevice::create(std::move(disk), {.num_queues = 2}));
//   auto backend = PEPITA_TRY(Backend::listen("/tmp/vhost.sock", *dev));
//   std::thread t([&] { (void)backend->run(); });   // serves frontends until stop()
//   ...; backend->stop(); t.join();

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pepita/core/mapping.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/virtio/device.hpp"
#include "pepita/virtio/queue.hpp"
#include "pepita/virtio/vhost_user_proto.hpp"

namespace pepita::virtio::vhost_user {

class Backend {
 public:
  /// Binds a listening unix socket at `path` (a stale socket file there is replaced). `device`
  /// is borrowed and must outlive the backend. The errno of socket/bind/listen on failure.
  static Result<std::unique_ptr<Backend>> listen(const std::string& path, VirtioDevice& device);
  /// A backend for an already-connected socket (tests: one end of a socketpair).
  static Result<std::unique_ptr<Backend>> adopt(UniqueFd connection, VirtioDevice& device);
  ~Backend();

  /// Serves frontends one after another until stop(); each disconnect resets the device.
  /// Protocol errors of one frontend end that connection (logged on stderr), not the loop.
  Result<void> run();
  /// Serves the current/next connection only, until it closes or stop(). Protocol error when the
  /// frontend broke the protocol.
  Result<void> serve_one();
  /// Thread-safe, async-signal-unsafe: makes run()/serve_one() return soon.
  void stop() noexcept;

  const std::string& path() const noexcept { return path_; }

 private:
  struct Vring;
  struct Token {};

 public:
  Backend(Token, VirtioDevice& device, UniqueFd listener, UniqueFd stop_fd, std::string path);

 private:
  Result<void> handle(const Header& hdr, std::span<const std::byte> payload,
                      std::vector<UniqueFd>& fds, bool& replied);
  Result<void> reply(uint32_t request, std::span<const std::byte> payload);
  Result<void> set_mem_table(std::span<const std::byte> payload, std::vector<UniqueFd>& fds);
  Result<void> get_inflight_fd(const Header& hdr, std::span<const std::byte> payload,
                               bool& replied);
  Result<void> set_inflight_fd(std::span<const std::byte> payload, std::vector<UniqueFd>& fds);
  Result<Vring*> vring(uint64_t index);
  Result<void> start_vring(Vring& v);
  void stop_vring(Vring& v) noexcept;
  void stop_all() noexcept;
  void disconnect() noexcept;
  void worker(Vring& v) noexcept;

  VirtioDevice& device_;
  UniqueFd listener_;
  UniqueFd stop_fd_;  // eventfd: stop() writes it
  UniqueFd conn_;
  std::string path_;
  uint64_t acked_features_ = 0;
  uint64_t protocol_features_ = 0;
  uint8_t status_ = 0;  // last SET_STATUS; NEEDS_RESET is added from the device on GET_STATUS
  std::unique_ptr<memory::GuestMemory> memory_;  // stable address: running queues point at it
  /// The region of SET_INFLIGHT_FD. Declared fd first: the mapping is unmapped before the fd
  /// closes. Running queues point into the mapping, so it changes only while every ring stops.
  struct InflightRegion {
    UniqueFd fd;
    Mapping map;
    uint16_t num_queues = 0;
    uint16_t queue_size = 0;
  };
  std::unique_ptr<InflightRegion> inflight_;
  std::vector<std::unique_ptr<Vring>> vrings_;
};

}  // namespace pepita::virtio::vhost_user
