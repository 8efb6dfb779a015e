#pragma once
// Helpers of the result cache's tests (pool/cache.hpp): the key's digests computed the long way
// ("pepita-cache-key 1"), and aging a file past the indexes' racy margin.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "detail/cache_index.hpp"
#include "pepita/core/sha256.hpp"

namespace pepita::pool::test_support {

/// SHA-256 of "<size>:<bytes>" of each part, as the key's list fields are made.
inline std::string digest_of_parts(const std::vector<std::string>& parts) {
  Sha256 h;
  for (const auto& p : parts) {
    h.update(std::to_string(p.size()));
    h.update(":");
    h.update(p);
  }
  return h.hex_digest();
}

/// Sets the file's times far back and waits out the index's racy margin (its ctime is now), so
/// that the cache records its hash.
inline void age(const std::string& path) {
  const struct timespec old[2] = {{1'600'000'000, 0}, {1'600'000'000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), old, 0), 0);
  ::usleep(static_cast<useconds_t>(detail::kRacyNs / 1000 + 100'000));
}

}  // namespace pepita::pool::test_support
