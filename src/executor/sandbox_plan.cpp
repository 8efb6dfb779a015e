// What the sandboxed spawn computes before it clones (docs/sandbox.md): the mount plan of the
// sandbox's root, with the contents of the /etc files it copies in. (Its seccomp program is core's:
// pepita/core/seccomp.hpp.)
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "detail/sandbox_spawn.hpp"

namespace pepita::executor::detail {
namespace {

// The system dirs bound read-only when present (a symlink such as /lib -> usr/lib is copied).
constexpr const char* kSystemDirs[] = {"/usr",    "/lib", "/lib32", "/lib64",
                                       "/libx32", "/bin", "/sbin"};
// What a program needs of /etc: name resolution, users, time zone. Never shadow or gshadow.
constexpr const char* kEtcFiles[] = {"/etc/ld.so.cache", "/etc/passwd",        "/etc/group",
                                     "/etc/hosts",       "/etc/nsswitch.conf", "/etc/resolv.conf",
                                     "/etc/localtime",   "/etc/host.conf",     "/etc/ld.so.conf"};
// Debian's update-alternatives links: /usr/lib/x86_64-linux-gnu/libblas.so.3 (what torch and
// numpy load), liblapack, editors... are links through here back into /usr; without it they dangle.
constexpr const char* kEtcDirs[] = {"/etc/alternatives"};
constexpr const char* kDevices[] = {"null", "zero", "full", "random", "urandom"};

// /etc files larger than this are bound rather than copied (ld.so.cache is ~60 KiB).
constexpr off_t kCopyLimit = 1 << 20;

// The contents of the /etc files, read once per process and again when a file changes (its
// inode, size, mtime or ctime): most tasks' plans share the same strings.
struct CachedFile {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = -1;
  timespec mtime{}, ctime{};
  std::shared_ptr<const std::string> data;
};
std::mutex g_etc_mu;
std::map<std::string, CachedFile, std::less<>> g_etc;

bool same(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// The contents of regular file `path` whose stat is `st`, or null when it cannot be read whole.
std::shared_ptr<const std::string> etc_contents(const std::string& path, const struct stat& st) {
  std::lock_guard lock(g_etc_mu);
  CachedFile& c = g_etc[path];
  if (c.data && c.dev == st.st_dev && c.ino == st.st_ino && c.size == st.st_size &&
      same(c.mtime, st.st_mtim) && same(c.ctime, st.st_ctim))
    return c.data;
  c = {};
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  auto text = std::make_shared<std::string>(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text->size()) {
    const ssize_t n = ::read(fd, text->data() + got, text->size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (got != text->size()) return nullptr;  // changed under us: bind it this time
  c = {st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim, std::move(text)};
  return c.data;
}

std::string canonical(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) return {};
  return buf;
}

bool under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

// mkdir -p of `dir` beneath /newroot (each prefix, the last included).
void mkdirs(std::vector<MountOp>& plan, const std::string& dir) {
  std::size_t pos = 1;
  while (pos <= dir.size()) {
    const std::size_t end = std::min(dir.find('/', pos), dir.size());
    plan.push_back({MountOp::Kind::Mkdir, "", "/newroot" + dir.substr(0, end), "", ""});
    pos = end + 1;
  }
}

void parent_dirs(std::vector<MountOp>& plan, const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) mkdirs(plan, path.substr(0, slash));
}

// A bind of host path `given` (canonicalized for the source) at `given` inside.
Result<void> add_bind(std::vector<MountOp>& plan, const std::string& given, bool writable,
                      std::string_view field) {
  if (given.empty() || given[0] != '/') {
    return fail(ErrorCode::InvalidArgument, std::string("sandbox ")
                                                .append(field)
                                                .append(" path '")
                                                .append(given)
                                                .append("' is not absolute: give the full path"));
  }
  const std::string source = canonical(given);
  struct stat st {};
  if (source.empty() || ::stat(source.c_str(), &st) != 0) {
    return fail(ErrorCode::InvalidArgument, std::string("sandbox ")
                                                .append(field)
                                                .append(" path '")
                                                .append(given)
                                                .append("' does not exist: ")
                                                .append(std::strerror(errno)));
  }
  if (S_ISDIR(st.st_mode)) {
    mkdirs(plan, given);
  } else {
    parent_dirs(plan, given);
    plan.push_back({MountOp::Kind::Touch, "", "/newroot" + given, "", ""});
  }
  plan.push_back({writable ? MountOp::Kind::BindRW : MountOp::Kind::BindRO, "/oldroot" + source,
                  "/newroot" + given, "",
                  std::string(writable ? "bind (writable) " : "bind ").append(given)});
  return {};
}

}  // namespace

Result<std::vector<MountOp>> sandbox_mount_plan(const task::SandboxPolicy& policy,
                                                const std::string& binary,
                                                const std::string& workdir) {
  std::vector<MountOp> plan;
  if (workdir.empty() || workdir[0] != '/' || canonical(workdir) == "/") {
    return fail(ErrorCode::InvalidArgument,
                std::string("sandbox work dir '")
                    .append(workdir)
                    .append("' must be an absolute directory other than '/': set the task's cwd"));
  }
  std::vector<std::string> bound;  // host dirs whose contents the sandbox already sees
  for (const char* dir : kSystemDirs) {
    struct stat st {};
    if (::lstat(dir, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char link[PATH_MAX];
      const ssize_t n = ::readlink(dir, link, sizeof link - 1);
      if (n <= 0) continue;
      plan.push_back({MountOp::Kind::Symlink, std::string(link, static_cast<std::size_t>(n)),
                      std::string("/newroot").append(dir), "", ""});
    } else if (S_ISDIR(st.st_mode)) {
      plan.push_back({MountOp::Kind::Mkdir, "", std::string("/newroot").append(dir), "", ""});
      plan.push_back({MountOp::Kind::BindRO, std::string("/oldroot").append(dir),
                      std::string("/newroot").append(dir), "", std::string("bind ").append(dir)});
      bound.emplace_back(dir);
    }
  }
  plan.push_back({MountOp::Kind::Mkdir, "", "/newroot/etc", "", ""});
  struct stat etc {};
  const bool etc_is_dir = ::lstat("/etc", &etc) == 0 && S_ISDIR(etc.st_mode);
  for (const char* file : kEtcFiles) {
    // A regular file in a real /etc is its own canonical path: one lstat instead of realpath's
    // readlink of every component and a stat (~20 syscalls a task fewer).
    std::string source;
    struct stat st {};
    if (etc_is_dir && ::lstat(file, &st) == 0 && S_ISREG(st.st_mode)) {
      source = file;
    } else {
      source = canonical(file);
      if (source.empty() || ::stat(source.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    }
    // A copy in the root's tmpfs, read-only with it: a file write instead of a mount to make
    // and to tear down at the end (nine of the root's ~20 mounts were these).
    if (st.st_size <= kCopyLimit) {
      if (auto data = etc_contents(source, st)) {
        MountOp op{MountOp::Kind::Copy, source, std::string("/newroot").append(file), "",
                   std::string("copy ").append(file)};
        op.data = std::move(data);
        op.mode = st.st_mode & 0777;
        plan.push_back(std::move(op));
        continue;
      }
    }
    plan.push_back({MountOp::Kind::Touch, "", std::string("/newroot").append(file), "", ""});
    plan.push_back({MountOp::Kind::BindRO, "/oldroot" + source,
                    std::string("/newroot").append(file), "", std::string("bind ").append(file)});
  }
  for (const char* dir : kEtcDirs) {
    struct stat st {};
    if (::lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    mkdirs(plan, dir);
    plan.push_back({MountOp::Kind::BindRO, std::string("/oldroot").append(dir),
                    std::string("/newroot").append(dir), "", std::string("bind ").append(dir)});
  }
  // /dev: a small tmpfs holding binds of the harmless devices and the usual links.
  plan.push_back({MountOp::Kind::Mkdir, "", "/newroot/dev", "", ""});
  plan.push_back({MountOp::Kind::Tmpfs, "", "/newroot/dev", "mode=0755,size=64k", "tmpfs /dev"});
  for (const char* dev : kDevices) {
    const std::string path = std::string("/dev/").append(dev);
    plan.push_back({MountOp::Kind::Touch, "", "/newroot" + path, "", ""});
    plan.push_back(
        {MountOp::Kind::BindRW, "/oldroot" + path, "/newroot" + path, "", "bind " + path});
  }
  plan.push_back({MountOp::Kind::Symlink, "/proc/self/fd", "/newroot/dev/fd", "", ""});
  plan.push_back({MountOp::Kind::Symlink, "/proc/self/fd/0", "/newroot/dev/stdin", "", ""});
  plan.push_back({MountOp::Kind::Symlink, "/proc/self/fd/1", "/newroot/dev/stdout", "", ""});
  plan.push_back({MountOp::Kind::Symlink, "/proc/self/fd/2", "/newroot/dev/stderr", "", ""});
  plan.push_back({MountOp::Kind::Mkdir, "", "/newroot/proc", "", ""});
  if (policy.pid_ns) {
    plan.push_back({MountOp::Kind::Proc, "proc", "/newroot/proc", "", "mount a fresh /proc"});
  } else {
    // A new proc needs a pid namespace of ours; without one the task sees the host's, read-only.
    plan.push_back({MountOp::Kind::BindRO, "/oldroot/proc", "/newroot/proc", "", "bind /proc"});
  }
  plan.push_back({MountOp::Kind::Mkdir, "", "/newroot/tmp", "", ""});
  plan.push_back({MountOp::Kind::Tmpfs, "", "/newroot/tmp", "mode=1777", "tmpfs /tmp"});

  const std::string bin = canonical(binary);
  if (!bin.empty() && std::none_of(bound.begin(), bound.end(),
                                   [&](const std::string& d) { return under(bin, d); })) {
    PEPITA_TRY(add_bind(plan, bin, false, "binary"));
  }
  for (const auto& path : policy.read_only) PEPITA_TRY(add_bind(plan, path, false, "read_only"));
  for (const auto& path : policy.writable) PEPITA_TRY(add_bind(plan, path, true, "writable"));
  if (policy.disk) {
    mkdirs(plan, workdir);
    plan.push_back({MountOp::Kind::Tmpfs, "", "/newroot" + workdir,
                    "mode=0755,size=" + std::to_string(*policy.disk), "tmpfs work dir " + workdir});
  } else {
    PEPITA_TRY(add_bind(plan, workdir, true, "work dir"));
  }
  return plan;
}

}  // namespace pepita::executor::detail
