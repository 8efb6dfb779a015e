// Job-file parsing and validation on toml++. Exceptions from toml++ stay inside this file.
#include "pepita/pool/job.hpp"

#include <fcntl.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <unordered_map>

#include "detail/job_toml.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/task/graph.hpp"

namespace pepita::pool {
namespace {

namespace fs = std::filesystem;
using Vars = std::vector<std::pair<std::string, std::string>>;

using detail::Ctx;

Result<void> check_keys(const Ctx& ctx, const toml::table& t, std::string_view section,
                        std::initializer_list<std::string_view> allowed) {
  for (auto&& [key, value] : t) {
    bool ok = false;
    for (auto a : allowed) ok = ok || key.str() == a;
    if (!ok) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      return ctx.err(key.source().begin.line ? key.source() : value.source(),
                     "unknown key '" + std::string(key.str()) + "' in " + std::string(section) +
                         "; valid keys: " + list);
    }
  }
  return {};
}

Result<std::int64_t> get_int(const Ctx& ctx, const toml::node& n, std::string_view key,
                             std::int64_t lo, std::int64_t hi) {
  const auto* v = n.as_integer();
  if (!v || v->get() < lo || v->get() > hi) {
    return ctx.err(n, pepita::fmt("'{}' must be an integer from {} to {}", key, lo, hi));
  }
  return v->get();
}

// Seconds as an integer or float, > 0 unless zero_ok.
Result<std::chrono::nanoseconds> get_seconds(const Ctx& ctx, const toml::node& n,
                                             std::string_view key) {
  double s = -1;
  if (const auto* i = n.as_integer()) s = static_cast<double>(i->get());
  if (const auto* f = n.as_floating_point()) s = f->get();
  if (!(s >= 0) || s > 1e7) {
    return ctx.err(
        n, pepita::fmt("'{}' must be a number of seconds from 0 to 10000000 (0 = none)", key));
  }
  return std::chrono::nanoseconds(static_cast<std::int64_t>(s * 1e9));
}

Result<std::string> get_string(const Ctx& ctx, const toml::node& n, std::string_view key,
                               const Vars& vars) {
  const auto* v = n.as_string();
  if (!v) return ctx.err(n, pepita::fmt("'{}' must be a string", key));
  auto expanded = expand_variables(v->get(), vars);
  if (!expanded) return ctx.err(n, expanded.error().message());
  return *expanded;
}

// A job file's tasks are commands, so every known backend but Cpu (in-process functions) is
// allowed: the built-ins, or the names the caller registered (JobOptions::backends).
Result<task::Backend> get_backend(const Ctx& ctx, const toml::node& n, const Vars& vars,
                                  const JobOptions& options) {
  const std::string name = PEPITA_TRY(get_string(ctx, n, "backend", vars));
  if (name == task::Backend::Any.name()) return task::Backend::Any;  // the pool picks: process
  auto backend = options.backends.empty() ? task::parse_backend(name)
                                          : task::parse_backend(name, options.backends);
  if (!backend) return ctx.err(n, backend.error().message());
  if (*backend == task::Backend::Cpu) {
    return ctx.err(n,
                   "backend 'cpu' runs in-process functions; a job file's tasks are commands: "
                   "use 'process'");
  }
  return *backend;
}

Result<std::vector<std::pair<std::string, const toml::node*>>> get_strings(const Ctx& ctx,
                                                                           const toml::node& n,
                                                                           std::string_view key,
                                                                           const Vars& vars) {
  const auto* arr = n.as_array();
  if (!arr) return ctx.err(n, pepita::fmt("'{}' must be an array of strings", key));
  std::vector<std::pair<std::string, const toml::node*>> out;
  for (const auto& el : *arr) {
    out.emplace_back(PEPITA_TRY(get_string(ctx, el, key, vars)), &el);
  }
  return out;
}

Result<std::map<std::string, std::string>> get_env(const Ctx& ctx, const toml::node& n,
                                                   const Vars& vars) {
  const auto* t = n.as_table();
  if (!t) return ctx.err(n, "'env' must be a table of strings, e.g. env = { LANG = \"C\" }");
  std::map<std::string, std::string> env;
  for (auto&& [k, v] : *t) {
    if (k.str().empty() || k.str().find('=') != std::string_view::npos) {
      return ctx.err(v, "environment variable name '" + std::string(k.str()) + "' is invalid");
    }
    env[std::string(k.str())] = PEPITA_TRY(get_string(ctx, v, "env." + std::string(k.str()), vars));
  }
  return env;
}

// ---- issue 21: crate priority levels and metadata in job files ----

// `priority = "high"` (a TaskPriority level) or an integer.
Result<std::int32_t> get_priority(const Ctx& ctx, const toml::node& n) {
  if (const auto* s = n.as_string()) {
    auto level = task::parse_task_priority(s->get());
    if (!level) return ctx.err(n, "'priority': " + level.error().message());
    return task::priority_value(*level);
  }
  return static_cast<std::int32_t>(PEPITA_TRY(get_int(ctx, n, "priority", -1000000, 1000000)));
}

// `metadata = { team = "ml" }`: string labels carried into results and the journal.
Result<std::map<std::string, std::string>> get_metadata(const Ctx& ctx, const toml::node& n,
                                                        const Vars& vars) {
  const auto* t = n.as_table();
  if (!t)
    return ctx.err(n, "'metadata' must be a table of strings, e.g. metadata = { team = \"ml\" }");
  std::map<std::string, std::string> out;
  for (auto&& [k, v] : *t) {
    out[std::string(k.str())] =
        PEPITA_TRY(get_string(ctx, v, "metadata." + std::string(k.str()), vars));
  }
  return out;
}

// Where `command` resolves: relative paths with a '/' against the job's directory, bare names
// through PATH. Empty when not found or not executable.
std::string resolve_command(const std::string& command, const std::string& job_dir) {
  if (command.find('/') != std::string::npos) {
    fs::path p(command);
    if (p.is_relative()) p = fs::path(job_dir) / p;
    return ::access(p.c_str(), X_OK) == 0 && !fs::is_directory(p) ? p.string() : std::string();
  }
  std::string found;
  return sys::find_executable(command, found) == 0 ? command : std::string();
}

// affinity = { cores = [0, 1] } or { numa_node = 0 }; the builder checks the machine has them.
Result<task::CpuAffinity> get_affinity(const Ctx& ctx, const toml::node& n) {
  const auto* t = n.as_table();
  const std::string_view usage = "'affinity' must be { cores = [0, 1] } or { numa_node = 0 }";
  if (!t || t->size() != 1) return ctx.err(n, std::string(usage));
  if (const auto* node = t->get("numa_node")) {
    return task::CpuAffinity::NumaNode(
        static_cast<int>(PEPITA_TRY(get_int(ctx, *node, "affinity.numa_node", 0, 4095))));
  }
  const auto* cores = t->get("cores");
  const auto* arr = cores ? cores->as_array() : nullptr;
  if (!arr) return ctx.err(n, std::string(usage));
  std::vector<unsigned> list;
  for (const auto& el : *arr) {
    list.push_back(static_cast<unsigned>(PEPITA_TRY(get_int(ctx, el, "affinity.cores", 0, 65535))));
  }
  return task::CpuAffinity::Cores(std::move(list));
}

// pipeline = [{ command = "seq", args = ["1", "9"] }, { command = "wc", args = ["-l"] }]: each
// stage a binary with its own command, args, env, cwd (and stdin, stage 0 only). `resolve`
// checks a stage's command the way a task's is checked.
template <typename Resolve>
Result<task::Builder> get_pipeline(const Ctx& ctx, const toml::node& n,
                                   const std::string& task_name, const Vars& vars,
                                   const std::string& job_dir, bool piped, Resolve&& resolve) {
  const auto* arr = n.as_array();
  if (!arr || arr->empty() || !arr->is_array_of_tables()) {
    return ctx.err(n, "task '" + task_name +
                          "': 'pipeline' must be a non-empty array of stages, e.g. pipeline = "
                          "[{ command = \"seq\", args = [\"9\"] }, { command = \"wc\" }]");
  }
  task::PipelineTask stages;
  stages.with_pipe_output(piped);
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const auto& st = *(*arr)[i].as_table();
    const std::string where =
        "pipeline stage " + std::to_string(i) + " of task '" + task_name + "'";
    PEPITA_TRY_VOID(check_keys(ctx, st, where, {"command", "args", "env", "cwd", "stdin"}));
    const auto* cmd = st.get("command");
    if (!cmd) return ctx.err(st, where + " has no 'command'");
    task::BinaryTask stage(PEPITA_TRY(resolve(*cmd, where + ": 'command'")));
    if (const auto* v = st.get("args")) {
      for (auto& [a, node] : PEPITA_TRY(get_strings(ctx, *v, "args", vars))) {
        stage.args.push_back(std::move(a));
      }
    }
    if (const auto* v = st.get("env")) stage.env = PEPITA_TRY(get_env(ctx, *v, vars));
    if (const auto* v = st.get("cwd")) {
      stage.cwd = PEPITA_TRY(get_string(ctx, *v, "cwd", vars));
      if (!stage.cwd.empty() && fs::path(stage.cwd).is_relative()) {
        stage.cwd = (fs::path(job_dir) / stage.cwd).string();
      }
    }
    if (const auto* v = st.get("stdin")) {
      if (i > 0) {
        return ctx.err(*v, where +
                               ": 'stdin' is for stage 0 only; later stages read the "
                               "previous stage's output");
      }
      stage.stdin_data = PEPITA_TRY(get_string(ctx, *v, "stdin", vars));
    }
    stages.add_stage(std::move(stage));
  }
  return task::Task::pipeline(std::move(stages));
}

// A remote task's resolved (absolute) files as paths relative to its cwd, where the worker stages
// them; a file outside that directory cannot be staged and is an error at the task's name.
Result<void> relative_to_cwd(const detail::Ctx& ctx, const std::string& name,
                             const detail::TaskFiles& files, std::vector<std::string>& paths) {
  const fs::path cwd = fs::path(files.cwd).lexically_normal();
  for (auto& p : paths) {
    const fs::path rel = fs::path(p).lexically_relative(cwd);
    if (rel.empty() || *rel.begin() == "..") {
      return ctx.err(*files.anchor,
                     pepita::fmt("task '{}' runs on a worker, but its file '{}' is outside its "
                                 "directory '{}': a remote task's files are staged into its "
                                 "directory on the worker, so declare them under its cwd (copy "
                                 "the file there with an earlier task)",
                                 name, p, cwd.string()));
    }
    p = rel.string();
  }
  return {};
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

Result<std::string> expand_variables(std::string_view text, const Vars& vars) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      const auto close = text.find('}', i + 2);
      if (close == std::string_view::npos) {
        return fail(ErrorCode::InvalidArgument,
                    "unterminated '${' in \"" + std::string(text) + "\"");
      }
      const std::string_view name = text.substr(i + 2, close - i - 2);
      bool found = false;
      if (name.starts_with("env:")) {
        const char* v = std::getenv(std::string(name.substr(4)).c_str());
        out += v ? v : "";
        found = true;
      }
      for (const auto& [k, v] : vars) {
        if (!found && k == name) {
          out += v;
          found = true;
        }
      }
      if (!found) {
        std::string known;
        for (const auto& [k, v] : vars) known += (known.empty() ? "" : ", ") + ("${" + k + "}");
        return fail(ErrorCode::InvalidArgument, "unknown variable '${" + std::string(name) +
                                                    "}'; known: " + known + ", ${env:NAME}");
      }
      i = close + 1;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

Pool::Builder Job::pool_builder() const {
  auto b = Pool::builder();
  b.cpu_workers(cpu_workers)
      .process_slots(process_slots)
      .kill_grace(kill_grace)
      .reserve_after(reserve_after)
      .retry_policy(retry);
  b.circuit_breaker(breaker);
  return b;
}

Result<Job> load_job(const std::string& path, const JobOptions& options) {
  const int fd = sys::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    return fail(ErrorCode::NotFound, "cannot read job file '" + path + "': " + std::strerror(-fd));
  }
  const UniqueFd file(fd);
  std::string text;
  char buf[65536];
  for (;;) {
    const int64_t n = sys::read_full(file.get(), buf, sizeof buf);
    if (n < 0) {
      return fail(ErrorCode::NotFound,
                  "cannot read job file '" + path + "': " + std::strerror(static_cast<int>(-n)));
    }
    text.append(buf, static_cast<std::size_t>(n));
    if (static_cast<std::size_t>(n) < sizeof buf) break;
  }
  return parse_job(text, path, options);
}

Result<Job> parse_job(std::string_view text, const std::string& file, const JobOptions& options) {
  const Ctx ctx(file);
  toml::table doc;
  try {
    doc = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    return ctx.err(e.source(), "syntax error: " + std::string(e.description()));
  }
  PEPITA_TRY_VOID(check_keys(ctx, doc, "the job file", {"job", "pool", "defaults", "task"}));

  Job job;
  job.file = file;
  const std::string job_dir = fs::absolute(fs::path(file)).parent_path().string();
  job.name = fs::path(file).stem().string();
  Vars vars{
      {"job_dir", job_dir}, {"pepita_dir", options.pepita_dir}, {"state_dir", options.state_dir}};

  if (const auto* n = doc.get("job")) {
    const auto* t = n->as_table();
    if (!t) return ctx.err(*n, "[job] must be a table");
    PEPITA_TRY_VOID(check_keys(ctx, *t, "[job]", {"name"}));
    if (const auto* nm = t->get("name")) {
      job.name = PEPITA_TRY(get_string(ctx, *nm, "name", vars));
      if (!valid_name(job.name)) {
        return ctx.err(*nm, "job name must be 1-200 of [A-Za-z0-9._-]");
      }
    }
  }

  std::int64_t default_retries = 0;
  job.journal = options.state_dir.empty() ? std::string() : options.state_dir + "/journal";
  if (const auto* n = doc.get("pool")) {
    const auto* t = n->as_table();
    if (!t) return ctx.err(*n, "[pool] must be a table");
    PEPITA_TRY_VOID(check_keys(
        ctx, *t, "[pool]",
        {"process_slots", "cpu_workers", "retries", "retry_delay", "retry_max_delay", "kill_grace",
         "reserve_after", "breaker_threshold", "breaker_cooldown", "journal"}));
    std::chrono::nanoseconds base{std::chrono::milliseconds(100)}, max{std::chrono::seconds(10)};
    for (auto&& [k, v] : *t) {
      const std::string key(k.str());
      if (key == "process_slots")
        job.process_slots = static_cast<std::size_t>(PEPITA_TRY(get_int(ctx, v, key, 1, 4096)));
      if (key == "cpu_workers")
        job.cpu_workers = static_cast<unsigned>(PEPITA_TRY(get_int(ctx, v, key, 1, 4096)));
      if (key == "retries") default_retries = PEPITA_TRY(get_int(ctx, v, key, 0, 1000));
      if (key == "retry_delay") base = PEPITA_TRY(get_seconds(ctx, v, key));
      if (key == "retry_max_delay") max = PEPITA_TRY(get_seconds(ctx, v, key));
      if (key == "kill_grace") job.kill_grace = PEPITA_TRY(get_seconds(ctx, v, key));
      if (key == "reserve_after") job.reserve_after = PEPITA_TRY(get_seconds(ctx, v, key));
      if (key == "breaker_threshold")
        job.breaker.failure_threshold =
            static_cast<std::uint32_t>(PEPITA_TRY(get_int(ctx, v, key, 1, 1000000)));
      if (key == "breaker_cooldown") job.breaker.cool_down = PEPITA_TRY(get_seconds(ctx, v, key));
      if (key == "journal") {
        job.journal = PEPITA_TRY(get_string(ctx, v, key, vars));
        if (!job.journal.empty() && fs::path(job.journal).is_relative()) {
          job.journal = (fs::path(job_dir) / job.journal).string();
        }
      }
    }
    job.retry.base_delay(base).max_delay(max);
  }
  job.retry.max_attempts(static_cast<std::uint32_t>(default_retries + 1));

  // [defaults]: values every task starts from.
  std::chrono::nanoseconds default_timeout{0};
  std::map<std::string, std::string> default_env;
  std::string default_cwd;
  task::Backend default_backend = task::Backend::Process;
  detail::ResourceSpec default_resources;  // issue 22: what every task asks for unless it says
  // issue 23: the sandbox of tasks that name none ([defaults], else `pepita run --sandbox`)
  task::SandboxPolicy default_sandbox = options.default_sandbox;
  if (const auto* n = doc.get("defaults")) {
    const auto* t = n->as_table();
    if (!t) return ctx.err(*n, "[defaults] must be a table");
    PEPITA_TRY_VOID(check_keys(ctx, *t, "[defaults]",
                               {"timeout", "env", "cwd", "backend", "cpus", "pin_cpus", "memory",
                                "gpus", "resources", "pids", "retry_on", "sandbox"}));
    if (const auto* v = t->get("backend"))
      default_backend = PEPITA_TRY(get_backend(ctx, *v, vars, options));
    if (const auto* v = t->get("timeout"))
      default_timeout = PEPITA_TRY(get_seconds(ctx, *v, "timeout"));
    if (const auto* v = t->get("env")) default_env = PEPITA_TRY(get_env(ctx, *v, vars));
    if (const auto* v = t->get("cwd")) default_cwd = PEPITA_TRY(get_string(ctx, *v, "cwd", vars));
    if (const auto* v = t->get("sandbox"))
      default_sandbox = PEPITA_TRY(detail::get_sandbox(ctx, *v, job_dir, vars));
    for (auto&& [k, v] : *t) {
      if (detail::is_resource_key(k.str())) {
        PEPITA_TRY_VOID(detail::apply_resource_key(ctx, k.str(), v, default_resources));
      }
    }
  }

  const auto* tasks_node = doc.get("task");
  if (!tasks_node) {
    return fail(ErrorCode::InvalidArgument,
                file + ": no tasks; add at least one [[task]] with a name and a command");
  }
  const auto* tasks = tasks_node->as_array();
  if (!tasks || !tasks->is_array_of_tables()) {
    return ctx.err(*tasks_node, "'task' must be an array of tables: write [[task]] sections");
  }

  // First pass: names (count-expanded) so dependencies can point forward.
  struct Raw {
    const toml::table* table;
    std::string name;
    std::int64_t index;  // -1 without count
  };
  std::vector<Raw> raws;
  // Issue 27: a count group's names ("base-0" .. "base-<count-1>") are not hashed one by one (a
  // million inserts were a fifth of the parse): a group is one entry, and "base-k" finds member
  // k. Two groups can share a name only when they share the base (an index is digits only), and
  // a single task named "base-k" is remembered under its base for the groups that follow.
  struct Group {
    std::size_t first;  // position of member 0 in raws
    std::int64_t count;
  };
  std::unordered_map<std::string, std::size_t> by_name;              // single tasks
  std::unordered_map<std::string, Group> groups;                     // count groups by base
  std::unordered_map<std::string, std::set<std::int64_t>> numbered;  // single "base-k": k by base
  // "base-k" as (base, k) when k reads as a count index: digits without a leading zero.
  const auto split_index =
      [](std::string_view name) -> std::optional<std::pair<std::string_view, std::int64_t>> {
    const auto dash = name.rfind('-');
    if (dash == std::string_view::npos) return std::nullopt;
    const std::string_view digits = name.substr(dash + 1);
    if (digits.empty() || digits.size() > 8 || (digits.size() > 1 && digits[0] == '0')) {
      return std::nullopt;
    }
    std::int64_t k = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      k = k * 10 + (c - '0');
    }
    return std::pair{name.substr(0, dash), k};
  };
  // The position of the task called `name`, if any.
  const auto find_task = [&](const std::string& name) -> std::optional<std::size_t> {
    if (auto it = by_name.find(name); it != by_name.end()) return it->second;
    if (auto split = split_index(name)) {
      auto g = groups.find(std::string(split->first));
      if (g != groups.end() && split->second < g->second.count) {
        return g->second.first + static_cast<std::size_t>(split->second);
      }
    }
    return std::nullopt;
  };
  for (const auto& el : *tasks) {
    const auto& t = *el.as_table();
    PEPITA_TRY_VOID(
        check_keys(ctx, t, "[[task]]",
                   {"name",       "command",     "args",     "env",       "cwd",      "stdin",
                    "deps",       "retries",     "timeout",  "deadline",  "priority", "backend",
                    "output_cap", "show_output", "count",    "clear_env", "pipeline", "pipe_output",
                    "affinity",   "metadata",    "cpus",     "pin_cpus",  "memory",   "gpus",
                    "resources",  "pids",        "retry_on", "sandbox",   "inputs",   "outputs"}));
    const auto* nm = t.get("name");
    if (!nm) return ctx.err(t, "[[task]] has no 'name'");
    const auto* nm_str = nm->as_string();
    if (!nm_str) return ctx.err(*nm, "'name' must be a string");
    std::int64_t count = -1;
    if (const auto* c = t.get("count"))
      count = PEPITA_TRY(get_int(ctx, *c, "count", 1, 10'000'000));
    const auto invalid = [&](const std::string& name) {
      return ctx.err(*nm, "task name '" + name + "' must be 1-200 of [A-Za-z0-9._-]");
    };
    const auto taken = [&](const std::string& name) {
      return ctx.err(*nm, "task name '" + name + "' is used twice; names must be unique");
    };
    if (count < 0) {
      std::string name(nm_str->get());
      if (!valid_name(name)) return invalid(name);
      if (find_task(name)) return taken(name);
      if (auto split = split_index(name)) numbered[std::string(split->first)].insert(split->second);
      by_name.emplace(name, raws.size());
      raws.push_back({&t, std::move(name), -1});
      continue;
    }
    // The first member whose name is invalid (past member 0 only its length can be: the first
    // index with one digit more), then the first one an earlier task has, in expansion order.
    const std::string prefix = nm_str->get() + "-";
    std::int64_t bad = valid_name(prefix + "0") ? count : 0;
    for (std::int64_t k = 1; bad == count && k < count; k *= 10) {
      if (!valid_name(prefix + std::to_string(k))) bad = k;
    }
    std::int64_t dup = count;
    const std::string base(nm_str->get());
    if (groups.contains(base)) {
      dup = 0;
    } else if (auto it = numbered.find(base); it != numbered.end()) {
      dup = std::min(count, *it->second.begin());
    }
    if (bad < count && bad <= dup) return invalid(prefix + std::to_string(bad));
    if (dup < count) return taken(prefix + std::to_string(dup));
    groups.emplace(base, Group{raws.size(), count});
    raws.reserve(raws.size() + static_cast<std::size_t>(count));  // one growth per group
    for (std::int64_t i = 0; i < count; ++i) {
      std::string name = prefix;
      name += std::to_string(i);
      raws.push_back({&t, std::move(name), i});
    }
  }

  // Second pass: build each task. Dependencies need ids, so build in file order and resolve
  // names to positions; the ids follow once every task is built. Issue 27: a task that can
  // have no dependency (no `deps`, no declared files) is built at once, in file order, so a
  // million-task job never holds a million builders next to a million tasks; the others keep
  // their builder until the dependency order is known.
  std::vector<std::vector<std::pair<std::size_t, const toml::node*>>> dep_index(raws.size());
  std::vector<std::unique_ptr<task::Builder>> builders(raws.size());
  std::vector<std::optional<Task>> built(raws.size());
  std::unordered_map<std::string, std::string> resolved_cache;
  // Issue 24: declared inputs and outputs, one entry per task once any task declares a file.
  std::vector<detail::TaskFiles> files;
  std::vector<char> staged(raws.size(), 0);  // remote and Slurm tasks: files staged to a worker
  job.resource_at.reserve(raws.size());
  job.show_output.reserve(raws.size());
  std::optional<std::string> here;  // the current directory, read once
  Vars vars_i = vars;               // with ${i}, its value set per task (not a copy per task)
  vars_i.emplace_back("i", std::string());
  for (std::size_t r = 0; r < raws.size(); ++r) {
    const auto& t = *raws[r].table;
    if (raws[r].index >= 0) vars_i.back().second = std::to_string(raws[r].index);
    const Vars& tv = raws[r].index >= 0 ? vars_i : vars;
    const auto* cmd = t.get("command");
    const auto* pipeline = t.get("pipeline");
    if (!cmd && !pipeline) {
      return ctx.err(t, "task '" + raws[r].name + "' has no 'command' (or 'pipeline')");
    }
    if (cmd && pipeline) {
      return ctx.err(*pipeline, "task '" + raws[r].name +
                                    "' has both 'command' and 'pipeline'; a task runs one of them");
    }
    // A GPU task's command names a kernel ("saxpy") or a .spv file, not an executable; the GPU
    // executor checks it (a relative .spv path still starts at the job file's directory). So
    // does a backend a program registered: what its command means is up to its executor.
    const auto* backend_node = t.get("backend");
    const task::Backend backend =
        backend_node ? PEPITA_TRY(get_backend(ctx, *backend_node, tv, options)) : default_backend;
    const bool runs_a_binary = backend == task::Backend::Process || backend == task::Backend::Any ||
                               backend == task::Backend::Remote ||
                               backend == task::Backend::MicroVm;
    auto resolve = [&](const toml::node& node, std::string_view what) -> Result<std::string> {
      std::string command = PEPITA_TRY(get_string(ctx, node, "command", tv));
      if (command.empty()) {
        return ctx.err(node, "task '" + raws[r].name + "': " + std::string(what) + " is empty");
      }
      if (options.check_binaries && runs_a_binary) {
        auto it = resolved_cache.find(command);
        if (it == resolved_cache.end())
          it = resolved_cache.emplace(command, resolve_command(command, job_dir)).first;
        if (it->second.empty()) {
          return ctx.err(node, "task '" + raws[r].name + "': command '" + command +
                                   "' not found or not executable" +
                                   (command.find('/') == std::string::npos
                                        ? " (searched PATH)"
                                        : " (relative paths start at the job file's directory)"));
        }
        return it->second;
      }
      // Relative: not starting at '/' (what fs::path::is_relative says, without a path per task).
      if (command.find('/') != std::string::npos && command.front() != '/') {
        command = (fs::path(job_dir) / command).string();
      }
      return command;
    };
    const auto* pipe_output = t.get("pipe_output");
    const bool piped =
        !pipe_output || !pipe_output->as_boolean() || pipe_output->as_boolean()->get();
    // Not `pipeline ? PEPITA_TRY(..) : ..`: leaving a statement expression early from one arm
    // of ?: lets g++ run the cleanup of the other arm's temporary, which was never constructed.
    Result<task::Builder> start = [&]() -> Result<task::Builder> {
      if (pipeline) return get_pipeline(ctx, *pipeline, raws[r].name, tv, job_dir, piped, resolve);
      return Task::binary(PEPITA_TRY(resolve(*cmd, "'command'")));
    }();
    if (!start) return std::unexpected(std::move(start).error());
    task::Builder b = std::move(*start);
    b.name(raws[r].name).backend(options.force_backend.value_or(backend));
    for (const auto& [k, v] : default_env) b.env(k, v);
    std::chrono::nanoseconds timeout = default_timeout;
    std::string cwd = default_cwd;
    std::optional<std::int64_t> retries;
    bool show = false;
    detail::ResourceSpec resources = default_resources;
    // The defaults' sandbox holds where a sandbox can: a GPU task in the same job runs without.
    task::SandboxPolicy sandbox =
        detail::sandbox_applies(backend) ? default_sandbox : task::SandboxPolicy::none();
    for (auto&& [k, v] : t) {
      // A view: each key is checked against ~25 names per task (a million times for count = 1M),
      // and a view compares sizes before bytes.
      const std::string_view key = k.str();
      if (detail::is_resource_key(key)) {
        PEPITA_TRY_VOID(detail::apply_resource_key(ctx, key, v, resources));
      } else if (key == "args") {
        if (pipeline) {
          return ctx.err(v, "task '" + raws[r].name +
                                "': 'args' belongs in each pipeline stage: pipeline = [{ command "
                                "= \"...\", args = [...] }, ...]");
        }
        for (auto& [a, node] : PEPITA_TRY(get_strings(ctx, v, key, tv))) b.arg(std::move(a));
      } else if (key == "env") {
        for (auto& [ek, ev] : PEPITA_TRY(get_env(ctx, v, tv))) b.env(ek, ev);
      } else if (key == "clear_env") {
        const auto* bv = v.as_boolean();
        if (!bv) return ctx.err(v, "'clear_env' must be true or false");
        if (bv->get()) b.clear_env();
      } else if (key == "cwd") {
        cwd = PEPITA_TRY(get_string(ctx, v, key, tv));
      } else if (key == "stdin") {
        b.stdin(PEPITA_TRY(get_string(ctx, v, key, tv)));
      } else if (key == "retries") {
        retries = PEPITA_TRY(get_int(ctx, v, key, 0, 1000));
      } else if (key == "timeout") {
        timeout = PEPITA_TRY(get_seconds(ctx, v, key));
      } else if (key == "deadline") {
        b.deadline(PEPITA_TRY(get_seconds(ctx, v, key)));
      } else if (key == "priority") {
        b.priority(PEPITA_TRY(get_priority(ctx, v)));
      } else if (key == "metadata") {
        for (auto& [mk, mv] : PEPITA_TRY(get_metadata(ctx, v, tv))) b.metadata(mk, mv);
      } else if (key == "output_cap") {
        b.output_cap(static_cast<std::size_t>(PEPITA_TRY(get_int(ctx, v, key, 1, 64 << 20))));
      } else if (key == "show_output") {
        const auto* bv = v.as_boolean();
        if (!bv) return ctx.err(v, "'show_output' must be true or false");
        show = bv->get();
      } else if (key == "pipe_output") {
        const auto* bv = v.as_boolean();
        if (!bv || !pipeline) {
          return ctx.err(v, "'pipe_output' must be true or false, on a task with a 'pipeline'");
        }
        // Read before get_pipeline.
      } else if (key == "affinity") {
        b.affinity(PEPITA_TRY(get_affinity(ctx, v)));
      } else if (key == "sandbox") {
        if (!detail::sandbox_applies(backend)) {
          return ctx.err(v, "task '" + raws[r].name + "': backend '" + std::string(backend.name()) +
                                "' does not run a process pepita spawns, so it takes no "
                                "sandbox; use backend \"process\" or \"remote\" (a microvm "
                                "task is isolated by its VM)");
        }
        sandbox = PEPITA_TRY(detail::get_sandbox(ctx, v, job_dir, tv));
      } else if (key == "inputs" || key == "outputs") {
        if (files.empty()) files.resize(raws.size());
        auto& into = key == "inputs" ? files[r].inputs : files[r].outputs;
        for (auto& [path, node] : PEPITA_TRY(get_strings(ctx, v, key, tv))) {
          if (path.empty() || path.find('\0') != std::string::npos) {
            return ctx.err(*node, "task '" + raws[r].name + "': '" + std::string(key) +
                                      "' holds an empty path (or one with a NUL byte)");
          }
          into.push_back({std::move(path), node});
        }
      } else if (key == "pipeline" || key == "backend") {
        // Parsed above: it decides whether `command` must be an executable.
      } else if (key == "deps") {
        for (auto& [d, node] : PEPITA_TRY(get_strings(ctx, v, key, tv))) {
          if (d.ends_with("*")) {
            // Prefix wildcard: "map-*" depends on every task whose name starts with "map-".
            const std::string prefix = d.substr(0, d.size() - 1);
            bool any = false;
            for (std::size_t o = 0; o < raws.size(); ++o) {
              if (o != r && raws[o].name.starts_with(prefix)) {
                dep_index[r].emplace_back(o, node);
                any = true;
              }
            }
            if (!any)
              return ctx.err(*node, "task '" + raws[r].name + "': no task matches '" + d + "'");
            continue;
          }
          const auto on = find_task(d);
          if (!on) {
            return ctx.err(*node,
                           "task '" + raws[r].name + "' depends on unknown task '" + d + "'");
          }
          if (*on == r) {
            return ctx.err(*node, "task '" + raws[r].name + "' depends on itself");
          }
          dep_index[r].emplace_back(*on, node);
        }
      }
    }
    if (!cwd.empty()) {
      if (fs::path(cwd).is_relative()) cwd = (fs::path(job_dir) / cwd).string();
      b.cwd(cwd);
    }
    const bool declares_files =
        !files.empty() && (!files[r].inputs.empty() || !files[r].outputs.empty());
    if (declares_files) {
      // Issue 27: the process's directory once per job, not a getcwd per task (count = 1M).
      if (cwd.empty() && !here) {
        std::error_code ec;
        here = fs::current_path(ec).string();
      }
      files[r].cwd = cwd.empty() ? *here : cwd;
      files[r].anchor = t.get("name");
      staged[r] = backend == task::Backend::Remote || backend.name() == "slurm";
    }
    b.timeout(timeout);
    if (retries) b.max_retries(static_cast<std::uint32_t>(*retries));
    PEPITA_TRY_VOID(detail::check_resources(ctx, resources, backend, raws[r].name, t));
    if (const auto* own = t.get("retry_on");
        own && !resources.retry_on.empty() && retries.value_or(default_retries) == 0) {
      return ctx.err(*own, "task '" + raws[r].name +
                               "': 'retry_on' says which failures retry, but the task has no "
                               "retries: add retries = N to the task or [pool]");
    }
    if (!resources.request.empty()) b.resources(resources.request);
    if (resources.has_retry_on) b.retry_on(resources.retry_on);
    if (sandbox.enabled() && !options.force_backend) b.sandbox(std::move(sandbox));
    std::map<std::string, std::string> at;
    for (const auto& [key, node] : resources.where) {
      at.emplace(key, detail::position(file, node->source()));
    }
    job.resource_at.push_back(std::move(at));
    job.show_output.push_back(show);
    if (!declares_files && !t.get("deps")) {
      auto built_now = b.build();
      if (!built_now) return ctx.err(t, built_now.error().message());
      built[r] = std::move(*built_now);
    } else {
      builders[r] = std::make_unique<task::Builder>(std::move(b));
    }
  }

  // Declared files: resolved, checked, and the dependencies they imply added.
  std::map<std::pair<std::size_t, std::size_t>, std::string> inferred;
  if (!files.empty()) {
    std::vector<std::string> names;
    names.reserve(raws.size());
    for (const auto& raw : raws) names.push_back(raw.name);
    PEPITA_TRY_VOID(
        detail::resolve_job_files(ctx, names, files, options.state_dir, dep_index, inferred));
    for (std::size_t r = 0; r < raws.size(); ++r) {
      if (staged[r]) {
        // Issue 30: a remote task's files are staged into its own directory on the worker, so
        // it carries them relative to its cwd (the remote executor refuses absolute paths).
        PEPITA_TRY_VOID(relative_to_cwd(ctx, raws[r].name, files[r], files[r].resolved_inputs));
        PEPITA_TRY_VOID(relative_to_cwd(ctx, raws[r].name, files[r], files[r].resolved_outputs));
      }
      if (!files[r].resolved_inputs.empty()) builders[r]->inputs(files[r].resolved_inputs);
      if (!files[r].resolved_outputs.empty()) builders[r]->outputs(files[r].resolved_outputs);
    }
  }

  // Cycle check on positions, before any id exists, so the message can name the tasks.
  std::vector<std::vector<std::size_t>> edges(raws.size());
  for (std::size_t r = 0; r < raws.size(); ++r) {
    for (const auto& [o, node] : dep_index[r]) edges[r].push_back(o);
  }
  if (auto cycle = task::find_cycle(edges); !cycle.empty()) {
    std::string members;
    for (std::size_t k = 0; k < cycle.size(); ++k) {
      members += (k ? " -> " : "") + raws[cycle[k]].name;
    }
    // Edges inferred from files: say which file links each pair.
    std::string through;
    for (std::size_t k = 0; k + 1 < cycle.size(); ++k) {
      if (auto it = inferred.find({cycle[k], cycle[k + 1]}); it != inferred.end()) {
        through.append(through.empty() ? " (" : ", ")
            .append(raws[cycle[k]].name)
            .append(" reads ")
            .append(it->second)
            .append(", an output of ")
            .append(raws[cycle[k + 1]].name);
      }
    }
    if (!through.empty()) members.append(through).append(")");
    return ctx.err(*raws[cycle.front()].table->get("name"),
                   "dependency cycle: " + members + "; remove one of these dependencies");
  }
  // Build the rest in dependency order so every dependency already has its id.
  std::vector<std::size_t> order;
  {
    std::vector<std::uint8_t> state(raws.size(), 0);
    std::vector<std::pair<std::size_t, std::size_t>> stack;
    for (std::size_t root = 0; root < raws.size(); ++root) {
      if (built[root]) continue;  // built in the second pass: no dependencies
      stack.assign(1, {root, 0});
      while (!stack.empty()) {
        auto& [node, next] = stack.back();
        if (state[node] == 2) {
          stack.pop_back();
          continue;
        }
        state[node] = 1;
        if (next < edges[node].size()) {
          const std::size_t to = edges[node][next++];
          if (state[to] == 0) stack.emplace_back(to, 0);
          continue;
        }
        state[node] = 2;
        order.push_back(node);
        stack.pop_back();
      }
    }
  }
  for (std::size_t r : order) {
    if (built[r]) continue;
    std::vector<task::TaskId> deps;
    for (const auto& [o, node] : dep_index[r]) deps.push_back(built[o]->id());
    builders[r]->depends_on(std::move(deps));
    auto t = builders[r]->build();
    if (!t) return ctx.err(*raws[r].table, t.error().message());
    built[r] = std::move(*t);
    builders[r].reset();
  }
  job.tasks.reserve(raws.size());
  for (auto& t : built) job.tasks.push_back(std::move(*t));
  return job;
}

}  // namespace pepita::pool
