#pragma once
// pepita's built-in compute kernels (GLSL in src/gpu/shaders/, embedded as SPIR-V): vector add,
// saxpy, sum/max reduction, row softmax and a tiled shared-memory sgemm. Pipelines are built on
// first use and cached. Every call validates sizes against the buffers before dispatching.
//
//   auto dev = PEPITA_TRY(pepita::gpu::Device::open());
//   auto lib = PEPITA_TRY(pepita::gpu::Builtins::create(dev));
//   PEPITA_TRY_VOID(lib.sgemm(m, n, k, 1.0f, a, b, 0.0f, c));
//   float total = PEPITA_TRY(lib.sum(c, m * n));

#include <cstddef>
#include <cstdint>
#include <memory>

#include "pepita/error.hpp"
#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/device.hpp"

namespace pepita::gpu {

/// Which sgemm kernel Builtins::sgemm runs.
enum class SgemmKernel : std::uint8_t {
  Auto,    // Direct on CPU devices (lavapipe), Tiled on GPUs
  Tiled,   // 64 x 64 blocks staged in shared memory, 4 x 4 register tile per invocation
  Direct,  // no shared memory or barriers: 8 rows x 1 column per invocation from global memory
};

struct BuiltinsOptions {
  SgemmKernel sgemm = SgemmKernel::Auto;
};

/// Built-in kernels on one device. Move-only; thread-safe (calls share the device queue, see
/// Device).
/// Buffers hold 32-bit floats; "n" counts elements. Errors common to all: InvalidArgument when a
/// buffer holds fewer bytes than the call needs or a size exceeds the kernels' 32-bit indexing
/// (2^32 - 1 elements per buffer), and the Device::run errors.
class Builtins {
 public:
  /// Errors: none beyond Device ones; kernels are compiled lazily.
  [[nodiscard]] static Result<Builtins> create(Device& device, BuiltinsOptions options = {});

  Builtins(Builtins&&) noexcept;
  Builtins& operator=(Builtins&&) noexcept;
  ~Builtins();

  /// out[i] = a[i] + b[i], i < n. n == 0 does nothing.
  [[nodiscard]] Result<void> vector_add(const Buffer& a, const Buffer& b, Buffer& out,
                                        std::size_t n);
  /// y[i] = alpha * x[i] + y[i], i < n (fused multiply-add).
  [[nodiscard]] Result<void> saxpy(float alpha, const Buffer& x, Buffer& y, std::size_t n);
  /// Sum of x[0, n) (0 for n == 0), by a two-pass tree reduction (order differs from a serial
  /// sum, so compare with a tolerance).
  [[nodiscard]] Result<float> sum(const Buffer& x, std::size_t n);
  /// Maximum of x[0, n); InvalidArgument for n == 0.
  [[nodiscard]] Result<float> max(const Buffer& x, std::size_t n);
  /// Row-wise softmax of a rows x cols row-major matrix, max-subtracted (no overflow).
  [[nodiscard]] Result<void> softmax(const Buffer& in, Buffer& out, std::size_t rows,
                                     std::size_t cols);
  /// C[m x n] = alpha * A[m x k] * B[k x n] + beta * C, all row-major and contiguous; beta == 0
  /// does not read C. m or n == 0 does nothing; k == 0 leaves C = beta * C (BLAS rules).
  [[nodiscard]] Result<void> sgemm(std::size_t m, std::size_t n, std::size_t k, float alpha,
                                   const Buffer& a, const Buffer& b, float beta, Buffer& c);

 private:
  struct State;
  explicit Builtins(std::unique_ptr<State> state) noexcept;
  Result<float> reduce(const Buffer& x, std::size_t n, std::uint32_t op);
  std::unique_ptr<State> s_;
};

}  // namespace pepita::gpu
