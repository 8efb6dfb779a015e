// The hostile task of the sandbox's escape tests (tests/executor/sandbox_test.cpp): each mode
// tries one escape and says on stdout what happened. Exit 0: the escape worked (the test fails);
// 1: the kernel refused it (errno on stderr); a denied syscall never returns (the sandbox kills).
// Built as a plain executable outside the system dirs (.cc, so the test binary's glob skips it).
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

int refused(const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, std::strerror(errno));
  return 1;
}

int usage() {
  std::fprintf(stderr,
               "usage: sandbox_hostile read PATH | write PATH | list DIR | connect PORT | "
               "forkbomb N | ptrace | mount | init_module | setuid0 | kill PID | daemon TOKEN | "
               "netadmin | netstate | timewait\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string mode = argv[1];
  const char* arg = argc > 2 ? argv[2] : "";
  if (mode == "read") {
    const int fd = ::open(arg, O_RDONLY);
    if (fd < 0) return refused("open");
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) return refused("read");
    std::fwrite(buf, 1, static_cast<std::size_t>(n), stdout);
    return 0;
  }
  if (mode == "write") {
    const int fd = ::open(arg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return refused("open");
    if (::write(fd, "escaped\n", 8) != 8) return refused("write");
    std::printf("wrote %s\n", arg);
    return 0;
  }
  if (mode == "list") {
    DIR* d = ::opendir(arg);
    if (d == nullptr) return refused("opendir");
    while (dirent* e = ::readdir(d)) std::printf("%s\n", e->d_name);
    return 0;
  }
  if (mode == "connect") {
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return refused("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(arg)));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      return refused("connect");
    std::printf("connected\n");
    return 0;
  }
  if (mode == "netadmin") {
    // Changes to the network namespace the next task would inherit: loopback down, an address
    // on it, a route. Exit 0 if any of them worked.
    const int s = ::socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return refused("socket");
    int worked = 0;
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, "lo");
    if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return refused("SIOCGIFFLAGS");
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags & ~IFF_UP);
    if (::ioctl(s, SIOCSIFFLAGS, &ifr) == 0) {
      std::printf("loopback down\n");
      ++worked;
    } else {
      refused("loopback down");
    }
    ifreq addr_req{};
    std::strcpy(addr_req.ifr_name, "lo");
    auto* sin = reinterpret_cast<sockaddr_in*>(&addr_req.ifr_addr);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(0x0A090909);  // 10.9.9.9
    if (::ioctl(s, SIOCSIFADDR, &addr_req) == 0) {
      std::printf("address added\n");
      ++worked;
    } else {
      refused("add an address");
    }
    rtentry rt{};
    auto* dst = reinterpret_cast<sockaddr_in*>(&rt.rt_dst);
    dst->sin_family = AF_INET;
    dst->sin_addr.s_addr = htonl(0x0A000000);  // 10.0.0.0/8 via lo
    auto* mask = reinterpret_cast<sockaddr_in*>(&rt.rt_genmask);
    mask->sin_family = AF_INET;
    mask->sin_addr.s_addr = htonl(0xFF000000);
    char dev[] = "lo";
    rt.rt_dev = dev;
    rt.rt_flags = RTF_UP;
    if (::ioctl(s, SIOCADDRT, &rt) == 0) {
      std::printf("route added\n");
      ++worked;
    } else {
      refused("add a route");
    }
    return worked > 0 ? 0 : 1;
  }
  if (mode == "netstate") {
    // The network namespace as a task finds it: which one, loopback's flags and address.
    char ns[64] = {};
    if (::readlink("/proc/self/ns/net", ns, sizeof ns - 1) < 0) return refused("readlink");
    const int s = ::socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return refused("socket");
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, "lo");
    if (::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return refused("SIOCGIFFLAGS");
    const bool up = (ifr.ifr_flags & IFF_UP) != 0;
    if (::ioctl(s, SIOCGIFADDR, &ifr) != 0) return refused("SIOCGIFADDR");
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr)->sin_addr, text,
                sizeof text);
    // A route the last task added would send 10.x through loopback: expect no route to it.
    const int probe = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in far{};
    far.sin_family = AF_INET;
    far.sin_port = htons(9);
    far.sin_addr.s_addr = htonl(0x0A010101);
    const bool routed = ::connect(probe, reinterpret_cast<sockaddr*>(&far), sizeof far) == 0;
    std::printf("%s lo %s %s %s\n", ns, up ? "up" : "down", text, routed ? "routed" : "unrouted");
    return 0;
  }
  if (mode == "timewait") {
    // A TCP connection on loopback closed by its client first: the client's socket stays in
    // TIME_WAIT in the namespace after the task is gone.
    const int l = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(l, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(l, 1) != 0 ||
        ::getsockname(l, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      return refused("listen");
    const int c = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      return refused("connect");
    const int a = ::accept(l, nullptr, nullptr);
    if (a < 0) return refused("accept");
    ::close(c);  // the active close: c goes to TIME_WAIT
    char b;
    (void)::read(a, &b, 1);  // the FIN
    ::close(a);
    std::printf("left TIME_WAIT\n");
    return 0;
  }
  if (mode == "forkbomb") {
    const long n = std::atol(arg);
    long made = 0;
    for (; made < n; ++made) {
      const pid_t pid = ::fork();
      if (pid < 0) {
        std::printf("fork failed after %ld: %s\n", made, std::strerror(errno));
        std::fflush(stdout);
        return 3;
      }
      if (pid == 0) {
        ::pause();
        ::_exit(0);
      }
    }
    std::printf("forked %ld\n", made);
    return 0;
  }
  if (mode == "ptrace") {
    if (::ptrace(PTRACE_ATTACH, ::getppid(), nullptr, nullptr) != 0) return refused("ptrace");
    std::printf("attached to %d\n", ::getppid());
    return 0;
  }
  if (mode == "mount") {
    if (::mount("tmpfs", "/tmp", "tmpfs", 0, nullptr) != 0) return refused("mount");
    std::printf("mounted\n");
    return 0;
  }
  if (mode == "init_module") {
    if (::syscall(SYS_init_module, nullptr, 0, "") != 0) return refused("init_module");
    std::printf("loaded\n");
    return 0;
  }
  if (mode == "setuid0") {
    if (::setuid(0) != 0) return refused("setuid");
    std::printf("uid 0\n");
    return 0;
  }
  if (mode == "kill") {
    if (::kill(std::atoi(arg), SIGKILL) != 0) return refused("kill");
    std::printf("killed %s\n", arg);
    return 0;
  }
  if (mode == "daemon") {
    const pid_t pid = ::fork();
    if (pid < 0) return refused("fork");
    if (pid == 0) {
      ::setsid();
      char self[] = "/proc/self/exe";
      char linger[] = "linger";
      char* args[] = {argv[0], linger, argv[2], nullptr};
      ::execv(self, args);
      ::_exit(1);
    }
    std::printf("left %d\n", pid);
    return 0;
  }
  if (mode == "linger") {
    for (;;) ::pause();
  }
  return usage();
}
