// The block-target spec (target_spec.hpp): the text form's parser and printer, and the pure
// checks every command runs before it creates a target.
#include "pepita/blk_mq/target_spec.hpp"

#include <cctype>
#include <utility>

#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/core/size.hpp"

namespace pepita::blk_mq {
namespace {

bool is_compressor(std::string_view name) { return name == "lz4" || name == "zstd"; }

// "block target 'zram:1G,xz': <why>; expected zram:SIZE[,lz4|zstd]".
std::unexpected<Error> bad_spec(std::string_view text, std::string_view why, TargetKind kind) {
  return fail(ErrorCode::InvalidArgument, "block target '" + std::string(text) + "': " +
                                              std::string(why) + "; expected " + target_form(kind));
}

}  // namespace

Result<TargetKind> parse_target_kind(std::string_view name) {
  if (name == "null") return TargetKind::Null;
  if (name == "mem") return TargetKind::Mem;
  if (name == "file") return TargetKind::File;
  if (name == "zram") return TargetKind::Zram;
  return fail(ErrorCode::InvalidArgument,
              "unknown block target '" + std::string(name) + "': use null, mem, file or zram");
}

const char* target_name(TargetKind kind) noexcept {
  switch (kind) {
    case TargetKind::Null: return "null";
    case TargetKind::Mem: return "mem";
    case TargetKind::File: return "file";
    case TargetKind::Zram: return "zram";
  }
  return "unknown";
}

const char* target_form(TargetKind kind) noexcept {
  switch (kind) {
    case TargetKind::Null: return "null:SIZE";
    case TargetKind::Mem: return "mem:SIZE";
    case TargetKind::File: return "file:PATH[,SIZE]";
    case TargetKind::Zram: return "zram:SIZE[,lz4|zstd]";
  }
  return "unknown";
}

Result<TargetSpec> parse_target_spec(std::string_view text) {
  const std::string forms(kTargetForms);
  if (text.empty()) return fail(ErrorCode::InvalidArgument, "empty block target: use " + forms);
  const size_t colon = text.find(':');
  const std::string_view name = text.substr(0, colon);
  auto kind = parse_target_kind(name);
  if (!kind)
    return fail(ErrorCode::InvalidArgument,
                "unknown block target '" + std::string(text) + "': use " + forms);
  TargetSpec spec;
  spec.kind = *kind;
  if (colon == std::string_view::npos) return bad_spec(text, "no arguments", spec.kind);
  const std::string_view args = text.substr(colon + 1);

  if (spec.kind == TargetKind::File) {
    std::string_view path = args;
    // A tail that starts with a digit is meant as a size: a bad one is an error, not a path.
    const size_t comma = args.rfind(',');
    if (comma != std::string_view::npos && comma + 1 < args.size() &&
        std::isdigit(static_cast<unsigned char>(args[comma + 1]))) {
      auto size = parse_size(args.substr(comma + 1));
      if (!size) return bad_spec(text, size.error().message(), spec.kind);
      spec.size_bytes = *size;
      path = args.substr(0, comma);
    }
    if (path.empty()) return bad_spec(text, "no path", spec.kind);
    spec.path = std::string(path);
    return spec;
  }

  std::string_view size_text = args;
  if (const size_t comma = args.find(','); comma != std::string_view::npos) {
    if (spec.kind != TargetKind::Zram)
      return bad_spec(text, std::string(target_name(spec.kind)) + " takes only a size", spec.kind);
    const std::string_view compression = args.substr(comma + 1);
    if (!is_compressor(compression))
      return bad_spec(text,
                      "compression must be lz4 or zstd, not '" + std::string(compression) + "'",
                      spec.kind);
    spec.compression = std::string(compression);
    size_text = args.substr(0, comma);
  }
  if (size_text.empty()) return bad_spec(text, "no size", spec.kind);
  auto size = parse_size(size_text);
  if (!size) return bad_spec(text, size.error().message(), spec.kind);
  spec.size_bytes = *size;
  return spec;
}

std::string format_target_spec(const TargetSpec& spec) {
  std::string out = std::string(target_name(spec.kind)) + ":";
  switch (spec.kind) {
    case TargetKind::File:
      out += spec.path;
      if (spec.size_bytes != 0) out.append(",").append(format_size(spec.size_bytes));
      break;
    case TargetKind::Zram: out += format_size(spec.size_bytes) + "," + spec.compression; break;
    case TargetKind::Null:
    case TargetKind::Mem: out += format_size(spec.size_bytes); break;
  }
  return out;
}

Result<void> validate_target(const TargetSpec& spec) {
  const std::string name = target_name(spec.kind);
  const std::string what = name + " target";
  if (spec.kind != TargetKind::File && spec.size_bytes == 0)
    return fail(ErrorCode::InvalidArgument,
                what + ": give a size (--size) or write " + name + ":SIZE, e.g. " + name + ":1G");
  switch (spec.kind) {
    case TargetKind::Null:
    case TargetKind::Zram:
      if (spec.size_bytes % 4096 != 0)
        return fail(ErrorCode::InvalidArgument, what + ": size must be a multiple of 4096");
      if (spec.kind == TargetKind::Zram && !is_compressor(spec.compression))
        return fail(ErrorCode::InvalidArgument,
                    what + ": compression must be lz4 or zstd, not '" + spec.compression + "'");
      break;
    case TargetKind::Mem:
      if (auto ok = validate_geometry(spec.size_bytes, 512); !ok)
        return std::unexpected(std::move(ok.error()).with_context(what));
      break;
    case TargetKind::File:
      if (spec.path.empty())
        return fail(ErrorCode::InvalidArgument,
                    what + ": give a backing file (--file) or write file:PATH");
      if (spec.size_bytes != 0) {
        if (auto ok = validate_geometry(spec.size_bytes, spec.direct ? 4096u : 512u); !ok)
          return std::unexpected(std::move(ok.error()).with_context(what));
      }
      break;
    default: return fail(ErrorCode::InvalidArgument, "unknown block target");
  }
  if (auto ok = validate_tag_set({spec.queues, spec.queue_depth}); !ok)
    return std::unexpected(std::move(ok.error()).with_context(what));
  return {};
}

}  // namespace pepita::blk_mq
