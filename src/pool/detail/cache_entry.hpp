#pragma once
// One result-cache entry as a value, and its file format: "pepita-cache-entry 1\n", then fields
// as "<name> <length>\n<bytes>\n" (any bytes: stdout may hold anything), then
// "sum <sha256 of all before>\n". decode_entry is a pure parser: a torn, edited or foreign file is
// nullopt (a miss), never an error.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/executor/result.hpp"

namespace pepita::pool::detail {

struct CacheEntry {
  std::string name;  // the task's
  std::string key;
  std::int64_t created_unix_ns = 0;
  std::map<std::string, std::string> fields;   // key fields (see CacheLookup::fields)
  std::map<std::string, std::string> inputs;   // declared path -> hash
  std::map<std::string, std::string> outputs;  // declared path -> hash
  std::vector<std::string> output_paths;       // absolute, for gc
  // The cached run's result.
  int exit_code = 0;
  std::int64_t wall_ns = 0, cpu_ns = 0, max_rss_kb = 0;
  std::string stdout_data, stderr_data;
  std::uint64_t stdout_bytes = 0, stderr_bytes = 0;
  std::string host, binary_sha256;

  std::string field(const std::string& f) const {
    auto it = fields.find(f);
    return it == fields.end() ? std::string() : it->second;
  }
  void set_result(const executor::ExecutionResult& r);
  /// A Succeeded result with the recorded outcome and output hashes.
  executor::ExecutionResult result() const;
};

std::string encode_entry(const CacheEntry& e);
std::optional<CacheEntry> decode_entry(std::string_view text);

/// `path` made absolute against `cwd` (lexically normalised).
std::string absolute_in(const std::string& cwd, const std::string& path);
/// `path` relative to `cwd` when it lies under it, else as given (for reasons).
std::string shown_path(const std::string& cwd, const std::string& path);

}  // namespace pepita::pool::detail
