// virtio-vsock in a real KVM micro-VM: guest/vm_examples/vsock_echo drives the device through
// MMIO exits with the freestanding driver (guest/runtime/vsock_driver.cpp), a host thread plays
// Firecracker's host side. Skips (reason printed) without /dev/kvm; the device itself is proven
// host-side in tests/virtio/vsock_test.cpp.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "pepita/abi/virtio.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys/socket.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/vmm/vm.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

using test::load_guest;

std::string socket_path(const char* tag) {
  return pepita::fmt("/tmp/pepita-vmvsock-{}-{}", ::getpid(), tag);
}

// Reads until EOF or 10 s without data.
std::string read_all(int fd) {
  std::string out;
  char buf[8192];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) break;
    const long n = sys::recv(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string read_line(int fd) {
  std::string line;
  char c = 0;
  while (line.size() < 64) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1 || sys::recv(fd, &c, 1) != 1 || c == '\n') break;
    line += c;
  }
  return line;
}

TEST(VmVsock, GuestEchoServerEchoesAHostConnection) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("vsock_echo");
  VmConfig config;
  config.vsock_path = socket_path("echo");
  config.vsock_cid = 5;
  config.timeout = std::chrono::seconds(20);
  auto vm = Vm::create(image, config);
  ASSERT_TRUE(vm) << vm.error().to_string();
  std::string data(64 * 1024, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + 1);
  std::string ok, echoed;
  std::thread host([&] {
    UniqueFd s(sys::unix_connect(config.vsock_path));  // the listener exists since create()
    if (!s) return;
    if (sys::send_all(s.get(), "CONNECT 1234\n", 13) != 13) return;
    ok = read_line(s.get());
    if (sys::send_all(s.get(), data.data(), data.size()) != static_cast<int64_t>(data.size()))
      return;
    ::shutdown(s.get(), SHUT_WR);
    echoed = read_all(s.get());
  });
  auto r = vm->run(std::as_bytes(std::span(std::string_view("once"))));
  host.join();
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe() << "\n" << r->output;
  EXPECT_EQ(r->exit_code, 0) << r->output;
  EXPECT_EQ(r->output, "vsock cid 5\nechoed 65536 bytes\n");
  EXPECT_EQ(ok.rfind("OK ", 0), 0u) << ok;
  EXPECT_EQ(echoed.size(), data.size());
  EXPECT_TRUE(echoed == data) << "the echo differs";
  ASSERT_EQ(r->virtio.size(), 1u);
  EXPECT_EQ(r->virtio[0].device_id, abi::virtio::ID_VSOCK);
  EXPECT_EQ(r->virtio[0].status & abi::virtio::STATUS_NEEDS_RESET, 0) << r->virtio[0].last_error;
}

TEST(VmVsock, GuestClientReachesTheHostPortListener) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("vsock_echo");
  VmConfig config;
  config.vsock_path = socket_path("client");
  config.timeout = std::chrono::seconds(20);
  UniqueFd listener(sys::unix_listen(config.vsock_path + "_5000", 4));
  ASSERT_TRUE(listener.valid());
  auto vm = Vm::create(image, config);
  ASSERT_TRUE(vm) << vm.error().to_string();
  std::string greeting;
  std::thread host([&] {
    pollfd p{listener.get(), POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return;
    UniqueFd s(sys::accept(listener.get()));
    if (!s) return;
    greeting = read_line(s.get());
    (void)sys::send_all(s.get(), "hi guest", 8);
    (void)read_all(s.get());  // until the guest closes
  });
  auto r = vm->run(std::as_bytes(std::span(std::string_view("client"))));
  host.join();
  ::unlink((config.vsock_path + "_5000").c_str());
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_EQ(r->kind, ExitKind::Exited) << r->describe() << "\n" << r->output;
  EXPECT_EQ(r->exit_code, 0) << r->output;
  EXPECT_EQ(greeting, "hello from the guest");
  EXPECT_EQ(r->output, "vsock cid 3\nreply: hi guest\n");
}

}  // namespace
}  // namespace pepita::vmm
