// The result cache's index codecs (detail/cache_index.hpp): files.idx and entries.idx.
#include "detail/cache_index.hpp"

#include <charconv>

#include "pepita/core/format.hpp"
#include "pepita/core/sha256.hpp"

namespace pepita::pool::detail {

namespace {

constexpr std::string_view kFilesMagic = "pepita-files-idx 2\n";
constexpr std::string_view kEntriesMagic = "pepita-entries-idx 1\n";
constexpr std::size_t kSumLine = 4 + 64 + 1;  // "sum " + hex + "\n"

std::int64_t ns_of(const struct timespec& t) {
  return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

// Parses one space-terminated integer at `pos`; advances past the space.
template <typename T>
bool next_int(std::string_view line, std::size_t& pos, T& out) {
  const char* b = line.data() + pos;
  const char* e = line.data() + line.size();
  auto [p, ec] = std::from_chars(b, e, out);
  if (ec != std::errc() || p == e || *p != ' ') return false;
  pos = static_cast<std::size_t>(p - line.data()) + 1;
  return true;
}

// "<word> <dev> <ino> <size> <mtime> <ctime> " at the start of `line`: the word (64 hex) and
// the stamp; `pos` is left at the rest.
bool parse_head(std::string_view line, std::string_view& word, FileStamp& s, std::size_t& pos) {
  if (line.size() < 65 || line[64] != ' ') return false;
  word = line.substr(0, 64);
  if (!is_sha256_hex(word)) return false;
  pos = 65;
  return next_int(line, pos, s.dev) && next_int(line, pos, s.ino) && next_int(line, pos, s.size) &&
         next_int(line, pos, s.mtime) && next_int(line, pos, s.ctime);
}

void put_head(std::string& out, std::string_view word, const FileStamp& s) {
  out.append(word).append(pepita::fmt(" {} {} {} {} {} ", s.dev, s.ino, s.size, s.mtime, s.ctime));
}

// Checks the magic and the trailing sum; the records between them, or the problem.
std::string checked_body(std::string_view text, std::string_view magic, std::string_view name,
                         std::string_view& body) {
  if (!text.starts_with(magic)) return pepita::fmt("{} has an unknown format", name);
  if (text.size() < magic.size() + kSumLine) return pepita::fmt("{} is truncated", name);
  const std::string_view tail = text.substr(text.size() - kSumLine);
  if (!tail.starts_with("sum ") || tail.back() != '\n') {
    return pepita::fmt("{} is truncated (no checksum line)", name);
  }
  const std::string_view all = text.substr(0, text.size() - kSumLine);
  if (sha256_hex(all) != tail.substr(4, 64)) {
    return pepita::fmt("{} is damaged (checksum mismatch)", name);
  }
  body = all.substr(magic.size());
  return {};
}

void append_sum(std::string& out) {
  const std::string sum = sha256_hex(out);
  out.append("sum ").append(sum).append("\n");
}

}  // namespace

FileStamp FileStamp::of(const struct stat& st) noexcept {
  return FileStamp{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                   static_cast<std::uint64_t>(st.st_size), ns_of(st.st_mtim), ns_of(st.st_ctim)};
}

CacheEntry slim_entry(const CacheEntry& e) {
  CacheEntry s = e;
  s.fields.clear();
  s.inputs.clear();
  s.output_paths.clear();
  return s;
}

std::string encode_file_index(const FileIndex& index) {
  std::string out(kFilesMagic);
  out.reserve(index.size() * 160 + 128);
  for (const auto& [path, r] : index) {
    put_head(out, r.hash, r.stamp);
    out.append(path).append("\n");
  }
  append_sum(out);
  return out;
}

std::string decode_file_index(std::string_view text, FileIndex& into) {
  if (text.empty()) return {};
  std::string_view body;
  bool legacy = false;
  const char c0 = text.front();
  if ((c0 >= '0' && c0 <= '9') || (c0 >= 'a' && c0 <= 'f')) {
    body = text;  // format 1: append-only lines starting with a hash, a torn last line possible
    legacy = true;
  } else if (auto problem = checked_body(text, kFilesMagic, "files.idx", body); !problem.empty()) {
    return problem;
  }
  FileIndex got;
  std::size_t pos = 0;
  while (pos < body.size()) {
    const std::size_t nl = body.find('\n', pos);
    if (nl == std::string_view::npos) {
      if (legacy) break;  // format 1's torn last append
      return "files.idx is damaged (a torn line)";
    }
    const std::string_view line = body.substr(pos, nl - pos);
    pos = nl + 1;
    std::string_view hash;
    FileRecord r;
    std::size_t rest = 0;
    if (!parse_head(line, hash, r.stamp, rest) || rest >= line.size()) {
      return "files.idx is damaged (a malformed line)";
    }
    r.hash = hash;
    got.insert_or_assign(std::string(line.substr(rest)), std::move(r));  // later lines win
  }
  into.merge(got);  // keeps what `into` had
  return {};
}

std::string encode_entry_index(const EntryIndex& index) {
  std::string out(kEntriesMagic);
  for (const auto& [key, r] : index) {
    const std::string text = encode_entry(*r.entry);
    put_head(out, key, r.stamp);
    out.append(std::to_string(text.size())).append("\n").append(text).append("\n");
  }
  append_sum(out);
  return out;
}

std::string decode_entry_index(std::string_view text, EntryIndex& into) {
  if (text.empty()) return {};
  std::string_view body;
  if (auto problem = checked_body(text, kEntriesMagic, "entries.idx", body); !problem.empty()) {
    return problem;
  }
  EntryIndex got;
  std::size_t pos = 0;
  while (pos < body.size()) {
    const std::size_t nl = body.find('\n', pos);
    if (nl == std::string_view::npos) return "entries.idx is damaged (a torn record)";
    const std::string_view head = body.substr(pos, nl - pos);
    std::string_view key;
    EntryRecord r;
    std::size_t rest = 0, len = 0;
    if (!parse_head(head, key, r.stamp, rest)) return "entries.idx is damaged (a malformed record)";
    const std::string_view n = head.substr(rest);
    if (auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), len);
        ec != std::errc() || p != n.data() + n.size()) {
      return "entries.idx is damaged (a malformed record)";
    }
    pos = nl + 1;
    if (len >= body.size() - pos || body[pos + len] != '\n') {
      return "entries.idx is damaged (a record overruns the file)";
    }
    auto e = decode_entry(body.substr(pos, len));
    pos += len + 1;
    if (!e || e->key != key) return "entries.idx is damaged (a record does not decode)";
    r.entry = std::make_shared<const CacheEntry>(std::move(*e));
    got.insert_or_assign(std::string(key), std::move(r));
  }
  into.merge(got);
  return {};
}

}  // namespace pepita::pool::detail
