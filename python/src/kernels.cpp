// pepita._pepita: the simd kernels over numpy arrays, zero-copy through the buffer protocol, and
// ZramStore. Arrays are checked (type, dtype, shape, C-contiguity, writability, overlap) with
// the GIL held and errors naming the argument; the kernel then runs with the GIL released on
// the arrays' own memory (the caller's references keep them alive for the call).
#include "pepita/simd/kernels.hpp"

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "errors.hpp"
#include "pepita/core/format.hpp"
#include "pepita/scheduler/parallel.hpp"
#include "pepita/scheduler/scheduler.hpp"
#include "pepita/simd/ops.hpp"
#include "pepita/simd/sgemm.hpp"
#include "pepita/zram/zram_store.hpp"

#if PEPITA_PYTHON_GPU
#include <mutex>

#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/builtins.hpp"
#include "pepita/gpu/device.hpp"
#endif

namespace pepita::python {

namespace {

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

template <typename T>
const char* dtype_name() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

/// `obj` as a numpy array of T with `ndim` dimensions, C-contiguous (writable when asked), or
/// TypeError/ValueError naming `name`.
template <typename T>
py::array checked(py::handle obj, const char* name, py::ssize_t ndim, bool writable) {
  if (!py::isinstance<py::array>(obj)) {
    type_error(std::string(name)
                   .append(": expected a numpy.ndarray of ")
                   .append(dtype_name<T>())
                   .append(", got ")
                   .append(type_name(obj)));
  }
  auto a = py::reinterpret_borrow<py::array>(obj);
  if (!a.dtype().is(py::dtype::of<T>())) {
    type_error(std::string(name)
                   .append(": expected dtype ")
                   .append(dtype_name<T>())
                   .append(", got ")
                   .append(py::str(a.dtype()).cast<std::string>())
                   .append(" (convert with .astype(numpy.")
                   .append(dtype_name<T>())
                   .append("))"));
  }
  if (a.ndim() != ndim) {
    value_error(std::string(name)
                    .append(": expected a ")
                    .append(std::to_string(ndim))
                    .append("-D array, got ")
                    .append(std::to_string(a.ndim()))
                    .append("-D with shape ")
                    .append(py::str(obj.attr("shape")).cast<std::string>()));
  }
  if (!(a.flags() & py::array::c_style)) {
    value_error(std::string(name).append(
        ": array is not C-contiguous (a slice with a step or a transposed view); pass "
        "numpy.ascontiguousarray(x)"));
  }
  if (writable && !a.writeable()) value_error(std::string(name).append(": array is read-only"));
  return a;
}

template <typename T>
std::span<const T> in_span(const py::array& a) {
  return {static_cast<const T*>(a.data()), static_cast<std::size_t>(a.size())};
}
template <typename T>
std::span<T> out_span(py::array& a) {
  return {static_cast<T*>(a.mutable_data()), static_cast<std::size_t>(a.size())};
}

/// ValueError when `out` overlaps `x` other than exactly (the kernels allow out == x only).
void check_alias(const py::array& x, const char* xname, const py::array& out, const char* oname) {
  const auto* xb = static_cast<const std::byte*>(x.data());
  const auto* ob = static_cast<const std::byte*>(out.data());
  const auto xn = static_cast<std::size_t>(x.nbytes());
  const auto on = static_cast<std::size_t>(out.nbytes());
  const bool overlap = xb < ob + on && ob < xb + xn;
  if (overlap && !(xb == ob && xn == on)) {
    value_error(std::string(oname)
                    .append(" partly overlaps ")
                    .append(xname)
                    .append(": pass the same array (in place) or a separate one"));
  }
}

void check_same_size(const py::array& a, const char* an, const py::array& b, const char* bn) {
  if (a.size() != b.size()) {
    value_error(std::string(an)
                    .append(" and ")
                    .append(bn)
                    .append(" differ in length: ")
                    .append(std::to_string(a.size()))
                    .append(" vs ")
                    .append(std::to_string(b.size())));
  }
}

/// Runs `kernel` with the GIL released and raises its error.
template <typename F>
auto nogil(F kernel) {
  auto r = [&] {
    py::gil_scoped_release release;
    return kernel();
  }();
  if constexpr (std::is_same_v<decltype(r), Result<void>>) {
    unwrap(r);
  } else {
    return unwrap(std::move(r));
  }
}

bool is_f64(py::handle obj) {
  return py::isinstance<py::array>(obj) &&
         py::reinterpret_borrow<py::array>(obj).dtype().is(py::dtype::of<double>());
}

scheduler::Scheduler* gemm_scheduler() {
  // Leaked on purpose: its workers must outlive every sgemm call, and joining them during
  // interpreter teardown gains nothing.
  static scheduler::Scheduler* s = [] {
    auto made = scheduler::Scheduler::create();
    return made ? made->release() : nullptr;
  }();
  return s;
}

/// Elements from which dot splits its vectors across the scheduler's workers (OpenBLAS threads
/// its sdot too): below it the vectors sit in cache and one core beats waking another. On the
/// 2-core dev machine, idle: 16M f32 took 9.0 ms on one core, 4.2 ms on two; loaded by other
/// builds, two cores lost at every size up to 16M, so the split starts only at 2M (8 MiB a
/// vector, past the L2 caches).
constexpr std::size_t kParallelDot = std::size_t{1} << 21;

template <typename T>
Result<T> dot_span(std::span<const T> x, std::span<const T> y, bool parallel) {
  scheduler::Scheduler* sched = parallel ? gemm_scheduler() : nullptr;
  if (sched == nullptr || sched->worker_count() <= 1 || x.size() < kParallelDot) {
    return simd::dot(x, y);
  }
  // Chunks of 64 KiB-aligned lengths, a few per worker; partial sums added in double.
  const std::size_t chunk = std::max<std::size_t>(
      std::size_t{1} << 14,
      ((x.size() / (4 * sched->worker_count())) + (std::size_t{1} << 14) - 1) &
          ~((std::size_t{1} << 14) - 1));
  const std::size_t chunks = (x.size() + chunk - 1) / chunk;
  const double sum = PEPITA_TRY(scheduler::parallel_reduce(
      *sched, 0, chunks, 0.0,
      [&](scheduler::IndexRange r, double acc) -> double {
        for (std::size_t c = r.begin; c < r.end; ++c) {
          const std::size_t off = c * chunk;
          const std::size_t len = std::min(chunk, x.size() - off);
          // Equal-length subspans of checked vectors: dot cannot fail.
          acc += static_cast<double>(simd::dot(x.subspan(off, len), y.subspan(off, len)).value());
        }
        return acc;
      },
      std::plus<>{}, 1));
  return static_cast<T>(sum);
}

py::object dot(py::handle x, py::handle y, bool parallel) {
  if (is_f64(x)) {
    auto a = checked<double>(x, "x", 1, false);
    auto b = checked<double>(y, "y", 1, false);
    check_same_size(a, "x", b, "y");
    return py::float_(
        nogil([&] { return dot_span<double>(in_span<double>(a), in_span<double>(b), parallel); }));
  }
  auto a = checked<float>(x, "x", 1, false);
  auto b = checked<float>(y, "y", 1, false);
  check_same_size(a, "x", b, "y");
  return py::float_(
      nogil([&] { return dot_span<float>(in_span<float>(a), in_span<float>(b), parallel); }));
}

void axpy(double alpha, py::handle x, py::handle y) {
  if (is_f64(x)) {
    auto a = checked<double>(x, "x", 1, false);
    auto b = checked<double>(y, "y", 1, true);
    check_same_size(a, "x", b, "y");
    check_alias(a, "x", b, "y");
    nogil([&] { return simd::axpy(alpha, in_span<double>(a), out_span<double>(b)); });
    return;
  }
  auto a = checked<float>(x, "x", 1, false);
  auto b = checked<float>(y, "y", 1, true);
  check_same_size(a, "x", b, "y");
  check_alias(a, "x", b, "y");
  const auto alpha_f = static_cast<float>(alpha);
  nogil([&] { return simd::axpy(alpha_f, in_span<float>(a), out_span<float>(b)); });
}

/// A unary f32 kernel x -> out (out: a new array when None).
template <typename Kernel>
py::array unary(py::handle x, py::handle out, Kernel kernel) {
  auto a = checked<float>(x, "x", 1, false);
  py::array o = out.is_none() ? py::array_t<float>(a.size()) : checked<float>(out, "out", 1, true);
  check_same_size(a, "x", o, "out");
  check_alias(a, "x", o, "out");
  nogil([&] { return kernel(in_span<float>(a), out_span<float>(o)); });
  return o;
}

py::array sgemm(py::handle a, py::handle b, py::handle c, float alpha, float beta, bool trans_a,
                bool trans_b, bool parallel) {
  auto A = checked<float>(a, "a", 2, false);
  auto B = checked<float>(b, "b", 2, false);
  const auto m = static_cast<std::size_t>(trans_a ? A.shape(1) : A.shape(0));
  const auto k = static_cast<std::size_t>(trans_a ? A.shape(0) : A.shape(1));
  const auto kb = static_cast<std::size_t>(trans_b ? B.shape(1) : B.shape(0));
  const auto n = static_cast<std::size_t>(trans_b ? B.shape(0) : B.shape(1));
  if (k != kb) {
    value_error("a and b do not multiply: op(a) is " + std::to_string(m) + "x" + std::to_string(k) +
                ", op(b) is " + std::to_string(kb) + "x" + std::to_string(n));
  }
  py::array C;
  if (c.is_none()) {
    C = py::array_t<float>({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(n)});
    beta = 0.0f;
  } else {
    C = checked<float>(c, "c", 2, true);
    if (static_cast<std::size_t>(C.shape(0)) != m || static_cast<std::size_t>(C.shape(1)) != n) {
      value_error("c: expected shape (" + std::to_string(m) + ", " + std::to_string(n) + "), got " +
                  py::str(c.attr("shape")).cast<std::string>());
    }
    check_alias(A, "a", C, "c");
    check_alias(B, "b", C, "c");
    if (C.data() == A.data() || C.data() == B.data()) value_error("c must not be a or b");
  }
  const auto lda = static_cast<std::size_t>(A.shape(1));
  const auto ldb = static_cast<std::size_t>(B.shape(1));
  simd::GemmOptions options;
  if (parallel) options.scheduler = gemm_scheduler();
  const auto ta = trans_a ? simd::Transpose::yes : simd::Transpose::no;
  const auto tb = trans_b ? simd::Transpose::yes : simd::Transpose::no;
  const auto* pa = static_cast<const float*>(A.data());
  const auto* pb = static_cast<const float*>(B.data());
  auto* pc = static_cast<float*>(C.mutable_data());
  nogil(
      [&] { return simd::sgemm(ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, n, options); });
  return C;
}

/// A contiguous read-only byte view of any buffer (bytes, bytearray, memoryview, numpy).
py::buffer_info byte_view(py::handle obj, const char* name) {
  if (!PyObject_CheckBuffer(obj.ptr())) {
    type_error(
        std::string(name).append(": expected a bytes-like object, got ").append(type_name(obj)));
  }
  py::buffer_info info = py::reinterpret_borrow<py::buffer>(obj).request();
  if (!PyBuffer_IsContiguous(info.view(), 'C')) {
    value_error(std::string(name).append(": buffer is not C-contiguous"));
  }
  return info;
}

class PyZram {
 public:
  PyZram(std::uint64_t size, const std::string& algorithm, std::uint64_t mem_limit) {
    zram::ZramConfig config = zram::ZramConfig::with_size(size);
    config.algorithm = unwrap(zram::parse_algorithm(algorithm));
    config.mem_limit = mem_limit;
    store_ = unwrap(zram::ZramStore::create(config));
  }
  void write(std::uint64_t offset, py::handle data) {
    py::buffer_info info = byte_view(data, "data");
    std::span<const std::byte> bytes(static_cast<const std::byte*>(info.ptr),
                                     static_cast<std::size_t>(info.size * info.itemsize));
    nogil([&] { return store_->write(offset, bytes); });
  }
  py::bytes read(std::uint64_t offset, std::size_t length) {
    std::string out(length, '\0');
    std::span<std::byte> view(reinterpret_cast<std::byte*>(out.data()), out.size());
    nogil([&] { return store_->read(offset, view); });
    return py::bytes(out);
  }
  void discard(std::uint64_t offset, std::uint64_t length) {
    nogil([&] { return store_->discard(offset, length); });
  }
  std::uint64_t compact() {
    py::gil_scoped_release release;
    return store_->compact();
  }
  py::dict stats() const {
    const zram::ZramStats s = store_->stats();
    py::dict d;
    d["orig_data_size"] = s.orig_data_size;
    d["compr_data_size"] = s.compr_data_size;
    d["mem_used_total"] = s.mem_used_total;
    d["mem_limit"] = s.mem_limit;
    d["mem_used_max"] = s.mem_used_max;
    d["same_pages"] = s.same_pages;
    d["huge_pages"] = s.huge_pages;
    d["num_reads"] = s.num_reads;
    d["num_writes"] = s.num_writes;
    d["compression_ratio"] = s.compression_ratio();
    return d;
  }
  std::uint64_t size() const { return store_->config().disksize; }
  std::uint64_t stored_pages() const { return store_->stored_pages(); }

 private:
  std::unique_ptr<zram::ZramStore> store_;
};

#if PEPITA_PYTHON_GPU
// ---- pepita.gpu: the built-in Vulkan kernels on numpy arrays ----
// One device (Device::open's choice, PEPITA_GPU_DEVICE picks another), opened on first use and
// kept for the process (leaked on purpose, as the sgemm scheduler is: no teardown order to get
// wrong at interpreter exit). The arrays are copied into device buffers and the result back
// (device memory is not the array's), all with the GIL released.
struct GpuState {
  gpu::Device device;
  gpu::Builtins builtins;
};

GpuState& gpu_state() {
  static GpuState* state = nullptr;
  static Error open_error(ErrorCode::Unsupported, "");
  static std::once_flag once;
  std::call_once(once, [] {
    auto dev = [] {
      py::gil_scoped_release release;
      return gpu::Device::open();
    }();
    if (!dev) {
      open_error = dev.error();
      return;
    }
    auto lib = gpu::Builtins::create(*dev);
    if (!lib) {
      open_error = lib.error();
      return;
    }
    state = new GpuState{std::move(*dev), std::move(*lib)};
  });
  if (state == nullptr) raise(open_error);
  return *state;
}

Result<gpu::Buffer> to_device(gpu::Device& dev, std::span<const float> data) {
  // A zero-byte buffer is not a Vulkan buffer: keep one element for empty inputs.
  auto buf = PEPITA_TRY(gpu::Buffer::create(dev, std::max<std::size_t>(data.size_bytes(), 4)));
  if (!data.empty()) PEPITA_TRY_VOID(buf.upload(data));
  return buf;
}

py::array gpu_sgemm(py::handle a, py::handle b) {
  auto A = checked<float>(a, "a", 2, false);
  auto B = checked<float>(b, "b", 2, false);
  const auto m = static_cast<std::size_t>(A.shape(0)), k = static_cast<std::size_t>(A.shape(1));
  const auto kb = static_cast<std::size_t>(B.shape(0)), n = static_cast<std::size_t>(B.shape(1));
  if (k != kb) {
    value_error(pepita::fmt("a and b do not multiply: a is {}x{}, b is {}x{}", m, k, kb, n));
  }
  auto C = py::array_t<float>({static_cast<py::ssize_t>(m), static_cast<py::ssize_t>(n)});
  py::array out = C;
  GpuState& g = gpu_state();
  nogil([&]() -> Result<void> {
    auto da = PEPITA_TRY(to_device(g.device, in_span<float>(A)));
    auto db = PEPITA_TRY(to_device(g.device, in_span<float>(B)));
    auto dc = PEPITA_TRY(to_device(g.device, {}));
    if (m * n > 0) dc = PEPITA_TRY(gpu::Buffer::create(g.device, m * n * sizeof(float)));
    PEPITA_TRY_VOID(g.builtins.sgemm(m, n, k, 1.0f, da, db, 0.0f, dc));
    if (m * n > 0) PEPITA_TRY_VOID(dc.download(out_span<float>(out)));
    return {};
  });
  return out;
}

py::array gpu_saxpy(float alpha, py::handle x, py::handle y) {
  auto X = checked<float>(x, "x", 1, false);
  auto Y = checked<float>(y, "y", 1, true);
  check_same_size(X, "x", Y, "y");
  check_alias(X, "x", Y, "y");
  GpuState& g = gpu_state();
  nogil([&]() -> Result<void> {
    if (Y.size() == 0) return {};
    auto dx = PEPITA_TRY(to_device(g.device, in_span<float>(X)));
    auto dy = PEPITA_TRY(to_device(g.device, in_span<float>(Y)));
    PEPITA_TRY_VOID(g.builtins.saxpy(alpha, dx, dy, static_cast<std::size_t>(Y.size())));
    return dy.download(out_span<float>(Y));
  });
  return Y;
}

py::array gpu_softmax(py::handle x) {
  auto X = checked<float>(x, "x", 2, false);
  const auto rows = static_cast<std::size_t>(X.shape(0)),
             cols = static_cast<std::size_t>(X.shape(1));
  auto O = py::array_t<float>({X.shape(0), X.shape(1)});
  py::array out = O;
  GpuState& g = gpu_state();
  nogil([&]() -> Result<void> {
    if (rows * cols == 0) return {};
    auto dx = PEPITA_TRY(to_device(g.device, in_span<float>(X)));
    auto dout = PEPITA_TRY(gpu::Buffer::create(g.device, rows * cols * sizeof(float)));
    PEPITA_TRY_VOID(g.builtins.softmax(dx, dout, rows, cols));
    return dout.download(out_span<float>(out));
  });
  return out;
}

float gpu_sum(py::handle x) {
  auto X = checked<float>(x, "x", 1, false);
  GpuState& g = gpu_state();
  return nogil([&]() -> Result<float> {
    if (X.size() == 0) return 0.0f;
    auto dx = PEPITA_TRY(to_device(g.device, in_span<float>(X)));
    return g.builtins.sum(dx, static_cast<std::size_t>(X.size()));
  });
}
#endif  // PEPITA_PYTHON_GPU

}  // namespace

void bind_gpu(py::module_& m) {
  auto g = m.def_submodule(
      "gpu",
      "The built-in Vulkan compute kernels on float32 numpy arrays (copied to the device and "
      "back, the GIL released). available() says whether this build has them and a device "
      "opens; each kernel raises UnsupportedError otherwise.");
#if PEPITA_PYTHON_GPU
  g.def(
      "available",
      [] {
        try {
          (void)gpu_state();
          return true;
        } catch (const py::error_already_set&) {
          return false;
        }
      },
      "True when a Vulkan compute device opens (a GPU, or Mesa's lavapipe on the CPU).");
  g.def(
      "device_name", [] { return gpu_state().device.info().name; },
      "The name of the device the kernels run on.");
  g.def("sgemm", &gpu_sgemm, py::arg("a"), py::arg("b"),
        "a @ b for 2-D float32 C-contiguous arrays, on the device; returns a new array.");
  g.def("saxpy", &gpu_saxpy, py::arg("alpha"), py::arg("x"), py::arg("y"),
        "y = alpha * x + y for float32 vectors, on the device; returns y (updated in place).");
  g.def("softmax", &gpu_softmax, py::arg("x"),
        "Row-wise softmax of a 2-D float32 array, on the device; returns a new array.");
  g.def("sum", &gpu_sum, py::arg("x"), "Sum of a float32 vector, on the device.");
#else
  g.def("available", [] { return false; });
  auto unsupported = [](py::args, py::kwargs) {
    raise(Error(ErrorCode::Unsupported,
                "pepita was built without its gpu module (install libvulkan-dev glslang-tools "
                "mesa-vulkan-drivers and rebuild)"));
  };
  for (const char* name : {"device_name", "sgemm", "saxpy", "softmax", "sum"})
    g.def(name, unsupported);
#endif
}

void bind_kernels(py::module_& m) {
  m.def("dot", &dot, py::arg("x"), py::arg("y"), py::arg("parallel") = true,
        "sum(x * y) of two 1-D float32 (or float64) arrays of one length; from 2M elements "
        "split across the kernels' worker threads unless parallel=False.");
  m.def("axpy", &axpy, py::arg("alpha"), py::arg("x"), py::arg("y"),
        "y += alpha * x, in place (1-D float32 or float64 arrays of one length).");
  m.def(
      "softmax",
      [](py::handle x, py::handle out) {
        return unary(x, out, [](auto a, auto o) { return simd::softmax(a, o); });
      },
      py::arg("x"), py::arg("out") = py::none(), "Numerically stable softmax of a float32 vector.");
  m.def(
      "relu",
      [](py::handle x, py::handle out) {
        return unary(x, out, [](auto a, auto o) { return simd::relu(a, o); });
      },
      py::arg("x"), py::arg("out") = py::none(), "max(x, 0) of a float32 vector.");
  m.def(
      "gelu",
      [](py::handle x, py::handle out) {
        return unary(x, out, [](auto a, auto o) { return simd::gelu(a, o); });
      },
      py::arg("x"), py::arg("out") = py::none(), "GELU (tanh form) of a float32 vector.");
  m.def(
      "vsum",
      [](py::handle x) {
        auto a = checked<float>(x, "x", 1, false);
        return nogil([&] { return simd::sum(in_span<float>(a)); });
      },
      py::arg("x"), "Sum of a float32 vector.");
  m.def(
      "l2_norm",
      [](py::handle x) {
        auto a = checked<float>(x, "x", 1, false);
        return nogil([&] { return simd::l2_norm(in_span<float>(a)); });
      },
      py::arg("x"), "Euclidean norm of a float32 vector.");
  m.def("sgemm", &sgemm, py::arg("a"), py::arg("b"), py::arg("c") = py::none(),
        py::arg("alpha") = 1.0f, py::arg("beta") = 0.0f, py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("parallel") = true,
        "c = alpha * op(a) @ op(b) + beta * c for 2-D float32 C-contiguous arrays; returns c.");
  m.def("simd_level", [] { return std::string(simd::SimdCapabilities::detect().description()); });

  py::class_<PyZram>(m, "ZramStore",
                     "A compressed RAM store of 4 KiB pages (zram's design, in process).")
      .def(py::init<std::uint64_t, const std::string&, std::uint64_t>(), py::arg("size"),
           py::arg("algorithm") = "lz4", py::arg("mem_limit") = 0)
      .def("write", &PyZram::write, py::arg("offset"), py::arg("data"))
      .def("read", &PyZram::read, py::arg("offset"), py::arg("length"))
      .def("discard", &PyZram::discard, py::arg("offset"), py::arg("length"))
      .def("compact", &PyZram::compact)
      .def("stats", &PyZram::stats)
      .def_property_readonly("size", &PyZram::size)
      .def_property_readonly("stored_pages", &PyZram::stored_pages);
}

}  // namespace pepita::python
