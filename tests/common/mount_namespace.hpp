#pragma once
// run_forked_in_own_mount_namespace: a forked child in a mount namespace of its own whose mounts
// are all private, where a test may mount over, bind onto or unmount what the system has
// (/sys, /etc, /proc, cgroup hierarchies) without any other process seeing it.

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>

#include "common/child.hpp"

namespace pepita::test {

/// run_forked, with `body` after unshare(CLONE_NEWNS) and every mount made private. Needs root.
inline std::optional<int> run_forked_in_own_mount_namespace(
    const std::function<void()>& body,
    std::chrono::milliseconds limit = std::chrono::seconds(120)) {
  return run_forked(
      [&] {
        ASSERT_EQ(::unshare(CLONE_NEWNS), 0) << std::strerror(errno);
        ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0)
            << std::strerror(errno);
        body();
      },
      limit);
}

}  // namespace pepita::test
