// vsock echo server and client for a pepita micro-VM (`pepita vm run --vsock PATH`). Server
// (the default): waits on guest port 1234 for the host (`CONNECT 1234\n` on PATH), echoes every
// byte back until the host shuts down sending, closes, and serves the next connection; input
// "once" serves one. Client (input "client"): connects to host port 5000 (the listener at
// PATH_5000), sends a greeting, prints the reply on stdout and closes. Exit code names the step
// that failed (0 = done).
#include "pepita_guest/runtime.hpp"
#include "pepita_guest/vsock.hpp"

namespace gv = pepita::guest::vsock;

namespace {

gv::Vsock g_vsock;
char g_buf[4096];

bool input_is(const char* word) {
  const auto in = pepita::guest::input();
  uint64_t n = 0;
  while (word[n] != 0) ++n;
  if (in.size < n) return false;
  for (uint64_t i = 0; i < n; ++i)
    if (in.data[i] != static_cast<unsigned char>(word[i])) return false;
  return true;
}

int client() {
  const int c = g_vsock.connect(5000);
  if (c < 0) return 3;
  static const char kHello[] = "hello from the guest\n";
  if (g_vsock.send(c, kHello, sizeof kHello - 1) < 0) return 4;
  const int64_t n = g_vsock.recv(c, g_buf, sizeof g_buf);
  if (n < 0) return 5;
  pepita::guest::print("reply: ");
  pepita::guest::write(1, g_buf, static_cast<uint64_t>(n));
  pepita::guest::print("\n");
  g_vsock.close(c);
  return 0;
}

int serve(bool once) {
  do {
    const int c = g_vsock.accept(1234);
    if (c < 0) return 6;
    uint64_t echoed = 0;
    for (;;) {
      const int64_t n = g_vsock.recv(c, g_buf, sizeof g_buf);
      if (n < 0) return 7;
      if (n == 0) break;  // the host shut down sending
      if (g_vsock.send(c, g_buf, static_cast<uint32_t>(n)) != n) return 8;
      echoed += static_cast<uint64_t>(n);
    }
    g_vsock.close(c);
    pepita::guest::print("echoed ");
    pepita::guest::print_u64(echoed);
    pepita::guest::print(" bytes\n");
    pepita::guest::flush();
  } while (!once);
  return 0;
}

}  // namespace

extern "C" int guest_main() {
  if (!g_vsock.init()) return 2;
  pepita::guest::print("vsock cid ");
  pepita::guest::print_u64(g_vsock.cid());
  pepita::guest::print("\n");
  if (input_is("client")) return client();
  return serve(input_is("once"));
}
