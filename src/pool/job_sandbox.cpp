// The `sandbox` key of job files (issue 23): a level name or a table of the parts of
// task::SandboxPolicy, in a [[task]] or [defaults]. Every bad value is an error at its
// file:line:column; relative bind paths start at the job file's directory like other paths.
#include <cstdint>
#include <filesystem>
#include <string>

#include "detail/job_toml.hpp"
#include "pepita/core/format.hpp"
#include "pepita/pool/job.hpp"

namespace pepita::pool::detail {
namespace {

namespace fs = std::filesystem;
using task::SandboxLevel;
using task::SandboxNetwork;
using task::SandboxPolicy;

constexpr std::string_view kUsage =
    "sandbox = \"none\", \"standard\", \"strict\" or a table such as "
    "{ level = \"standard\", network = \"none\", disk = \"2G\" }";

Result<bool> get_bool(const Ctx& ctx, const toml::node& n, std::string_view key) {
  const auto* b = n.as_boolean();
  if (!b) return ctx.err(n, pepita::fmt("'sandbox.{}' must be true or false", key));
  return b->get();
}

Result<std::uint64_t> get_count(const Ctx& ctx, const toml::node& n, std::string_view key,
                                std::int64_t lo, std::int64_t hi, std::string_view what) {
  const auto* i = n.as_integer();
  if (!i || i->get() < lo || i->get() > hi) {
    return ctx.err(
        n, pepita::fmt("'sandbox.{}' must be an integer from {} to {} ({})", key, lo, hi, what));
  }
  return static_cast<std::uint64_t>(i->get());
}

Result<std::uint64_t> get_size(const Ctx& ctx, const toml::node& n, std::string_view key) {
  std::uint64_t bytes = 0;
  if (const auto* s = n.as_string()) {
    auto parsed = task::parse_bytes(s->get());
    if (!parsed) return ctx.err(n, pepita::fmt("'sandbox.{}': {}", key, parsed.error().message()));
    bytes = *parsed;
  } else if (const auto* i = n.as_integer(); i && i->get() >= 0) {
    bytes = static_cast<std::uint64_t>(i->get());
  } else {
    return ctx.err(n, pepita::fmt("'sandbox.{}' must be a size such as \"1G\" or \"512M\"", key));
  }
  if (bytes == 0) {
    return ctx.err(n, pepita::fmt("'sandbox.{}' must be more than 0 bytes", key));
  }
  return bytes;
}

Result<std::vector<std::string>> get_paths(
    const Ctx& ctx, const toml::node& n, std::string_view key, const std::string& job_dir,
    const std::vector<std::pair<std::string, std::string>>& vars) {
  const auto* arr = n.as_array();
  if (!arr) {
    return ctx.err(n, pepita::fmt("'sandbox.{}' must be an array of paths, e.g. [\"data/\"]", key));
  }
  std::vector<std::string> out;
  for (const auto& el : *arr) {
    const auto* s = el.as_string();
    if (!s || s->get().empty()) {
      return ctx.err(el, pepita::fmt("'sandbox.{}' holds paths: non-empty strings", key));
    }
    auto expanded = expand_variables(s->get(), vars);
    if (!expanded) return ctx.err(el, expanded.error().message());
    fs::path p(*expanded);
    if (p.is_relative()) p = fs::path(job_dir) / p;
    std::string clean = p.lexically_normal().string();
    if (clean.size() > 1 && clean.ends_with('/')) clean.pop_back();
    out.push_back(std::move(clean));
  }
  return out;
}

}  // namespace

bool sandbox_applies(const task::Backend& backend) {
  return backend == task::Backend::Process || backend == task::Backend::Remote ||
         backend == task::Backend::Any;
}

Result<task::SandboxPolicy> get_sandbox(
    const Ctx& ctx, const toml::node& value, const std::string& job_dir,
    const std::vector<std::pair<std::string, std::string>>& vars) {
  if (const auto* s = value.as_string()) {
    auto level = SandboxPolicy::parse(s->get());
    if (!level) return ctx.err(value, "'sandbox': " + level.error().message());
    return *level;
  }
  const auto* t = value.as_table();
  if (!t)
    return ctx.err(value, std::string("'sandbox' must be a level or a table: ").append(kUsage));

  SandboxPolicy p;
  if (const auto* lv = t->get("level")) {
    const auto* s = lv->as_string();
    if (!s) return ctx.err(*lv, "'sandbox.level' must be a string: none, standard or strict");
    auto level = SandboxPolicy::parse(s->get());
    if (!level) return ctx.err(*lv, "'sandbox.level': " + level.error().message());
    p = *level;
  }
  const SandboxPolicy base = p;
  const toml::node* needs_mount = nullptr;  // the first key that needs a mount namespace
  for (auto&& [k, v] : *t) {
    const std::string_view key = k.str();
    if (key == "level") continue;
    if (key == "user_ns") {
      p.user_ns = PEPITA_TRY(get_bool(ctx, v, key));
    } else if (key == "mount_ns") {
      p.mount_ns = PEPITA_TRY(get_bool(ctx, v, key));
    } else if (key == "pid_ns") {
      p.pid_ns = PEPITA_TRY(get_bool(ctx, v, key));
    } else if (key == "ipc_uts_ns") {
      p.ipc_uts_ns = PEPITA_TRY(get_bool(ctx, v, key));
    } else if (key == "no_new_privs") {
      p.no_new_privs = PEPITA_TRY(get_bool(ctx, v, key));
    } else if (key == "seccomp") {
      p.seccomp = PEPITA_TRY(get_bool(ctx, v, key));
    } else if (key == "network") {
      const auto* s = v.as_string();
      if (s && s->get() == "host") {
        p.network = SandboxNetwork::Host;
      } else if (s && s->get() == "none") {
        p.network = SandboxNetwork::None;
      } else {
        return ctx.err(v,
                       "'sandbox.network' must be \"host\" (the host's interfaces) or "
                       "\"none\" (a namespace with only loopback)");
      }
    } else if (key == "id") {
      p.id = static_cast<std::uint32_t>(PEPITA_TRY(
          get_count(ctx, v, key, 1, 4294967294LL, "the unprivileged uid and gid; not 0")));
    } else if (key == "disk") {
      p.disk = PEPITA_TRY(get_size(ctx, v, key));
      needs_mount = needs_mount ? needs_mount : &v;
    } else if (key == "read_only") {
      p.read_only = PEPITA_TRY(get_paths(ctx, v, key, job_dir, vars));
      if (!p.read_only.empty()) needs_mount = needs_mount ? needs_mount : &v;
    } else if (key == "writable") {
      p.writable = PEPITA_TRY(get_paths(ctx, v, key, job_dir, vars));
      if (!p.writable.empty()) needs_mount = needs_mount ? needs_mount : &v;
    } else if (key == "max_open_files") {
      p.max_open_files = PEPITA_TRY(get_count(ctx, v, key, 0, 1LL << 30, "0: inherited"));
    } else if (key == "max_file_size") {
      p.max_file_size = PEPITA_TRY(get_size(ctx, v, key));
    } else if (key == "max_processes") {
      p.max_processes = PEPITA_TRY(get_count(ctx, v, key, 0, 1LL << 22, "0: no limit"));
    } else {
      return ctx.err(k.source().begin.line ? k.source() : v.source(),
                     pepita::fmt("unknown key '{}' in sandbox; valid keys: level, user_ns, "
                                 "mount_ns, pid_ns, ipc_uts_ns, network, no_new_privs, seccomp, "
                                 "id, disk, read_only, writable, max_open_files, max_file_size, "
                                 "max_processes",
                                 key));
    }
  }
  // A level's own disk quota (strict) with its mount namespace turned off is as wrong as a
  // table's: point at the mount_ns that turned it off.
  if (!needs_mount && p.disk) needs_mount = t->get("mount_ns");
  if (needs_mount && !p.mount_ns) {
    return ctx.err(*needs_mount,
                   "'sandbox.disk', 'read_only' and 'writable' shape the task's own root, which "
                   "needs a mount namespace: start from level = \"standard\" or set mount_ns = "
                   "true");
  }
  // A table that changes what its level decides is a custom sandbox; one that only adds binds
  // keeps its level's name. Every part off is none.
  if (!p.same_parts_as(base)) {
    p.level = p.same_parts_as(SandboxPolicy::none()) ? SandboxLevel::None : SandboxLevel::Custom;
  }
  return p;
}

}  // namespace pepita::pool::detail
