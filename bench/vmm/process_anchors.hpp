#pragma once
// The process-isolation anchors bench/vmm compares micro-VMs with: a cold fork+execve of a static
// binary, posix_spawn of it (glibc: clone(CLONE_VM|CLONE_VFORK), no page-table copy), a
// pre-forked fork server that runs the same work in a forked child (AFL's fork-server model), and
// peer processes for pipe round trips and pipe throughput.

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace pepita::bench::vmm {

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "bench_vmm: %s\n", what.c_str());
  std::exit(1);
}

// Reads `fd` to EOF.
inline std::string read_all(int fd) {
  std::string result;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
    result.append(buf, static_cast<size_t>(n));
  return result;
}

inline void reap(pid_t pid, const std::string& what) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die(what + " failed");
}

/// fork + execve of a static binary with stdin from `input_fd` (rewound), stdout captured.
inline std::string fork_exec(const std::string& path, int input_fd) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) die("pipe2");
  ::lseek(input_fd, 0, SEEK_SET);
  pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    ::dup2(input_fd, 0);
    ::dup2(out[1], 1);
    char* argv[] = {const_cast<char*>(path.c_str()), nullptr};
    char* envp[] = {nullptr};
    ::execve(path.c_str(), argv, envp);
    ::_exit(127);
  }
  ::close(out[1]);
  std::string result = read_all(out[0]);
  ::close(out[0]);
  reap(pid, path);
  return result;
}

/// posix_spawn of the same static binary, same stdin and stdout plumbing.
inline std::string spawn(const std::string& path, int input_fd) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) die("pipe2");
  ::lseek(input_fd, 0, SEEK_SET);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, input_fd, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  char* argv[] = {const_cast<char*>(path.c_str()), nullptr};
  char* envp[] = {nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, path.c_str(), &actions, nullptr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) die("posix_spawn " + path);
  ::close(out[1]);
  std::string result = read_all(out[0]);
  ::close(out[0]);
  reap(pid, path);
  return result;
}

/// A fork server: a small process forked once, before any timing (and before the bench maps
/// guests or snapshots, so it is as small as a real zygote). Each request() makes it fork a
/// child that runs `work(input_fd)` and writes the result; the server reaps the child and then
/// writes a NUL, so a request ends when the task's process is gone, as fork_exec's does.
class ForkServer {
 public:
  using Work = std::string (*)(int input_fd);

  ForkServer(Work work, int input_fd) {
    int req[2], res[2];
    if (::pipe2(req, O_CLOEXEC) != 0 || ::pipe2(res, O_CLOEXEC) != 0) die("pipe2");
    pid_ = ::fork();
    if (pid_ < 0) die("fork");
    if (pid_ == 0) {
      ::close(req[1]);
      ::close(res[0]);
      char c;
      while (::read(req[0], &c, 1) == 1) {
        const pid_t child = ::fork();
        if (child == 0) {
          const std::string out = work(input_fd);
          if (::write(res[1], out.data(), out.size()) != static_cast<ssize_t>(out.size()))
            ::_exit(1);
          ::_exit(0);
        }
        int status = 0;
        ::waitpid(child, &status, 0);
        const char end = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? '\0' : '\1';
        if (::write(res[1], &end, 1) != 1) ::_exit(1);
      }
      ::_exit(0);
    }
    ::close(req[0]);
    ::close(res[1]);
    req_ = req[1];
    res_ = res[0];
  }
  ~ForkServer() {
    ::close(req_);  // EOF: the server exits
    ::close(res_);
    ::waitpid(pid_, nullptr, 0);
  }
  ForkServer(const ForkServer&) = delete;
  ForkServer& operator=(const ForkServer&) = delete;

  std::string request() {
    if (::write(req_, "x", 1) != 1) die("fork server request");
    std::string out;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(res_, buf, sizeof buf);
      if (n <= 0) die("fork server died");
      out.append(buf, static_cast<size_t>(n));
      if (out.back() == '\0') break;
      if (out.back() == '\1') die("fork server task failed");
    }
    out.pop_back();
    return out;
  }

 private:
  pid_t pid_ = -1;
  int req_ = -1, res_ = -1;
};

/// A peer process on two pipes: echo mode sends every byte back (round trips); drain mode reads
/// `drain_bytes` and then answers one byte (one-way throughput, ended when all is consumed).
class PipePeer {
 public:
  explicit PipePeer(size_t drain_bytes = 0) {
    int to[2], from[2];
    if (::pipe2(to, O_CLOEXEC) != 0 || ::pipe2(from, O_CLOEXEC) != 0) die("pipe");
    pid_ = ::fork();
    if (pid_ < 0) die("fork");
    if (pid_ == 0) {
      ::close(to[1]);  // else the peer never sees EOF
      ::close(from[0]);
      static char buf[1 << 16];
      if (drain_bytes == 0) {
        char c;
        while (::read(to[0], &c, 1) == 1) (void)!::write(from[1], &c, 1);
      } else {
        for (;;) {
          size_t got = 0;
          while (got < drain_bytes) {
            const ssize_t n = ::read(to[0], buf, sizeof buf);
            if (n <= 0) ::_exit(0);
            got += static_cast<size_t>(n);
          }
          (void)!::write(from[1], "k", 1);
        }
      }
      ::_exit(0);
    }
    ::close(to[0]);
    ::close(from[1]);
    to_ = to[1];
    from_ = from[0];
  }
  ~PipePeer() {
    ::close(to_);
    ::close(from_);
    ::waitpid(pid_, nullptr, 0);
  }
  PipePeer(const PipePeer&) = delete;
  PipePeer& operator=(const PipePeer&) = delete;

  /// `rounds` one-byte round trips (echo mode).
  void ping(uint32_t rounds) {
    char c = 'x';
    for (uint32_t i = 0; i < rounds; ++i)
      if (::write(to_, &c, 1) != 1 || ::read(from_, &c, 1) != 1) die("ping");
  }
  /// Sends the peer's drain_bytes in `chunk`-byte writes and waits until it has read them all.
  void send(const char* chunk, size_t chunk_bytes, size_t total) {
    for (size_t sent = 0; sent < total; sent += chunk_bytes)
      if (::write(to_, chunk, chunk_bytes) != static_cast<ssize_t>(chunk_bytes)) die("send");
    char c;
    if (::read(from_, &c, 1) != 1) die("drain ack");
  }

 private:
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
};

}  // namespace pepita::bench::vmm
