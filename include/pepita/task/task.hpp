#pragma once
// Task: one unit of work for the pool — a binary to run as a process or a callable to run on the
// work-stealing scheduler — plus what the pool needs to schedule it (dependencies, priority,
// timeout, retries, backend). Built with a validating builder; bad input is an error, not a crash.
//
//   auto compile = Task::binary("/usr/bin/cc").args({"-c", "a.c"}).timeout(30s).build();
//   auto link = Task::binary("/usr/bin/cc").args({"a.o"}).depends_on({compile->id()}).build();
//   auto sum = Task::function([] { return std::string("42"); }).name("answer").build();

#include <array>
#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/task/affinity.hpp"
#include "pepita/task/log_sink.hpp"
#include "pepita/task/resources.hpp"
#include "pepita/task/sandbox.hpp"

namespace pepita::task {

/// Process-unique task identifier, assigned by the builder in creation order (never 0).
using TaskId = std::uint64_t;

/// Where a task runs: the name of a backend ("process", "gpu", or one a program registers in an
/// executor::Registry). A small value type — cheap to copy, comparable, hashable, printable — so
/// backends are an open set; the built-in names are constants, so `Backend::Gpu` reads as before.
///
///   auto mine = Backend::named("echo").value();   // validated: [a-z0-9_-], 1..31 characters
///   Task::binary("hello").backend(mine).build();  // runs on the executor registered as "echo"
class Backend {
 public:
  /// Longest name a backend may have.
  static constexpr std::size_t kMaxName = 31;

  static const Backend Cpu;      // "cpu": functions on the work-stealing scheduler
  static const Backend Process;  // "process": child processes
  static const Backend Remote;   // "remote": pepita workers over the transport
  static const Backend MicroVm;  // "microvm": KVM micro-VMs
  static const Backend Gpu;      // "gpu": Vulkan compute kernels
  /// "any": the pool picks the backend by the task's kind (see Pool: a function runs on cpu, a
  /// binary on process, a shader on gpu). Not a name an executor can register.
  static const Backend Any;

  /// True for the backends that run on this machine (cpu, process, microvm, gpu); false for
  /// remote, any, and names a program registers (the pool cannot know where those run).
  constexpr bool is_local() const noexcept;

  /// A backend by name. InvalidArgument (saying which rule) when the name is empty, longer than
  /// kMaxName, holds a character outside [a-z0-9_-], or is "any" (reserved for "the pool picks").
  static Result<Backend> named(std::string_view name);

  /// The name, e.g. "gpu". Valid as long as this object is.
  constexpr std::string_view name() const noexcept { return {chars_.data(), size_}; }

  friend constexpr bool operator==(const Backend& a, const Backend& b) noexcept {
    return a.name() == b.name();
  }
  friend constexpr auto operator<=>(const Backend& a, const Backend& b) noexcept {
    return a.name() <=> b.name();
  }

 private:
  // Built-in names only (checked at compile time by their length).
  template <std::size_t N>
  consteval explicit Backend(const char (&name)[N]) : size_(N - 1) {
    static_assert(N - 1 <= kMaxName);
    for (std::size_t i = 0; i + 1 < N; ++i) chars_[i] = name[i];
  }
  constexpr Backend() = default;

  std::array<char, kMaxName + 1> chars_{};  // inline, so a copy never allocates
  std::uint8_t size_ = 0;
};

inline constexpr Backend Backend::Cpu{"cpu"};
inline constexpr Backend Backend::Process{"process"};
inline constexpr Backend Backend::Remote{"remote"};
inline constexpr Backend Backend::MicroVm{"microvm"};
inline constexpr Backend Backend::Gpu{"gpu"};
inline constexpr Backend Backend::Any{"any"};

constexpr bool Backend::is_local() const noexcept {
  return *this == Cpu || *this == Process || *this == MicroVm || *this == Gpu;
}

/// The backends pepita itself provides, in this order: cpu, process, remote, microvm, gpu.
inline constexpr std::array<Backend, 5> kBuiltinBackends{
    Backend::Cpu, Backend::Process, Backend::Remote, Backend::MicroVm, Backend::Gpu};

/// The backend's name ("cpu", "process", ...); a view into `backend`.
constexpr std::string_view to_string(const Backend& backend) noexcept { return backend.name(); }
/// Prints the name (gtest and logs).
inline std::ostream& operator<<(std::ostream& out, const Backend& backend) {
  return out << backend.name();
}
/// Parses a built-in name; InvalidArgument listing the valid names otherwise.
Result<Backend> parse_backend(std::string_view name);
/// Parses any of `known` (e.g. the names an executor::Registry holds); InvalidArgument listing
/// them otherwise.
Result<Backend> parse_backend(std::string_view name, std::span<const Backend> known);

/// The body of a function task. Receives a stop token that is signalled on cancel or timeout
/// (cooperative: a function that ignores it runs to completion) and returns its output text or
/// an Error, which the pool reports as a failed attempt (and may retry).
using Function = std::function<Result<std::string>(std::stop_token)>;

/// What to exec for a Process task. `env` replaces the environment when `inherit_env` is false
/// and is layered over the parent's otherwise.
struct ProcessSpec {
  std::string path;
  std::vector<std::string> args;  // argv[1..]; argv[0] is the file name of `path`
  std::map<std::string, std::string> env;
  bool inherit_env = true;
  std::string cwd;         // empty: the pool's working directory
  std::string stdin_data;  // bytes written to the child's stdin, then closed; empty: /dev/null

  // --- Crate spelling (`BinaryTask::new(path).with_args(..)`): a value to give to
  // Builder::add_stage or PipelineTask::add_stage. Each with_* replaces that field.
  ProcessSpec() = default;
  explicit ProcessSpec(std::string binary) : path(std::move(binary)) {}
  ProcessSpec& with_args(std::vector<std::string> a) & { return args = std::move(a), *this; }
  ProcessSpec&& with_args(std::vector<std::string> a) && {
    return std::move(with_args(std::move(a)));
  }
  ProcessSpec& with_env(std::map<std::string, std::string> e) & {
    return env = std::move(e), *this;
  }
  ProcessSpec&& with_env(std::map<std::string, std::string> e) && {
    return std::move(with_env(std::move(e)));
  }
  ProcessSpec& with_working_dir(std::string dir) & { return cwd = std::move(dir), *this; }
  ProcessSpec&& with_working_dir(std::string dir) && {
    return std::move(with_working_dir(std::move(dir)));
  }
  ProcessSpec& with_stdin(std::string bytes) & { return stdin_data = std::move(bytes), *this; }
  ProcessSpec&& with_stdin(std::string bytes) && { return std::move(with_stdin(std::move(bytes))); }
  friend bool operator==(const ProcessSpec&, const ProcessSpec&) = default;
};

// ---- Task kinds, pipelines (the crate's BinaryTask / PipelineTask / TaskKind) ----

/// The crate's name for what a binary task runs.
using BinaryTask = ProcessSpec;

/// Binaries run concurrently as one unit, like a shell pipeline `a | b | c`: each stage is its
/// own process, all in one process group; with pipe_output (the default) stage i's stdout is a
/// kernel pipe into stage i+1's stdin, so a fast producer blocks on a slow consumer (pepita never
/// buffers the data in between). The last stage's stdout is the task's stdout; every stage's
/// stderr goes, unlabelled and in the order written, into the task's stderr (both under the
/// output cap). The pipeline succeeds when every stage does (`set -o pipefail`), except that a
/// stage killed by SIGPIPE after the next stage stopped reading is not a failure (`yes | head`).
/// The first stage to fail names the failure ("pipeline stage 1 ('sh') exited with status 3")
/// and the others are stopped (SIGTERM, then SIGKILL after the executor's grace period).
/// Only stage 0 may have stdin. Without pipe_output the stages are not connected: they still run
/// side by side as one unit, stage 0 reads its stdin and the others /dev/null, and all of their
/// stdout goes, in the order written, into the task's stdout.
///
///   auto t = Task::pipeline()
///                .add_stage(BinaryTask("seq").with_args({"1", "100000"}))
///                .add_stage(BinaryTask("grep").with_args({"7"}))
///                .add_stage(BinaryTask("wc").with_args({"-l"}))
///                .build();
struct PipelineTask {
  std::vector<BinaryTask> stages;
  bool pipe_output = true;

  PipelineTask& add_stage(BinaryTask stage) & { return stages.push_back(std::move(stage)), *this; }
  PipelineTask&& add_stage(BinaryTask stage) && { return std::move(add_stage(std::move(stage))); }
  PipelineTask& with_pipe_output(bool pipe) & { return pipe_output = pipe, *this; }
  PipelineTask&& with_pipe_output(bool pipe) && { return std::move(with_pipe_output(pipe)); }
  std::size_t num_stages() const noexcept { return stages.size(); }
  bool is_empty() const noexcept { return stages.empty(); }
  friend bool operator==(const PipelineTask&, const PipelineTask&) = default;
};

/// What a task runs (the crate's `TaskKind`, plus Callable for Task::function); the data itself
/// is reached through Task::as_binary, Task::as_pipeline and Task::function.
enum class TaskKind : std::uint8_t { Binary, Callable, Pipeline, Shader };
// ---- end task kinds ----

/// Default cap on captured stdout and stderr, each (bytes beyond it are counted and dropped).
inline constexpr std::size_t kDefaultOutputCap = 1 << 20;

// ---- Shader tasks (issue 21, GPU part) ----------------------------------------------------
// Plain data: the task module knows nothing of Vulkan; the "gpu" backend (pepita/gpu/
// gpu_executor.hpp) validates the SPIR-V, builds and caches the pipeline, and dispatches.

/// One storage buffer of a shader task, bound at set 0, binding = its index in
/// ShaderTask::buffers. `data` is uploaded before the dispatch (an output with no initial
/// contents is zero-filled); the contents of every `output` buffer after the dispatch are returned
/// in ExecutionResult::output_buffers, in binding order.
struct ShaderBuffer {
  std::vector<std::byte> data{};
  bool output = false;
};

/// Workgroup counts of a dispatch (vkCmdDispatch's x, y, z); each must be at least 1.
struct Workgroups {
  std::uint32_t x = 1, y = 1, z = 1;
};

/// What a shader task runs: SPIR-V (a GLCompute entry point), workgroup counts, push-constant
/// bytes, specialization constants and its storage buffers. The crate's ShaderTask, with real
/// buffer contents where the crate has only sizes.
///
///   auto s = ShaderTask::create(spirv).with_inputs({a_bytes, b_bytes}).with_outputs({n * 4})
///                .with_workgroups(n / 64, 1, 1).with_push_constants(push_bytes);
///   auto t = Task::shader(std::move(s)).build();  // runs on Backend::Gpu
struct ShaderTask {
  std::vector<std::uint32_t> spirv{};  // the module's words (magic 0x07230203 first)
  std::string entry_point = "main";
  Workgroups workgroups{};
  std::vector<std::byte> push_constants{};      // one block, a multiple of 4 bytes
  std::vector<std::uint32_t> spec_constants{};  // value of layout(constant_id = i)
  std::vector<ShaderBuffer> buffers{};          // binding order

  /// The crate's ShaderTask::new: a shader with no buffers, one workgroup.
  static ShaderTask create(std::vector<std::uint32_t> spirv);
  // Builders for named values (`s.with_inputs(...)`) and, by move, for temporaries
  // (`ShaderTask::create(w).with_inputs(...).with_outputs(...)`).
  /// Appends one input buffer per element, holding those bytes (next free bindings).
  ShaderTask& with_inputs(std::vector<std::vector<std::byte>> inputs) &;
  /// Appends one zero-filled output buffer per element, of that many bytes (next free bindings).
  ShaderTask& with_outputs(std::vector<std::size_t> sizes) &;
  /// Appends one buffer (e.g. an output with initial contents: read-modify-write).
  ShaderTask& with_buffer(ShaderBuffer buffer) &;
  ShaderTask& with_workgroups(std::uint32_t x, std::uint32_t y, std::uint32_t z) &;
  ShaderTask& with_push_constants(std::vector<std::byte> bytes) &;
  ShaderTask& with_entry_point(std::string name) &;
  ShaderTask& with_spec_constants(std::vector<std::uint32_t> values) &;
  ShaderTask&& with_inputs(std::vector<std::vector<std::byte>> inputs) && {
    return std::move(with_inputs(std::move(inputs)));
  }
  ShaderTask&& with_outputs(std::vector<std::size_t> sizes) && {
    return std::move(with_outputs(std::move(sizes)));
  }
  ShaderTask&& with_buffer(ShaderBuffer buffer) && {
    return std::move(with_buffer(std::move(buffer)));
  }
  ShaderTask&& with_workgroups(std::uint32_t x, std::uint32_t y, std::uint32_t z) && {
    return std::move(with_workgroups(x, y, z));
  }
  ShaderTask&& with_push_constants(std::vector<std::byte> bytes) && {
    return std::move(with_push_constants(std::move(bytes)));
  }
  ShaderTask&& with_entry_point(std::string name) && {
    return std::move(with_entry_point(std::move(name)));
  }
  ShaderTask&& with_spec_constants(std::vector<std::uint32_t> values) && {
    return std::move(with_spec_constants(std::move(values)));
  }

  /// x * y * z, without overflow.
  std::uint64_t total_workgroups() const noexcept {
    return std::uint64_t{workgroups.x} * workgroups.y * workgroups.z;
  }
  /// How many buffers are outputs (the size of ExecutionResult::output_buffers on success).
  std::size_t output_count() const noexcept;

  /// The structural checks that need no device: InvalidArgument naming the field when `spirv`
  /// is empty or lacks the SPIR-V magic number, `entry_point` is empty or holds NUL, a workgroup
  /// count is 0, `push_constants` is not a multiple of 4 bytes, or a buffer is empty. (The gpu
  /// backend checks the rest against the module and the device.)
  Result<void> validate() const;
};
// ---- end shader tasks ------------------------------------------------------------------------
// ---- issue 21: the crate's priority levels and task states ----

/// The crate's priority levels. Builder::priority(TaskPriority) stores priority_value(level) in
/// the task's int32 priority (Low -1, Normal 0 = the default, High 1, Critical 2), so levels and
/// plain integers order together: higher runs first among ready tasks of one backend.
enum class TaskPriority : std::uint8_t { Low = 0, Normal = 1, High = 2, Critical = 3 };

constexpr std::uint8_t as_u8(TaskPriority p) noexcept { return static_cast<std::uint8_t>(p); }
/// The level of `value` (0..3), nullopt otherwise.
constexpr std::optional<TaskPriority> task_priority_from_u8(std::uint8_t value) noexcept {
  if (value > 3) return std::nullopt;
  return static_cast<TaskPriority>(value);
}
/// The int32 priority a level stands for (Low -1, Normal 0, High 1, Critical 2).
constexpr std::int32_t priority_value(TaskPriority p) noexcept {
  return static_cast<std::int32_t>(as_u8(p)) - 1;
}
/// "low", "normal", "high", "critical".
std::string_view to_string(TaskPriority p) noexcept;
/// Parses a level name as to_string writes it; InvalidArgument listing the names otherwise.
Result<TaskPriority> parse_task_priority(std::string_view name);

/// Where a task is in its life (the crate's states). A pool reports them through
/// TaskHandle::state(): Pending = waiting for dependencies, Queued = ready (or waiting out a retry
/// delay) but not started, Running = an attempt in flight; then one terminal state taken from the
/// final result (executor::task_state maps each Status).
enum class TaskState : std::uint8_t {
  Pending,
  Queued,
  Running,
  Completed,
  Failed,
  Cancelled,
  TimedOut,
};
constexpr bool is_terminal(TaskState s) noexcept { return s >= TaskState::Completed; }
constexpr bool is_active(TaskState s) noexcept { return s <= TaskState::Running; }
/// "pending", "queued", "running", "completed", "failed", "cancelled", "timed-out".
std::string_view to_string(TaskState s) noexcept;

class Builder;

namespace detail {
/// Issue 27: a field of a task's spec that most tasks leave at its default (a sandbox, a
/// resource request, a pipeline, a shader, ...), kept out of line so a task that sets none of
/// them costs a null pointer each, and shared (copy-on-write) between the copies
/// Task::with_timeout and friends make. Null is "absent" for the optional ones (has_value(),
/// operator*) and T{} for the others (get()).
template <typename T>
class Boxed {
 public:
  bool has_value() const noexcept { return p_ != nullptr; }
  explicit operator bool() const noexcept { return has_value(); }
  const T& operator*() const noexcept { return *p_; }
  const T* operator->() const noexcept { return p_.get(); }
  /// The value, or T{} when none was set.
  const T& get() const noexcept { return p_ ? *p_ : empty(); }
  template <typename... A>
  T& emplace(A&&... args) {
    p_ = std::make_shared<T>(std::forward<A>(args)...);
    return *p_;
  }
  Boxed& operator=(T value) {
    emplace(std::move(value));
    return *this;
  }
  /// For writing: a value of its own (a default one when none was set, a copy when shared).
  T& mut() {
    if (!p_) return emplace();
    if (p_.use_count() > 1) return emplace(*p_);
    return *p_;
  }

 private:
  static const T& empty() noexcept {
    static const T value{};
    return value;
  }
  std::shared_ptr<T> p_;
};
}  // namespace detail

/// An immutable, validated task. Cheap to copy (the spec is shared).
class Task {
 public:
  /// Starts a Process task running the executable at `path` (absolute, relative to the cwd, or a
  /// bare name looked up in PATH at spawn time).
  static Builder binary(std::string path);

  /// Starts a Cpu task from any callable taking nothing or a std::stop_token, returning void,
  /// std::string, Result<std::string> or Result<void>.
  template <typename F>
  static Builder function(F&& callable);

  // ---- Shader tasks (issue 21, GPU part) ----
  /// Starts a shader task on Backend::Gpu (see ShaderTask). build() runs ShaderTask::validate.
  static Builder shader(ShaderTask shader);
  /// The same from its parts: `buffers` in binding order, outputs marked.
  static Builder shader(std::vector<std::uint32_t> spirv, Workgroups workgroups,
                        std::vector<std::byte> push_constants, std::vector<ShaderBuffer> buffers);
  bool is_shader() const noexcept { return spec_->shader.has_value(); }
  /// Present for shader tasks only.
  const ShaderTask* shader() const noexcept { return spec_->shader ? &*spec_->shader : nullptr; }
  /// The crate's name for shader().
  const ShaderTask* as_shader() const noexcept { return shader(); }
  // ---- end shader tasks ----

  TaskId id() const noexcept { return spec_->id; }
  /// Stable name used by the journal and the CLI; defaults to "task-<id>".
  const std::string& name() const noexcept { return spec_->name; }
  const Backend& backend() const noexcept { return spec_->backend; }
  bool is_process() const noexcept { return spec_->process.has_value(); }
  /// Present for process tasks only.
  const ProcessSpec* process() const noexcept {
    return spec_->process ? &*spec_->process : nullptr;
  }
  /// Present for function tasks only.
  const Function* function() const noexcept { return spec_->fn ? &spec_->fn : nullptr; }
  const std::vector<TaskId>& dependencies() const noexcept { return spec_->deps; }
  /// Zero means no timeout.
  std::chrono::nanoseconds timeout() const noexcept { return spec_->timeout; }
  /// Budget for the whole task — queueing, every attempt and the backoff between them — from
  /// submission; zero means none. The pool does not start or retry a task past it.
  std::chrono::nanoseconds deadline() const noexcept { return spec_->deadline; }
  /// Extra attempts after the first; nullopt defers to the pool's RetryPolicy.
  std::optional<std::uint32_t> max_retries() const noexcept { return spec_->max_retries; }
  /// Higher runs first among ready tasks of the same backend.
  std::int32_t priority() const noexcept { return spec_->priority; }
  std::size_t output_cap() const noexcept { return spec_->output_cap; }

  // ---- issue 21: metadata and the pool's default timeout ----
  /// Free-form key/value labels (Builder::metadata). The pool copies them into the task's
  /// ExecutionResult and journal record; they are not part of spec_digest().
  const std::map<std::string, std::string>& metadata() const noexcept {
    return spec_->metadata.get();
  }
  /// A copy of this task (same id, name and everything else) whose timeout is `limit` — how the
  /// pool applies Pool::Builder::default_timeout to tasks without their own.
  Task with_timeout(std::chrono::nanoseconds limit) const;

  /// A digest of everything that determines the task's effect (kind, command, args, env, cwd,
  /// stdin, backend), hex-encoded. The journal reuses a result only when the digest matches.
  std::string spec_digest() const;

  // ---- Task kinds, pipelines and affinity (crate: Task::{pipeline, is_binary, as_binary,
  // is_pipeline, as_pipeline, can_retry}) ----

  /// Starts a Pipeline task; add its stages with Builder::add_stage. Runs on the process backend.
  static Builder pipeline();
  /// Starts a Pipeline task from a complete PipelineTask (keeps its pipe_output setting).
  static Builder pipeline(PipelineTask stages);

  TaskKind kind() const noexcept;
  /// A single binary (the crate's name for is_process()).
  bool is_binary() const noexcept { return is_process(); }
  const BinaryTask* as_binary() const noexcept { return process(); }
  bool is_pipeline() const noexcept { return spec_->pipeline.has_value(); }
  /// Present for pipeline tasks only.
  const PipelineTask* as_pipeline() const noexcept {
    return spec_->pipeline ? &*spec_->pipeline : nullptr;
  }
  /// The CPUs the task's processes may run on (CpuAffinity::Any() unless set).
  const CpuAffinity& affinity() const noexcept { return spec_->affinity.get(); }
  /// Whether a task that has been retried `retries_done` times may be retried again: its own
  /// max_retries, or `pool_default` (the pool RetryPolicy's max_attempts - 1) when unset. A Task
  /// is immutable and may run in several pools, so the count lives with the caller; the pool
  /// keeps it per run and reports it as ExecutionResult::attempts (the crate's increment_retry).
  bool can_retry(std::uint32_t retries_done, std::uint32_t pool_default = 0) const noexcept {
    return retries_done < max_retries().value_or(pool_default);
  }
  // ---- end task kinds ----

  // ---- issue 22: resources ----
  /// What the task asks for (empty: a slot and nothing else). See resources.hpp.
  const ResourceRequest& resources() const noexcept { return spec_->resources.get(); }
  /// Which failures it retries; empty: the pool's RetryPolicy decides.
  const std::vector<RetryOn>& retry_on() const noexcept { return spec_->retry_on; }
  /// What the pool gave this attempt (on the copy it hands an executor); nullptr otherwise.
  const Allocation* allocation() const noexcept {
    return spec_->allocation ? &*spec_->allocation : nullptr;
  }
  /// A copy of this task (same id and everything else) carrying `allocation` — how the pool
  /// tells an executor what an attempt may use.
  Task with_allocation(Allocation allocation) const;
  // ---- end resources ----

  // ---- issue 23: sandbox ----
  /// The sandbox its process runs in (none by default; see sandbox.hpp). A pool or worker may
  /// raise it (a worker puts remote drivers' tasks in `standard` unless told otherwise).
  const SandboxPolicy& sandbox() const noexcept { return spec_->sandbox.get(); }
  /// A copy of this task (same id and everything else) with `policy` as its sandbox.
  Task with_sandbox(SandboxPolicy policy) const;
  // ---- end sandbox ----

  // ---- issue 24: declared files ----
  /// Files the task reads, as declared (Builder::inputs): paths, absolute or relative to the
  /// task's cwd (the pool's working directory when it has none). The result cache hashes them,
  /// a remote worker receives them staged, and a task whose inputs are another task's outputs
  /// runs after it. Part of no digest by themselves: their contents are (the cache's key).
  const std::vector<std::string>& inputs() const noexcept { return spec_->inputs; }
  /// Files the task writes, as declared (Builder::outputs), resolved like inputs(). A missing
  /// output after a successful run fails the task naming the file.
  const std::vector<std::string>& outputs() const noexcept { return spec_->outputs; }
  /// Where an executor streams this attempt's stdout/stderr as they arrive (nullptr: nowhere);
  /// not part of the spec digest.
  const std::shared_ptr<LogSink>& log_sink() const noexcept { return spec_->log_sink; }
  /// A copy of this task (same id and everything else) streaming its output to `sink` — how the
  /// pool attaches live logs to an attempt.
  Task with_log_sink(std::shared_ptr<LogSink> sink) const;
  // ---- end declared files ----

 private:
  friend class Builder;
  struct Spec {
    TaskId id = 0;
    std::string name;
    Backend backend = Backend::Process;
    std::optional<ProcessSpec> process;
    Function fn;
    std::vector<TaskId> deps;
    std::chrono::nanoseconds timeout{0};
    std::chrono::nanoseconds deadline{0};
    std::optional<std::uint32_t> max_retries;
    std::int32_t priority = 0;
    std::size_t output_cap = kDefaultOutputCap;
    // Issue 27: what most tasks leave unset is boxed (a pointer each; 1080 -> 560 bytes a spec),
    // so a million tasks fit in memory. Pipelines and affinity.
    detail::Boxed<PipelineTask> pipeline;  // absent: not a pipeline
    detail::Boxed<CpuAffinity> affinity;   // absent: CpuAffinity{}
    detail::Boxed<ShaderTask> shader;      // shader tasks (GPU part of issue 21)
    detail::Boxed<std::map<std::string, std::string>> metadata;  // issue 21
    detail::Boxed<ResourceRequest> resources;                    // issue 22
    std::vector<RetryOn> retry_on;
    detail::Boxed<Allocation> allocation;  // absent: none
    detail::Boxed<SandboxPolicy> sandbox;  // issue 23
    std::vector<std::string> inputs;       // issue 24
    std::vector<std::string> outputs;      // issue 24
    std::shared_ptr<LogSink> log_sink;     // issue 24: live logs of one attempt
  };
  explicit Task(std::shared_ptr<const Spec> spec) : spec_(std::move(spec)) {}
  std::shared_ptr<const Spec> spec_;
};

/// Collects a task's settings; build() validates them all and reports the first problem.
class Builder {
 public:
  Builder& name(std::string name);
  Builder& arg(std::string arg);
  Builder& args(std::vector<std::string> args);
  Builder& env(std::string key, std::string value);
  /// Start from an empty environment instead of the parent's.
  Builder& clear_env();
  Builder& cwd(std::string dir);
  Builder& stdin(std::string bytes);
  Builder& timeout(std::chrono::nanoseconds limit);
  Builder& deadline(std::chrono::nanoseconds total);
  Builder& max_retries(std::uint32_t retries);
  Builder& priority(std::int32_t priority);
  Builder& backend(Backend backend);
  Builder& depends_on(std::vector<TaskId> ids);
  Builder& output_cap(std::size_t bytes);

  // ---- Pipelines and affinity ----
  /// Appends a stage to a pipeline task (Task::pipeline()). On a pipeline, env(), clear_env()
  /// and cwd() set every stage's defaults (a stage's own values win) and stdin() feeds stage 0;
  /// arg()/args() are per stage.
  Builder& add_stage(BinaryTask stage);
  /// Appends a built binary task as a stage: its command, args, env, cwd and stdin. build()
  /// fails (naming the stage) when it is not a binary, or carries what only the whole pipeline
  /// can have: dependencies, a timeout, a deadline, retries, an affinity or a backend other
  /// than process.
  Builder& add_stage(const Task& stage);
  /// The same for a build() result; its error becomes this builder's.
  Builder& add_stage(const Result<Task>& stage);
  /// Where the task's processes may run; applied with sched_setaffinity(2) to the child (every
  /// stage of a pipeline). build() checks the cores are online / the NUMA node exists, and
  /// rejects it where the local process executor would not apply it: function tasks (they run
  /// on the scheduler's shared worker threads), shader tasks, and backends other than process.
  Builder& affinity(CpuAffinity affinity);
  // ---- end pipelines and affinity ----

  // ---- issue 22: resources ----
  /// What the task needs; build() runs ResourceRequest::validate and refuses a request on a
  /// function task other than cpus (a function runs on a shared scheduler thread: nothing there
  /// can hold it to memory or GPUs).
  Builder& resources(ResourceRequest request);
  /// Which failures retry (replaces the list).
  Builder& retry_on(std::vector<RetryOn> kinds);

  // ---- issue 23: sandbox ----
  /// The sandbox of a process or pipeline task; build() refuses one on other kinds (a function
  /// runs on a shared scheduler thread, a shader on the GPU: neither has a process to confine).
  Builder& sandbox(SandboxPolicy policy);

  // ---- issue 24: declared files ----
  /// The files the task reads (replaces the list); see Task::inputs. build() refuses an empty
  /// path, one holding NUL, and declared files on a function or shader task.
  Builder& inputs(std::vector<std::string> paths);
  /// The files the task writes (replaces the list); see Task::outputs. build() refuses what
  /// inputs() refuses, and a path declared twice.
  Builder& outputs(std::vector<std::string> paths);

  // ---- issue 21: the crate's spellings ----
  /// A crate priority level; stores priority_value(level).
  Builder& priority(TaskPriority level);
  /// Adds (or replaces) one metadata label; the key must be non-empty, neither may hold NUL.
  Builder& metadata(std::string key, std::string value);

  /// InvalidArgument when: the path or name is empty or holds NUL bytes, an env key is empty or
  /// holds '=' or NUL, a metadata key is empty or holds NUL, the timeout or deadline is negative,
  /// a dependency is 0 or the task itself, a function's backend is neither cpu nor any, or the
  /// output cap is 0. A binary may name any backend: on cpu (the crate's spelling) the pool runs
  /// it as a process, on any it picks one.
  Result<Task> build();

 private:
  friend class Task;
  Builder() = default;
  Task::Spec spec_;
  std::vector<std::string> problems_;
  // Pipeline stage defaults set through env()/clear_env()/cwd()/stdin() on a pipeline builder.
  ProcessSpec stage_defaults_;
  void check_pipeline();  // applies stage_defaults_, validates every stage
  void check_affinity();
  void check_resources();  // issue 22: ResourceRequest::validate plus the per-kind rules
  void check_files();      // issue 24: declared inputs and outputs
};

/// The crate's name for the task builder.
using TaskBuilder = Builder;

namespace detail {
template <typename F>
Function wrap_function(F&& callable) {
  using Fn = std::decay_t<F>;
  return [fn = Fn(std::forward<F>(callable))](std::stop_token stop) mutable -> Result<std::string> {
    auto invoke = [&]() -> decltype(auto) {
      if constexpr (std::is_invocable_v<Fn&, std::stop_token>) {
        return fn(std::move(stop));
      } else {
        return fn();
      }
    };
    using R = decltype(invoke());
    if constexpr (std::is_void_v<R>) {
      invoke();
      return std::string();
    } else if constexpr (std::is_same_v<R, Result<void>>) {
      auto r = invoke();
      if (!r) return std::unexpected(std::move(r).error());
      return std::string();
    } else {
      return Result<std::string>(invoke());
    }
  };
}
}  // namespace detail

template <typename F>
Builder Task::function(F&& callable) {
  Builder b;
  b.spec_.backend = Backend::Cpu;
  b.spec_.fn = detail::wrap_function(std::forward<F>(callable));
  return b;
}

}  // namespace pepita::task

template <>
struct std::hash<pepita::task::Backend> {
  std::size_t operator()(const pepita::task::Backend& b) const noexcept {
    return std::hash<std::string_view>{}(b.name());
  }
};
