#pragma once
// GuestImage: a parsed, validated static ELF64 x86-64 executable ready to load into micro-VMs,
// following the System V gABI program-header rules (PT_LOAD only), with W^X enforced: no
// segment is both writable and executable, and no two segments share a page.
//
//   auto image = PEPITA_TRY(GuestImage::load_file("build/guest/hello.elf"));
//   for (const auto& seg : image.segments()) { /* seg.gpa, seg.mem_size, seg.writable ... */ }

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pepita/abi/memory.hpp"
#include "pepita/error.hpp"

namespace pepita::vmm {

/// One PT_LOAD segment: `data` (file bytes) is followed by zeros up to mem_size.
struct ImageSegment {
  abi::PhysAddr gpa;
  uint64_t mem_size = 0;
  bool writable = false;
  bool executable = false;
  std::vector<std::byte> data;
};

class GuestImage {
 public:
  /// Validates and copies an ELF image from memory. Protocol errors name the offending field:
  /// not ELF64 little-endian x86-64 EXEC, dynamic/interpreter segments, segments below
  /// guest_abi::kImageMinGpa or past `max_end`, file ranges outside the file, W+X segments,
  /// overlapping pages, or an entry point outside executable code.
  static Result<GuestImage> parse(std::span<const std::byte> file, uint64_t max_end = 1ull << 32);
  /// Reads `path` (at most 256 MiB) and parses it.
  static Result<GuestImage> load_file(const std::string& path);

  uint64_t entry() const noexcept { return entry_; }
  const std::vector<ImageSegment>& segments() const noexcept { return segments_; }
  /// First page-aligned address after the highest segment.
  uint64_t end() const noexcept { return end_; }

 private:
  uint64_t entry_ = 0;
  uint64_t end_ = 0;
  std::vector<ImageSegment> segments_;
};

}  // namespace pepita::vmm
