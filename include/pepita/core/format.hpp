#pragma once
// A minimal "{}" formatter for error messages (g++ 12 has no <format>): each "{}" in the pattern
// takes the next argument, streamed with operator<<. Not for hot paths. Every module builds its
// user-facing messages with it (moved here from blk_mq's private fmt.hpp).
//
//   return fail(ErrorCode::InvalidArgument,
//               pepita::fmt("queue depth {} is out of range; use 1..{}", depth, kMax));

#include <cstddef>
#include <sstream>
#include <string>
#include <string_view>

namespace pepita {
namespace format_detail {

inline void fmt_rest(std::ostringstream& out, std::string_view pattern) { out << pattern; }

template <typename First, typename... Rest>
void fmt_rest(std::ostringstream& out, std::string_view pattern, const First& first,
              const Rest&... rest) {
  const std::size_t hole = pattern.find("{}");
  if (hole == std::string_view::npos) {
    out << pattern;  // more arguments than holes: the extra ones are dropped
    return;
  }
  out << pattern.substr(0, hole) << first;
  fmt_rest(out, pattern.substr(hole + 2), rest...);
}

}  // namespace format_detail

/// Replaces each "{}" of `pattern` by the next argument (operator<<); holes without an argument
/// stay as "{}", arguments without a hole are dropped.
template <typename... Args>
std::string fmt(std::string_view pattern, const Args&... args) {
  std::ostringstream out;
  format_detail::fmt_rest(out, pattern, args...);
  return out.str();
}

}  // namespace pepita
