// Parsing and checking of GPU task arguments (see pepita/gpu/gpu_executor.hpp for the syntax).
// Everything a user can get wrong is caught here, before a buffer is allocated, with a message
// naming the argument.

#include "detail/task_args.hpp"

#include <bit>
#include <charconv>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <set>
#include <system_error>

namespace pepita::gpu::detail {
namespace {

static_assert(std::endian::native == std::endian::little,
              "GPU task files are little-endian floats read with memcpy");

constexpr std::size_t kMaxSpirvBuffers = 16;
constexpr std::size_t kMaxWords = 32;  // push constants and spec constants: 128 bytes each

Error bad(std::string_view kernel, const std::string& what) {
  return Error(ErrorCode::InvalidArgument, "gpu task '" + std::string(kernel) + "': " + what);
}

Result<std::uint64_t> parse_u64(std::string_view kernel, std::string_view key, std::string_view v,
                                std::uint64_t lo, std::uint64_t hi) {
  std::uint64_t x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size() || v.empty() || x < lo || x > hi)
    return std::unexpected(bad(kernel, std::string(key) + "=" + std::string(v) +
                                           ": expected an integer in " + std::to_string(lo) + ".." +
                                           std::to_string(hi)));
  return x;
}

Result<float> parse_float(std::string_view kernel, std::string_view key, std::string_view v) {
  float x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size() || v.empty())
    return std::unexpected(
        bad(kernel, std::string(key) + "=" + std::string(v) + ": expected a number like 2.5"));
  return x;
}

// "u:7", "i:-3", "f:2.5", or bare: a float if it has '.', 'e' or is inf/nan, else an integer.
Result<std::vector<std::uint32_t>> parse_words(std::string_view kernel, std::string_view key,
                                               std::string_view list) {
  std::vector<std::uint32_t> words;
  std::size_t pos = 0;
  while (pos <= list.size()) {
    std::size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view item = list.substr(pos, comma - pos);
    pos = comma + 1;
    std::string_view type;
    if (item.size() > 2 && item[1] == ':') type = item.substr(0, 1), item.remove_prefix(2);
    if (type.empty())
      type = item.find_first_of(".eEnN") != std::string_view::npos ? "f"
             : item.starts_with('-')                               ? "i"
                                                                   : "u";
    const std::string what = std::string(key) + " value '" + std::string(item) + "'";
    if (type == "f") {
      words.push_back(std::bit_cast<std::uint32_t>(PEPITA_TRY(parse_float(kernel, what, item))));
    } else if (type == "u") {
      words.push_back(
          static_cast<std::uint32_t>(PEPITA_TRY(parse_u64(kernel, what, item, 0, UINT32_MAX))));
    } else if (type == "i") {
      std::int64_t x = 0;
      auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), x);
      if (ec != std::errc() || p != item.data() + item.size() || item.empty() || x < INT32_MIN ||
          x > INT32_MAX)
        return std::unexpected(bad(kernel, what + ": expected a 32-bit signed integer"));
      words.push_back(static_cast<std::uint32_t>(static_cast<std::int32_t>(x)));
    } else {
      return std::unexpected(bad(kernel, what + ": type prefix must be u:, i: or f:"));
    }
    if (words.size() > kMaxWords)
      return std::unexpected(
          bad(kernel, std::string(key) + ": more than " + std::to_string(kMaxWords) + " values"));
  }
  return words;
}

Result<Source> parse_source(std::string_view kernel, const std::string& key, std::string_view v,
                            bool allow_zeros) {
  Source s;
  s.key = key;
  auto rest = [&](std::string_view prefix) { return v.substr(prefix.size()); };
  if (v.starts_with("fill:")) {
    s.kind = Source::Kind::Fill;
    s.start = PEPITA_TRY(parse_float(kernel, key, rest("fill:")));
  } else if (v.starts_with("ramp:")) {
    s.kind = Source::Kind::Ramp;
    std::string_view r = rest("ramp:");
    std::size_t colon = r.find(':');
    s.start = PEPITA_TRY(parse_float(kernel, key, r.substr(0, colon)));
    s.step = colon == std::string_view::npos
                 ? 1.0f
                 : PEPITA_TRY(parse_float(kernel, key, r.substr(colon + 1)));
  } else if (v.starts_with("zeros:")) {
    if (!allow_zeros)
      return std::unexpected(bad(kernel, key + "=zeros:N is only for .spv kernel buffers"));
    s.kind = Source::Kind::Zeros;
    s.count = PEPITA_TRY(parse_u64(kernel, key, rest("zeros:"), 1, UINT32_MAX));
  } else {
    s.kind = Source::Kind::File;
    s.path = std::string(v.starts_with("file:") ? rest("file:") : v);
    if (s.path.empty())
      return std::unexpected(bad(kernel, key + "= names no file (use PATH, fill:V or ramp:S:D)"));
  }
  return s;
}

struct KernelKeys {
  std::string_view name;
  KernelKind kind;
  std::initializer_list<std::string_view> keys;
  std::initializer_list<std::string_view> inputs;
};

const KernelKeys kKernels[] = {
    {"add", KernelKind::Add, {"a", "b", "n", "out"}, {"a", "b"}},
    {"saxpy", KernelKind::Saxpy, {"x", "y", "alpha", "n", "out"}, {"x", "y"}},
    {"sum", KernelKind::Sum, {"x", "n"}, {"x"}},
    {"max", KernelKind::Max, {"x", "n"}, {"x"}},
    {"softmax", KernelKind::Softmax, {"x", "rows", "cols", "out"}, {"x"}},
    {"sgemm",
     KernelKind::Sgemm,
     {"a", "b", "c", "m", "n", "k", "alpha", "beta", "out"},
     {"a", "b", "c"}},
};

std::string join(std::initializer_list<std::string_view> keys) {
  std::string out;
  for (std::string_view k : keys) out += (out.empty() ? "" : ", ") + std::string(k) + "=";
  return out;
}

}  // namespace

std::filesystem::path resolve(const std::string& path, const std::filesystem::path& cwd) {
  std::filesystem::path p(path);
  return p.is_relative() && !cwd.empty() ? cwd / p : p;
}

Result<TaskPlan> parse_task(std::string_view kernel, std::span<const std::string> args) {
  TaskPlan plan;
  plan.kernel = std::string(kernel);
  const KernelKeys* known = nullptr;
  for (const KernelKeys& k : kKernels)
    if (k.name == kernel) known = &k;
  if (known == nullptr && !kernel.ends_with(".spv"))
    return fail(ErrorCode::InvalidArgument,
                "unknown GPU kernel '" + std::string(kernel) +
                    "': use add, saxpy, sum, max, softmax, sgemm, or the path of a .spv file");
  plan.kind = known ? known->kind : KernelKind::Spirv;

  std::set<std::string> seen;
  bool have_groups = false;
  for (const std::string& arg : args) {
    const std::size_t eq = arg.find('=');
    if (eq == std::string::npos || eq == 0)
      return std::unexpected(bad(kernel, "argument '" + arg + "' is not key=value"));
    const std::string key = arg.substr(0, eq);
    const std::string_view v = std::string_view(arg).substr(eq + 1);
    if (!seen.insert(key).second)
      return std::unexpected(bad(kernel, "'" + key + "=' is given twice"));
    if (key == "out") {
      if (v.empty()) return std::unexpected(bad(kernel, "out= names no file"));
      if (plan.kind == KernelKind::Sum || plan.kind == KernelKind::Max)
        return std::unexpected(bad(kernel, "out= does not apply: a reduction prints its value"));
      plan.out = std::string(v);
      continue;
    }
    if (known) {
      bool ok = false;
      for (std::string_view k : known->keys) ok = ok || k == key;
      if (!ok)
        return std::unexpected(bad(kernel, "unknown argument '" + key + "='; " +
                                               std::string(known->name) + " takes " +
                                               join(known->keys)));
      bool input = false;
      for (std::string_view k : known->inputs) input = input || k == key;
      if (input) {
        plan.inputs[key] = PEPITA_TRY(parse_source(kernel, key, v, false));
      } else if (key == "alpha") {
        plan.alpha = PEPITA_TRY(parse_float(kernel, key, v));
      } else if (key == "beta") {
        plan.beta = PEPITA_TRY(parse_float(kernel, key, v));
      } else {
        // Sizes: 0 is allowed for n (an empty vector) but not for matrix shapes.
        const std::uint64_t lo = key == "n" && plan.kind != KernelKind::Sgemm ? 0 : 1;
        std::uint64_t x = PEPITA_TRY(parse_u64(kernel, key, v, lo, UINT32_MAX));
        if (key == "n") plan.n = x;
        if (key == "m") plan.m = x;
        if (key == "k") plan.k = x;
        if (key == "rows") plan.rows = x;
        if (key == "cols") plan.cols = x;
      }
      continue;
    }
    // User SPIR-V.
    if (key == "groups") {
      std::string_view g = v;
      for (int a = 0; a < 3 && !g.empty(); ++a) {
        std::size_t comma = g.find(',');
        plan.groups[a] = static_cast<std::uint32_t>(
            PEPITA_TRY(parse_u64(kernel, "groups", g.substr(0, comma), 1, UINT32_MAX)));
        g = comma == std::string_view::npos ? std::string_view() : g.substr(comma + 1);
        if (comma != std::string_view::npos && g.empty())
          return std::unexpected(bad(kernel, "groups=" + std::string(v) + ": trailing comma"));
      }
      if (!g.empty())
        return std::unexpected(bad(kernel, "groups=" + std::string(v) + ": at most X,Y,Z"));
      have_groups = true;
    } else if (key == "push") {
      plan.push = PEPITA_TRY(parse_words(kernel, key, v));
    } else if (key == "spec") {
      plan.spec = PEPITA_TRY(parse_words(kernel, key, v));
    } else if (key == "entry") {
      if (v.empty()) return std::unexpected(bad(kernel, "entry= is empty"));
      plan.entry = std::string(v);
    } else if (key == "n") {
      plan.n = PEPITA_TRY(parse_u64(kernel, key, v, 1, UINT32_MAX));
    } else if (key == "result") {
      plan.result = PEPITA_TRY(parse_u64(kernel, key, v, 0, kMaxSpirvBuffers - 1));
    } else if (key.size() >= 2 && key[0] == 'b' &&
               key.find_first_not_of("0123456789", 1) == std::string::npos) {
      std::size_t index =
          PEPITA_TRY(parse_u64(kernel, key, key.substr(1), 0, kMaxSpirvBuffers - 1));
      if (plan.buffers.size() <= index) plan.buffers.resize(index + 1);
      plan.buffers[index] = PEPITA_TRY(parse_source(kernel, key, v, true));
    } else {
      return std::unexpected(bad(kernel, "unknown argument '" + key +
                                             "='; a .spv kernel takes groups=, b0=, b1=, ..., "
                                             "n=, push=, spec=, entry=, result=, out="));
    }
  }

  if (plan.kind == KernelKind::Spirv) {
    if (!have_groups)
      return std::unexpected(bad(kernel, "groups=X[,Y[,Z]] (workgroup counts) is required"));
    if (plan.buffers.empty())
      return std::unexpected(bad(kernel, "no buffers: give b0=, b1=, ... in binding order"));
    for (std::size_t i = 0; i < plan.buffers.size(); ++i)
      if (plan.buffers[i].key.empty())
        return std::unexpected(bad(
            kernel, "b" + std::to_string(i) + "= is missing (buffers bind 0, 1, ... in order)"));
    if (!seen.contains("result")) plan.result = plan.buffers.size() - 1;
    if (plan.result >= plan.buffers.size())
      return std::unexpected(bad(kernel, "result=" + std::to_string(plan.result) + " but only " +
                                             std::to_string(plan.buffers.size()) +
                                             " buffers are given"));
    return plan;
  }

  // Required arguments of the built-ins.
  auto require = [&](std::initializer_list<std::string_view> keys) -> Result<void> {
    for (std::string_view k : keys)
      if (!seen.contains(std::string(k)))
        return std::unexpected(bad(kernel, std::string(k) + "= is required; " +
                                               std::string(known->name) + " takes " +
                                               join(known->keys)));
    return {};
  };
  switch (plan.kind) {
    case KernelKind::Add: PEPITA_TRY_VOID(require({"a", "b"})); break;
    case KernelKind::Saxpy: PEPITA_TRY_VOID(require({"x", "y"})); break;
    case KernelKind::Sum:
    case KernelKind::Max: PEPITA_TRY_VOID(require({"x"})); break;
    case KernelKind::Softmax: PEPITA_TRY_VOID(require({"x", "rows", "cols"})); break;
    case KernelKind::Sgemm:
      PEPITA_TRY_VOID(require({"a", "b", "m", "n", "k"}));
      if (plan.beta != 0.0f && !plan.inputs.contains("c"))
        return std::unexpected(
            bad(kernel, "beta=" + std::to_string(plan.beta) + " reads C: give c= (m x n floats)"));
      break;
    case KernelKind::Spirv: break;
  }
  return plan;
}

Result<std::uint64_t> file_floats(const Source& src, const std::filesystem::path& cwd) {
  const std::filesystem::path p = resolve(src.path, cwd);
  std::error_code ec;
  const auto status = std::filesystem::status(p, ec);
  if (ec || !std::filesystem::exists(status))
    return fail(ErrorCode::NotFound, "gpu task input " + src.key + "=" + src.path +
                                         ": no such file (" + p.string() +
                                         "; relative paths start at the task's cwd)");
  if (!std::filesystem::is_regular_file(status))
    return fail(ErrorCode::InvalidArgument,
                "gpu task input " + src.key + "=" + src.path + " is not a regular file");
  const std::uintmax_t bytes = std::filesystem::file_size(p, ec);
  if (ec) return fail(ErrorCode::Io, "gpu task input " + p.string() + ": " + ec.message());
  if (bytes % sizeof(float) != 0)
    return fail(ErrorCode::InvalidArgument, "gpu task input " + src.key + "=" + src.path + " is " +
                                                std::to_string(bytes) +
                                                " bytes, not a whole number of 4-byte floats");
  return bytes / sizeof(float);
}

Result<std::vector<float>> materialize(const Source& src, std::uint64_t count,
                                       const std::filesystem::path& cwd, std::uint64_t max_bytes) {
  if (count > max_bytes / sizeof(float))
    return fail(ErrorCode::ResourceExhausted,
                "gpu task buffer " + src.key + "= needs " + std::to_string(count) + " floats (" +
                    std::to_string(count * sizeof(float)) + " bytes), over the executor's limit " +
                    "of " + std::to_string(max_bytes) + " bytes per buffer");
  std::vector<float> v;
  switch (src.kind) {
    case Source::Kind::Fill: v.assign(count, src.start); break;
    case Source::Kind::Zeros: v.assign(count, 0.0f); break;
    case Source::Kind::Ramp:
      v.resize(count);
      for (std::uint64_t i = 0; i < count; ++i) v[i] = src.start + static_cast<float>(i) * src.step;
      break;
    case Source::Kind::File: {
      const std::uint64_t have = PEPITA_TRY(file_floats(src, cwd));
      if (have != count)
        return fail(ErrorCode::InvalidArgument, "gpu task input " + src.key + "=" + src.path +
                                                    " holds " + std::to_string(have) +
                                                    " floats, but the kernel needs " +
                                                    std::to_string(count));
      v.resize(count);
      std::ifstream in(resolve(src.path, cwd), std::ios::binary);
      if (!in)
        return fail(ErrorCode::PermissionDenied,
                    "gpu task input " + src.key + "=" + src.path + ": cannot open for reading");
      // SAFETY: reinterpret_cast to char* is the sanctioned way to read raw bytes into floats;
      // the vector holds exactly count * 4 bytes.
      if (count > 0 && !in.read(reinterpret_cast<char*>(v.data()),
                                static_cast<std::streamsize>(count * sizeof(float))))
        return fail(ErrorCode::Io, "gpu task input " + src.path + ": read failed or the file " +
                                       "shrank while being read");
      break;
    }
  }
  return v;
}

}  // namespace pepita::gpu::detail
