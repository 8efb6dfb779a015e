#pragma once
// A fresh directory under the system temp dir (mkdtemp), removed with everything in it when the
// object goes; tests create their files in it with file(name).
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace pepita::test {

class TempDir {
 public:
  /// `prefix` names the directory ("pepita-<prefix>-XXXXXX"), so a leftover says which test made
  /// it.
  explicit TempDir(std::string_view prefix = "test") {
    std::string tmpl = (std::filesystem::temp_directory_path() /
                        std::string("pepita-").append(prefix).append("-XXXXXX"))
                           .string();
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = std::move(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  /// Empty when mkdtemp failed (the test's own file operations then fail, naming the path).
  const std::string& path() const noexcept { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace pepita::test
