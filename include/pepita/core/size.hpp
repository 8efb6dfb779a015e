#pragma once
// Byte sizes as users type them: "4096", "64M", "1G", "512MiB" (powers of 1024, the units of
// dd(1), truncate(1) and QEMU's -m). One parser for every size a pepita command or spec accepts.
//
//   uint64_t bytes = PEPITA_TRY(parse_size("64M"));  // 67108864
//   std::string text = format_size(bytes);            // "64M"

#include <cstdint>
#include <string>
#include <string_view>

#include "pepita/error.hpp"

namespace pepita {

/// A byte count with an optional K, M, G or T suffix (case-insensitive, powers of 1024; "iB" and
/// "B" accepted: "2k", "512MiB", "4096B"). InvalidArgument, naming the text and giving examples,
/// for anything else: an empty text, no digits, a sign or a fraction, an unknown suffix, zero, or a
/// value that does not fit in 64 bits.
Result<uint64_t> parse_size(std::string_view text);

/// The shortest text parse_size() reads back as `bytes`: the largest suffix that divides it
/// exactly ("1G", "1536K"), else the plain number ("4097"). format_size(0) is "0", which
/// parse_size() refuses.
std::string format_size(uint64_t bytes);

}  // namespace pepita
