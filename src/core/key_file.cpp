// Secret key files: owner-only mode, regular file, bounded size.
#include "pepita/core/key_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdio>

#include "pepita/core/sys/check.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita {

Result<std::string> read_key_file(const std::string& path, std::size_t min_bytes) {
  UniqueFd fd = PEPITA_TRY(
      sys::check_fd(sys::open(path.c_str(), O_RDONLY | O_NOFOLLOW), "open key file " + path));
  struct stat st {};
  PEPITA_TRY_VOID(sys::check_void(sys::fstat(fd.get(), &st), "stat key file " + path));
  if (!S_ISREG(st.st_mode)) {
    return fail(ErrorCode::InvalidArgument, "key file " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(ErrorCode::PermissionDenied,
                std::string("key file ")
                    .append(path)
                    .append(" has mode ")
                    .append(mode)
                    .append("; other users could read it. Run: chmod 600 ")
                    .append(path));
  }
  if (st.st_size > 4096) {
    return fail(ErrorCode::InvalidArgument,
                std::string("key file ").append(path).append(" is over 4 KiB; is it a key?"));
  }
  std::string key(static_cast<std::size_t>(st.st_size), '\0');
  const std::int64_t got = sys::read_full(fd.get(), key.data(), key.size());
  if (got < 0) return fail_errno(static_cast<int>(got), "read key file " + path);
  key.resize(static_cast<std::size_t>(got));
  while (!key.empty() &&
         (key.back() == '\n' || key.back() == '\r' || key.back() == ' ' || key.back() == '\t')) {
    key.pop_back();
  }
  if (key.size() < min_bytes) {
    return fail(ErrorCode::InvalidArgument,
                std::string("key file ")
                    .append(path)
                    .append(" holds ")
                    .append(std::to_string(key.size()))
                    .append(" bytes; a key needs at least ")
                    .append(std::to_string(min_bytes))
                    .append(" (make one: head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > ")
                    .append(path)
                    .append(")"));
  }
  return key;
}

}  // namespace pepita
