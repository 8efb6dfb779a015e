// GpuExecutor: GPU task attempts (parse, upload, dispatch, read back) on the shared
// executor::BlockingRunner, whose watcher reports cancelled and timed-out attempts at once while
// the runner thread still owns the buffers the GPU may be using until its submission completes.
// Built as the adapter library pepita_gpu_executor (src/gpu/executor/).

#include "pepita/gpu/gpu_executor.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "detail/shader_runner.hpp"
#include "detail/task_args.hpp"
#include "pepita/core/format.hpp"
#include "pepita/executor/blocking_runner.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/builtins.hpp"
#include "pepita/gpu/kernel.hpp"

namespace pepita::gpu {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using detail::KernelKind;
using detail::Source;
using detail::TaskPlan;
using executor::ExecutionResult;
using executor::Status;

constexpr std::size_t kMaxSlots = 64;
constexpr std::size_t kMaxPrinted = 4096;  // values printed as text without out=
using executor::BlockingRunner;
// One attempt as the runner hands it over: the task, its stop token (cancel or timeout) and
// when it was accepted.
using Job = BlockingRunner::Attempt;

ExecutionResult result_for(const Job& job, Status status, std::string error) {
  return executor::result_for(job.task, status, std::move(error), job.started);
}

// Mistakes in the task (arguments, files, sizes, limits) fail the task like a process exiting
// 1; only the device or driver failing is LaunchFailed, which is what the pool's circuit
// breaker counts, so a few bad tasks do not shut the GPU backend off for the good ones.
Status status_for(const Error& e) {
  switch (e.code()) {
    case ErrorCode::Io:
    case ErrorCode::Internal:
    case ErrorCode::Unsupported: return Status::LaunchFailed;
    case ErrorCode::Cancelled: return Status::Cancelled;
    case ErrorCode::TimedOut: return Status::TimedOut;
    default: return Status::Failed;
  }
}

std::string format_value(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

// Writes `values` to `path` through a temporary file and rename, so a reader never sees half.
Result<void> write_floats(const fs::path& path, const std::vector<float>& values) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      return fail(ErrorCode::NotFound, "gpu task output " + path.string() + ": cannot create " +
                                           tmp.string() + " (does the directory exist?)");
    // SAFETY: writing the floats' object representation as bytes; char* may alias anything.
    out.write(reinterpret_cast<const char*>(values.data()),
              static_cast<std::streamsize>(values.size() * sizeof(float)));
    out.flush();
    if (!out)
      return fail(ErrorCode::ResourceExhausted,
                  "gpu task output " + tmp.string() + ": write failed (disk full?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return fail(ErrorCode::PermissionDenied,
                "gpu task output " + path.string() + ": rename failed: " + ec.message());
  }
  return {};
}

}  // namespace

struct GpuExecutor::Impl {
  Options options;
  Device device;
  Builtins builtins;
  std::uint64_t max_bytes = 0;  // min(options.max_buffer_bytes, device storage-buffer range)
  std::unique_ptr<detail::ShaderRunner> shaders;  // shader tasks (task::ShaderTask)

  // Last: destroyed (its threads joined) before the device and kernels they use.
  std::unique_ptr<BlockingRunner> runner;

  Impl(Options o, Device d, Builtins b)
      : options(std::move(o)), device(std::move(d)), builtins(std::move(b)) {}

  // ---- the attempt itself ----

  struct Attempt {
    Impl& impl;
    const Job& job;
    const TaskPlan& plan;
    fs::path cwd;

    // The runner reports a stopped attempt itself (report_early); this only stops the work.
    Result<void> check_stop() const {
      if (job.stop.stop_requested())
        return fail(ErrorCode::Cancelled, "attempt already reported (cancelled or timed out)");
      return {};
    }

    Result<Buffer> upload(const Source& src, std::uint64_t count) {
      PEPITA_TRY_VOID(check_stop());
      auto values = PEPITA_TRY(detail::materialize(src, count, cwd, impl.max_bytes));
      return Buffer::from<float>(impl.device, values);
    }
    Result<Buffer> zeros(const char* what, std::uint64_t count) {
      Source s;
      s.kind = Source::Kind::Zeros;
      s.key = what;
      return upload(s, count);
    }
    Result<std::uint64_t> count_of(const Source& s) const {
      if (s.kind == Source::Kind::File) return detail::file_floats(s, cwd);
      if (s.kind == Source::Kind::Zeros) return *s.count;
      if (plan.n) return *plan.n;
      return fail(ErrorCode::InvalidArgument, "gpu task '" + plan.kernel + "': " + s.key +
                                                  "= is fill:/ramp:, so n= must give its size");
    }
    // n of a 1-D kernel: given, or the first file input's size.
    Result<std::uint64_t> vector_size(std::initializer_list<const char*> keys) const {
      if (plan.n) return *plan.n;
      for (const char* k : keys)
        if (const Source& s = plan.inputs.at(k); s.kind == Source::Kind::File)
          return detail::file_floats(s, cwd);
      return fail(ErrorCode::InvalidArgument,
                  "gpu task '" + plan.kernel + "': n= is required when no input is a file");
    }

    Result<std::string> output(const Buffer& buf, std::uint64_t count) {
      PEPITA_TRY_VOID(check_stop());
      std::vector<float> values(count);
      PEPITA_TRY_VOID(buf.download(std::span<float>(values)));
      return emit(values);
    }
    Result<std::string> emit(const std::vector<float>& values) {
      const std::string name =
          plan.kind == KernelKind::Spirv ? fs::path(plan.kernel).filename().string() : plan.kernel;
      if (!plan.out.empty()) {
        const fs::path path = detail::resolve(plan.out, cwd);
        PEPITA_TRY_VOID(write_floats(path, values));
        return name + ": " + std::to_string(values.size()) + " floats -> " + plan.out + "\n";
      }
      std::string text;
      const std::size_t shown = std::min(values.size(), kMaxPrinted);
      for (std::size_t i = 0; i < shown; ++i) text += format_value(values[i]) + "\n";
      if (shown < values.size())
        text += "... " + std::to_string(values.size() - shown) +
                " more values (give out=FILE to get them all)\n";
      return text;
    }

    Result<std::string> run() {
      Builtins& lib = impl.builtins;
      switch (plan.kind) {
        case KernelKind::Add:
        case KernelKind::Saxpy: {
          const bool add = plan.kind == KernelKind::Add;
          const char* k1 = add ? "a" : "x";
          const char* k2 = add ? "b" : "y";
          const std::uint64_t n = PEPITA_TRY(vector_size({k1, k2}));
          if (n == 0) return emit({});
          auto p = PEPITA_TRY(upload(plan.inputs.at(k1), n));
          auto q = PEPITA_TRY(upload(plan.inputs.at(k2), n));
          PEPITA_TRY_VOID(check_stop());
          if (add) {
            auto out = PEPITA_TRY(zeros("out", n));
            PEPITA_TRY_VOID(lib.vector_add(p, q, out, n));
            return output(out, n);
          }
          PEPITA_TRY_VOID(lib.saxpy(plan.alpha, p, q, n));
          return output(q, n);
        }
        case KernelKind::Sum:
        case KernelKind::Max: {
          const std::uint64_t n = PEPITA_TRY(vector_size({"x"}));
          if (n == 0 && plan.kind == KernelKind::Max)
            return fail(ErrorCode::InvalidArgument,
                        "gpu task 'max': the input is empty (max of 0 elements)");
          if (n == 0) return std::string("0\n");
          auto x = PEPITA_TRY(upload(plan.inputs.at("x"), n));
          PEPITA_TRY_VOID(check_stop());
          const float v = PEPITA_TRY(plan.kind == KernelKind::Sum ? lib.sum(x, n) : lib.max(x, n));
          return format_value(v) + "\n";
        }
        case KernelKind::Softmax: {
          const std::uint64_t count = *plan.rows * *plan.cols;  // both <= 2^32 - 1: no overflow
          auto x = PEPITA_TRY(upload(plan.inputs.at("x"), count));
          auto out = PEPITA_TRY(zeros("out", count));
          PEPITA_TRY_VOID(check_stop());
          PEPITA_TRY_VOID(lib.softmax(x, out, *plan.rows, *plan.cols));
          return output(out, count);
        }
        case KernelKind::Sgemm: {
          const std::uint64_t m = *plan.m, n = *plan.n, k = *plan.k;
          auto a = PEPITA_TRY(upload(plan.inputs.at("a"), m * k));
          auto b = PEPITA_TRY(upload(plan.inputs.at("b"), k * n));
          auto it = plan.inputs.find("c");
          auto c =
              PEPITA_TRY(it != plan.inputs.end() ? upload(it->second, m * n) : zeros("c", m * n));
          PEPITA_TRY_VOID(check_stop());
          PEPITA_TRY_VOID(lib.sgemm(m, n, k, plan.alpha, a, b, plan.beta, c));
          return output(c, m * n);
        }
        case KernelKind::Spirv: return run_spirv();
      }
      return fail(ErrorCode::Internal, "gpu task: unknown kernel kind");
    }

    Result<std::string> run_spirv() {
      const DeviceInfo& info = impl.device.info();
      for (int a = 0; a < 3; ++a)
        if (plan.groups[a] > info.max_group_count[a])
          return fail(ErrorCode::InvalidArgument,
                      "gpu task '" + plan.kernel + "': groups " + "xyz"[a] + " = " +
                          std::to_string(plan.groups[a]) + " is over the device limit of " +
                          std::to_string(info.max_group_count[a]) + " on " + info.name);
      KernelLayout layout;
      layout.buffers = static_cast<std::uint32_t>(plan.buffers.size());
      layout.push_constant_bytes = static_cast<std::uint32_t>(plan.push.size() * 4);
      layout.spec_constants = plan.spec;
      layout.entry_point = plan.entry;
      auto kernel = Kernel::from_file(impl.device, detail::resolve(plan.kernel, cwd), layout);
      if (!kernel)
        return std::unexpected(
            std::move(kernel.error()).with_context("gpu task '" + plan.kernel + "'"));
      std::vector<Buffer> bufs;
      std::vector<std::uint64_t> counts;
      for (const Source& s : plan.buffers) {
        counts.push_back(PEPITA_TRY(count_of(s)));
        if (counts.back() == 0)
          return fail(ErrorCode::InvalidArgument,
                      "gpu task '" + plan.kernel + "': buffer " + s.key + "= is empty");
        bufs.push_back(PEPITA_TRY(upload(s, counts.back())));
      }
      std::vector<const Buffer*> ptrs;
      for (const Buffer& b : bufs) ptrs.push_back(&b);
      PEPITA_TRY_VOID(check_stop());
      PEPITA_TRY_VOID(impl.device.dispatch(*kernel, ptrs,
                                           {plan.groups[0], plan.groups[1], plan.groups[2]},
                                           std::as_bytes(std::span(plan.push))));
      return output(bufs[plan.result], counts[plan.result]);
    }
  };

  // A shader task: its output buffers go to ExecutionResult::output_buffers, a one-line summary
  // to stdout.
  ExecutionResult run_shader(const Job& job, const task::ShaderTask& shader) {
    auto outputs = shaders->run(shader, [&job] { return job.stop.stop_requested(); });
    if (!outputs) {
      Error e = std::move(outputs.error());
      e.with_context("shader task '" + job.task.name() + "'");
      return result_for(job, status_for(e), e.message());
    }
    std::uint64_t bytes = 0;
    for (const auto& o : *outputs) bytes += o.size();
    ExecutionResult r = result_for(job, Status::Succeeded, "");
    std::string text = pepita::fmt(
        "shader {}: {}x{}x{} workgroups, {} buffers, {} outputs ({} "
        "bytes)\n",
        shader.entry_point, shader.workgroups.x, shader.workgroups.y, shader.workgroups.z,
        shader.buffers.size(), outputs->size(), bytes);
    r.stdout_bytes = text.size();
    if (text.size() > job.task.output_cap()) text.resize(job.task.output_cap());
    r.stdout_data = std::move(text);
    r.output_buffers = std::move(*outputs);
    return r;
  }

  ExecutionResult run(const Job& job) {
    if (const task::ShaderTask* shader = job.task.shader()) return run_shader(job, *shader);
    const task::ProcessSpec& spec = *job.task.process();
    auto plan = detail::parse_task(spec.path, spec.args);
    if (!plan) return result_for(job, Status::Failed, plan.error().message());
    Attempt attempt{*this, job, *plan, fs::path(spec.cwd)};
    auto text = attempt.run();
    if (!text) return result_for(job, status_for(text.error()), text.error().message());
    ExecutionResult r = result_for(job, Status::Succeeded, "");
    r.stdout_bytes = text->size();
    if (text->size() > job.task.output_cap()) text->resize(job.task.output_cap());
    r.stdout_data = std::move(*text);
    return r;
  }
};

GpuExecutor::GpuExecutor(Private, std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

GpuExecutor::~GpuExecutor() { shutdown(); }

Result<std::shared_ptr<GpuExecutor>> GpuExecutor::create(Options options) {
  auto device = PEPITA_TRY(Device::open(options.device));
  return create(device, std::move(options));
}

Result<std::shared_ptr<GpuExecutor>> GpuExecutor::create(Device& device, Options options) {
  if (options.slots == 0 || options.slots > kMaxSlots)
    return fail(ErrorCode::InvalidArgument,
                "GpuExecutor slots must be 1.." + std::to_string(kMaxSlots));
  if (options.default_timeout.count() <= 0)
    return fail(ErrorCode::InvalidArgument, "GpuExecutor default_timeout must be positive");
  auto lib = PEPITA_TRY(Builtins::create(device));
  // A second handle on the same device (the caller keeps theirs).
  auto impl = std::make_unique<Impl>(options, Device(device.ctx_), std::move(lib));
  impl->max_bytes = std::min<std::uint64_t>(options.max_buffer_bytes,
                                            impl->device.info().max_storage_buffer_range);
  impl->shaders = std::make_unique<detail::ShaderRunner>(impl->device, impl->max_bytes);
  Impl* raw = impl.get();
  impl->runner =
      PEPITA_TRY(BlockingRunner::create({.threads = options.slots,
                                         .default_timeout = options.default_timeout,
                                         .report_early = true,
                                         .name = "GPU executor"},
                                        [raw](const Job& job) { return raw->run(job); }));
  return std::make_shared<GpuExecutor>(Private{}, std::move(impl));
}

std::size_t GpuExecutor::slots() const noexcept { return impl_->options.slots; }

const DeviceInfo& GpuExecutor::device_info() const noexcept { return impl_->device.info(); }

std::uint64_t GpuExecutor::pipelines_built() const { return impl_->shaders->pipelines_built(); }

bool GpuExecutor::is_available() {
  auto devices = list_devices();
  if (!devices) return false;
  return std::any_of(devices->begin(), devices->end(),
                     [](const DeviceInfo& d) { return d.has_compute_queue; });
}

Result<void> GpuExecutor::start(const task::Task& task, std::stop_token stop,
                                executor::Completion done) {
  // A shader task is ours whatever backend name routed it here (Backend::Gpu, or a pool picking
  // for it); a command task must say Backend::Gpu.
  if (!task.is_shader() && (task.backend() != task::Backend::Gpu || task.process() == nullptr))
    return fail(ErrorCode::InvalidArgument,
                "task '" + task.name() +
                    "' is not a GPU task: use Task::shader(spirv, ...) or "
                    "Task::binary(\"saxpy\").backend(Backend::Gpu)");
  return impl_->runner->submit(task, std::move(stop), std::move(done));
}

void GpuExecutor::shutdown() { impl_->runner->shutdown(); }

Result<void> register_gpu(executor::Registry& registry) {
  return registry.add(
      task::Backend::Gpu,
      [](const executor::BackendOptions& o) -> Result<std::shared_ptr<executor::Executor>> {
        PEPITA_TRY_VOID(o.expect_only({"device", "timeout", "max_buffer", "force_staging"}));
        GpuExecutor::Options options;
        if (o.slots) options.slots = o.slots;
        if (o.has("device"))
          options.device.index =
              static_cast<std::uint32_t>(PEPITA_TRY(o.uint_or("device", 0, 0, UINT32_MAX)));
        options.device.force_staging = PEPITA_TRY(o.bool_or("force_staging", false));
        options.default_timeout = PEPITA_TRY(o.duration_or("timeout", options.default_timeout));
        options.max_buffer_bytes = PEPITA_TRY(o.bytes_or("max_buffer", options.max_buffer_bytes));
        return PEPITA_TRY(GpuExecutor::create(std::move(options)));
      },
      "compute kernels on a Vulkan device");
}

}  // namespace pepita::gpu
