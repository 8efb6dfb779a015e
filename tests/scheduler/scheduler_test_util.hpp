#pragma once
// Shared helpers for the scheduler tests: sanitizer-aware scaling of stress sizes.

namespace pepita::scheduler {

/// 1 in normal builds; 0 under ThreadSanitizer/AddressSanitizer, where every atomic is ~10x
/// slower and CI runs on 2 cores: tests pick smaller sizes then.
constexpr int test_scale() {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  return 0;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
  return 0;
#else
  return 1;
#endif
#else
  return 1;
#endif
}

}  // namespace pepita::scheduler
