#pragma once
// gcov counts of a forked test child that `make coverage` would otherwise lose: gcov writes them
// at exit, which a child ending in _exit or killed by a signal never reaches, and to the build
// dir, which a chrooted child cannot see. A child that still sees the build dir calls
// child_coverage_start() first and child_coverage_dump() before _exit (test::run_forked does).
// A jailed one uses ChildCoverage: in a coverage build run with PEPITA_COVERAGE_DUMPS=<dir>, it
// writes its counts into a directory it can still reach (inside its chroot, when it has one) laid
// out as GCOV_PREFIX writes them, and the parent copies that tree to
// $PEPITA_COVERAGE_DUMPS/<unique>/, which `make coverage` merges into the build dir with gcov-tool.
// Otherwise it does nothing.
//
//   test::ChildCoverage coverage(jail_dir);   // in the parent, before fork
//   ... child: coverage.started(); enter the jail, test, coverage.dump(); _exit(0) ...
//   waitpid(...); coverage.collect();           // in the parent
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

// libgcov's, linked in coverage builds only (cmake/PepitaWarnings.cmake; weak: null otherwise).
extern "C" void __gcov_dump(void) __attribute__((weak));   // writes the counts (reads GCOV_PREFIX)
extern "C" void __gcov_reset(void) __attribute__((weak));  // zeroes the counts

namespace pepita::test {

/// True in a coverage build.
inline bool coverage_build() noexcept { return __gcov_dump != nullptr && __gcov_reset != nullptr; }

/// In a forked child, first thing: drops the counts inherited from the parent, which the parent
/// writes itself, so that the child's dump holds only what the child ran.
inline void child_coverage_start() noexcept {
  if (coverage_build()) __gcov_reset();
}

/// In a forked child that still sees the build dir, before _exit: writes its counts there.
inline void child_coverage_dump() noexcept {
  if (coverage_build()) __gcov_dump();
}

class ChildCoverage {
 public:
  /// The name of the counts directory inside a jail: the child sees it as /<kJailName>.
  static constexpr const char* kJailName = ".pepita-coverage";

  /// `jail_root`: the directory the child will chroot to, if it does; its counts then go to
  /// <jail_root>/.pepita-coverage, which the jailed child sees as /.pepita-coverage. Without one
  /// they go to a temp dir of their own. Either is writable by any uid the child switches to.
  explicit ChildCoverage(const std::string& jail_root = {}) {
    if (!coverage_build()) return;
    const char* dumps = std::getenv("PEPITA_COVERAGE_DUMPS");
    if (dumps == nullptr || *dumps == '\0') return;
    dumps_ = dumps;
    std::error_code ec;
    if (!jail_root.empty()) {
      struct stat st {};
      if (::stat(jail_root.c_str(), &st) != 0) return;
      jail_dev_ = st.st_dev;
      jail_ino_ = st.st_ino;
      dir_ = jail_root + "/" + kJailName;
      if (!std::filesystem::create_directory(dir_, ec)) {
        dir_.clear();
        return;
      }
    } else {
      std::string tmpl =
          (std::filesystem::temp_directory_path() / "pepita-child-coverage-XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr) return;
      dir_ = tmpl;
    }
    ::chmod(dir_.c_str(), 01777);  // the child may run as another uid (nobody, a user namespace)
  }
  ~ChildCoverage() {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  ChildCoverage(const ChildCoverage&) = delete;
  ChildCoverage& operator=(const ChildCoverage&) = delete;

  /// In the child, first thing after fork: drops the counts inherited from the parent (which the
  /// parent writes itself), so that the child's dump holds only what the child ran.
  void started() const noexcept {
    if (!dir_.empty()) child_coverage_start();
  }

  /// In the child, before _exit and before any call that may kill it: writes its counts (once;
  /// a later dump or exit writes nothing more). Inside the jail when "/" is the jail root.
  void dump() const noexcept {
    if (dir_.empty()) return;
    struct stat root {};
    const bool jailed = jail_ino_ != 0 && ::stat("/", &root) == 0 && root.st_dev == jail_dev_ &&
                        root.st_ino == jail_ino_;
    const std::string prefix = jailed ? std::string("/") + kJailName : dir_;
    ::setenv("GCOV_PREFIX", prefix.c_str(), 1);
    ::setenv("GCOV_PREFIX_STRIP", "0", 1);  // absolute paths kept, as `make coverage` expects
    child_coverage_dump();
  }

  /// In the parent, once the child ended: copies what the child wrote to
  /// $PEPITA_COVERAGE_DUMPS/child-XXXXXX/. False only when that copy failed.
  bool collect() const {
    std::error_code ec;
    if (dir_.empty() || std::filesystem::is_empty(dir_, ec)) return true;
    std::string run = dumps_ + "/child-XXXXXX";
    std::filesystem::create_directories(dumps_, ec);
    if (::mkdtemp(run.data()) == nullptr) return false;
    std::filesystem::copy(dir_, run, std::filesystem::copy_options::recursive, ec);
    return !ec;
  }

 private:
  std::string dumps_;  // $PEPITA_COVERAGE_DUMPS
  std::string dir_;    // where the child writes, as the parent sees it; empty: inactive
  dev_t jail_dev_ = 0;
  ino_t jail_ino_ = 0;
};

}  // namespace pepita::test
