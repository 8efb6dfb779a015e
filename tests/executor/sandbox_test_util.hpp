#pragma once
// Helpers of the sandbox's tests (sandbox_test.cpp, sandbox_spawn_test.cpp): a work dir the
// sandbox's unprivileged id may write, and the host dirs the root may be built over.
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/temp_dir.hpp"

namespace pepita::executor::test {

// A work dir the sandbox's unprivileged id may write (mkdtemp makes it 0700 and ours).
class WorkDir {
 public:
  explicit WorkDir(const char* name) : dir_(name) {
    std::filesystem::permissions(dir_.path(), std::filesystem::perms::all);
  }
  const std::string& path() const { return dir_.path(); }
  std::string file(const std::string& name) const { return dir_.file(name); }

 private:
  pepita::test::TempDir dir_;
};

// The dirs the supervisor may build the root over (detail::sandbox_staging_dir) that this host
// has as real directories, in its order.
inline std::vector<std::string> staging_candidates() {
  std::vector<std::string> dirs;
  for (const char* d : {"/mnt", "/srv", "/opt", "/media", "/tmp", "/run", "/var"}) {
    struct stat st {};
    if (::lstat(d, &st) == 0 && S_ISDIR(st.st_mode)) dirs.emplace_back(d);
  }
  return dirs;
}

}  // namespace pepita::executor::test
