// The resource keys of job files (issue 22): `cpus`, `pin_cpus`, `memory`, `gpus`, `resources`,
// `pids` and `retry_on`, per task and in [defaults], read into task::ResourceRequest and
// task::RetryOn with every error at the value's file:line:column. Amounts and sizes go through
// task::parse_amount / parse_bytes / parse_retry_on, so job files and the C++ API agree.
#include <algorithm>
#include <cmath>
#include <optional>

#include "detail/job_toml.hpp"
#include "pepita/core/format.hpp"
#include "pepita/pool/job.hpp"

namespace pepita::pool::detail {
namespace {

// Upper bounds that catch typos (cpus = 20000000) without limiting real machines.
constexpr double kMaxCpus = 1 << 20;
constexpr double kMaxGpus = 4096;
constexpr std::int64_t kMaxPids = 4194304;  // the kernel's PID_MAX_LIMIT

std::optional<double> number(const toml::node& n) {
  if (const auto* i = n.as_integer()) return static_cast<double>(i->get());
  if (const auto* f = n.as_floating_point()) return f->get();
  return std::nullopt;
}

// `key = 2`, `key = 0.5` or `key = "2 * attempt"` (sizes: `"4G"`, `"4G * attempt"`, or a number
// of bytes).
Result<task::Amount> amount(const Ctx& ctx, const toml::node& n, std::string_view key, bool bytes,
                            std::string_view examples) {
  task::Amount a;
  if (const auto* s = n.as_string()) {
    auto parsed = task::parse_amount(s->get(), bytes);
    if (!parsed) return ctx.err(n, pepita::fmt("'{}': {}", key, parsed.error().message()));
    a = *parsed;
  } else if (auto v = number(n)) {
    a.value = *v;
  } else {
    return ctx.err(n, pepita::fmt("'{}' must be a number or a string, e.g. {}", key, examples));
  }
  if (!std::isfinite(a.value) || a.value < 0) {
    return ctx.err(n, pepita::fmt("'{}' must be 0 or more, e.g. {}", key, examples));
  }
  return a;
}

bool valid_resource_name(std::string_view name) {
  if (name.empty() || name.size() > 31) return false;
  if (name == "cpus" || name == "memory" || name == "gpus") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

Result<void> apply_cpus(const Ctx& ctx, const toml::node& v, ResourceSpec& spec) {
  const auto a = PEPITA_TRY(amount(ctx, v, "cpus", false, "cpus = 2, 0.5 or \"2 * attempt\""));
  if (a.value == 0) {
    return ctx.err(v, "'cpus' must be more than 0 (leave it out to request no CPUs)");
  }
  if (a.value > kMaxCpus) {
    return ctx.err(v, pepita::fmt("'cpus' = {} is more than any machine has", a.value));
  }
  spec.request.cpus = a.value;
  spec.request.cpus_growth = a.growth;
  return {};
}

Result<void> apply_memory(const Ctx& ctx, const toml::node& v, ResourceSpec& spec) {
  const auto a =
      PEPITA_TRY(amount(ctx, v, "memory", true, "memory = \"512M\", \"4G\" or \"4G * attempt\""));
  if (a.value < 1) {
    return ctx.err(v, "'memory' must be more than 0 bytes (leave it out for no limit)");
  }
  if (a.value >= 18446744073709551615.0) {
    return ctx.err(
        v, "'memory' is too large: a machine has less than 16 EiB; use at most \"16777215T\"");
  }
  spec.request.memory = static_cast<std::uint64_t>(a.value);
  spec.request.memory_growth = a.growth;
  return {};
}

// gpus = 1 / 0.5 / "1 * attempt" (a count) or ["0", "2"] (inventory ids; integers allowed).
Result<void> apply_gpus(const Ctx& ctx, const toml::node& v, ResourceSpec& spec) {
  if (const auto* arr = v.as_array()) {
    if (arr->empty()) {
      return ctx.err(v, "'gpus' must list at least one GPU id, e.g. gpus = [\"0\", \"2\"]");
    }
    std::vector<std::string> ids;
    for (const auto& el : *arr) {
      std::string id;
      if (const auto* s = el.as_string()) {
        id = s->get();
      } else if (const auto* i = el.as_integer(); i && i->get() >= 0) {
        id = std::to_string(i->get());
      } else {
        return ctx.err(el, "a GPU id must be a string or a non-negative integer, e.g. \"0\"");
      }
      if (id.empty() || id.find(',') != std::string::npos) {
        return ctx.err(el, pepita::fmt("GPU id '{}' must be non-empty and hold no comma", id));
      }
      if (std::find(ids.begin(), ids.end(), id) != ids.end()) {
        return ctx.err(el, pepita::fmt("GPU id '{}' is listed twice", id));
      }
      ids.push_back(std::move(id));
    }
    spec.request.gpu_ids = std::move(ids);
    spec.request.gpus = 0;
    spec.request.gpus_growth = task::Growth::Fixed;
    return {};
  }
  const auto a =
      PEPITA_TRY(amount(ctx, v, "gpus", false, "gpus = 1, 0.5, [\"0\", \"2\"] or \"1 * attempt\""));
  if (a.value > 1 && a.value != std::floor(a.value)) {
    return ctx.err(v, pepita::fmt("'gpus' = {}: above 1 only whole GPUs can be given; use a "
                                  "whole number, or a fraction below 1 to share one GPU",
                                  a.value));
  }
  if (a.value > kMaxGpus) {
    return ctx.err(v, pepita::fmt("'gpus' = {} is more than any machine has", a.value));
  }
  spec.request.gpus = a.value;
  spec.request.gpus_growth = a.growth;
  spec.request.gpu_ids.clear();
  return {};
}

// resources = { license = 1, ssd_gb = 100 }: named counts; 0 drops a name set in [defaults].
Result<void> apply_named(const Ctx& ctx, const toml::node& v, ResourceSpec& spec) {
  const auto* t = v.as_table();
  if (!t) {
    return ctx.err(v, "'resources' must be a table of counts, e.g. resources = { license = 1 }");
  }
  for (auto&& [k, value] : *t) {
    const std::string name(k.str());
    const auto& at = k.source().begin.line ? k.source() : value.source();
    if (!valid_resource_name(name)) {
      return ctx.err(at, pepita::fmt("resource name '{}' must be 1-31 of [a-z0-9_] and not "
                                     "cpus, memory or gpus (those have keys of their own)",
                                     name));
    }
    const auto count = number(value);
    if (!count || !std::isfinite(*count) || *count < 0) {
      return ctx.err(value, pepita::fmt("resource '{}' must be a count of 0 or more, e.g. {} = 1",
                                        name, name));
    }
    if (*count == 0) {
      spec.request.named.erase(name);
    } else {
      spec.request.named[name] = *count;
    }
    spec.where["resources." + name] = &value;
  }
  return {};
}

Result<void> apply_retry_on(const Ctx& ctx, const toml::node& v, ResourceSpec& spec) {
  const auto* arr = v.as_array();
  if (!arr) {
    return ctx.err(v, "'retry_on' must be an array, e.g. retry_on = [\"oom\", \"exit:137\"]");
  }
  std::vector<task::RetryOn> kinds;
  for (const auto& el : *arr) {
    const auto* s = el.as_string();
    if (!s) return ctx.err(el, "'retry_on' holds strings, e.g. \"oom\", \"timeout\", \"exit:137\"");
    auto kind = task::parse_retry_on(s->get());
    if (!kind) return ctx.err(el, "'retry_on': " + kind.error().message());
    if (std::find(kinds.begin(), kinds.end(), *kind) == kinds.end()) kinds.push_back(*kind);
  }
  spec.retry_on = std::move(kinds);
  spec.has_retry_on = true;
  return {};
}

}  // namespace

bool is_resource_key(std::string_view key) {
  return std::find(std::begin(kResourceKeys), std::end(kResourceKeys), key) !=
         std::end(kResourceKeys);
}

Result<void> apply_resource_key(const Ctx& ctx, std::string_view key, const toml::node& value,
                                ResourceSpec& spec) {
  if (key == "cpus") {
    PEPITA_TRY_VOID(apply_cpus(ctx, value, spec));
  } else if (key == "pin_cpus") {
    const auto* b = value.as_boolean();
    if (!b) return ctx.err(value, "'pin_cpus' must be true or false");
    spec.request.pin_cpus = b->get();
  } else if (key == "memory") {
    PEPITA_TRY_VOID(apply_memory(ctx, value, spec));
  } else if (key == "gpus") {
    PEPITA_TRY_VOID(apply_gpus(ctx, value, spec));
  } else if (key == "resources") {
    PEPITA_TRY_VOID(apply_named(ctx, value, spec));
  } else if (key == "pids") {
    const auto* i = value.as_integer();
    if (!i || i->get() < 1 || i->get() > kMaxPids) {
      return ctx.err(value, pepita::fmt("'pids' must be an integer from 1 to {}", kMaxPids));
    }
    spec.request.pids = static_cast<std::uint32_t>(i->get());
  } else if (key == "retry_on") {
    PEPITA_TRY_VOID(apply_retry_on(ctx, value, spec));
  } else {
    return ctx.err(value, pepita::fmt("'{}' is not a resource key", key));
  }
  spec.where[std::string(key)] = &value;
  return {};
}

Result<void> check_resources(const Ctx& ctx, const ResourceSpec& spec, const task::Backend& backend,
                             const std::string& task_name, const toml::node& fallback) {
  const auto at = [&](const char* key) -> const toml::node& {
    const auto it = spec.where.find(key);
    return it != spec.where.end() ? *it->second : fallback;
  };
  const task::ResourceRequest& r = spec.request;
  const bool fractional = r.cpus != std::floor(r.cpus);
  if (fractional && backend != task::Backend::Process && backend != task::Backend::Any) {
    return ctx.err(at("cpus"),
                   pepita::fmt("task '{}': cpus = {} on backend '{}', which cannot split a CPU "
                               "(a fraction is a CFS quota the local process executor applies): "
                               "use a whole number",
                               task_name, r.cpus, backend.name()));
  }
  if (r.pin_cpus && (r.cpus == 0 || fractional)) {
    return ctx.err(at("pin_cpus"),
                   pepita::fmt("task '{}': pin_cpus = true needs a whole number of cpus (it "
                               "owns whole cores), e.g. cpus = 2",
                               task_name));
  }
  if (auto ok = r.validate(); !ok) {
    return ctx.err(fallback, pepita::fmt("task '{}': {}", task_name, ok.error().message()));
  }
  return {};
}

}  // namespace pepita::pool::detail

namespace pepita::pool {

Result<void> Job::check_fit(const task::Inventory& host) const {
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const Task& t = tasks[i];
    const task::ResourceRequest& r = t.resources();
    if (r.empty() || !(t.backend().is_local() || t.backend() == task::Backend::Any)) continue;
    auto whole = host.can_ever_fit(r);
    if (whole) continue;
    // Point at the key that cannot be met: check each kind of resource on its own.
    std::vector<std::pair<std::string, task::ResourceRequest>> parts;
    task::ResourceRequest part;
    part.cpus = r.cpus;
    part.pin_cpus = r.pin_cpus;
    parts.emplace_back("cpus", part);
    part = {};
    part.memory = r.memory;
    parts.emplace_back("memory", part);
    part = {};
    part.gpus = r.gpus;
    part.gpu_ids = r.gpu_ids;
    parts.emplace_back("gpus", part);
    for (const auto& [resource, count] : r.named) {
      part = {};
      part.named[resource] = count;
      parts.emplace_back("resources." + resource, part);
    }
    static const std::map<std::string, std::string> kNowhere;
    const auto& at = i < resource_at.size() ? resource_at[i] : kNowhere;
    std::string where = file;
    std::string why = whole.error().message();
    for (const auto& [key, sub] : parts) {
      if (sub.empty()) continue;
      if (auto ok = host.can_ever_fit(sub); !ok) {
        if (auto it = at.find(key); it != at.end()) where = it->second;
        why = ok.error().message();
        break;
      }
    }
    if (where == file && !at.empty()) where = at.begin()->second;
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("{}: task '{}' can never run here: {} (this host: {}; pepita run "
                            "--resources overrides what was detected)",
                            where, t.name(), why, host.to_string()));
  }
  return {};
}

}  // namespace pepita::pool
