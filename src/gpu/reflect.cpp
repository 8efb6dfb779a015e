// SPIR-V interface reflection: one pass over the module collecting entry points, execution
// modes, decorations, types, constants and variables (SPIR-V 1.6 spec, sections 2.3 and 3.32),
// then the entry point's stage, local size, descriptor bindings and push-constant block size.

#include "pepita/gpu/reflect.hpp"

#include <algorithm>
#include <map>
#include <utility>

#include "pepita/core/format.hpp"

namespace pepita::gpu {
namespace {

// Opcodes (spec 3.32) and enumerants (3.3 Execution Model, 3.6 Execution Mode, 3.7 Storage
// Class, 3.20 Decoration) this pass reads.
enum : std::uint32_t {
  kOpEntryPoint = 15,
  kOpExecutionMode = 16,
  kOpTypeInt = 21,
  kOpTypeFloat = 22,
  kOpTypeVector = 23,
  kOpTypeMatrix = 24,
  kOpTypeArray = 28,
  kOpTypeStruct = 30,
  kOpTypePointer = 32,
  kOpConstant = 43,
  kOpVariable = 59,
  kOpDecorate = 71,
  kOpMemberDecorate = 72,
};
enum : std::uint32_t { kModelVertex = 0, kModelFragment = 4, kModelGLCompute = 5 };
enum : std::uint32_t { kModeLocalSize = 17 };
enum : std::uint32_t { kClassUniform = 2, kClassPushConstant = 9, kClassStorageBuffer = 12 };
enum : std::uint32_t {
  kDecBlock = 2,
  kDecBufferBlock = 3,
  kDecArrayStride = 6,
  kDecMatrixStride = 7,
  kDecBinding = 33,
  kDecDescriptorSet = 34,
  kDecOffset = 35,
};
constexpr std::uint32_t kSpirvMagic = 0x07230203;
constexpr int kMaxTypeDepth = 16;  // nesting bound for sizing (a module cannot make us recurse)

Error bad(std::string why) {
  return Error(ErrorCode::InvalidArgument, "invalid SPIR-V: " + std::move(why) +
                                               " (compile GLSL with `glslangValidator -V` and "
                                               "check with `spirv-val`)");
}

// A nul-terminated literal string packed little-endian into words.
std::string literal(std::span<const std::uint32_t> words) {
  std::string s;
  for (std::uint32_t w : words) {
    for (int b = 0; b < 4; ++b) {
      const char ch = static_cast<char>((w >> (8 * b)) & 0xff);
      if (ch == '\0') return s;
      s.push_back(ch);
    }
  }
  return s;
}

struct Type {
  std::uint32_t op = 0;
  std::vector<std::uint32_t> operands;  // the instruction's words after the result id
};

struct Module {
  std::map<std::uint32_t, Type> types;               // by result id
  std::map<std::uint32_t, std::uint32_t> constants;  // 32-bit OpConstant values by id
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint32_t> decorations;  // (id, dec)
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint32_t> member_offsets;
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint32_t> member_matrix_strides;
  std::vector<std::uint32_t> variable_classes;

  std::optional<std::uint32_t> decoration(std::uint32_t id, std::uint32_t dec) const {
    auto it = decorations.find({id, dec});
    if (it == decorations.end()) return std::nullopt;
    return it->second;
  }

  // Bytes a value of `type` occupies in an explicitly laid out block; nullopt when unknown.
  // Memoized, so a module nesting wide structs costs one visit per type, not one per path.
  std::optional<std::uint64_t> size_of(std::uint32_t type, int depth = 0) const {
    if (auto m = memo.find(type); m != memo.end()) return m->second;
    if (depth > kMaxTypeDepth) return std::nullopt;
    auto size = compute_size(type, depth);
    // Every size stays below 2^32 (a push block is at most a few hundred bytes), so the
    // products and sums above cannot overflow 64 bits.
    if (size && *size > UINT32_MAX) size = std::nullopt;
    memo.emplace(type, size);
    return size;
  }

 private:
  mutable std::map<std::uint32_t, std::optional<std::uint64_t>> memo;

  std::optional<std::uint64_t> compute_size(std::uint32_t type, int depth) const {
    auto it = types.find(type);
    if (it == types.end()) return std::nullopt;
    const Type& t = it->second;
    switch (t.op) {
      case kOpTypeInt:
      case kOpTypeFloat:
        if (t.operands.empty()) return std::nullopt;
        return t.operands[0] / 8;
      case kOpTypeVector:
      case kOpTypeMatrix: {
        if (t.operands.size() < 2) return std::nullopt;
        auto elem = size_of(t.operands[0], depth + 1);
        if (!elem) return std::nullopt;
        return *elem * t.operands[1];
      }
      case kOpTypeArray: {
        if (t.operands.size() < 2) return std::nullopt;
        auto n = constants.find(t.operands[1]);
        if (n == constants.end()) return std::nullopt;  // a specialization-constant length
        std::optional<std::uint64_t> stride;
        if (auto s = decoration(type, kDecArrayStride)) {
          stride = *s;
        } else {
          stride = size_of(t.operands[0], depth + 1);
        }
        if (!stride) return std::nullopt;
        return *stride * n->second;
      }
      case kOpTypeStruct: {
        std::uint64_t end = 0;
        for (std::uint32_t m = 0; m < t.operands.size(); ++m) {
          auto off = member_offsets.find({type, m});
          if (off == member_offsets.end()) return std::nullopt;
          std::optional<std::uint64_t> size;
          const auto member = types.find(t.operands[m]);
          if (member != types.end() && member->second.op == kOpTypeMatrix) {
            auto stride = member_matrix_strides.find({type, m});
            if (stride == member_matrix_strides.end() || member->second.operands.size() < 2)
              return std::nullopt;
            size = std::uint64_t{stride->second} * member->second.operands[1];
          } else {
            size = size_of(t.operands[m], depth + 1);
          }
          if (!size) return std::nullopt;
          end = std::max(end, off->second + *size);
        }
        return end;
      }
      default: return std::nullopt;
    }
  }
};

}  // namespace

std::string_view to_string(ShaderStage stage) noexcept {
  switch (stage) {
    case ShaderStage::Vertex: return "vertex";
    case ShaderStage::Fragment: return "fragment";
    case ShaderStage::Compute: return "compute";
  }
  return "?";
}

std::size_t ShaderInterface::storage_buffers() const noexcept {
  return static_cast<std::size_t>(std::count_if(bindings.begin(), bindings.end(), [](auto& b) {
    return b.set == 0 && b.kind == ResourceBinding::Kind::StorageBuffer;
  }));
}

Result<ShaderInterface> reflect_spirv(std::span<const std::uint32_t> spirv,
                                      std::string_view entry_point) {
  if (spirv.size() < 5)
    return std::unexpected(
        bad(pepita::fmt("module is {} bytes, shorter than the 20-byte header", spirv.size() * 4)));
  if (spirv[0] != kSpirvMagic)
    return std::unexpected(bad("bad magic number (byte-swapped or not SPIR-V)"));

  Module mod;
  std::optional<std::uint32_t> entry_fn, model;
  std::map<std::uint32_t, std::array<std::uint32_t, 3>> local_sizes;  // by function id
  std::vector<std::pair<std::uint32_t, std::uint32_t>> vars;          // (pointer type, id)
  for (std::size_t at = 5; at < spirv.size();) {
    const std::uint32_t words = spirv[at] >> 16, op = spirv[at] & 0xffff;
    if (words == 0)
      return std::unexpected(bad(pepita::fmt("instruction at word {} has a word count of 0", at)));
    if (words > spirv.size() - at)
      return std::unexpected(bad(
          pepita::fmt("instruction at word {} runs past the end of the module (truncated?)", at)));
    const auto args = spirv.subspan(at + 1, words - 1);
    switch (op) {
      case kOpEntryPoint:
        if (args.size() >= 3 && !entry_fn && literal(args.subspan(2)) == entry_point) {
          model = args[0];
          entry_fn = args[1];
        }
        break;
      case kOpExecutionMode:
        if (args.size() >= 5 && args[1] == kModeLocalSize)
          local_sizes[args[0]] = {args[2], args[3], args[4]};
        break;
      case kOpTypeInt:
      case kOpTypeFloat:
      case kOpTypeVector:
      case kOpTypeMatrix:
      case kOpTypeArray:
      case kOpTypeStruct:
      case kOpTypePointer:
        if (!args.empty()) mod.types[args[0]] = {op, {args.begin() + 1, args.end()}};
        break;
      case kOpConstant:
        if (args.size() == 3) mod.constants[args[1]] = args[2];  // 32-bit constants only
        break;
      case kOpVariable:
        if (args.size() >= 3) {
          vars.emplace_back(args[0], args[1]);
          mod.variable_classes.push_back(args[2]);
        }
        break;
      case kOpDecorate:
        if (args.size() >= 2) mod.decorations[{args[0], args[1]}] = args.size() >= 3 ? args[2] : 1;
        break;
      case kOpMemberDecorate:
        if (args.size() >= 4 && args[2] == kDecOffset)
          mod.member_offsets[{args[0], args[1]}] = args[3];
        if (args.size() >= 4 && args[2] == kDecMatrixStride)
          mod.member_matrix_strides[{args[0], args[1]}] = args[3];
        break;
      default: break;
    }
    at += words;
  }
  if (!entry_fn)
    return std::unexpected(
        bad(pepita::fmt("no entry point named '{}' (OpEntryPoint)", std::string(entry_point))));

  ShaderInterface in;
  in.entry_point = std::string(entry_point);
  switch (*model) {
    case kModelVertex: in.stage = ShaderStage::Vertex; break;
    case kModelFragment: in.stage = ShaderStage::Fragment; break;
    case kModelGLCompute: in.stage = ShaderStage::Compute; break;
    default:
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("spirv: entry point '{}' has execution model {}; pepita knows vertex "
                              "(0), fragment (4) and GLCompute (5)",
                              in.entry_point, *model));
  }
  if (auto it = local_sizes.find(*entry_fn); it != local_sizes.end()) in.local_size = it->second;

  for (std::size_t i = 0; i < vars.size(); ++i) {
    const auto [ptr_type, id] = vars[i];
    const std::uint32_t cls = mod.variable_classes[i];
    std::uint32_t pointee = 0;
    if (auto p = mod.types.find(ptr_type); p != mod.types.end() && p->second.operands.size() >= 2)
      pointee = p->second.operands[1];
    if (cls == kClassPushConstant) {
      auto size = mod.size_of(pointee);
      in.push_constant_bytes = size && *size <= UINT32_MAX
                                   ? std::optional<std::uint32_t>(static_cast<std::uint32_t>(*size))
                                   : std::nullopt;
      continue;
    }
    auto set = mod.decoration(id, kDecDescriptorSet);
    auto binding = mod.decoration(id, kDecBinding);
    if (!set || !binding) continue;
    ResourceBinding rb{*set, *binding, ResourceBinding::Kind::Other};
    if (cls == kClassStorageBuffer) {
      rb.kind = ResourceBinding::Kind::StorageBuffer;
    } else if (cls == kClassUniform) {
      rb.kind = mod.decoration(pointee, kDecBufferBlock) ? ResourceBinding::Kind::StorageBuffer
                : mod.decoration(pointee, kDecBlock)     ? ResourceBinding::Kind::UniformBuffer
                                                         : ResourceBinding::Kind::Other;
    }
    in.bindings.push_back(rb);
  }
  std::sort(in.bindings.begin(), in.bindings.end(), [](const auto& a, const auto& b) {
    return std::pair(a.set, a.binding) < std::pair(b.set, b.binding);
  });
  return in;
}

Result<void> check_compute_interface(const ShaderInterface& in, std::size_t buffers,
                                     std::size_t push_bytes) {
  if (in.stage != ShaderStage::Compute)
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("spirv: entry point '{}' is a {} shader; only compute (GLCompute) "
                            "entry points can be dispatched",
                            in.entry_point, to_string(in.stage)));
  for (const ResourceBinding& b : in.bindings) {
    if (b.set != 0)
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("buffers: the shader uses descriptor set {} (binding {}); pepita "
                              "binds storage buffers at set 0 only",
                              b.set, b.binding));
    if (b.kind != ResourceBinding::Kind::StorageBuffer)
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("buffers: binding {} is {}; pepita binds storage buffers only "
                              "(declare it `layout(std430, binding = {}) buffer`)",
                              b.binding,
                              b.kind == ResourceBinding::Kind::UniformBuffer
                                  ? "a uniform buffer"
                                  : "not a buffer (an image or sampler)",
                              b.binding));
  }
  for (std::size_t i = 0; i < in.bindings.size(); ++i) {
    if (in.bindings[i].binding != i)
      return fail(ErrorCode::InvalidArgument,
                  pepita::fmt("buffers: the shader's bindings must be 0..{} without gaps; "
                              "binding {} is missing",
                              in.bindings.size() - 1, i));
  }
  if (in.bindings.size() != buffers)
    return fail(
        ErrorCode::InvalidArgument,
        pepita::fmt("buffers: the shader binds {} storage buffer(s) (set 0, bindings "
                    "0..{}), but {} were given",
                    in.bindings.size(),
                    in.bindings.empty() ? std::string("-") : std::to_string(in.bindings.size() - 1),
                    buffers));
  if (in.push_constant_bytes && *in.push_constant_bytes != push_bytes)
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("push_constants: the shader's push-constant block is {} bytes, but {} "
                            "were given",
                            *in.push_constant_bytes, push_bytes));
  return {};
}

}  // namespace pepita::gpu
