// vmm::Jailer confines the calling process for good, so every case that enters runs in a forked
// child (single-threaded, as enter() requires), which writes what it saw, one line per check, on a
// pipe and ends with _exit; the parent asserts on those lines and on how the child ended.
#include "pepita/vmm/jailer.hpp"

#include <arpa/inet.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/child_coverage.hpp"
#include "common/require.hpp"
#include "common/temp_dir.hpp"
#include "pepita/core/cgroup.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::vmm {
namespace {

struct ChildRun {
  std::string lines;  // what the child reported
  int status = 0;     // its wait status
};

// What a child's body is given: say(line) appends a line to what the parent gets back;
// dump_coverage() writes the child's gcov counts now, before a call meant to kill it (they are
// written anyway when the body returns).
class Say {
 public:
  Say(int fd, const test::ChildCoverage& coverage) : fd_(fd), coverage_(coverage) {}
  void operator()(const std::string& line) const {
    const std::string text = line + "\n";
    (void)!::write(fd_, text.data(), text.size());
  }
  void dump_coverage() const { coverage_.dump(); }

 private:
  int fd_;
  const test::ChildCoverage& coverage_;
};

// Runs `body` in a forked child that ends with _exit. `jail_root`: the chroot the child enters, if
// any, so that its coverage counts reach `make coverage` from inside it (test::ChildCoverage).
ChildRun in_jailed_child(const std::string& jail_root,
                         const std::function<void(const Say&)>& body) {
  const test::ChildCoverage coverage(jail_root);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    coverage.started();
    ::close(fds[0]);
    const Say say(fds[1], coverage);
    body(say);
    coverage.dump();
    ::_exit(0);
  }
  ::close(fds[1]);
  ChildRun run;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) run.lines.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  ::waitpid(pid, &run.status, 0);
  EXPECT_TRUE(coverage.collect()) << "copying the child's coverage counts to PEPITA_COVERAGE_DUMPS";
  return run;
}

// A child that enters no chroot.
ChildRun in_child(const std::function<void(const Say&)>& body) { return in_jailed_child({}, body); }

bool has_line(const ChildRun& r, const std::string& line) {
  return r.lines.find(line + "\n") != std::string::npos;
}

std::uint64_t effective_caps() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) return ~0ull;
  return data[0].effective | (std::uint64_t{data[1].effective} << 32);
}

// A TCP listener on 127.0.0.1 of the host's network namespace; port() 0 when it failed.
class Listener {
 public:
  Listener() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::listen(fd_.get(), 4) == 0 &&
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port_ = ntohs(a.sin_port);
    }
  }
  std::uint16_t port() const { return port_; }

 private:
  UniqueFd fd_;
  std::uint16_t port_ = 0;
};

bool can_connect(std::uint16_t port) {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

// A chroot dir holding one file, reachable by uid 65534.
struct JailDir {
  test::TempDir dir{"jailer"};
  JailDir() {
    ::chmod(dir.path().c_str(), 0755);
    std::ofstream(dir.path() + "/inside.txt") << "in the jail";
  }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "<unreadable: " + std::string(std::strerror(errno)) + ">";
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(JailerConfig, MinimalAndProductionAreTheCratesValues) {
  const JailerConfig m = JailerConfig::minimal();
  EXPECT_EQ(m.chroot_dir, "/srv/jailer");
  EXPECT_EQ(m.uid, 65534u);
  EXPECT_EQ(m.gid, 65534u);
  EXPECT_TRUE(m.seccomp);
  EXPECT_TRUE(m.netns);
  EXPECT_EQ(m.memory_limit, std::uint64_t{256} << 20);
  EXPECT_FALSE(m.cpuset.has_value());
  const JailerConfig p = JailerConfig::production("/srv/jail/vm1");
  EXPECT_EQ(p.chroot_dir, "/srv/jail/vm1");
  EXPECT_EQ(p.uid, 65534u);
  EXPECT_TRUE(p.seccomp && p.netns);
  EXPECT_FALSE(p.memory_limit.has_value());
  const JailerConfig d{};
  EXPECT_FALSE(d.seccomp || d.netns || d.chroot_dir || d.uid || d.memory_limit);
}

TEST(Jailer, ExitOfAJailNeverEnteredIsOkAndItIsNotActive) {
  Jailer j(JailerConfig{});
  EXPECT_FALSE(j.is_active());
  EXPECT_TRUE(j.exit().has_value());
  EXPECT_FALSE(j.is_active());
}

TEST(Jailer, EnterConfinesRootToTheChrootNobodyNoNetworkNoCapabilitiesAndTheFilter) {
  PEPITA_REQUIRE_CAPABILITY(root);
  JailDir jail;
  Listener host;
  ASSERT_NE(host.port(), 0);
  ASSERT_TRUE(can_connect(host.port()));
  const ChildRun r = in_jailed_child(jail.dir.path(), [&](const auto& say) {
    Jailer j(JailerConfig::production(jail.dir.path()));
    auto ok = j.enter();
    say(ok ? "entered" : "enter failed: " + ok.error().message());
    if (!ok) return;
    say(j.is_active() ? "active" : "not active");
    say("inside: " + read_file("/inside.txt"));
    say(::access("/etc/passwd", F_OK) == 0 ? "host /etc visible" : "host /etc gone");
    say("uid " + std::to_string(::getuid()) + " gid " + std::to_string(::getgid()));
    say(effective_caps() == 0 ? "no capabilities" : "capabilities left");
    say(can_connect(host.port()) ? "reached the host" : "host unreachable");
    auto out = j.exit();
    say(out ? "exit ok" : "exit refused");
    say(j.is_active() ? "still active" : "left");
    say.dump_coverage();
    ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);  // denied: the filter kills the process
    say("ptrace survived");
  });
  EXPECT_TRUE(has_line(r, "entered")) << r.lines;
  EXPECT_TRUE(has_line(r, "active")) << r.lines;
  EXPECT_TRUE(has_line(r, "inside: in the jail")) << r.lines;
  EXPECT_TRUE(has_line(r, "host /etc gone")) << r.lines;
  EXPECT_TRUE(has_line(r, "uid 65534 gid 65534")) << r.lines;
  EXPECT_TRUE(has_line(r, "no capabilities")) << r.lines;
  EXPECT_TRUE(has_line(r, "host unreachable")) << r.lines;
  EXPECT_TRUE(has_line(r, "exit refused")) << r.lines;
  EXPECT_TRUE(has_line(r, "still active")) << r.lines;
  EXPECT_FALSE(has_line(r, "ptrace survived")) << r.lines;
  ASSERT_TRUE(WIFSIGNALED(r.status)) << "status " << r.status << "\n" << r.lines;
  EXPECT_EQ(WTERMSIG(r.status), SIGSYS) << r.lines;
}

TEST(Jailer, WithoutRootItEntersThroughAUserNamespaceKeepingItsOwnIds) {
  PEPITA_REQUIRE_CAPABILITY(root);  // to become an ordinary user first
  PEPITA_REQUIRE_CAPABILITY(userns);
  JailDir jail;
  const ChildRun r = in_jailed_child(jail.dir.path(), [&](const auto& say) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(4242, 4242, 4242) != 0 ||
        ::setresuid(4242, 4242, 4242) != 0) {
      say("could not drop to 4242");
      return;
    }
    JailerConfig c;
    c.chroot_dir = jail.dir.path();
    c.seccomp = true;
    c.netns = true;
    Jailer j(c);
    auto ok = j.enter();
    say(ok ? "entered" : "enter failed: " + ok.error().message());
    if (!ok) return;
    say("inside: " + read_file("/inside.txt"));
    say("uid " + std::to_string(::getuid()));
    say(effective_caps() == 0 ? "no capabilities" : "capabilities left");
    say.dump_coverage();
    say(::mount("none", "/", "tmpfs", 0, nullptr) == 0 ? "mounted" : "mount failed");
  });
  EXPECT_TRUE(has_line(r, "entered")) << r.lines;
  EXPECT_TRUE(has_line(r, "inside: in the jail")) << r.lines;
  EXPECT_TRUE(has_line(r, "uid 4242")) << r.lines;
  EXPECT_TRUE(has_line(r, "no capabilities")) << r.lines;
  EXPECT_FALSE(has_line(r, "mounted")) << r.lines;
  ASSERT_TRUE(WIFSIGNALED(r.status)) << r.lines;  // mount is on the deny list
  EXPECT_EQ(WTERMSIG(r.status), SIGSYS);
}

TEST(Jailer, AnotherUidWithoutRootIsPermissionDeniedAndNothingChanges) {
  PEPITA_REQUIRE_CAPABILITY(root);
  const ChildRun r = in_child([&](const auto& say) {
    if (::setresuid(4242, 4242, 4242) != 0) return say("could not drop to 4242");
    Jailer j(JailerConfig::production("/"));
    auto ok = j.enter();
    say(ok ? "entered" : std::string(to_string(ok.error().code())));
    say(j.is_active() ? "active" : "not active");
    say(::access("/etc/passwd", F_OK) == 0 ? "host /etc visible" : "host /etc gone");
  });
  EXPECT_TRUE(has_line(r, std::string(to_string(ErrorCode::PermissionDenied)))) << r.lines;
  EXPECT_TRUE(has_line(r, "not active")) << r.lines;
  EXPECT_TRUE(has_line(r, "host /etc visible")) << r.lines;
}

TEST(Jailer, AMultithreadedProcessIsRefusedBeforeAnythingChanges) {
  const ChildRun r = in_child([&](const auto& say) {
    int p[2];
    if (::pipe(p) != 0) return;
    std::thread waiter([&] {
      char c;
      (void)!::read(p[0], &c, 1);
    });
    Jailer j(JailerConfig::production("/"));
    auto ok = j.enter();
    say(ok ? "entered" : ok.error().message());
    say(j.is_active() ? "active" : "not active");
    say(::access("/etc/passwd", F_OK) == 0 ? "host /etc visible" : "host /etc gone");
    (void)!::write(p[1], "x", 1);
    waiter.join();
  });
  EXPECT_NE(r.lines.find("runs 2 threads"), std::string::npos) << r.lines;
  EXPECT_TRUE(has_line(r, "not active")) << r.lines;
  EXPECT_TRUE(has_line(r, "host /etc visible")) << r.lines;
}

TEST(Jailer, BadChrootAndCpusetAreRefusedBeforeAnythingChanges) {
  const ChildRun r = in_child([&](const auto& say) {
    JailerConfig missing;
    missing.chroot_dir = "/nonexistent/pepita-jail";
    Jailer a(missing);
    auto ok = a.enter();
    say(ok ? "entered" : ok.error().message());
    JailerConfig bad_cpus;
    bad_cpus.cpuset = "3-x";
    Jailer b(bad_cpus);
    ok = b.enter();
    say(ok ? "entered" : std::string(to_string(ok.error().code())));
    say(a.is_active() || b.is_active() ? "active" : "not active");
    say(::access("/etc/passwd", F_OK) == 0 ? "host /etc visible" : "host /etc gone");
  });
  EXPECT_NE(r.lines.find("chroot dir '/nonexistent/pepita-jail' is not a directory"),
            std::string::npos)
      << r.lines;
  EXPECT_TRUE(has_line(r, std::string(to_string(ErrorCode::InvalidArgument)))) << r.lines;
  EXPECT_TRUE(has_line(r, "not active")) << r.lines;
  EXPECT_TRUE(has_line(r, "host /etc visible")) << r.lines;
}

TEST(Jailer, EnteringTwiceIsAlreadyExistsAndTheFirstJailHolds) {
  PEPITA_REQUIRE_CAPABILITY(root);
  JailDir jail;
  const ChildRun r = in_jailed_child(jail.dir.path(), [&](const auto& say) {
    JailerConfig c;
    c.chroot_dir = jail.dir.path();
    Jailer j(c);
    auto ok = j.enter();
    say(ok ? "entered" : "enter failed: " + ok.error().message());
    if (!ok) return;
    auto again = j.enter();
    say(again ? "entered again" : std::string(to_string(again.error().code())));
    if (!again) say(again.error().message());
    say(j.is_active() ? "active" : "not active");
    say("inside: " + read_file("/inside.txt"));
  });
  EXPECT_TRUE(has_line(r, "entered")) << r.lines;
  EXPECT_TRUE(has_line(r, std::string(to_string(ErrorCode::AlreadyExists)))) << r.lines;
  EXPECT_NE(r.lines.find("jailer: this process is already jailed"), std::string::npos) << r.lines;
  EXPECT_TRUE(has_line(r, "active")) << r.lines;
  EXPECT_TRUE(has_line(r, "inside: in the jail")) << r.lines;
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.lines;
}

TEST(Jailer, ACpusetOfNoUsableCpuIsRefusedBeforeAnythingChanges) {
  const ChildRun r = in_child([&](const auto& say) {
    JailerConfig c;
    c.cpuset = "4000";  // past CPU_SETSIZE: the affinity mask would be empty
    c.chroot_dir = "/";
    Jailer j(c);
    auto ok = j.enter();
    say(ok ? "entered" : std::string(to_string(ok.error().code())));
    if (!ok) say(ok.error().message());
    say(j.is_active() ? "active" : "not active");
    char host[64] = {};
    ::gethostname(host, sizeof host - 1);
    say(std::string("hostname ") + host);
  });
  EXPECT_TRUE(has_line(r, std::string(to_string(ErrorCode::InvalidArgument)))) << r.lines;
  EXPECT_NE(r.lines.find("jailer: cpuset '4000': CPU 4000 is at or above CPU_SETSIZE"),
            std::string::npos)
      << r.lines;
  EXPECT_TRUE(has_line(r, "not active")) << r.lines;
  EXPECT_EQ(r.lines.find("hostname pepita-jail"), std::string::npos) << r.lines;  // no new UTS ns
}

// A cpu list mixing usable CPUs with one an affinity mask cannot hold (CPU_SETSIZE and above) is
// refused naming that CPU and the limit, before anything changes: it used to pin the process to
// the usable ones without a word.
TEST(Jailer, ACpuAtOrAboveCpuSetSizeIsRefusedNamingItAndTheLimit) {
  for (const std::string cpuset : {"0,5000", "0-1,1024"}) {
    SCOPED_TRACE(cpuset);
    const ChildRun r = in_child([&](const auto& say) {
      cpu_set_t before;
      CPU_ZERO(&before);
      ::sched_getaffinity(0, sizeof before, &before);
      JailerConfig c;
      c.cpuset = cpuset;
      Jailer j(c);
      auto ok = j.enter();
      say(ok ? "entered" : std::string(to_string(ok.error().code())));
      if (!ok) say(ok.error().message());
      say(j.is_active() ? "active" : "not active");
      cpu_set_t after;
      CPU_ZERO(&after);
      ::sched_getaffinity(0, sizeof after, &after);
      say(CPU_EQUAL(&before, &after) ? "affinity unchanged" : "affinity changed");
    });
    const std::string cpu = cpuset == "0,5000" ? "5000" : "1024";
    EXPECT_TRUE(has_line(r, std::string(to_string(ErrorCode::InvalidArgument)))) << r.lines;
    EXPECT_NE(r.lines.find("jailer: cpuset '" + cpuset + "': CPU " + cpu +
                           " is at or above CPU_SETSIZE (" + std::to_string(CPU_SETSIZE) + ")"),
              std::string::npos)
        << r.lines;
    EXPECT_NE(r.lines.find("name CPUs 0-" + std::to_string(CPU_SETSIZE - 1) + " only"),
              std::string::npos)
        << r.lines;
    EXPECT_TRUE(has_line(r, "not active")) << r.lines;
    EXPECT_TRUE(has_line(r, "affinity unchanged")) << r.lines;
    EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << r.lines;
  }
}

TEST(Jailer, CpusetPinsTheProcessAndMemoryLimitHoldsIt) {
  PEPITA_REQUIRE_CAPABILITY(root);
  PEPITA_REQUIRE_CAPABILITY(cgroup);
  const ChildRun r = in_child([&](const auto& say) {
    JailerConfig c;
    c.cpuset = "0";
    c.memory_limit = std::uint64_t{48} << 20;
    Jailer j(c);
    auto ok = j.enter();
    say(ok ? "entered" : "enter failed: " + ok.error().message());
    if (!ok) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    ::sched_getaffinity(0, sizeof set, &set);
    say("cpus " + std::to_string(CPU_COUNT(&set)) + (CPU_ISSET(0, &set) ? " with 0" : ""));
    say(read_file("/proc/self/cgroup").find("jailer-") != std::string::npos ? "in its cgroup"
                                                                            : "no cgroup");
    say.dump_coverage();
    // 128 MiB touched page by page: over the limit, the OOM killer ends the process.
    std::vector<char> big(std::size_t{128} << 20);
    for (std::size_t i = 0; i < big.size(); i += 4096) big[i] = 1;
    say("survived 128 MiB");
  });
  (void)reap_stale_cgroups();  // the child's jail cgroup, now empty
  EXPECT_TRUE(has_line(r, "entered")) << r.lines;
  EXPECT_TRUE(has_line(r, "cpus 1 with 0")) << r.lines;
  EXPECT_TRUE(has_line(r, "in its cgroup")) << r.lines;
  EXPECT_FALSE(has_line(r, "survived 128 MiB")) << r.lines;
  ASSERT_TRUE(WIFSIGNALED(r.status)) << r.lines;
  EXPECT_EQ(WTERMSIG(r.status), SIGKILL);
}

}  // namespace
}  // namespace pepita::vmm
