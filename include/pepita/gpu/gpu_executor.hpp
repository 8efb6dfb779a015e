#pragma once
// GpuExecutor: the pool's "gpu" backend (library pepita_gpu_executor). A GPU task names a kernel
// and its buffers the way a process task names a binary and its arguments; each attempt uploads the
// inputs, runs the kernel on the executor's Vulkan device, and returns the result as the task's
// output.
//
//   auto gpu = gpu::GpuExecutor::create({}).value();
//   auto pool = pool::Pool::builder().executor(gpu).build().value();
//   auto t = Task::binary("saxpy").backend(Backend::Gpu)
//                .args({"x=x.f32", "y=ramp:0", "alpha=2", "out=y.f32"}).build().value();
//   pool.submit(t);  // result.stdout_data: "saxpy: 1000 floats -> y.f32"
//
// Shader tasks. Task::shader(spirv, workgroups, push_constants, buffers) (task::ShaderTask) runs
// the module's compute entry point once: buffers bind at set 0, binding = index; the pipeline is
// built once per distinct SPIR-V and layout and cached; the contents of the buffers marked output
// come back in ExecutionResult::output_buffers (in memory only: not journalled, see result.hpp),
// stdout is a one-line summary. The task is checked against the module's reflected interface
// (pepita/gpu/reflect.hpp) and the device first: a wrong buffer count, a push-constant block of
// another size or over the device limit, workgroups over the limit, invalid SPIR-V — each fails
// the task (Failed) with an error naming the field.
//
//   auto t = Task::shader(spirv, {n / 64, 1, 1}, push, {{a_bytes}, {b_bytes}, {out,
//   true}}).build(); auto r = pool.submit(*t)->wait();  // r.output_buffers[0]: the contents of
//   `out` after the run
//
// Task syntax. The task's command (ProcessSpec::path) is the kernel; every argument is
// key=value (job files: command = "saxpy", args = ["x=x.f32", ...], backend = "gpu").
//
//   kernel    arguments                                   result
//   add       a= b= [n=] [out=]                           a + b
//   saxpy     x= y= [alpha=1] [n=] [out=]                 alpha * x + y
//   sum       x= [n=]                                     the sum, printed
//   max       x= [n=]                                     the maximum, printed
//   softmax   x= rows= cols= [out=]                       row-wise softmax of x (rows x cols)
//   sgemm     a= b= m= n= k= [alpha=1] [beta=0 c=] [out=] alpha * A(m x k) B(k x n) + beta * C
//   FILE.spv  groups=X[,Y[,Z]] b0= b1= ... [n=] [push=] [spec=] [entry=main] [result=I] [out=]
//
// Buffer values: PATH (or file:PATH) — a file of raw little-endian 32-bit floats, relative to
// the task's cwd; fill:V — every element V; ramp:S[:D] — S, S+D, S+2D, ... (D defaults to 1);
// zeros:N — N zero floats (.spv buffers only, e.g. an output). Sizes: n defaults to the element
// count of the file inputs; a file must hold exactly the count the kernel needs (n, or m*k, k*n,
// m*n, rows*cols), otherwise the task fails naming the file and both counts. fill/ramp take the
// size the kernel needs. For a .spv kernel, buffer i binds at set 0, binding i, and holds as
// many floats as its file, zeros:N, or n= (required for fill/ramp there); push= and spec= are
// comma lists of 32-bit values u:7, i:-3, f:2.5 (bare numbers: a float when they contain '.' or
// 'e', else an integer), pushed as one block / set as constant_id 0, 1, ...; result= picks the
// output buffer (default: the last).
//
// Output: with out=FILE the result is written there (raw floats, replaced atomically) and
// stdout is a one-line summary; without out= the values are printed as text, one per line
// (at most 4096, then a "... more" line); a reduction prints its value ("%.9g").
//
// Status: Succeeded; Failed (exit code 1) for anything wrong with the task — unknown kernel or
// argument, missing or mis-sized file, buffer over max_buffer_bytes, workgroups over the device
// limit, invalid SPIR-V, an output file that cannot be written — with the reason in `error`;
// LaunchFailed only when the device or driver fails (device lost, driver error), which is what
// the pool's circuit breaker counts; Cancelled / TimedOut on the stop token or the task's timeout
// (the executor default when 0). A kernel already on the GPU cannot be interrupted: the result
// is reported at once and the worker frees the buffers when the GPU has finished with them.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "pepita/executor/executor.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/gpu/device.hpp"

namespace pepita::gpu {

class GpuExecutor final : public executor::Executor {
 public:
  struct Options {
    /// Attempts in flight: worker threads, each with at most one queue submission outstanding.
    std::size_t slots = 2;
    /// Which device to open (create() without a Device).
    DeviceOptions device;
    /// Used when a task sets no timeout.
    std::chrono::nanoseconds default_timeout = std::chrono::seconds(60);
    /// Largest buffer one task may allocate (also capped by the device's storage-buffer range).
    std::uint64_t max_buffer_bytes = 1ull << 30;
  };

  /// Opens the device (Options::device) and starts the workers. Errors: Device::open's
  /// (Unsupported without a Vulkan device), InvalidArgument for slots == 0 or over 64.
  [[nodiscard]] static Result<std::shared_ptr<GpuExecutor>> create(Options options);
  /// The same on an already open device (shared with the caller).
  [[nodiscard]] static Result<std::shared_ptr<GpuExecutor>> create(Device& device, Options options);
  ~GpuExecutor() override;

  executor::Backend backend() const noexcept override { return executor::Backend::Gpu; }
  std::size_t slots() const noexcept override;
  /// Queues one attempt (see the syntax above). Errors: InvalidArgument when the task is neither
  /// a shader task (on any backend that routed it here) nor a Backend::Gpu command task,
  /// Cancelled after shutdown(). Bad arguments are not errors here:
  /// the attempt completes Failed with the reason.
  Result<void> start(const task::Task& task, std::stop_token stop,
                     executor::Completion done) override;
  void shutdown() override;

  const DeviceInfo& device_info() const noexcept;

  /// Shader-task pipelines built so far; a task whose SPIR-V and layout match an earlier one
  /// reuses its cached pipeline (up to 32 kept, least recently used dropped first).
  std::uint64_t pipelines_built() const;

  /// True when the Vulkan loader lists a device with a compute queue (the crate's
  /// GpuExecutor::is_available); create() can then open one.
  static bool is_available();

  struct Impl;
  struct Private {
    explicit Private() = default;
  };
  /// Use create(); public only so std::make_shared can reach it.
  GpuExecutor(Private, std::unique_ptr<Impl> impl) noexcept;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Registers "gpu" (slots = worker threads, default 2; settings: device=<index>, timeout=60s,
/// max_buffer=1G, force_staging=false — the Options above). AlreadyExists when taken.
Result<void> register_gpu(executor::Registry& registry);

}  // namespace pepita::gpu
