#pragma once
// Private to the task module: the small text helpers resources.cpp and inventory.cpp share
// (amounts as messages print them, decimal parsing without signs or exponents, name checks).

#include <optional>
#include <string>
#include <string_view>

#include "pepita/error.hpp"

namespace pepita::task::detail {

/// "2", "0.5", "1.25": whole numbers without a decimal point, others in their shortest form.
std::string format_amount(double value);
/// `s` without leading and trailing blanks (and a trailing newline).
std::string_view trim(std::string_view s);
/// A non-negative decimal ("2", "0.5", ".5"): digits and at most one '.'; nullopt otherwise
/// (signs, exponents, inf and nan are refused).
std::optional<double> parse_decimal(std::string_view s);
/// InvalidArgument unless `name` is a valid named resource: [a-z0-9_], 1..31 characters, not
/// cpus, memory or gpus.
Result<void> check_resource_name(std::string_view name);

}  // namespace pepita::task::detail
