#pragma once
// A minimal "{}" formatter for error messages (g++ 12 has no <format>): each "{}" in the pattern
// takes the next argument, streamed with operator<<. Not for hot paths.

#include <sstream>
#include <string>
#include <string_view>

namespace pepita::detail {

inline void fmt_rest(std::ostringstream& out, std::string_view pattern) { out << pattern; }

template <typename First, typename... Rest>
void fmt_rest(std::ostringstream& out, std::string_view pattern, const First& first,
              const Rest&... rest) {
  const size_t hole = pattern.find("{}");
  if (hole == std::string_view::npos) {
    out << pattern;
    return;
  }
  out << pattern.substr(0, hole) << first;
  fmt_rest(out, pattern.substr(hole + 2), rest...);
}

template <typename... Args>
std::string fmt(std::string_view pattern, const Args&... args) {
  std::ostringstream out;
  fmt_rest(out, pattern, args...);
  return out.str();
}

}  // namespace pepita::detail
