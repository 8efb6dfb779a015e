// vhost-user backend: the message loop (one frontend at a time) and one worker thread per started
// vring. Every payload is size-checked before it is read; a frontend that breaks the protocol
// loses its connection, never the process.
#include "pepita/virtio/vhost_user.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "pepita/core/format.hpp"
#include "pepita/core/sys/eventfd.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/socket.hpp"

namespace pepita::virtio::vhost_user {
namespace v = abi::virtio;

struct Backend::Vring {
  uint32_t index = 0;
  uint16_t num = 0;
  uint16_t base = 0;  // next avail index to serve (SET_VRING_BASE, saved on stop)
  VringAddr addr{};
  bool addr_set = false;
  bool kicked = false;  // SET_VRING_KICK received: the ring is started (libvhost-user's rule)
  bool enabled = false;
  UniqueFd kick;
  UniqueFd call;
  UniqueFd err;   // SET_VRING_ERR: signalled when the driver malformed the ring
  UniqueFd stop;  // eventfd that ends the worker
  // INFLIGHT_SHMFD: the first start with a region in this connection resubmits what the region
  // holds; later starts carry over the heads the previous Queue had not handed out yet.
  bool recover = true;
  std::vector<uint16_t> carried;
  Queue queue;
  std::thread thread;
  std::atomic<bool> running{false};
};

namespace {

template <typename T>
Result<T> payload_as(std::span<const std::byte> p, const char* what) {
  if (p.size() < sizeof(T)) {
    return fail(ErrorCode::Protocol, std::string("vhost-user ") + what + " payload of " +
                                         std::to_string(p.size()) + " bytes, expected " +
                                         std::to_string(sizeof(T)));
  }
  T value;
  std::memcpy(&value, p.data(), sizeof(T));
  return value;
}

// Waits until `a` or `b` is readable (or `timeout_ms` passes): the ready count, 0 on timeout or
// a negative error number (-EINTR included); a_ready / b_ready say which.
int poll2(int a, int b, int timeout_ms, bool& a_ready, bool& b_ready) {
  pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
  const int r = sys::poll(p, 2, timeout_ms);
  a_ready = r > 0 && p[0].revents != 0;
  b_ready = r > 0 && p[1].revents != 0;
  return r;
}

}  // namespace

Backend::Backend(Token, VirtioDevice& device, UniqueFd listener, UniqueFd stop_fd, std::string path)
    : device_(device),
      listener_(std::move(listener)),
      stop_fd_(std::move(stop_fd)),
      path_(std::move(path)) {
  for (uint32_t i = 0; i < device.num_queues(); ++i) {
    vrings_.push_back(std::make_unique<Vring>());
    vrings_.back()->index = i;
  }
}

Backend::~Backend() {
  stop_all();
  if (listener_) ::unlink(path_.c_str());
}

Result<std::unique_ptr<Backend>> Backend::listen(const std::string& path, VirtioDevice& device) {
  int fd = sys::unix_listen(path);
  if (fd == -EEXIST)
    return fail(ErrorCode::AlreadyExists,
                "vhost-user socket " + path +
                    " exists and is not a socket; refusing to replace it (choose another path)",
                EEXIST);
  if (fd == -EADDRINUSE)
    return fail(ErrorCode::Busy,
                "vhost-user socket " + path +
                    ": another server is accepting on it; stop it or choose another path",
                EADDRINUSE);
  if (fd < 0) return fail_errno(fd, "listen on vhost-user socket " + path);
  UniqueFd listener(fd);
  int efd = sys::eventfd(0, EFD_NONBLOCK);
  if (efd < 0) return fail_errno(efd, "eventfd");
  return std::make_unique<Backend>(Token{}, device, std::move(listener), UniqueFd(efd), path);
}

Result<std::unique_ptr<Backend>> Backend::adopt(UniqueFd connection, VirtioDevice& device) {
  int efd = sys::eventfd(0, EFD_NONBLOCK);
  if (efd < 0) return fail_errno(efd, "eventfd");
  auto b = std::make_unique<Backend>(Token{}, device, UniqueFd(), UniqueFd(efd), std::string());
  b->conn_ = std::move(connection);
  return b;
}

void Backend::stop() noexcept { (void)sys::eventfd_signal(stop_fd_.get()); }

Result<void> Backend::run() {
  for (;;) {
    auto r = serve_one();
    bool a = false, b = false;
    if (poll2(stop_fd_.get(), stop_fd_.get(), 0, a, b) > 0) return {};
    if (!r) {
      std::fprintf(stderr, "vhost-user: frontend dropped: %s\n", r.error().to_string().c_str());
    }
    if (!listener_) return r;
  }
}

Result<void> Backend::serve_one() {
  bool stop_ready = false, ready = false;
  if (!conn_) {
    if (poll2(stop_fd_.get(), listener_.get(), -1, stop_ready, ready) < 0 || stop_ready) {
      return {};
    }
    int c = sys::accept(listener_.get());
    if (c < 0) return fail_errno(c, "accept vhost-user frontend");
    conn_.reset(c);
  }
  std::vector<std::byte> payload;
  std::vector<UniqueFd> fds;
  Result<void> result;
  for (;;) {
    if (poll2(stop_fd_.get(), conn_.get(), -1, stop_ready, ready) < 0 || stop_ready) break;
    Header hdr{};
    int raw_fds[kMaxFds];
    size_t nfds = 0;
    int r = sys::recv_with_fds(conn_.get(), &hdr, sizeof hdr, raw_fds, kMaxFds, &nfds);
    fds.clear();
    for (size_t i = 0; i < nfds; ++i) fds.emplace_back(raw_fds[i]);
    if (r == 0) break;  // frontend closed the connection
    if (r < 0) {
      result = fail_errno(r, "receive vhost-user message");
      break;
    }
    if ((hdr.flags & kVersionMask) != kVersion || hdr.size > kMaxPayload) {
      result = fail(ErrorCode::Protocol, "vhost-user message with version flags " +
                                             std::to_string(hdr.flags) + " or size " +
                                             std::to_string(hdr.size) + " we do not speak");
      break;
    }
    payload.resize(hdr.size);
    if (hdr.size > 0) {
      size_t more = 0;
      int extra[kMaxFds];
      r = sys::recv_with_fds(conn_.get(), payload.data(), hdr.size, extra, kMaxFds, &more);
      for (size_t i = 0; i < more; ++i) fds.emplace_back(extra[i]);
      if (r <= 0) {
        result = fail(ErrorCode::Protocol, "vhost-user frontend closed mid-message");
        break;
      }
    }
    bool replied = false;
    auto h = handle(hdr, payload, fds, replied);
    if ((hdr.flags & kNeedReply) != 0 && !replied &&
        (protocol_features_ & (1ull << protocol::REPLY_ACK)) != 0) {
      const uint64_t status = h ? 0 : 1;
      if (auto a = reply(hdr.request, std::as_bytes(std::span(&status, 1))); !a) {
        result = std::move(a);
        break;
      }
    }
    if (!h) {
      if (h.error().code() == ErrorCode::Protocol) {
        result = std::move(h);
        break;
      }
      std::fprintf(stderr, "vhost-user: request %u failed: %s\n", hdr.request,
                   h.error().to_string().c_str());
    }
  }
  disconnect();
  return result;
}

void Backend::disconnect() noexcept {
  stop_all();
  for (auto& v : vrings_) {
    const uint32_t i = v->index;
    v = std::make_unique<Vring>();
    v->index = i;
  }
  memory_.reset();
  inflight_.reset();
  acked_features_ = 0;
  protocol_features_ = 0;
  status_ = 0;
  device_.reset();
  conn_.reset();
}

Result<void> Backend::reply(uint32_t request, std::span<const std::byte> payload) {
  Header hdr{request, kVersion | kReplyFlag, static_cast<uint32_t>(payload.size())};
  const auto head = std::as_bytes(std::span(&hdr, 1));
  std::vector<std::byte> buf(head.begin(), head.end());
  buf.insert(buf.end(), payload.begin(), payload.end());
  const int64_t r = sys::send_all(conn_.get(), buf.data(), buf.size());
  if (r < 0) return fail_errno(static_cast<int>(r), "send vhost-user reply");
  return {};
}

Result<Backend::Vring*> Backend::vring(uint64_t index) {
  if (index >= vrings_.size()) {
    return fail(ErrorCode::Protocol, "vhost-user vring index " + std::to_string(index) +
                                         " but the device has " + std::to_string(vrings_.size()) +
                                         " queues");
  }
  return vrings_[index].get();
}

Result<void> Backend::handle(const Header& hdr, std::span<const std::byte> p,
                             std::vector<UniqueFd>& fds, bool& replied) {
  auto reply_u64 = [&](uint64_t value) {
    replied = true;
    return reply(hdr.request, std::as_bytes(std::span(&value, 1)));
  };
  switch (hdr.request) {
    case GET_FEATURES: return reply_u64(device_.features() | v::feature_bit(F_PROTOCOL_FEATURES));
    case SET_FEATURES: {
      const uint64_t f = PEPITA_TRY(payload_as<uint64_t>(p, "SET_FEATURES"));
      acked_features_ = f;
      return device_.activate(f & ~v::feature_bit(F_PROTOCOL_FEATURES));
    }
    case GET_PROTOCOL_FEATURES:
      return reply_u64((1ull << protocol::MQ) | (1ull << protocol::REPLY_ACK) |
                       (1ull << protocol::CONFIG) | (1ull << protocol::INFLIGHT_SHMFD) |
                       (1ull << protocol::STATUS));
    case SET_PROTOCOL_FEATURES:
      protocol_features_ = PEPITA_TRY(payload_as<uint64_t>(p, "SET_PROTOCOL_FEATURES"));
      return {};
    case GET_QUEUE_NUM: return reply_u64(device_.num_queues());
    case SET_OWNER: return {};
    case RESET_OWNER: stop_all(); return {};
    case SET_MEM_TABLE: return set_mem_table(p, fds);
    case SET_VRING_NUM: {
      const auto s = PEPITA_TRY(payload_as<VringState>(p, "SET_VRING_NUM"));
      Vring* vr = PEPITA_TRY(vring(s.index));
      if (!abi::is_power_of_two(s.num) || s.num > device_.max_queue_size()) {
        return fail(ErrorCode::Protocol, "vring size " + std::to_string(s.num) +
                                             " is not a power of two up to " +
                                             std::to_string(device_.max_queue_size()));
      }
      stop_vring(*vr);
      vr->num = static_cast<uint16_t>(s.num);
      return {};
    }
    case SET_VRING_ADDR: {
      const auto a = PEPITA_TRY(payload_as<VringAddr>(p, "SET_VRING_ADDR"));
      Vring* vr = PEPITA_TRY(vring(a.index));
      const bool was = vr->running;
      stop_vring(*vr);
      vr->addr = a;
      vr->addr_set = true;
      if (was) return start_vring(*vr);
      return {};
    }
    case SET_VRING_BASE: {
      const auto s = PEPITA_TRY(payload_as<VringState>(p, "SET_VRING_BASE"));
      Vring* vr = PEPITA_TRY(vring(s.index));
      stop_vring(*vr);
      vr->base = static_cast<uint16_t>(s.num);
      return {};
    }
    case GET_VRING_BASE: {
      const auto s = PEPITA_TRY(payload_as<VringState>(p, "GET_VRING_BASE"));
      Vring* vr = PEPITA_TRY(vring(s.index));
      stop_vring(*vr);  // the spec: GET_VRING_BASE stops the ring
      vr->kicked = false;
      vr->kick.reset();
      const VringState out{s.index, vr->base};
      replied = true;
      return reply(hdr.request, std::as_bytes(std::span(&out, 1)));
    }
    case SET_VRING_KICK:
    case SET_VRING_CALL:
    case SET_VRING_ERR: {
      const uint64_t u = PEPITA_TRY(payload_as<uint64_t>(p, "SET_VRING_KICK/CALL/ERR"));
      Vring* vr = PEPITA_TRY(vring(u & kVringIndexMask));
      UniqueFd fd;
      if ((u & kVringNoFd) == 0) {
        if (fds.size() != 1) {
          return fail(ErrorCode::Protocol, "SET_VRING_KICK/CALL without exactly one fd");
        }
        fd = std::move(fds[0]);
      }
      const bool was = vr->running;
      stop_vring(*vr);  // the worker reads call/err: swap them only while it is stopped
      if (hdr.request != SET_VRING_KICK) {
        (hdr.request == SET_VRING_CALL ? vr->call : vr->err) = std::move(fd);
        if (was) return start_vring(*vr);
        return {};
      }
      if (!fd) return fail(ErrorCode::Unsupported, "polling vrings (no kick fd) are not supported");
      vr->kick = std::move(fd);
      vr->kicked = true;
      return start_vring(*vr);
    }
    case SET_VRING_ENABLE: {
      const auto s = PEPITA_TRY(payload_as<VringState>(p, "SET_VRING_ENABLE"));
      Vring* vr = PEPITA_TRY(vring(s.index));
      vr->enabled = s.num != 0;
      return {};
    }
    case GET_CONFIG: {
      const auto ch = PEPITA_TRY(payload_as<ConfigHeader>(p, "GET_CONFIG"));
      if (ch.size > kMaxConfigSize || p.size() < sizeof ch + ch.size) {
        return fail(ErrorCode::Protocol, "GET_CONFIG of " + std::to_string(ch.size) + " bytes");
      }
      std::vector<std::byte> out(sizeof ch + ch.size);
      std::memcpy(out.data(), &ch, sizeof ch);
      const auto cfg = device_.config();
      if (ch.offset < cfg.size()) {
        const size_t n = std::min<size_t>(ch.size, cfg.size() - ch.offset);
        std::memcpy(out.data() + sizeof ch, cfg.data() + ch.offset, n);
      }
      replied = true;
      return reply(hdr.request, out);
    }
    case SET_CONFIG: return {};  // writeback-cache toggling is not offered
    case SET_STATUS: {
      const uint64_t st = PEPITA_TRY(payload_as<uint64_t>(p, "SET_STATUS"));
      if (st > 0xff) {
        return fail(ErrorCode::Protocol,
                    "SET_STATUS " + std::to_string(st) + " is not a virtio device status byte");
      }
      status_ = static_cast<uint8_t>(st);
      if (st == 0) {
        // Writing 0 resets a virtio device: the rings stop and NEEDS_RESET clears. (QEMU sends
        // it after GET_VRING_BASE, so nothing is lost; the next start re-sends kick fds.)
        stop_all();
        for (auto& vr : vrings_) vr->kicked = false;
        device_.reset();
      }
      return {};
    }
    case GET_STATUS: return reply_u64(status_ | device_.status_bits());
    case GET_INFLIGHT_FD: return get_inflight_fd(hdr, p, replied);
    case SET_INFLIGHT_FD: return set_inflight_fd(p, fds);
    default:
      return fail(ErrorCode::Unsupported,
                  "vhost-user request " + std::to_string(hdr.request) + " not supported");
  }
}

Result<void> Backend::set_mem_table(std::span<const std::byte> p, std::vector<UniqueFd>& fds) {
  // The payload carries only the regions in use: 8 bytes of count + padding, then nregions.
  const auto count = PEPITA_TRY(payload_as<uint32_t>(p, "SET_MEM_TABLE"));
  if (count == 0 || count > kMaxMemRegions || fds.size() != count ||
      p.size() < 8 + sizeof(MemoryRegion) * count) {
    return fail(ErrorCode::Protocol, "SET_MEM_TABLE with " + std::to_string(count) + " regions, " +
                                         std::to_string(fds.size()) + " fds and " +
                                         std::to_string(p.size()) + " payload bytes");
  }
  Memory m{};
  std::memcpy(&m, p.data(), std::min(p.size(), sizeof m));
  auto table = std::make_unique<memory::GuestMemory>();
  for (uint32_t i = 0; i < m.nregions; ++i) {
    const auto& r = m.regions[i];
    PEPITA_TRY_VOID(table->add_fd_region(std::move(fds[i]), {.gpa = r.guest_phys_addr,
                                                             .size = r.memory_size,
                                                             .uva = r.userspace_addr,
                                                             .mmap_offset = r.mmap_offset}));
  }
  // Running queues point into the old table: stop them, swap, restart.
  std::vector<Vring*> restart;
  for (auto& vr : vrings_) {
    if (vr->running) restart.push_back(vr.get());
    stop_vring(*vr);
  }
  memory_ = std::move(table);
  for (Vring* vr : restart) PEPITA_TRY_VOID(start_vring(*vr));
  return {};
}

Result<void> Backend::get_inflight_fd(const Header& hdr, std::span<const std::byte> p,
                                      bool& replied) {
  if (p.size() < kInflightMinPayload) {
    return fail(ErrorCode::Protocol, pepita::fmt("GET_INFLIGHT_FD payload of {} bytes, expected {}",
                                                 p.size(), sizeof(Inflight)));
  }
  Inflight in{};
  std::memcpy(&in, p.data(), kInflightMinPayload);
  Inflight out{0, 0, in.num_queues, in.queue_size, 0};
  // On any failure the reply carries mmap_size 0 and no fd: the frontend goes on without
  // inflight tracking (QEMU does), and the error is logged.
  auto refuse = [&](Error e) -> Result<void> {
    replied = true;
    PEPITA_TRY_VOID(reply(hdr.request, std::as_bytes(std::span(&out, 1))));
    return std::unexpected(std::move(e));
  };
  if (in.num_queues == 0 || in.num_queues > device_.num_queues() ||
      !abi::is_power_of_two(in.queue_size) || in.queue_size > device_.max_queue_size()) {
    return refuse(Error(
        ErrorCode::InvalidArgument,
        pepita::fmt("GET_INFLIGHT_FD for {} queues of size {}: the device has {} "
                    "queues of at most {} entries (a power of two)",
                    in.num_queues, in.queue_size, device_.num_queues(), device_.max_queue_size())));
  }
  const uint64_t size = inflight_queue_bytes(in.queue_size) * in.num_queues;
  const int mfd = static_cast<int>(
      sys::ret(::memfd_create("pepita-vhost-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (mfd < 0) return refuse(Error::from_errno(mfd, "memfd_create for the inflight region"));
  UniqueFd fd(mfd);
  if (int r = sys::ftruncate(fd.get(), size); r < 0) {
    return refuse(Error::from_errno(r, "size the inflight region"));
  }
  // Sealed as libvhost-user does: nobody can shrink it under a backend that maps it (SIGBUS).
  if (long r = sys::ret(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL));
      r < 0) {
    return refuse(Error::from_errno(static_cast<int>(r), "seal the inflight region"));
  }
  // ftruncate zero-filled it: version 0, a fresh region for every queue.
  out.mmap_size = size;
  replied = true;
  Header h{hdr.request, kVersion | kReplyFlag, static_cast<uint32_t>(sizeof out)};
  std::byte buf[sizeof h + sizeof out];
  std::memcpy(buf, &h, sizeof h);
  std::memcpy(buf + sizeof h, &out, sizeof out);
  const int raw = fd.get();
  const int64_t r = sys::send_with_fds(conn_.get(), buf, sizeof buf, &raw, 1);
  if (r < 0) return fail_errno(static_cast<int>(r), "send the GET_INFLIGHT_FD reply");
  return {};
}

Result<void> Backend::set_inflight_fd(std::span<const std::byte> p, std::vector<UniqueFd>& fds) {
  if (p.size() < kInflightMinPayload) {
    return fail(ErrorCode::Protocol, pepita::fmt("SET_INFLIGHT_FD payload of {} bytes, expected {}",
                                                 p.size(), sizeof(Inflight)));
  }
  Inflight in{};
  std::memcpy(&in, p.data(), kInflightMinPayload);
  if (fds.size() != 1) {
    return fail(
        ErrorCode::InvalidArgument,
        pepita::fmt("SET_INFLIGHT_FD carries {} fds; attach exactly the region's fd", fds.size()));
  }
  for (const auto& vr : vrings_) {
    if (vr->running) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("SET_INFLIGHT_FD while vring {} runs; stop the rings first "
                              "(GET_VRING_BASE), as QEMU does before it starts them",
                              vr->index));
    }
  }
  if (in.num_queues == 0 || in.num_queues > device_.num_queues() ||
      !abi::is_power_of_two(in.queue_size) || in.queue_size > device_.max_queue_size()) {
    return fail(
        ErrorCode::InvalidArgument,
        pepita::fmt("SET_INFLIGHT_FD for {} queues of size {}: the device has {} queues "
                    "of at most {} entries (a power of two)",
                    in.num_queues, in.queue_size, device_.num_queues(), device_.max_queue_size()));
  }
  const uint64_t need = inflight_queue_bytes(in.queue_size) * in.num_queues;
  if (in.mmap_size < need) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("SET_INFLIGHT_FD region of {} bytes; {} queues of size {} need {}",
                            in.mmap_size, in.num_queues, in.queue_size, need));
  }
  if (in.mmap_size > (uint64_t{1} << 32) || in.mmap_offset % 4096 != 0) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("SET_INFLIGHT_FD region of {} bytes at offset {}: at most 4 GiB at a "
                            "page-aligned offset",
                            in.mmap_size, in.mmap_offset));
  }
  UniqueFd fd = std::move(fds[0]);
  const int64_t file = sys::regular_file_size(fd.get());
  // Checked without overflow: a huge mmap_offset must not wrap the end below the file size.
  if (file < 0 || in.mmap_offset > static_cast<uint64_t>(file) ||
      static_cast<uint64_t>(file) - in.mmap_offset < in.mmap_size) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("SET_INFLIGHT_FD fd holds {} bytes, the region is {} bytes at offset "
                            "{}; pass the memfd GET_INFLIGHT_FD returned",
                            file, in.mmap_size, in.mmap_offset));
  }
  const long seals = sys::ret(::fcntl(fd.get(), F_GET_SEALS));
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    return fail(ErrorCode::InvalidArgument,
                "SET_INFLIGHT_FD fd is not sealed against shrinking (F_SEAL_SHRINK), so it could "
                "be cut under the mapping; pass the memfd GET_INFLIGHT_FD returned");
  }
  auto region = std::make_unique<InflightRegion>();
  // SAFETY: a shared mapping of a file at least mmap_offset + mmap_size long that cannot shrink
  // (both checked above); every access to it goes through InflightQueue's checks.
  region->map = PEPITA_TRY(Mapping::map(in.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(),
                                        static_cast<off_t>(in.mmap_offset), "inflight region"));
  region->fd = std::move(fd);
  region->num_queues = in.num_queues;
  region->queue_size = in.queue_size;
  // Refuse a region some queue of which we could not use (another version or queue size) now,
  // with the reason, rather than at that ring's start.
  const uint64_t bytes = inflight_queue_bytes(in.queue_size);
  for (uint16_t i = 0; i < in.num_queues; ++i) {
    auto q = InflightQueue::open(std::span(region->map.bytes() + bytes * i, bytes), in.queue_size);
    if (!q) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("SET_INFLIGHT_FD queue {}: {}", i, q.error().message()));
    }
  }
  inflight_ = std::move(region);
  return {};
}

Result<void> Backend::start_vring(Vring& vr) {
  if (!vr.kicked || !vr.addr_set || vr.num == 0 || !memory_) return {};
  const uint64_t n = vr.num;
  QueueLayout layout{
      .size = vr.num,
      .desc = PEPITA_TRY(memory_->uva_to_gpa(vr.addr.desc_user_addr, v::desc_table_bytes(vr.num))),
      .avail = PEPITA_TRY(memory_->uva_to_gpa(vr.addr.avail_user_addr, 6 + 2 * n)),
      .used = PEPITA_TRY(memory_->uva_to_gpa(vr.addr.used_user_addr, 6 + 8 * n))};
  QueueFeatures qf{.event_idx = (acked_features_ & v::feature_bit(v::F_RING_EVENT_IDX)) != 0,
                   .indirect = (acked_features_ & v::feature_bit(v::F_RING_INDIRECT_DESC)) != 0};
  Queue queue =
      PEPITA_TRY(Queue::activate(layout, *memory_, qf, vr.base, device_.max_queue_size()));
  // Everything that can fail comes before the region is consumed (recover, carried).
  const int efd = sys::eventfd(0, EFD_NONBLOCK);
  if (efd < 0) return fail_errno(efd, "eventfd");
  UniqueFd stop(efd);
  if (inflight_) {
    if (vr.index >= inflight_->num_queues || vr.num != inflight_->queue_size) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("inflight region covers {} queues of size {}; vring {} has size {}. "
                              "Get a region for this layout (GET_INFLIGHT_FD)",
                              inflight_->num_queues, inflight_->queue_size, vr.index, vr.num));
    }
    const uint64_t bytes = inflight_queue_bytes(vr.num);
    const auto slice = std::span(inflight_->map.bytes() + bytes * vr.index, bytes);
    auto region = PEPITA_TRY(InflightQueue::open(slice, vr.num));
    const uint16_t resubmit = PEPITA_TRY(queue.track_inflight(region, vr.recover, vr.carried));
    if (vr.recover && resubmit > 0) {
      std::fprintf(stderr, "vhost-user: vring %u resubmits %u requests left in flight\n", vr.index,
                   static_cast<unsigned>(resubmit));
    }
    vr.recover = false;
    vr.carried.clear();
  }
  vr.queue = std::move(queue);
  vr.stop = std::move(stop);
  vr.running = true;
  vr.thread = std::thread([this, &vr] { worker(vr); });
  return {};
}

void Backend::stop_vring(Vring& vr) noexcept {
  if (!vr.thread.joinable()) return;
  (void)sys::eventfd_signal(vr.stop.get());
  vr.thread.join();
  vr.running = false;
  vr.base = vr.queue.next_avail();
  vr.carried = vr.queue.take_unresubmitted();
}

void Backend::stop_all() noexcept {
  for (auto& vr : vrings_) stop_vring(*vr);
}

void Backend::worker(Vring& vr) noexcept {
  bool stop = false, kick = true;  // serve whatever is already available at start
  bool first = true;
  for (;;) {
    if (kick) {
      // Drain only after poll said readable: the frontend's eventfd may be blocking.
      if (!first) (void)sys::eventfd_drain(vr.kick.get());
      first = false;
      auto r = device_.process(static_cast<uint16_t>(vr.index), vr.queue);
      if (!r) {
        std::fprintf(stderr, "vhost-user: queue %u stopped: %s\n", vr.index,
                     r.error().to_string().c_str());
        // The ring is broken (the device set NEEDS_RESET, which GET_STATUS reports): tell the
        // frontend through the error eventfd, then wait for it to stop or reset us.
        if (vr.err) (void)sys::eventfd_signal(vr.err.get());
        for (;;) {
          bool a = false, b = false;
          if (poll2(vr.stop.get(), vr.stop.get(), -1, a, b) > 0) return;
        }
      }
      if (*r && vr.call) (void)sys::eventfd_signal(vr.call.get());
    }
    if (poll2(vr.stop.get(), vr.kick.get(), -1, stop, kick) < 0) continue;
    if (stop) return;
  }
}

}  // namespace pepita::virtio::vhost_user
