#pragma once
// Reading files a task or a worker is still writing: the whole text, and a poll until a piece of
// text appears (live logs). The poll's limit only keeps a broken build from hanging; it is not a
// speed assertion (the machine may be loaded).
#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <thread>

namespace pepita::test {

/// The file's bytes; empty when it cannot be read (yet).
inline std::string read_file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

/// Polls `path` until it contains `needle`; false after two minutes.
inline bool wait_for_text(const std::string& path, std::string_view needle) {
  using namespace std::chrono_literals;
  const auto give_up = std::chrono::steady_clock::now() + 120s;
  while (std::chrono::steady_clock::now() < give_up) {
    if (read_file_text(path).find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

}  // namespace pepita::test
