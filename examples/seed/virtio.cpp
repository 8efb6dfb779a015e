// The reference crate's virtio module example (virtio.rs) in C++: a vsock device for CID 3
// connects to the host (CID 2) port 1234. Here the device is pepita's real virtio-vsock, whose
// host side is Firecracker's: host port 1234 is the Unix socket listening at <uds_path>_1234,
// which this program opens first. Then bytes go both ways through the device's queues.
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "pepita/core/sys/socket.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/pepita.hpp"

namespace {
int fail(const char* what, const pepita::Error& e) {
  std::fprintf(stderr, "%s: %s\n", what, e.to_string().c_str());
  return 1;
}
}  // namespace

int main() {
  using namespace pepita::virtio;
  std::string dir = "/tmp/pepita-seed-vsock-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) {
    std::perror("mkdtemp in /tmp");
    return 1;
  }
  struct Cleanup {
    std::string path;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } cleanup{dir};
  const std::string uds_path = dir + "/vm.vsock";
  // The host application: listens on host port 1234.
  pepita::UniqueFd listener(pepita::sys::unix_listen(uds_path + "_1234", 4));
  if (!listener.valid()) {
    std::perror("listen on <uds_path>_1234");
    return 1;
  }

  // virtio.rs, as written there: create the vsock device (CID 3), connect to host port 1234.
  auto vsock = VirtioVsock::make(3, {.uds_path = uds_path});  // CID 3
  if (!vsock) return fail("VirtioVsock::make", vsock.error());
  if (auto a = (*vsock)->activate(); !a) return fail("activate", a.error());
  std::printf("vsock: cid %llu, ready %d\n", static_cast<unsigned long long>((*vsock)->cid()),
              (*vsock)->is_ready() ? 1 : 0);
  const VsockAddr addr = VsockAddr::make(2, 1234);  // Host CID 2, port 1234
  auto local = (*vsock)->connect(addr);
  if (!local) return fail("connect", local.error());
  const VsockConnection* conn = (*vsock)->connection(addr);
  std::printf("connected %llu:%u -> %llu:%u, host %d, connections %zu, credit %u\n",
              static_cast<unsigned long long>(local->cid), local->port,
              static_cast<unsigned long long>(addr.cid), addr.port, addr.is_host() ? 1 : 0,
              (*vsock)->connection_count(), conn->available_credit());

  // The host accepts; the guest sends, the host answers.
  pepita::UniqueFd host(pepita::sys::accept(listener.get()));
  if (!host.valid()) {
    std::perror("accept");
    return 1;
  }
  const std::string hello = "hello";
  auto sent = (*vsock)->send(addr, std::as_bytes(std::span(hello)));
  if (!sent) return fail("send", sent.error());
  char got[5] = {};
  const int64_t n = pepita::sys::recv_full(host.get(), got, sizeof got);
  std::printf("sent %zu bytes, host read %.*s\n", *sent, static_cast<int>(n), got);
  if (pepita::sys::send_all(host.get(), "world", 5) != 5) {
    std::perror("host send");
    return 1;
  }
  std::byte buf[16];
  size_t received = 0;
  for (int i = 0; i < 1000 && received == 0; ++i) {
    auto r = (*vsock)->recv(addr, buf);
    if (!r) return fail("recv", r.error());
    received = *r;
  }
  std::printf("received %zu bytes: %.*s, forward_count %u\n", received, static_cast<int>(received),
              reinterpret_cast<const char*>(buf), conn->forward_count());
  return 0;
}
