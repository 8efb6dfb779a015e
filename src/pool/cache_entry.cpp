// The cache entry codec (detail/cache_entry.hpp) and `pepita cache gc`'s sweep.
#include "detail/cache_entry.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>

#include "pepita/core/format.hpp"
#include "pepita/core/sha256.hpp"
#include "pepita/pool/cache.hpp"

namespace pepita::pool {
namespace detail {
namespace fs = std::filesystem;

namespace {

constexpr std::string_view kMagic = "pepita-cache-entry 1\n";

void put(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(" ").append(std::to_string(value.size())).append("\n");
  out.append(value).append("\n");
}

template <typename T>
bool to_int(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

// "<hash> <path>" pairs.
bool split_pair(std::string_view v, std::map<std::string, std::string>& into) {
  const auto sp = v.find(' ');
  if (sp == std::string_view::npos) return false;
  into[std::string(v.substr(sp + 1))] = std::string(v.substr(0, sp));
  return true;
}

}  // namespace

void CacheEntry::set_result(const executor::ExecutionResult& r) {
  exit_code = r.exit_code;
  wall_ns = r.wall.count();
  cpu_ns = r.cpu.count();
  max_rss_kb = r.max_rss_kb;
  stdout_data = r.stdout_data;
  stderr_data = r.stderr_data;
  stdout_bytes = r.stdout_bytes;
  stderr_bytes = r.stderr_bytes;
  host = r.host;
  binary_sha256 = r.binary_sha256;
}

executor::ExecutionResult CacheEntry::result() const {
  executor::ExecutionResult r;
  r.status = executor::Status::Succeeded;
  r.exit_code = exit_code;
  r.wall = std::chrono::nanoseconds(wall_ns);
  r.cpu = std::chrono::nanoseconds(cpu_ns);
  r.max_rss_kb = max_rss_kb;
  r.stdout_data = stdout_data;
  r.stderr_data = stderr_data;
  r.stdout_bytes = stdout_bytes;
  r.stderr_bytes = stderr_bytes;
  r.host = host;
  r.binary_sha256 = binary_sha256;
  r.output_hashes = outputs;
  return r;
}

std::string encode_entry(const CacheEntry& e) {
  std::string out(kMagic);
  put(out, "name", e.name);
  put(out, "key", e.key);
  put(out, "created", std::to_string(e.created_unix_ns));
  for (const auto& [k, v] : e.fields) put(out, "field", std::string(k).append("=").append(v));
  for (const auto& [p, h] : e.inputs) put(out, "in", std::string(h).append(" ").append(p));
  for (const auto& [p, h] : e.outputs) put(out, "out", std::string(h).append(" ").append(p));
  for (const auto& p : e.output_paths) put(out, "outpath", p);
  put(out, "exit", std::to_string(e.exit_code));
  put(out, "wall", std::to_string(e.wall_ns));
  put(out, "cpu", std::to_string(e.cpu_ns));
  put(out, "rss", std::to_string(e.max_rss_kb));
  put(out, "stdout", e.stdout_data);
  put(out, "stderr", e.stderr_data);
  put(out, "stdout_bytes", std::to_string(e.stdout_bytes));
  put(out, "stderr_bytes", std::to_string(e.stderr_bytes));
  put(out, "host", e.host);
  put(out, "binary", e.binary_sha256);
  const std::string sum = sha256_hex(out);  // of everything before the "sum" line
  out.append("sum ").append(sum).append("\n");
  return out;
}

std::optional<CacheEntry> decode_entry(std::string_view text) {
  if (!text.starts_with(kMagic) || text.size() < kMagic.size() + 69) return std::nullopt;
  // The checksum line: "sum " + 64 hex + "\n" at the very end.
  const std::string_view tail = text.substr(text.size() - 69);
  if (!tail.starts_with("sum ") || tail.back() != '\n') return std::nullopt;
  const std::string_view body = text.substr(0, text.size() - 69);
  if (sha256_hex(body) != tail.substr(4, 64)) return std::nullopt;
  CacheEntry e;
  std::size_t pos = kMagic.size();
  bool have_key = false;
  while (pos < body.size()) {
    const auto nl = body.find('\n', pos);
    if (nl == std::string_view::npos) return std::nullopt;
    const std::string_view head = body.substr(pos, nl - pos);
    const auto sp = head.find(' ');
    std::size_t len = 0;
    if (sp == std::string_view::npos || !to_int(head.substr(sp + 1), len)) return std::nullopt;
    const std::string_view name = head.substr(0, sp);
    pos = nl + 1;
    if (len > body.size() - pos || pos + len >= body.size() || body[pos + len] != '\n') {
      return std::nullopt;
    }
    const std::string_view v = body.substr(pos, len);
    pos += len + 1;
    bool ok = true;
    if (name == "name") {
      e.name = v;
    } else if (name == "key") {
      e.key = v;
      have_key = is_sha256_hex(v);
    } else if (name == "created") {
      ok = to_int(v, e.created_unix_ns);
    } else if (name == "field") {
      const auto eq = v.find('=');
      ok = eq != std::string_view::npos;
      if (ok) e.fields[std::string(v.substr(0, eq))] = std::string(v.substr(eq + 1));
    } else if (name == "in") {
      ok = split_pair(v, e.inputs);
    } else if (name == "out") {
      ok = split_pair(v, e.outputs);
    } else if (name == "outpath") {
      e.output_paths.emplace_back(v);
    } else if (name == "exit") {
      ok = to_int(v, e.exit_code);
    } else if (name == "wall") {
      ok = to_int(v, e.wall_ns);
    } else if (name == "cpu") {
      ok = to_int(v, e.cpu_ns);
    } else if (name == "rss") {
      ok = to_int(v, e.max_rss_kb);
    } else if (name == "stdout") {
      e.stdout_data = v;
    } else if (name == "stderr") {
      e.stderr_data = v;
    } else if (name == "stdout_bytes") {
      ok = to_int(v, e.stdout_bytes);
    } else if (name == "stderr_bytes") {
      ok = to_int(v, e.stderr_bytes);
    } else if (name == "host") {
      e.host = v;
    } else if (name == "binary") {
      e.binary_sha256 = v;
    }  // unknown fields: a newer writer's; skipped
    if (!ok) return std::nullopt;
  }
  if (!have_key) return std::nullopt;
  return e;
}

namespace {
// True when `p` is already lexically normal: no empty (but a leading '/'), "." or ".." component
// and no trailing '/'. The common case, joined without std::filesystem's allocations.
bool plain(std::string_view p) {
  if (p.empty()) return false;
  for (std::size_t i = 0; i <= p.size();) {
    std::size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    const std::string_view c = p.substr(i, j - i);
    if ((c.empty() && i != 0) || c == "." || c == "..") return false;
    i = j + 1;
  }
  return true;
}
}  // namespace

std::string absolute_in(const std::string& cwd, const std::string& path) {
  if (plain(path)) {
    if (path.front() == '/') return path;
    if (plain(cwd) && cwd.front() == '/') return std::string(cwd).append("/").append(path);
  }
  fs::path p(path);
  if (p.is_relative()) p = fs::path(cwd) / p;
  return p.lexically_normal().string();
}

std::string shown_path(const std::string& cwd, const std::string& path) {
  const std::string abs = absolute_in(cwd, path);
  std::string prefix = fs::path(cwd).lexically_normal().string();
  if (!prefix.ends_with('/')) prefix.push_back('/');
  return abs.starts_with(prefix) ? abs.substr(prefix.size()) : path;
}

}  // namespace detail

Result<CacheGcReport> ResultCache::gc(const std::string& dir, const CacheGcOptions& options) {
  namespace fs = std::filesystem;
  const std::string entries = dir + "/entries";
  std::error_code ec;
  if (!fs::is_directory(entries, ec)) {
    return fail(ErrorCode::NotFound,
                pepita::fmt("'{}' holds no result cache (no entries/ directory); give the "
                            "state directory of a run, or its --cache-dir",
                            dir));
  }
  auto cache = PEPITA_TRY(ResultCache::open(dir));
  struct Kept {
    std::string path, label;
    std::int64_t created;
    std::uint64_t bytes;
  };
  std::vector<Kept> kept;
  CacheGcReport report;
  const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  auto remove = [&](const std::string& path, const std::string& label, const std::string& why) {
    ::unlink(path.c_str());
    cache->forget_entry(fs::path(path).filename().string());  // and its entries.idx record
    report.removed.push_back(std::string(label).append(": ").append(why));
  };
  for (const auto& de : fs::directory_iterator(entries, ec)) {
    const std::string path = de.path().string();
    const std::string file = de.path().filename().string();
    if (file.find(".tmp.") != std::string::npos) {
      remove(path, file, "a leftover temporary file");
      continue;
    }
    std::string text;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) continue;
    char buf[65536];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
    std::fclose(f);
    auto e = detail::decode_entry(text);
    const std::string label =
        e ? pepita::fmt("{} {}", e->name, e->key.substr(0, 12)) : file.substr(0, 12);
    if (!e) {
      remove(path, label, "unreadable entry");
      continue;
    }
    // Outputs that no longer match: the entry can never be reused.
    std::vector<std::string> outs = e->output_paths;
    auto hashes = cache->hash_files(outs);
    std::string bad;
    for (std::size_t i = 0; i < outs.size(); ++i) {
      if (!hashes[i]) {
        bad = pepita::fmt("output {} missing", outs[i]);
        break;
      }
    }
    // output_paths follow the task's declared order, outputs are sorted: compare as sets.
    if (bad.empty()) {
      std::vector<std::string> have, want;
      for (auto& h : hashes) have.push_back(*h);
      for (const auto& [p, h] : e->outputs) want.push_back(h);
      std::sort(have.begin(), have.end());
      std::sort(want.begin(), want.end());
      if (have != want) bad = "outputs changed since it was stored";
    }
    if (!bad.empty()) {
      remove(path, label, bad);
      continue;
    }
    if (options.max_age &&
        now - e->created_unix_ns >
            std::chrono::duration_cast<std::chrono::nanoseconds>(*options.max_age).count()) {
      remove(path, label, "older than --max-age");
      continue;
    }
    kept.push_back({path, label, e->created_unix_ns, text.size()});
  }
  std::sort(kept.begin(), kept.end(),
            [](const Kept& a, const Kept& b) { return a.created > b.created; });  // newest first
  std::uint64_t total = 0;
  for (const Kept& k : kept) {
    if (options.max_size && total + k.bytes > *options.max_size) {
      remove(k.path, k.label, "over --max-size (oldest first)");
      continue;
    }
    total += k.bytes;
    ++report.kept;
  }
  report.kept_bytes = total;
  cache->flush_index();
  return report;
}

}  // namespace pepita::pool
