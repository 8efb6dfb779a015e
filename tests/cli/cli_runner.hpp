#pragma once
// Runs the built pepita binary as a user would and captures its exit code and output.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pepita/core/unique_fd.hpp"

namespace pepita::test {

struct CliRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr interleaved
};

/// Runs `pepita <args>` through /bin/sh; args are passed verbatim, so quote them as for a shell.
/// `env` (e.g. "NAME=value ") is prepended to the command line.
inline CliRun run_pepita(const std::string& args, const std::string& env = "") {
  const std::string command = env + std::string(PEPITA_CLI_PATH) + " " + args + " 2>&1";
  CliRun run;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  std::array<char, 4096> buffer{};
  size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    run.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return run;
}

/// A prefix for run_pepita's `env` that runs pepita in a mount namespace of its own after the shell
/// command `setup` (e.g. "mount --bind /dev/null /dev/kvm"), so the host's mounts stay as they
/// were. Needs root and util-linux's unshare.
inline std::string in_mount_namespace(const std::string& setup) {
  // run_pepita appends the binary and its arguments: the shell runs them as "$0" "$@".
  return "unshare --mount --propagation private /bin/sh -c '" + setup + " && exec \"$0\" \"$@\"' ";
}

/// A loopback TCP port that another program holds (bound and listening) until destruction: what
/// an "address in use" test gives pepita. `address` ("127.0.0.1:PORT") is empty when it could not
/// be taken.
struct HeldLoopbackPort {
  HeldLoopbackPort() {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (!s.valid() || ::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(s.get(), 1) != 0 ||
        ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return;
    }
    fd = std::move(s);
    address = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  }

  UniqueFd fd;
  std::string address;
};

/// A fresh directory under the system temp directory, removed with its contents on destruction.
struct ScratchDir {
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pepita-cli-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  std::string operator/(const std::string& name) const { return (path / name).string(); }
  /// The names in the directory, sorted: what a command left behind.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(path, ec))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::filesystem::path path;
};

/// `pepita <args>` running in the background (no shell), stdout and stderr going to files.
class BackgroundPepita {
 public:
  BackgroundPepita(const std::vector<std::string>& args, const std::string& out_path,
                   const std::string& err_path)
      : out_path_(out_path), err_path_(err_path) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      const int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ::dup2(o, 1);
      ::dup2(e, 2);
      std::vector<std::string> copy(args);
      std::string exe = PEPITA_CLI_PATH;
      std::vector<char*> argv{exe.data()};
      for (auto& a : copy) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      ::_exit(127);
    }
  }
  ~BackgroundPepita() {
    if (pid_ > 0) kill_and_wait(SIGKILL);
  }
  BackgroundPepita(const BackgroundPepita&) = delete;
  BackgroundPepita& operator=(const BackgroundPepita&) = delete;

  /// Waits up to `limit` for stdout to hold `text`; false if it never did or the process ended.
  bool wait_for_stdout(const std::string& text,
                       std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (out().find(text) != std::string::npos) return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  /// Sends `sig`, reaps the process and returns its exit code (128 + signal when killed).
  int kill_and_wait(int sig) {
    if (pid_ > 0) {
      ::kill(pid_, sig);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      pid_ = -1;
    }
    return exit_code_;
  }
  std::string out() const { return slurp(out_path_); }
  std::string err() const { return slurp(err_path_); }

 private:
  static std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string out_path_, err_path_;
};

}  // namespace pepita::test
