// Registry and BackendOptions: backend names to executor factories, and the typed reading of a
// backend's string settings (errors name the key, the value and the expected form).
#include "pepita/executor/registry.hpp"

#include <algorithm>
#include <charconv>

#include "pepita/core/size.hpp"
#include "pepita/executor/cpu.hpp"
#include "pepita/executor/process.hpp"
#include "pepita/executor/zero.hpp"

namespace pepita::executor {
namespace {

std::unexpected<Error> bad_value(std::string_view key, std::string_view value,
                                 std::string_view expected) {
  return fail(ErrorCode::InvalidArgument, std::string("backend setting ")
                                              .append(key)
                                              .append("='")
                                              .append(value)
                                              .append("': expected ")
                                              .append(expected));
}

// The leading decimal number of `text` (digits and at most one '.'), and the rest.
bool split_number(std::string_view text, double& number, std::string_view& unit) {
  std::size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  if (i == 0) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + i, number);
  if (ec != std::errc() || end != text.data() + i || number < 0) return false;
  unit = text.substr(i);
  return true;
}

std::string joined(const std::vector<Backend>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out.append(", ");
    out.append(n.name());
  }
  return out;
}

}  // namespace

BackendOptions& BackendOptions::set(std::string key, std::string value) {
  settings_.insert_or_assign(std::move(key), std::move(value));
  return *this;
}

Result<void> BackendOptions::set(std::string_view key_value) {
  const auto eq = key_value.find('=');
  if (eq == std::string_view::npos || eq == 0)
    return fail(ErrorCode::InvalidArgument, std::string("backend setting '")
                                                .append(key_value)
                                                .append("': expected key=value, e.g. memory=16M"));
  set(std::string(key_value.substr(0, eq)), std::string(key_value.substr(eq + 1)));
  return {};
}

bool BackendOptions::has(std::string_view key) const { return settings_.contains(key); }

std::optional<std::string> BackendOptions::get(std::string_view key) const {
  auto it = settings_.find(key);
  if (it == settings_.end()) return std::nullopt;
  return it->second;
}

std::string BackendOptions::string_or(std::string_view key, std::string fallback) const {
  auto v = get(key);
  return v ? std::move(*v) : std::move(fallback);
}

Result<std::uint64_t> BackendOptions::uint_or(std::string_view key, std::uint64_t fallback,
                                              std::uint64_t min, std::uint64_t max) const {
  auto v = get(key);
  if (!v) return fallback;
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  const std::string range = std::string("an integer in ")
                                .append(std::to_string(min))
                                .append("..")
                                .append(std::to_string(max));
  if (v->empty() || ec != std::errc() || end != v->data() + v->size() || n < min || n > max)
    return bad_value(key, *v, range);
  return n;
}

Result<bool> BackendOptions::bool_or(std::string_view key, bool fallback) const {
  auto v = get(key);
  if (!v) return fallback;
  if (*v == "true" || *v == "yes" || *v == "on" || *v == "1") return true;
  if (*v == "false" || *v == "no" || *v == "off" || *v == "0") return false;
  return bad_value(key, *v, "true or false");
}

Result<std::chrono::nanoseconds> BackendOptions::duration_or(
    std::string_view key, std::chrono::nanoseconds fallback) const {
  auto v = get(key);
  if (!v) return fallback;
  double number = 0;
  std::string_view unit;
  double scale = 0;
  if (split_number(*v, number, unit)) {
    if (unit.empty() || unit == "s") scale = 1e9;
    if (unit == "ms") scale = 1e6;
    if (unit == "m") scale = 60e9;
  }
  if (scale == 0 || number * scale > 1e18)
    return bad_value(key, *v, "a duration such as 250ms, 10s or 2m");
  return std::chrono::nanoseconds(static_cast<std::int64_t>(number * scale));
}

Result<std::uint64_t> BackendOptions::bytes_or(std::string_view key, std::uint64_t fallback) const {
  auto v = get(key);
  if (!v) return fallback;
  auto bytes = parse_size(*v);  // the one size parser: K/M/G/T, powers of 1024
  if (!bytes) return bad_value(key, *v, "a size such as 4096, 16M or 1G");
  return *bytes;
}

std::vector<std::string> BackendOptions::list(std::string_view key) const {
  std::vector<std::string> out;
  auto v = get(key);
  if (!v) return out;
  std::string_view rest = *v;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const auto item = rest.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

Result<void> BackendOptions::expect_only(std::initializer_list<std::string_view> known) const {
  std::string unknown;
  for (const auto& [key, value] : settings_) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    if (!unknown.empty()) unknown.append(", ");
    unknown.append(key);
  }
  if (unknown.empty()) return {};
  std::string valid;
  for (auto k : known) {
    if (!valid.empty()) valid.append(", ");
    valid.append(k);
  }
  return fail(ErrorCode::InvalidArgument, std::string("unknown backend setting ")
                                              .append(unknown)
                                              .append("; this backend takes: ")
                                              .append(valid.empty() ? std::string("none") : valid));
}

Result<void> Registry::add(Backend backend, BackendFactory make, std::string description) {
  if (contains(backend))
    return fail(ErrorCode::AlreadyExists,
                std::string("backend '").append(backend.name()).append("' is already registered"));
  if (!make)
    return fail(ErrorCode::InvalidArgument,
                std::string("backend '").append(backend.name()).append("': empty factory"));
  entries_.push_back({backend, std::move(make), std::move(description)});
  return {};
}

void Registry::replace(Backend backend, BackendFactory make, std::string description) {
  for (auto& e : entries_) {
    if (e.backend == backend) {
      e.make = std::move(make);
      e.description = std::move(description);
      return;
    }
  }
  entries_.push_back({backend, std::move(make), std::move(description)});
}

bool Registry::contains(const Backend& backend) const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [&](const Entry& e) { return e.backend == backend; });
}

std::vector<Backend> Registry::names() const {
  std::vector<Backend> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e.backend);
  return out;
}

std::string_view Registry::description(const Backend& backend) const {
  for (const auto& e : entries_)
    if (e.backend == backend) return e.description;
  return {};
}

Result<std::shared_ptr<Executor>> Registry::create(const Backend& backend,
                                                   const BackendOptions& options) const {
  const auto it = std::find_if(entries_.begin(), entries_.end(),
                               [&](const Entry& e) { return e.backend == backend; });
  if (it == entries_.end())
    return fail(ErrorCode::NotFound, std::string("no backend named '")
                                         .append(backend.name())
                                         .append("' is registered; registered backends: ")
                                         .append(joined(names())));
  const std::string context = std::string("backend '").append(backend.name()).append("'");
  auto made = it->make(options);
  if (!made) return std::unexpected(std::move(made.error().with_context(context)));
  if (!*made)
    return fail(ErrorCode::Internal, std::string(context).append(": the factory returned null"));
  if ((*made)->backend() != backend)
    return fail(ErrorCode::Internal, std::string(context)
                                         .append(": the factory built an executor for '")
                                         .append((*made)->backend().name())
                                         .append("'"));
  return made;
}

ExecutorFactory Registry::factory(const Backend& backend, BackendOptions options) const {
  // A copy of the entry, so the factory outlives the registry.
  Registry one;
  for (const auto& e : entries_)
    if (e.backend == backend) one.entries_.push_back(e);
  if (one.entries_.empty()) one.entries_ = entries_;  // create() reports NotFound with the list
  return [one = std::move(one), backend, options = std::move(options)] {
    return one.create(backend, options);
  };
}

Result<void> register_cpu(Registry& registry) {
  return registry.add(
      Backend::Cpu,
      [](const BackendOptions& o) -> Result<std::shared_ptr<Executor>> {
        PEPITA_TRY_VOID(o.expect_only({}));
        return PEPITA_TRY(CpuExecutor::create({.workers = static_cast<unsigned>(o.slots)}));
      },
      "functions on a work-stealing scheduler");
}

Result<void> register_process(Registry& registry) {
  return registry.add(
      Backend::Process,
      [](const BackendOptions& o) -> Result<std::shared_ptr<Executor>> {
        PEPITA_TRY_VOID(o.expect_only({"kill_grace"}));
        const auto grace = PEPITA_TRY(o.duration_or("kill_grace", std::chrono::seconds(2)));
        return PEPITA_TRY(ProcessExecutor::create({.slots = o.slots, .kill_grace = grace}));
      },
      "child processes (clone+exec, a cgroup per attempt)");
}

Result<void> register_zero(Registry& registry) {
  return registry.add(
      zero_backend(),
      [](const BackendOptions& o) -> Result<std::shared_ptr<Executor>> {
        PEPITA_TRY_VOID(o.expect_only({}));
        return PEPITA_TRY(ZeroExecutor::create({.slots = o.slots}));
      },
      "completes every task at once without running it (zero-worker mode: measures the rest)");
}

Result<void> register_builtins(Registry& registry) {
  PEPITA_TRY_VOID(register_cpu(registry));
  PEPITA_TRY_VOID(register_process(registry));
  return register_zero(registry);
}

}  // namespace pepita::executor
