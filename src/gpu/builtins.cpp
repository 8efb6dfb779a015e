// Built-in kernels: embedded SPIR-V (generated at build time from shaders/*.comp), lazily built
// pipelines, and the host-side size checks and launch geometry for each.

#include "pepita/gpu/builtins.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "detail/context.hpp"
#include "pepita/gpu/kernel.hpp"

namespace pepita::gpu {
namespace spv {
#include "pepita_gpu_spv/reduce.h"
#include "pepita_gpu_spv/saxpy.h"
#include "pepita_gpu_spv/sgemm.h"
#include "pepita_gpu_spv/sgemm_direct.h"
#include "pepita_gpu_spv/softmax.h"
#include "pepita_gpu_spv/vector_add.h"
}  // namespace spv

namespace {

enum Which : std::size_t { kAdd, kSaxpy, kReduce, kSoftmax, kSgemm, kSgemmDirect, kCount };
constexpr std::uint32_t kWg = 256;                          // workgroup size of the 1-D kernels
constexpr std::uint32_t kTile = 64;                         // sgemm block of C per workgroup
constexpr std::uint32_t kDirectCols = 64, kDirectRows = 8;  // sgemm_direct.comp geometry
constexpr std::uint32_t kCpuGroups = 256;                   // 1-D group cap on CPU devices
constexpr std::uint32_t kPartials = 256;  // reduction pass-1 groups (pass 2 is one group)

template <typename T>
std::span<const std::byte> bytes_of(const T& v) {
  return std::as_bytes(std::span<const T>(&v, 1));
}

Result<std::uint32_t> elements(std::size_t n, const char* what) {
  if (n > UINT32_MAX)
    return fail(ErrorCode::InvalidArgument,
                std::string("gpu: ") + what + " = " + std::to_string(n) +
                    " elements exceeds the kernels' 32-bit indexing; split the work");
  return static_cast<std::uint32_t>(n);
}

Result<void> need(const Buffer& b, std::size_t elems, const char* op, const char* name) {
  if (elems > b.size() / sizeof(float))
    return fail(ErrorCode::InvalidArgument, std::string("gpu::Builtins::") + op + ": buffer '" +
                                                name + "' holds " +
                                                std::to_string(b.size() / sizeof(float)) +
                                                " floats, needs " + std::to_string(elems));
  return {};
}

}  // namespace

struct Builtins::State {
  State(Device d, BuiltinsOptions o) : device(std::move(d)), options(o) {}
  Device device;
  BuiltinsOptions options;
  std::mutex mu;  // guards kernels
  std::array<std::optional<Kernel>, kCount> kernels;

  Result<const Kernel*> get(Which w) {
    std::lock_guard lock(mu);
    if (!kernels[w]) {
      struct Spec {
        std::span<const std::uint32_t> code;
        KernelLayout layout;
      };
      Spec s;
      switch (w) {
        case kAdd: s = {spv::spv_vector_add, {3, 4, {kWg}, "main"}}; break;
        case kSaxpy: s = {spv::spv_saxpy, {2, 8, {kWg}, "main"}}; break;
        case kReduce: s = {spv::spv_reduce, {2, 8, {kWg}, "main"}}; break;
        case kSoftmax: s = {spv::spv_softmax, {2, 8, {kWg}, "main"}}; break;
        case kSgemm: s = {spv::spv_sgemm, {3, 20, {}, "main"}}; break;
        case kSgemmDirect: s = {spv::spv_sgemm_direct, {3, 20, {}, "main"}}; break;
        case kCount: return fail(ErrorCode::Internal, "gpu: bad builtin kernel id");
      }
      auto k = Kernel::create(device, s.code, std::move(s.layout));
      if (!k) return std::unexpected(std::move(k.error()).with_context("building built-in kernel"));
      kernels[w].emplace(std::move(*k));
    }
    return &*kernels[w];
  }

  std::uint32_t groups_for(std::uint32_t n, std::uint32_t per_group) const {
    std::uint32_t g = n / per_group + (n % per_group != 0);
    // A CPU device (lavapipe) pays a per-workgroup scheduling cost, so it gets few, fat groups
    // (the 1-D kernels loop grid-stride); a GPU gets one invocation per element.
    std::uint32_t cap =
        device.info().type == DeviceType::Cpu ? kCpuGroups : device.info().max_group_count[0];
    return std::clamp<std::uint32_t>(g, 1, cap);
  }
};

Builtins::Builtins(std::unique_ptr<State> state) noexcept : s_(std::move(state)) {}
Builtins::Builtins(Builtins&&) noexcept = default;
Builtins& Builtins::operator=(Builtins&&) noexcept = default;
Builtins::~Builtins() = default;

Result<Builtins> Builtins::create(Device& device, BuiltinsOptions options) {
  return Builtins(std::make_unique<State>(Device(device.ctx_), options));
}

Result<void> Builtins::vector_add(const Buffer& a, const Buffer& b, Buffer& out, std::size_t n) {
  std::uint32_t n32 = PEPITA_TRY(elements(n, "n"));
  PEPITA_TRY_VOID(need(a, n, "vector_add", "a"));
  PEPITA_TRY_VOID(need(b, n, "vector_add", "b"));
  PEPITA_TRY_VOID(need(out, n, "vector_add", "out"));
  if (n == 0) return {};
  const Kernel* k = PEPITA_TRY(s_->get(kAdd));
  const Buffer* bufs[] = {&a, &b, &out};
  return s_->device.dispatch(*k, bufs, {s_->groups_for(n32, kWg)}, bytes_of(n32));
}

Result<void> Builtins::saxpy(float alpha, const Buffer& x, Buffer& y, std::size_t n) {
  std::uint32_t n32 = PEPITA_TRY(elements(n, "n"));
  PEPITA_TRY_VOID(need(x, n, "saxpy", "x"));
  PEPITA_TRY_VOID(need(y, n, "saxpy", "y"));
  if (n == 0) return {};
  const Kernel* k = PEPITA_TRY(s_->get(kSaxpy));
  struct {
    std::uint32_t n;
    float alpha;
  } push{n32, alpha};
  const Buffer* bufs[] = {&x, &y};
  return s_->device.dispatch(*k, bufs, {s_->groups_for(n32, kWg)}, bytes_of(push));
}

Result<float> Builtins::reduce(const Buffer& x, std::size_t n, std::uint32_t op) {
  std::uint32_t n32 = PEPITA_TRY(elements(n, "n"));
  PEPITA_TRY_VOID(need(x, n, op == 0 ? "sum" : "max", "x"));
  const Kernel* k = PEPITA_TRY(s_->get(kReduce));
  std::uint32_t groups = std::min(s_->groups_for(n32, kWg), kPartials);
  auto partial = PEPITA_TRY(Buffer::create(s_->device, groups * sizeof(float)));
  auto result = PEPITA_TRY(Buffer::create(s_->device, sizeof(float)));
  struct Push {
    std::uint32_t n, op;
  } p1{n32, op}, p2{groups, op};
  const Buffer* b1[] = {&x, &partial};
  const Buffer* b2[] = {&partial, &result};
  const Dispatch ds[] = {{k, b1, {groups}, bytes_of(p1)}, {k, b2, {1}, bytes_of(p2)}};
  PEPITA_TRY_VOID(s_->device.run(ds));
  float out = 0;
  PEPITA_TRY_VOID(result.download(std::span<float>(&out, 1)));
  return out;
}

Result<float> Builtins::sum(const Buffer& x, std::size_t n) {
  if (n == 0) return 0.0f;
  return reduce(x, n, 0);
}

Result<float> Builtins::max(const Buffer& x, std::size_t n) {
  if (n == 0) return fail(ErrorCode::InvalidArgument, "gpu::Builtins::max of 0 elements");
  return reduce(x, n, 1);
}

Result<void> Builtins::softmax(const Buffer& in, Buffer& out, std::size_t rows, std::size_t cols) {
  if (cols != 0 && rows > SIZE_MAX / cols)
    return fail(ErrorCode::InvalidArgument, "gpu::Builtins::softmax: rows * cols overflows");
  std::size_t total = rows * cols;
  PEPITA_TRY(elements(total, "rows * cols"));
  PEPITA_TRY_VOID(need(in, total, "softmax", "in"));
  PEPITA_TRY_VOID(need(out, total, "softmax", "out"));
  if (total == 0) return {};
  const Kernel* k = PEPITA_TRY(s_->get(kSoftmax));
  struct {
    std::uint32_t rows, cols;
  } push{static_cast<std::uint32_t>(rows), static_cast<std::uint32_t>(cols)};
  const Buffer* bufs[] = {&in, &out};
  return s_->device.dispatch(*k, bufs, {s_->groups_for(push.rows, 1)}, bytes_of(push));
}

Result<void> Builtins::sgemm(std::size_t m, std::size_t n, std::size_t k, float alpha,
                             const Buffer& a, const Buffer& b, float beta, Buffer& c) {
  for (auto [x, y, what] : {std::tuple{m, k, "m * k"}, {k, n, "k * n"}, {m, n, "m * n"}}) {
    if (y != 0 && x > SIZE_MAX / y)
      return fail(ErrorCode::InvalidArgument,
                  std::string("gpu::Builtins::sgemm: ") + what + " overflows");
    PEPITA_TRY(elements(x * y, what));
  }
  PEPITA_TRY_VOID(need(a, m * k, "sgemm", "a"));
  PEPITA_TRY_VOID(need(b, k * n, "sgemm", "b"));
  PEPITA_TRY_VOID(need(c, m * n, "sgemm", "c"));
  if (m == 0 || n == 0) return {};
  bool direct =
      s_->options.sgemm == SgemmKernel::Direct ||
      (s_->options.sgemm == SgemmKernel::Auto && s_->device.info().type == DeviceType::Cpu);
  const Kernel* kern = PEPITA_TRY(s_->get(direct ? kSgemmDirect : kSgemm));
  struct {
    std::uint32_t m, n, k;
    float alpha, beta;
  } push{static_cast<std::uint32_t>(m), static_cast<std::uint32_t>(n),
         static_cast<std::uint32_t>(k), alpha, beta};
  std::uint32_t bx = direct ? kDirectCols : kTile, by = direct ? kDirectRows : kTile;
  Groups g{static_cast<std::uint32_t>((n + bx - 1) / bx),
           static_cast<std::uint32_t>((m + by - 1) / by), 1};
  const DeviceInfo& info = s_->device.info();
  if (g.x > info.max_group_count[0] || g.y > info.max_group_count[1])
    return fail(ErrorCode::InvalidArgument,
                "gpu::Builtins::sgemm: " + std::to_string(m) + " x " + std::to_string(n) +
                    " needs " + std::to_string(g.x) + " x " + std::to_string(g.y) +
                    " workgroups, over the device limit; split C into blocks");
  const Buffer* bufs[] = {&a, &b, &c};
  return s_->device.dispatch(*kern, bufs, g, bytes_of(push));
}

}  // namespace pepita::gpu
