// Resources (issue 22): parsing and validating requests, the amounts job files write, retry_on,
// and the Ledger that places requests on one host. Detecting a host's Inventory (sysfs, procfs,
// cgroups, nvidia-smi) is in inventory.cpp.
#include "pepita/task/resources.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "detail/resources_util.hpp"
#include "pepita/core/format.hpp"

namespace pepita::task {

namespace detail {

std::string format_amount(double value) {
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<long long>(value));
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc()) return "?";
  return std::string(buf, end);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

std::optional<double> parse_decimal(std::string_view s) {
  // Digits with at most one '.', at least one digit: no sign, exponent, inf or nan.
  if (s.empty()) return std::nullopt;
  int digits = 0;
  for (char c : s) {
    if (c >= '0' && c <= '9') {
      ++digits;
    } else if (c != '.') {
      return std::nullopt;
    }
  }
  if (digits == 0) return std::nullopt;
  // A second '.' ends from_chars' number (its grammar has one), so the end check refuses it.
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

Result<void> check_resource_name(std::string_view name) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("resources: named resource '{}' {}: use 1..31 characters of a-z, 0-9 "
                            "and '_' (e.g. license, ssd_gb)",
                            name, why));
  };
  if (name.empty()) return bad("is empty");
  if (name.size() > 31) return bad("is too long");
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return bad("holds a character that is not allowed");
    }
  }
  if (name == "cpus" || name == "memory" || name == "gpus") {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("resources: '{}' is not a named resource: set the {} field instead",
                            name, name));
  }
  return {};
}

}  // namespace detail

using detail::format_amount;
using detail::trim;

namespace {

constexpr double kEps = 1e-9;

bool is_whole(double v) { return std::fabs(v - std::round(v)) < kEps; }

// Snaps `v` to `target` when it is within rounding error of it (sums of fractions).
double snap(double v, double target) { return std::fabs(v - target) < kEps ? target : v; }

std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) {
    return std::numeric_limits<std::uint64_t>::max();
  }
  return a * b;
}

Result<void> check_amount(std::string_view field, double v) {
  if (!std::isfinite(v)) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("resources: {} = {} is not a finite number", field, v));
  }
  if (v < 0) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("resources: {} = {} is negative", field, format_amount(v)));
  }
  return {};
}

std::string growth_suffix(Growth g) { return g == Growth::PerAttempt ? "*attempt" : ""; }

}  // namespace

// ---- ResourceRequest ----

bool ResourceRequest::empty() const noexcept {
  return cpus == 0 && !pin_cpus && memory == 0 && gpus == 0 && gpu_ids.empty() && named.empty() &&
         pids == 0;
}

ResourceRequest ResourceRequest::at_attempt(std::uint32_t attempt) const {
  const std::uint32_t k = std::max<std::uint32_t>(attempt, 1);
  if (k == 1) return *this;
  ResourceRequest r = *this;
  if (cpus_growth == Growth::PerAttempt) r.cpus = cpus * k;
  if (memory_growth == Growth::PerAttempt) r.memory = saturating_mul(memory, k);
  if (gpus_growth == Growth::PerAttempt && gpu_ids.empty()) {
    r.gpus = gpus * k;
    // A share that grows past one GPU becomes whole GPUs (1.5 cannot be placed).
    if (r.gpus > 1 && !is_whole(r.gpus)) r.gpus = std::ceil(r.gpus);
  }
  return r;
}

Result<void> ResourceRequest::validate() const {
  PEPITA_TRY(check_amount("cpus", cpus));
  PEPITA_TRY(check_amount("gpus", gpus));
  if (pin_cpus) {
    if (cpus < 1 || !is_whole(cpus)) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("resources: cpus = {} with pin_cpus: pinned CPUs are whole cores; "
                              "ask for a whole number of at least 1",
                              format_amount(cpus)));
    }
  }
  if (gpus > 1 && !is_whole(gpus)) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("resources: gpus = {} is neither whole nor below 1: a fraction shares "
                            "one GPU (0.5); more than one GPU is a whole number (2)",
                            format_amount(gpus)));
  }
  for (std::size_t i = 0; i < gpu_ids.size(); ++i) {
    const std::string& id = gpu_ids[i];
    if (id.empty() || id.find(',') != std::string::npos || id.find('\0') != std::string::npos ||
        id.find('=') != std::string::npos || id.find(' ') != std::string::npos) {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("resources: gpu id '{}' is empty or holds ',', '=', ' ' or NUL", id));
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (gpu_ids[j] == id) {
        return fail(ErrorCode::InvalidArgument,
                    pepita::fmt("resources: gpu id '{}' is listed twice", id));
      }
    }
  }
  for (const auto& [name, amount] : named) {
    PEPITA_TRY(detail::check_resource_name(name));
    PEPITA_TRY(check_amount(name, amount));
  }
  return {};
}

std::string ResourceRequest::to_string() const {
  if (empty()) return "none";
  std::string out;
  auto item = [&](std::string text) {
    if (!out.empty()) out.push_back(' ');
    out.append(text);
  };
  if (cpus > 0 || pin_cpus) {
    item(std::string("cpus=").append(format_amount(cpus)).append(growth_suffix(cpus_growth)));
    if (pin_cpus) item("pinned");
  }
  if (memory > 0) {
    item(std::string("memory=").append(format_bytes(memory)).append(growth_suffix(memory_growth)));
  }
  if (!gpu_ids.empty()) {
    std::string ids;
    for (const auto& id : gpu_ids) ids.append(ids.empty() ? "" : ",").append(id);
    item(std::string("gpus=").append(ids));
  } else if (gpus > 0) {
    item(std::string("gpus=").append(format_amount(gpus)).append(growth_suffix(gpus_growth)));
  }
  for (const auto& [name, amount] : named) {
    item(std::string(name).append("=").append(format_amount(amount)));
  }
  if (pids > 0) item(std::string("pids=").append(std::to_string(pids)));
  return out;
}

// ---- sizes and amounts ----

Result<std::uint64_t> parse_bytes(std::string_view text) {
  const std::string_view t = trim(text);
  auto not_a_size = [&] {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("memory '{}' is not a size: use e.g. 512M, 4G, 1.5G (K, M, G, T are "
                            "powers of 1024; KB, MB, GB, TB of 1000)",
                            text));
  };
  if (!t.empty() && t.front() == '-') {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("memory '{}' is negative: use a size such as 512M or 4G", text));
  }
  std::size_t split = 0;
  while (split < t.size() && ((t[split] >= '0' && t[split] <= '9') || t[split] == '.')) ++split;
  const auto number = detail::parse_decimal(t.substr(0, split));
  if (!number) return not_a_size();
  std::string unit;
  for (char c : trim(t.substr(split))) {
    unit.push_back(static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c));
  }
  double mult = 0;
  if (unit.empty() || unit == "B") {
    mult = 1;
  } else {
    static constexpr std::string_view kPrefixes = "KMGT";
    const auto p = unit.size() <= 3 ? kPrefixes.find(unit[0]) : std::string_view::npos;
    const std::string rest = unit.substr(1);
    if (p != std::string_view::npos && (rest.empty() || rest == "I" || rest == "IB")) {
      mult = std::pow(1024.0, static_cast<double>(p + 1));
    } else if (p != std::string_view::npos && rest == "B") {
      mult = std::pow(1000.0, static_cast<double>(p + 1));
    } else {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("memory '{}' has an unknown unit '{}': use B, K, M, G or T (KiB, "
                              "MiB, ... are the same; KB, MB, GB, TB are powers of 1000)",
                              text, trim(t.substr(split))));
    }
  }
  const double bytes = std::round(*number * mult);
  if (bytes >= 18446744073709551615.0) {
    return fail(ErrorCode::InvalidArgument, pepita::fmt("memory '{}' is too large", text));
  }
  return static_cast<std::uint64_t>(bytes);
}

std::string format_bytes(std::uint64_t bytes) {
  static constexpr std::string_view kUnits = "KMGT";
  // The largest unit that shows the size exactly in a few digits ("1.5G", "1025K", "123");
  // when none does, two decimals of the largest unit ("23.54G").
  int largest = -1;  // the largest unit not above the size; -1: bytes
  for (int unit = static_cast<int>(kUnits.size()) - 1; unit >= 0; --unit) {
    if (bytes >= std::uint64_t{1} << (10 * (unit + 1))) {
      largest = unit;
      break;
    }
  }
  for (int unit = largest; unit >= -1; --unit) {
    const std::uint64_t divisor = unit < 0 ? 1 : std::uint64_t{1} << (10 * (unit + 1));
    const bool quarters = bytes % divisor == 0 || (divisor >= 4 && bytes % (divisor / 4) == 0);
    if (quarters && bytes / divisor < 10000) {
      std::string out = format_amount(static_cast<double>(bytes) / static_cast<double>(divisor));
      if (unit >= 0) out.push_back(kUnits[static_cast<std::size_t>(unit)]);
      return out;
    }
  }
  const std::uint64_t divisor = std::uint64_t{1} << (10 * (largest + 1));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(bytes) / static_cast<double>(divisor));
  std::string out = buf;
  while (out.back() == '0') out.pop_back();
  if (out.back() == '.') out.pop_back();
  if (largest >= 0) out.push_back(kUnits[static_cast<std::size_t>(largest)]);
  return out;
}

Result<Amount> parse_amount(std::string_view text, bool bytes) {
  std::string_view t = trim(text);
  Amount a;
  if (const auto star = t.find('*'); star != std::string_view::npos) {
    const std::string_view factor = trim(t.substr(star + 1));
    if (factor != "attempt") {
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("'{}': the only factor is 'attempt' (write e.g. \"4G * attempt\" "
                              "to grow with each retry)",
                              text));
    }
    a.growth = Growth::PerAttempt;
    t = trim(t.substr(0, star));
  }
  if (bytes) {
    a.value = static_cast<double>(PEPITA_TRY(parse_bytes(t)));
    return a;
  }
  if (!t.empty() && t.front() == '-') {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("'{}' is negative: use a count of 0 or more", text));
  }
  const auto v = detail::parse_decimal(t);
  if (!v) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("'{}' is not a number: use e.g. 2, 0.5 or \"2 * attempt\"", text));
  }
  a.value = *v;
  return a;
}

// ---- retry_on ----

Result<RetryOn> parse_retry_on(std::string_view text) {
  const std::string_view t = trim(text);
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("retry_on '{}' {}: use oom, timeout, exit, exit:<status>, signal, "
                            "signal:<number>, launch or any",
                            text, why));
  };
  const auto colon = t.find(':');
  const std::string_view word = t.substr(0, colon);
  int code = -1;
  if (colon != std::string_view::npos) {
    const std::string_view num = t.substr(colon + 1);
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), code);
    if (num.empty() || ec != std::errc() || p != num.data() + num.size()) {
      return bad("has a code that is not a number");
    }
    if (word == "exit" && (code < 0 || code > 255)) return bad("has an exit status outside 0..255");
    if (word == "signal" && (code < 1 || code > 64)) return bad("has a signal outside 1..64");
    if (word != "exit" && word != "signal") return bad("takes no code");
  }
  if (word == "oom") return RetryOn::oom();
  if (word == "timeout") return RetryOn::timeout();
  if (word == "exit") return RetryOn::exit(code);
  if (word == "signal") return RetryOn::signal(code);
  if (word == "launch") return RetryOn{RetryOn::Kind::Launch, -1};
  if (word == "any") return RetryOn{RetryOn::Kind::Any, -1};
  return bad("is not a failure kind");
}

std::string to_string(const RetryOn& r) {
  std::string out;
  switch (r.kind) {
    case RetryOn::Kind::Oom: return "oom";
    case RetryOn::Kind::Timeout: return "timeout";
    case RetryOn::Kind::Launch: return "launch";
    case RetryOn::Kind::Any: return "any";
    case RetryOn::Kind::Exit: out = "exit"; break;
    case RetryOn::Kind::Signal: out = "signal"; break;
  }
  if (r.code >= 0) out.append(":").append(std::to_string(r.code));
  return out;
}

// ---- Allocation ----

std::string Allocation::gpu_list() const {
  std::string out;
  for (const GpuShare& g : gpus) {
    if (!out.empty()) out.push_back(',');
    out.append(g.id);
  }
  return out;
}

// ---- Ledger ----

Ledger::Ledger(Inventory inventory) : inventory_(std::move(inventory)) {
  free_cpus_ = static_cast<double>(inventory_.cpus.size());
  core_taken_.assign(inventory_.cpus.size(), false);
  free_memory_ = inventory_.memory;
  for (const auto& id : inventory_.gpus) gpu_free_[id] = 1.0;
  named_free_ = inventory_.named;
}

namespace {

// Indexes (into inventory.cpus) of `n` free cores: the lowest of the first NUMA node that has
// n free, else the lowest free anywhere. Empty when fewer than n are free.
std::vector<std::size_t> pick_cores(const Inventory& inv, const std::vector<bool>& taken,
                                    std::size_t n) {
  std::vector<std::size_t> out;
  auto index_of = [&](unsigned core) -> std::optional<std::size_t> {
    auto it = std::lower_bound(inv.cpus.begin(), inv.cpus.end(), core);
    if (it == inv.cpus.end() || *it != core) return std::nullopt;
    return static_cast<std::size_t>(it - inv.cpus.begin());
  };
  for (const auto& [node, cores] : inv.numa) {
    out.clear();
    for (unsigned c : cores) {
      const auto i = index_of(c);
      if (i && !taken[*i]) out.push_back(*i);
      if (out.size() == n) return out;
    }
  }
  out.clear();
  for (std::size_t i = 0; i < taken.size() && out.size() < n; ++i) {
    if (!taken[i]) out.push_back(i);
  }
  if (out.size() < n) out.clear();
  return out;
}

// The GPUs for a request: (id, fraction) pairs, or nullopt when they are not free now.
std::optional<std::vector<GpuShare>> pick_gpus(const std::map<std::string, double>& free,
                                               const ResourceRequest& r) {
  std::vector<GpuShare> out;
  if (!r.gpu_ids.empty()) {
    for (const auto& id : r.gpu_ids) {
      auto it = free.find(id);
      if (it == free.end() || it->second < 1 - kEps) return std::nullopt;
      out.push_back({id, 1.0});
    }
    return out;
  }
  if (r.gpus <= 0) return out;
  if (r.gpus < 1 - kEps) {
    // Best fit: the id with the least room that still holds the share (packing).
    const std::string* best = nullptr;
    double best_room = 2;
    for (const auto& [id, room] : free) {
      if (room + kEps >= r.gpus && room < best_room) {
        best = &id;
        best_room = room;
      }
    }
    if (!best) return std::nullopt;
    out.push_back({*best, r.gpus});
    return out;
  }
  const auto n = static_cast<std::size_t>(std::llround(r.gpus));
  for (const auto& [id, room] : free) {
    if (out.size() == n) break;
    if (room >= 1 - kEps) out.push_back({id, 1.0});
  }
  if (out.size() < n) return std::nullopt;
  return out;
}

}  // namespace

std::optional<Allocation> Ledger::try_take(const ResourceRequest& request, std::uint32_t attempt) {
  const ResourceRequest r = request.at_attempt(attempt);
  if (r.cpus > free_cpus_ + kEps) return std::nullopt;
  if (r.memory > free_memory_) return std::nullopt;
  std::vector<std::size_t> cores;
  if (r.pin_cpus) {
    const auto n = static_cast<std::size_t>(std::llround(r.cpus));
    cores = pick_cores(inventory_, core_taken_, n);
    if (cores.size() != n) return std::nullopt;
  }
  for (const auto& [name, amount] : r.named) {
    if (amount <= 0) continue;
    auto it = named_free_.find(name);
    if (it == named_free_.end() || it->second + kEps < amount) return std::nullopt;
  }
  auto gpus = pick_gpus(gpu_free_, r);
  if (!gpus) return std::nullopt;

  Allocation a;
  a.attempt = std::max<std::uint32_t>(attempt, 1);
  a.cpus = r.cpus;
  a.memory = r.memory;
  a.pids = r.pids;
  free_cpus_ = std::max(0.0, snap(free_cpus_ - r.cpus, 0));
  free_memory_ -= r.memory;
  for (std::size_t i : cores) {
    core_taken_[i] = true;
    a.cores.push_back(inventory_.cpus[i]);
  }
  for (const GpuShare& g : *gpus) {
    double& room = gpu_free_[g.id];
    room = std::max(0.0, snap(room - g.fraction, 0));
  }
  a.gpus = std::move(*gpus);
  for (const auto& [name, amount] : r.named) {
    if (amount <= 0) continue;
    double& room = named_free_[name];
    room = std::max(0.0, snap(room - amount, 0));
    a.named[name] = amount;
  }
  ++outstanding_;
  return a;
}

void Ledger::give_back(const Allocation& a) {
  if (outstanding_ > 0) --outstanding_;
  if (outstanding_ == 0) {
    // Everything is back: restore the totals exactly (no rounding error left behind).
    *this = Ledger(std::move(inventory_));
    return;
  }
  const double total_cpus = static_cast<double>(inventory_.cpus.size());
  free_cpus_ = std::min(total_cpus, snap(free_cpus_ + a.cpus, total_cpus));
  free_memory_ = std::min(inventory_.memory, free_memory_ + a.memory);
  for (unsigned core : a.cores) {
    auto it = std::lower_bound(inventory_.cpus.begin(), inventory_.cpus.end(), core);
    if (it != inventory_.cpus.end() && *it == core) {
      core_taken_[static_cast<std::size_t>(it - inventory_.cpus.begin())] = false;
    }
  }
  for (const GpuShare& g : a.gpus) {
    auto it = gpu_free_.find(g.id);
    if (it != gpu_free_.end()) it->second = std::min(1.0, snap(it->second + g.fraction, 1.0));
  }
  for (const auto& [name, amount] : a.named) {
    auto it = named_free_.find(name);
    if (it == named_free_.end()) continue;
    const double total = inventory_.named.at(name);
    it->second = std::min(total, snap(it->second + amount, total));
  }
}

bool Ledger::competes(const ResourceRequest& request, std::uint32_t attempt,
                      const ResourceRequest& waiting, std::uint32_t waiting_attempt) const {
  const ResourceRequest r = request.at_attempt(attempt);
  const ResourceRequest w = waiting.at_attempt(waiting_attempt);
  // What `w` is short of now.
  bool cpus_short = w.cpus > free_cpus_ + kEps;
  if (!cpus_short && w.pin_cpus) {
    const auto n = static_cast<std::size_t>(std::llround(w.cpus));
    cpus_short = pick_cores(inventory_, core_taken_, n).size() != n;
  }
  if (cpus_short && r.cpus > 0) return true;
  if (w.memory > free_memory_ && r.memory > 0) return true;
  const bool r_gpus = r.gpus > 0 || !r.gpu_ids.empty();
  if (r_gpus && (w.gpus > 0 || !w.gpu_ids.empty()) && !pick_gpus(gpu_free_, w)) return true;
  for (const auto& [name, amount] : w.named) {
    auto mine = r.named.find(name);
    if (mine == r.named.end() || mine->second <= 0) continue;
    auto it = named_free_.find(name);
    if (it == named_free_.end() || it->second + kEps < amount) return true;
  }
  return false;
}

}  // namespace pepita::task
