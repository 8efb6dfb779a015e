#pragma once
// The GPU task language: parses a Backend::Gpu task's kernel name and key=value arguments into a
// TaskPlan (a pure function: no files are read, no device is touched), and turns buffer sources
// into floats with every size checked. The syntax is documented in pepita/gpu/gpu_executor.hpp.

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"

namespace pepita::gpu::detail {

enum class KernelKind : std::uint8_t { Add, Saxpy, Sum, Max, Softmax, Sgemm, Spirv };

/// Where a buffer's floats come from.
struct Source {
  enum class Kind : std::uint8_t { File, Fill, Ramp, Zeros };
  Kind kind = Kind::File;
  std::string key;                     // the argument that named it ("x", "b0"), for messages
  std::string path;                    // File
  float start = 0;                     // Fill value, Ramp start
  float step = 0;                      // Ramp step
  std::optional<std::uint64_t> count;  // Zeros:N
};

struct TaskPlan {
  KernelKind kind = KernelKind::Add;
  std::string kernel;                    // as written: "saxpy" or the .spv path
  std::map<std::string, Source> inputs;  // built-ins: a, b, c, x, y by name
  std::optional<std::uint64_t> n, m, k, rows, cols;
  float alpha = 1.0f, beta = 0.0f;
  std::string out;  // file for the result (raw f32); empty: print the values
  // User SPIR-V only.
  std::vector<Source> buffers;  // b0, b1, ... in binding order
  std::array<std::uint32_t, 3> groups{1, 1, 1};
  std::vector<std::uint32_t> push;
  std::vector<std::uint32_t> spec;
  std::string entry = "main";
  std::size_t result = 0;  // which buffer is the output
};

/// Parses a task. `kernel` is the ProcessSpec path, `args` its arguments. Errors:
/// InvalidArgument naming the bad argument and what is accepted.
[[nodiscard]] Result<TaskPlan> parse_task(std::string_view kernel,
                                          std::span<const std::string> args);

/// The floats of `src`, `count` of them, reading files relative to `cwd` (empty: the process's
/// cwd). A file must hold exactly `count` little-endian floats; at most `max_bytes` are read.
/// Errors: NotFound/PermissionDenied/Io for the file, InvalidArgument for a size mismatch,
/// ResourceExhausted over `max_bytes`.
[[nodiscard]] Result<std::vector<float>> materialize(const Source& src, std::uint64_t count,
                                                     const std::filesystem::path& cwd,
                                                     std::uint64_t max_bytes);

/// Floats held by a File source (file size / 4), for inferring n. Errors as materialize.
[[nodiscard]] Result<std::uint64_t> file_floats(const Source& src,
                                                const std::filesystem::path& cwd);

/// `path` against `cwd` when relative and cwd is set.
std::filesystem::path resolve(const std::string& path, const std::filesystem::path& cwd);

}  // namespace pepita::gpu::detail
