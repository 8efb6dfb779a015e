// Task builder validation and the spec digest the journal keys results on.
#include "pepita/task/task.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <span>

#include "pepita/core/format.hpp"
#include "pepita/core/sha256.hpp"

namespace pepita::task {
namespace {

std::atomic<TaskId> g_next_id{1};

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// Feeds length-prefixed fields so ("ab","c") and ("a","bc") digest differently.
class Digest {
 public:
  void add(std::string_view s) {
    const std::uint64_t n = s.size();
    sha_.update(std::as_bytes(std::span(&n, 1)));
    sha_.update(s);
  }
  std::string hex() { return sha_.hex_digest(); }

 private:
  Sha256 sha_;  // core's: the algorithm is fetched once per process, not per digest
};

// The bytes of `b` as the Digest's field type (no copy).
std::string_view as_text(std::span<const std::byte> b) {
  // SAFETY: char may alias any object representation; the view does not outlive `b`.
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

constexpr std::uint32_t kSpirvMagic = 0x07230203;

}  // namespace

Result<Backend> Backend::named(std::string_view name) {
  auto bad = [&](std::string_view why) {
    return fail(ErrorCode::InvalidArgument, std::string("backend name '")
                                                .append(name)
                                                .append("' ")
                                                .append(why)
                                                .append(": use 1..")
                                                .append(std::to_string(kMaxName))
                                                .append(" characters of a-z, 0-9, '_' and '-'"));
  };
  if (name.empty()) return bad("is empty");
  if (name.size() > kMaxName) return bad("is too long");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return bad("holds a character that is not allowed");
  }
  if (name == "any")
    return fail(ErrorCode::InvalidArgument,
                "backend name 'any' is reserved (it will mean: the pool picks a backend)");
  Backend b;
  for (std::size_t i = 0; i < name.size(); ++i) b.chars_[i] = name[i];
  b.size_ = static_cast<std::uint8_t>(name.size());
  return b;
}

Result<Backend> parse_backend(std::string_view name) {
  return parse_backend(name, kBuiltinBackends);
}

Result<Backend> parse_backend(std::string_view name, std::span<const Backend> known) {
  for (const Backend& b : known) {
    if (b.name() == name) return b;
  }
  std::string valid;
  for (const Backend& b : known) {
    if (!valid.empty()) valid.append(", ");
    valid.append(b.name());
  }
  return fail(
      ErrorCode::InvalidArgument,
      std::string("unknown backend '").append(name).append("'; valid backends: ").append(valid));
}

// The fields of one binary, in the order the digest has always fed them.
void digest_binary(Digest& d, const ProcessSpec& p) {
  d.add(p.path);
  for (const auto& a : p.args) d.add(a);
  d.add("env");
  for (const auto& [k, v] : p.env) {
    d.add(k);
    d.add(v);
  }
  d.add(p.inherit_env ? "inherit" : "clean");
  d.add(p.cwd);
  d.add(p.stdin_data);
}

std::string Task::spec_digest() const {
  Digest d;
  if (const PipelineTask* pipe = as_pipeline()) {
    // Every stage, in order, and whether they are connected. The affinity is not part of it:
    // it changes where the processes run, not what they produce.
    d.add("pipeline");
    d.add(to_string(spec_->backend));
    d.add(pipe->pipe_output ? "piped" : "unpiped");
    for (const ProcessSpec& stage : pipe->stages) {
      d.add("stage");
      digest_binary(d, stage);
    }
    return d.hex();
  }
  // ---- Shader tasks (issue 21, GPU part): the module, its inputs and the dispatch shape ----
  if (const ShaderTask* s = shader()) {
    d.add("shader");
    d.add(to_string(spec_->backend));
    d.add(as_text(std::as_bytes(std::span(s->spirv))));
    d.add(s->entry_point);
    const std::uint32_t groups[] = {s->workgroups.x, s->workgroups.y, s->workgroups.z};
    d.add(as_text(std::as_bytes(std::span(groups))));
    d.add(as_text(s->push_constants));
    d.add(as_text(std::as_bytes(std::span(s->spec_constants))));
    for (const ShaderBuffer& b : s->buffers) {
      d.add(b.output ? "out" : "in");
      d.add(as_text(b.data));
    }
    return d.hex();
  }
  // ---- end shader tasks ----
  d.add(is_process() ? "process" : "function");
  d.add(to_string(spec_->backend));
  if (const ProcessSpec* p = process()) {
    digest_binary(d, *p);
  } else {
    d.add(spec_->name);  // a function's body cannot be digested; its name stands in for it
  }
  return d.hex();
}

Builder Task::binary(std::string path) {
  Builder b;
  b.spec_.backend = Backend::Process;
  b.spec_.process.emplace();
  b.spec_.process->path = std::move(path);
  return b;
}

Builder& Builder::name(std::string name) {
  spec_.name = std::move(name);
  return *this;
}
Builder& Builder::arg(std::string arg) {
  if (spec_.pipeline) {
    problems_.push_back(
        "args() applies to each stage of a pipeline, not to the pipeline: use "
        "add_stage(BinaryTask(path).with_args(...))");
  } else if (!spec_.process) {
    problems_.push_back("args() applies to binary tasks only");
  } else {
    spec_.process->args.push_back(std::move(arg));
  }
  return *this;
}
Builder& Builder::args(std::vector<std::string> args) {
  for (auto& a : args) arg(std::move(a));
  return *this;
}
Builder& Builder::env(std::string key, std::string value) {
  if (spec_.pipeline && !key.empty() && key.find('=') == std::string::npos && !has_nul(key) &&
      !has_nul(value)) {
    stage_defaults_.env[std::move(key)] = std::move(value);  // every stage's default
  } else if (!spec_.process && !spec_.pipeline) {
    problems_.push_back("env() applies to binary tasks only");
  } else if (key.empty() || key.find('=') != std::string::npos || has_nul(key) || has_nul(value)) {
    problems_.push_back("environment variable name '" + key +
                        "' is invalid: it must be non-empty and hold no '=' or NUL");
  } else {
    spec_.process->env[std::move(key)] = std::move(value);
  }
  return *this;
}
Builder& Builder::clear_env() {
  if (spec_.process) spec_.process->inherit_env = false;
  if (spec_.pipeline) stage_defaults_.inherit_env = false;
  return *this;
}
Builder& Builder::cwd(std::string dir) {
  if (spec_.pipeline) {
    stage_defaults_.cwd = std::move(dir);
  } else if (!spec_.process) {
    problems_.push_back("cwd() applies to binary tasks only");
  } else {
    spec_.process->cwd = std::move(dir);
  }
  return *this;
}
Builder& Builder::stdin(std::string bytes) {
  if (spec_.pipeline) {
    stage_defaults_.stdin_data = std::move(bytes);  // stage 0's
  } else if (!spec_.process) {
    problems_.push_back("stdin() applies to binary tasks only");
  } else {
    spec_.process->stdin_data = std::move(bytes);
  }
  return *this;
}
Builder& Builder::timeout(std::chrono::nanoseconds limit) {
  if (limit.count() < 0) problems_.push_back("timeout must not be negative");
  spec_.timeout = limit;
  return *this;
}
Builder& Builder::deadline(std::chrono::nanoseconds total) {
  if (total.count() < 0) problems_.push_back("deadline must not be negative");
  spec_.deadline = total;
  return *this;
}
Builder& Builder::max_retries(std::uint32_t retries) {
  spec_.max_retries = retries;
  return *this;
}
Builder& Builder::priority(std::int32_t priority) {
  spec_.priority = priority;
  return *this;
}
Builder& Builder::backend(Backend backend) {
  spec_.backend = backend;
  return *this;
}
Builder& Builder::depends_on(std::vector<TaskId> ids) {
  for (TaskId id : ids) {
    if (id == 0) {
      problems_.push_back("dependency id 0 is not a task id (ids start at 1)");
    } else {
      spec_.deps.push_back(id);
    }
  }
  return *this;
}
Builder& Builder::output_cap(std::size_t bytes) {
  if (bytes == 0) problems_.push_back("output cap must be at least 1 byte");
  spec_.output_cap = bytes;
  return *this;
}

Result<Task> Builder::build() {
  const bool process = spec_.process.has_value();
  if (process) {
    const auto& p = *spec_.process;
    if (p.path.empty()) problems_.push_back("binary path is empty");
    if (has_nul(p.path)) problems_.push_back("binary path holds a NUL byte");
    for (const auto& a : p.args) {
      if (has_nul(a)) problems_.push_back("argument holds a NUL byte");
    }
    if (has_nul(p.cwd)) problems_.push_back("cwd holds a NUL byte");
  } else if (spec_.pipeline) {
    check_pipeline();
  } else if (spec_.shader) {
    // ---- Shader tasks (issue 21, GPU part) ----
    if (auto ok = spec_.shader->validate(); !ok) problems_.push_back(ok.error().message());
    for (const Backend& b : {Backend::Cpu, Backend::Process, Backend::MicroVm, Backend::Remote}) {
      if (spec_.backend == b) {
        problems_.push_back("backend: a shader task cannot run on the " +
                            std::string(to_string(b)) + " backend (use gpu)");
      }
    }
    // ---- end shader tasks ----
  } else {
    if (!spec_.fn) problems_.push_back("function task has an empty callable");
    if (spec_.backend != Backend::Cpu && spec_.backend != Backend::Any) {
      problems_.push_back("a function task runs only on the cpu (or any) backend, not " +
                          std::string(to_string(spec_.backend)));
    }
  }
  if (has_nul(spec_.name)) problems_.push_back("task name holds a NUL byte");
  check_affinity();
  check_resources();
  if (spec_.sandbox.get().enabled() && !spec_.process && !spec_.pipeline) {
    problems_.push_back(
        "sandbox: only a binary or pipeline task runs in a sandbox (a function shares the pool's "
        "threads, a shader runs on the GPU); run the code as a binary task to confine it");
  }
  check_files();
  if (!problems_.empty()) {
    std::string msg = "invalid task";
    if (!spec_.name.empty()) msg += " '" + spec_.name + "'";
    msg += ": " + problems_.front();
    return fail(ErrorCode::InvalidArgument, std::move(msg));
  }
  spec_.id = g_next_id.fetch_add(1, std::memory_order_relaxed);
  if (spec_.name.empty()) spec_.name = "task-" + std::to_string(spec_.id);
  for (TaskId dep : spec_.deps) {
    if (dep == spec_.id) return fail(ErrorCode::InvalidArgument, "task depends on itself");
  }
  return Task(std::make_shared<const Task::Spec>(std::move(spec_)));
}

// ---- Shader tasks (issue 21, GPU part) ----------------------------------------------------

ShaderTask ShaderTask::create(std::vector<std::uint32_t> spirv) {
  ShaderTask s;
  s.spirv = std::move(spirv);
  return s;
}
ShaderTask& ShaderTask::with_inputs(std::vector<std::vector<std::byte>> inputs) & {
  for (auto& bytes : inputs) buffers.push_back({std::move(bytes), false});
  return *this;
}
ShaderTask& ShaderTask::with_outputs(std::vector<std::size_t> sizes) & {
  for (std::size_t n : sizes) buffers.push_back({std::vector<std::byte>(n), true});
  return *this;
}
ShaderTask& ShaderTask::with_buffer(ShaderBuffer buffer) & {
  buffers.push_back(std::move(buffer));
  return *this;
}
ShaderTask& ShaderTask::with_workgroups(std::uint32_t x, std::uint32_t y, std::uint32_t z) & {
  workgroups = {x, y, z};
  return *this;
}
ShaderTask& ShaderTask::with_push_constants(std::vector<std::byte> bytes) & {
  push_constants = std::move(bytes);
  return *this;
}
ShaderTask& ShaderTask::with_entry_point(std::string name) & {
  entry_point = std::move(name);
  return *this;
}
ShaderTask& ShaderTask::with_spec_constants(std::vector<std::uint32_t> values) & {
  spec_constants = std::move(values);
  return *this;
}

std::size_t ShaderTask::output_count() const noexcept {
  std::size_t n = 0;
  for (const ShaderBuffer& b : buffers) n += b.output ? 1 : 0;
  return n;
}

Result<void> ShaderTask::validate() const {
  auto bad = [](std::string why) { return fail(ErrorCode::InvalidArgument, std::move(why)); };
  if (spirv.empty()) return bad("spirv: the shader module is empty (give SPIR-V words)");
  if (spirv[0] != kSpirvMagic) {
    char word[16];
    std::snprintf(word, sizeof word, "0x%08x", spirv[0]);
    return bad(
        pepita::fmt("spirv: word 0 is {}, not the SPIR-V magic number 0x07230203 (not "
                    "SPIR-V, or byte-swapped; compile with glslangValidator -V)",
                    word));
  }
  if (entry_point.empty() || has_nul(entry_point))
    return bad("entry_point: must be a non-empty name without NUL bytes (usually \"main\")");
  const std::uint32_t groups[] = {workgroups.x, workgroups.y, workgroups.z};
  for (int axis = 0; axis < 3; ++axis) {
    if (groups[axis] == 0) {
      return bad(pepita::fmt("workgroups.{}: is 0; every workgroup count must be at least 1",
                             "xyz"[axis]));
    }
  }
  if (push_constants.size() % 4 != 0) {
    return bad(
        pepita::fmt("push_constants: {} bytes is not a multiple of 4", push_constants.size()));
  }
  for (std::size_t i = 0; i < buffers.size(); ++i) {
    if (buffers[i].data.empty()) {
      return bad(pepita::fmt("buffers[{}]: is empty; a storage buffer needs at least 1 byte", i));
    }
  }
  return {};
}

Builder Task::shader(ShaderTask shader) {
  Builder b;
  b.spec_.backend = Backend::Gpu;
  b.spec_.shader.emplace(std::move(shader));
  return b;
}

Builder Task::shader(std::vector<std::uint32_t> spirv, Workgroups workgroups,
                     std::vector<std::byte> push_constants, std::vector<ShaderBuffer> buffers) {
  ShaderTask s = ShaderTask::create(std::move(spirv));
  s.workgroups = workgroups;
  s.push_constants = std::move(push_constants);
  s.buffers = std::move(buffers);
  return shader(std::move(s));
}

// ---- end shader tasks ----

// ---- issue 21: the crate's priority levels, task states and metadata ----

std::string_view to_string(TaskPriority p) noexcept {
  switch (p) {
    case TaskPriority::Low: return "low";
    case TaskPriority::Normal: return "normal";
    case TaskPriority::High: return "high";
    case TaskPriority::Critical: return "critical";
  }
  return "unknown";
}

Result<TaskPriority> parse_task_priority(std::string_view name) {
  for (std::uint8_t v = 0; v <= 3; ++v) {
    const TaskPriority p = *task_priority_from_u8(v);
    if (to_string(p) == name) return p;
  }
  return fail(ErrorCode::InvalidArgument,
              std::string("unknown priority '")
                  .append(name)
                  .append("'; use low, normal, high, critical or an integer"));
}

std::string_view to_string(TaskState s) noexcept {
  switch (s) {
    case TaskState::Pending: return "pending";
    case TaskState::Queued: return "queued";
    case TaskState::Running: return "running";
    case TaskState::Completed: return "completed";
    case TaskState::Failed: return "failed";
    case TaskState::Cancelled: return "cancelled";
    case TaskState::TimedOut: return "timed-out";
  }
  return "unknown";
}

Task Task::with_timeout(std::chrono::nanoseconds limit) const {
  auto spec = std::make_shared<Spec>(*spec_);
  spec->timeout = limit;
  return Task(std::move(spec));
}

Task Task::with_allocation(Allocation allocation) const {
  auto spec = std::make_shared<Spec>(*spec_);
  spec->allocation = std::move(allocation);
  return Task(std::move(spec));
}

Task Task::with_log_sink(std::shared_ptr<LogSink> sink) const {
  auto spec = std::make_shared<Spec>(*spec_);
  spec->log_sink = std::move(sink);
  return Task(std::move(spec));
}

Task Task::with_sandbox(SandboxPolicy policy) const {
  auto spec = std::make_shared<Spec>(*spec_);
  spec->sandbox = std::move(policy);
  return Task(std::move(spec));
}

Builder& Builder::resources(ResourceRequest request) {
  spec_.resources = std::move(request);
  return *this;
}

Builder& Builder::retry_on(std::vector<RetryOn> kinds) {
  spec_.retry_on = std::move(kinds);
  return *this;
}

Builder& Builder::sandbox(SandboxPolicy policy) {
  spec_.sandbox = std::move(policy);
  return *this;
}

Builder& Builder::inputs(std::vector<std::string> paths) {
  spec_.inputs = std::move(paths);
  return *this;
}

Builder& Builder::outputs(std::vector<std::string> paths) {
  spec_.outputs = std::move(paths);
  return *this;
}

void Builder::check_files() {
  if ((!spec_.inputs.empty() || !spec_.outputs.empty()) && !spec_.process && !spec_.pipeline) {
    problems_.push_back(
        "inputs/outputs: only a binary or pipeline task declares files (a function's and a "
        "shader's data travel in the task itself)");
  }
  for (const auto* list : {&spec_.inputs, &spec_.outputs}) {
    const char* what = list == &spec_.inputs ? "input" : "output";
    for (const std::string& path : *list) {
      if (path.empty()) problems_.push_back(std::string(what) + " path is empty");
      if (has_nul(path)) problems_.push_back(std::string(what) + " path holds a NUL byte");
    }
  }
  std::vector<std::string> sorted = spec_.outputs;
  std::sort(sorted.begin(), sorted.end());
  if (auto dup = std::adjacent_find(sorted.begin(), sorted.end()); dup != sorted.end()) {
    problems_.push_back("output '" + *dup + "' is declared twice");
  }
}

Builder& Builder::priority(TaskPriority level) { return priority(priority_value(level)); }

Builder& Builder::metadata(std::string key, std::string value) {
  if (key.empty() || has_nul(key) || has_nul(value)) {
    problems_.push_back("metadata key '" + key +
                        "' is invalid: the key must be non-empty and neither may hold NUL");
  } else {
    spec_.metadata.mut()[std::move(key)] = std::move(value);
  }
  return *this;
}

}  // namespace pepita::task

// ---- Task kinds, pipelines and affinity ----
namespace pepita::task {
namespace {

std::string stage_label(std::size_t index, const ProcessSpec& stage) {
  std::string base = stage.path;
  if (auto slash = base.rfind('/'); slash != std::string::npos) base.erase(0, slash + 1);
  return pepita::fmt("pipeline stage {} ('{}')", index, base);
}

}  // namespace

Builder Task::pipeline() { return pipeline(PipelineTask{}); }

Builder Task::pipeline(PipelineTask stages) {
  Builder b;
  b.spec_.backend = Backend::Process;
  b.spec_.pipeline.emplace(std::move(stages));
  return b;
}

TaskKind Task::kind() const noexcept {
  if (spec_->process) return TaskKind::Binary;
  if (spec_->pipeline) return TaskKind::Pipeline;
  if (spec_->shader) return TaskKind::Shader;
  return TaskKind::Callable;
}

Builder& Builder::add_stage(BinaryTask stage) {
  if (!spec_.pipeline) {
    problems_.push_back("add_stage() applies to pipeline tasks: start with Task::pipeline()");
  } else {
    spec_.pipeline.mut().stages.push_back(std::move(stage));
  }
  return *this;
}

Builder& Builder::add_stage(const Task& stage) {
  const std::size_t index = spec_.pipeline ? spec_.pipeline->stages.size() : 0;
  auto reject = [&](std::string_view why) -> Builder& {
    problems_.push_back(pepita::fmt("pipeline stage {} (task '{}'): {}", index, stage.name(), why));
    return *this;
  };
  if (!stage.is_binary()) {
    return reject(
        "is not a binary (a function, shader or pipeline task); stages must be "
        "binaries: Task::binary(...) or BinaryTask(...)");
  }
  if (!stage.dependencies().empty()) {
    return reject(
        "has dependencies; put depends_on() on the pipeline, which starts all "
        "stages together");
  }
  if (stage.timeout().count() != 0) {
    return reject("has its own timeout; set timeout() on the pipeline (it covers all stages)");
  }
  if (stage.deadline().count() != 0) return reject("has its own deadline; set it on the pipeline");
  if (stage.max_retries()) {
    return reject("has its own max_retries; the pipeline is retried as a whole: set it there");
  }
  if (!stage.affinity().is_any()) return reject("has its own affinity; set it on the pipeline");
  if (stage.backend() != Backend::Process) {
    return reject(pepita::fmt("runs on backend '{}'; a pipeline's stages run on 'process'",
                              stage.backend().name()));
  }
  return add_stage(*stage.as_binary());
}

Builder& Builder::add_stage(const Result<Task>& stage) {
  if (!stage) {
    const std::size_t index = spec_.pipeline ? spec_.pipeline->stages.size() : 0;
    problems_.push_back(pepita::fmt("pipeline stage {}: {}", index, stage.error().message()));
    return *this;
  }
  return add_stage(*stage);
}

Builder& Builder::affinity(CpuAffinity affinity) {
  spec_.affinity = std::move(affinity);
  return *this;
}

void Builder::check_pipeline() {
  PipelineTask& pipe = spec_.pipeline.mut();
  if (pipe.stages.empty()) {
    problems_.push_back("pipeline has no stages: add at least one with add_stage()");
    return;
  }
  // Process, or the names the pool routes to it: cpu (the crate's spelling) and any.
  if (spec_.backend != Backend::Process && spec_.backend != Backend::Cpu &&
      spec_.backend != Backend::Any) {
    problems_.push_back(
        pepita::fmt("a pipeline runs on the process backend, not '{}'", spec_.backend.name()));
  }
  const ProcessSpec& defaults = stage_defaults_;
  if (!defaults.stdin_data.empty()) {
    if (!pipe.stages.front().stdin_data.empty()) {
      problems_.push_back(stage_label(0, pipe.stages.front()) +
                          ": stdin is set both on the stage and on the pipeline; keep one");
    }
    pipe.stages.front().stdin_data = defaults.stdin_data;
  }
  for (std::size_t i = 0; i < pipe.stages.size(); ++i) {
    ProcessSpec& st = pipe.stages[i];
    for (const auto& [k, v] : defaults.env) st.env.emplace(k, v);  // the stage's own wins
    st.inherit_env = st.inherit_env && defaults.inherit_env;
    if (st.cwd.empty()) st.cwd = defaults.cwd;
    const std::string where = stage_label(i, st);
    if (st.path.empty()) problems_.push_back(pepita::fmt("pipeline stage {}: path is empty", i));
    if (has_nul(st.path)) problems_.push_back(where + ": path holds a NUL byte");
    for (const auto& a : st.args) {
      if (has_nul(a)) problems_.push_back(where + ": an argument holds a NUL byte");
    }
    for (const auto& [k, v] : st.env) {
      if (k.empty() || k.find('=') != std::string::npos || has_nul(k) || has_nul(v)) {
        problems_.push_back(pepita::fmt(
            "{}: env name '{}' is invalid: it must be non-empty and hold no '=' or NUL", where, k));
      }
    }
    if (has_nul(st.cwd)) problems_.push_back(where + ": cwd holds a NUL byte");
    if (i > 0 && !st.stdin_data.empty()) {
      problems_.push_back(where + (pipe.pipe_output
                                       ? ": stdin is set, but this stage reads the previous "
                                         "stage's output; only stage 0 may have stdin"
                                       : ": stdin is set; only stage 0 may have stdin (the "
                                         "others read /dev/null)"));
    }
  }
}

void Builder::check_affinity() {
  if (spec_.affinity.get().is_any()) return;
  if (!spec_.process && !spec_.pipeline) {
    problems_.push_back(
        "affinity applies to binary and pipeline tasks (processes); a function task runs on the "
        "scheduler's shared worker threads (pin those with Scheduler::Options::pin_workers) and a "
        "shader task on the GPU");
    return;
  }
  // The local process executor applies it; a remote worker, micro-VM or plug-in would not.
  // (Cpu and any: the pool runs a binary or pipeline on them as a local process too.)
  if (spec_.backend != Backend::Process && spec_.backend != Backend::Cpu &&
      spec_.backend != Backend::Any) {
    problems_.push_back(pepita::fmt(
        "affinity is applied by the local process executor; backend '{}' does not apply it: "
        "drop the affinity or use backend process",
        spec_.backend.name()));
    return;
  }
  if (auto cpus = spec_.affinity.get().resolve(); !cpus)
    problems_.push_back(cpus.error().message());
}

// ---- issue 22: resources ----

void Builder::check_resources() {
  const ResourceRequest& r = spec_.resources.get();
  for (const RetryOn& on : spec_.retry_on) {
    const bool exit_ok = on.kind != RetryOn::Kind::Exit || (on.code >= -1 && on.code <= 255);
    const bool signal_ok =
        on.kind != RetryOn::Kind::Signal || on.code == -1 || (on.code >= 1 && on.code <= 64);
    if (!exit_ok || !signal_ok) {
      problems_.push_back(
          pepita::fmt("retry_on: '{}' has a code out of range (exit 0..255, "
                      "signal 1..64)",
                      to_string(on)));
    }
  }
  if (r.empty()) return;
  if (auto ok = r.validate(); !ok) {
    problems_.push_back(ok.error().message());
    return;
  }
  const bool function = !spec_.process && !spec_.pipeline && !spec_.shader;
  if (function && (r.memory > 0 || r.gpus > 0 || !r.gpu_ids.empty() || !r.named.empty() ||
                   r.pin_cpus || r.pids > 0)) {
    problems_.push_back(
        "resources: a function task may request only cpus: it runs on a shared scheduler "
        "thread, and nothing there can hold it to memory, GPUs, named resources, pids or pinned "
        "cores (run it as a binary task for those)");
    return;
  }
  if (r.pin_cpus && !spec_.affinity.get().is_any()) {
    problems_.push_back(
        pepita::fmt("resources: pin_cpus and affinity ({}) both choose the task's cores; keep "
                    "one (pin_cpus lets the pool pick free cores)",
                    task::to_string(spec_.affinity.get())));
    return;
  }
  // Fractional CPUs are a CFS quota share, which the process executor applies to a binary or
  // pipeline (on process, any, or cpu, where the pool runs it as a process).
  const bool whole = r.cpus == std::floor(r.cpus);
  const bool splits = !function && (spec_.process || spec_.pipeline) &&
                      (spec_.backend == Backend::Process || spec_.backend == Backend::Any ||
                       spec_.backend == Backend::Cpu);
  if (!whole && !splits) {
    const Backend on = function ? Backend::Cpu : spec_.backend;
    problems_.push_back(pepita::fmt(
        "resources: cpus = {} on the {} backend cannot be split: ask for a whole number{}", r.cpus,
        on.name(),
        function ? " (a function task holds whole scheduler threads)"
                 : " (fractional CPUs are a CFS quota, applied to processes on the process "
                   "backend)"));
  }
}

// ---- end resources ----

}  // namespace pepita::task
// ---- end task kinds, pipelines and affinity ----
