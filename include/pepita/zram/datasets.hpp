#pragma once
// Data sets for measuring a compressed RAM store (bench/zram and `pepita zram bench`): all zeros,
// a real text corpus (the system's C headers and licence texts), random bytes, and a realistic mix
// of zero pages, model-weight-like bf16 arrays, text and random pages. Deterministic for a size.

#include <cstddef>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::zram {

/// `name` is zeros, text, random, mixed, or a path to a file (read and repeated to `bytes`).
/// `bytes` is rounded up to whole 4 KiB pages. InvalidArgument for an unknown name, NotFound /
/// errno errors for an unreadable file.
Result<std::vector<std::byte>> make_dataset(std::string_view name, size_t bytes);

}  // namespace pepita::zram
