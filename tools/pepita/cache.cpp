// `pepita cache gc STATE_DIR [--max-age D] [--max-size S]`: sweeps a run's result cache (issue
// 24): entries whose outputs no longer match go, then the oldest beyond the limits; each removed
// entry is printed.
#include "pepita/pool/cache.hpp"

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <string>

#include "command.hpp"
#include "pepita/core/format.hpp"
#include "pepita/task/resources.hpp"

namespace pepita::cli {
namespace {

struct CacheGcOptions {
  std::string dir;
  std::string max_age;
  std::string max_size;
};

constexpr std::string_view kGcUsage = "pepita cache gc STATE_DIR [--max-age 7d] [--max-size 10G]";

// "90", "90s", "30m", "12h", "7d" -> seconds.
Result<std::chrono::seconds> parse_age(std::string_view text) {
  std::int64_t n = -1;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  const std::string_view unit(p, static_cast<std::size_t>(text.data() + text.size() - p));
  std::int64_t mul = 0;
  if (unit.empty() || unit == "s") mul = 1;
  if (unit == "m") mul = 60;
  if (unit == "h") mul = 3600;
  if (unit == "d") mul = 86400;
  if (ec != std::errc() || n < 0 || mul == 0 || n > (std::int64_t{1} << 40)) {
    return fail(
        ErrorCode::InvalidArgument,
        pepita::fmt("--max-age '{}' is not a duration; write e.g. 90s, 30m, 12h or 7d", text));
  }
  return std::chrono::seconds(n * mul);
}

int run_cache_gc(const CacheGcOptions& o) {
  pool::CacheGcOptions limits;
  if (!o.max_age.empty()) {
    auto age = parse_age(o.max_age);
    if (!age) return usage_error("pepita cache gc", kGcUsage, age.error().message());
    limits.max_age = *age;
  }
  if (!o.max_size.empty()) {
    auto size = task::parse_bytes(o.max_size);
    if (!size) {
      return usage_error("pepita cache gc", kGcUsage,
                         pepita::fmt("--max-size '{}': {}", o.max_size, size.error().message()));
    }
    limits.max_size = *size;
  }
  // A state directory holds the cache in cache/; a --cache-dir is the cache itself.
  std::error_code ec;
  std::string dir = o.dir;
  if (std::filesystem::is_directory(o.dir + "/cache/entries", ec)) dir = o.dir + "/cache";
  auto report = pool::ResultCache::gc(dir, limits);
  if (!report) {
    std::fprintf(stderr, "pepita cache gc: %s\n", report.error().message().c_str());
    return report.error().code() == ErrorCode::NotFound ? kExitUsage : kExitFailure;
  }
  for (const auto& line : report->removed) std::printf("removed %s\n", line.c_str());
  std::printf("%zu entries removed, %zu kept (%llu bytes) in %s\n", report->removed.size(),
              report->kept, static_cast<unsigned long long>(report->kept_bytes), dir.c_str());
  return kExitOk;
}

void add_cache(CLI::App& app, Dispatch& dispatch) {
  auto* cache = app.add_subcommand("cache", "The result cache of `pepita run`");
  auto* gc = cache->add_subcommand(
      "gc", "Remove cache entries whose outputs no longer match, then the oldest over the limits");
  auto options = std::make_shared<CacheGcOptions>();
  gc->add_option("state_dir", options->dir, "A run's state directory (or its --cache-dir)")
      ->required();
  gc->add_option("--max-age", options->max_age, "Remove entries older than this (90s, 12h, 7d)");
  gc->add_option("--max-size", options->max_size,
                 "Keep at most this many bytes of entries, newest first (e.g. 512M, 10G)");
  cache->require_subcommand(1);
  dispatch.on(
      gc, [options] { return run_cache_gc(*options); }, std::string(kGcUsage));
}

}  // namespace
}  // namespace pepita::cli

PEPITA_REGISTER_COMMAND(cache, pepita::cli::add_cache);
