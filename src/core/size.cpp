// Byte-size parsing and formatting (size.hpp).
#include "pepita/core/size.hpp"

#include <cctype>
#include <charconv>

namespace pepita {

Result<uint64_t> parse_size(std::string_view text) {
  const auto bad = [&](const char* why) {
    return fail(ErrorCode::InvalidArgument,
                "bad size '" + std::string(text) + "': " + why + " (e.g. 4096, 64M, 1G)");
  };
  uint64_t value = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec == std::errc::result_out_of_range) return bad("too large");
  if (ec != std::errc{} || ptr == begin) return bad("expected a number");
  std::string suffix(ptr, end);
  for (char& c : suffix) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (suffix.ends_with("IB"))
    suffix.resize(suffix.size() - 2);
  else if (suffix.size() > 1 && suffix.ends_with("B"))
    suffix.resize(suffix.size() - 1);
  unsigned shift = 0;
  if (suffix.empty() || suffix == "B")
    shift = 0;
  else if (suffix == "K")
    shift = 10;
  else if (suffix == "M")
    shift = 20;
  else if (suffix == "G")
    shift = 30;
  else if (suffix == "T")
    shift = 40;
  else
    return bad("unknown suffix");
  if (value == 0) return bad("must be greater than zero");
  if (shift != 0 && value > (~uint64_t{0} >> shift)) return bad("too large");
  return value << shift;
}

std::string format_size(uint64_t bytes) {
  static constexpr struct {
    unsigned shift;
    char suffix;
  } kUnits[] = {{40, 'T'}, {30, 'G'}, {20, 'M'}, {10, 'K'}};
  for (const auto& unit : kUnits) {
    const uint64_t mask = (uint64_t{1} << unit.shift) - 1;
    if (bytes != 0 && (bytes & mask) == 0) return std::to_string(bytes >> unit.shift) + unit.suffix;
  }
  return std::to_string(bytes);
}

}  // namespace pepita
