// Journal framing, recovery (torn-tail vs corruption) and the group-commit syncer.
#include "pepita/fault/journal.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "pepita/core/crc32c.hpp"
#include "pepita/core/sys/fd.hpp"

namespace pepita::fault {
namespace {

constexpr char kMagic[8] = {'P', 'E', 'P', 'J', 'R', 'N', 'L', '2'};
// Format 1: Finished records end after `error`. Read as is; rewritten to kMagic on resume.
constexpr char kMagicV1[8] = {'P', 'E', 'P', 'J', 'R', 'N', 'L', '1'};
bool known_magic(std::string_view head) {
  return head.size() >= sizeof kMagic && (std::memcmp(head.data(), kMagic, sizeof kMagic) == 0 ||
                                          std::memcmp(head.data(), kMagicV1, sizeof kMagicV1) == 0);
}
constexpr std::size_t kFrame = 8;  // u32 length + u32 crc
// A length above this is garbage, not a record: outputs are capped far below it.
constexpr std::uint32_t kMaxPayload = 256u << 20;

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}
std::uint32_t get_u32_at(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= std::uint32_t{static_cast<unsigned char>(s[at + static_cast<std::size_t>(i)])} << (8 * i);
  }
  return v;
}

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool u8(std::uint8_t& v) {
    if (pos_ + 1 > s_.size()) return false;
    v = static_cast<std::uint8_t>(s_[pos_++]);
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (pos_ + 4 > s_.size()) return false;
    v = get_u32_at(s_, pos_);
    pos_ += 4;
    return true;
  }
  bool u64(std::uint64_t& v) {
    std::uint32_t lo = 0, hi = 0;
    if (!u32(lo) || !u32(hi)) return false;
    v = (std::uint64_t{hi} << 32) | lo;
    return true;
  }
  bool i32(std::int32_t& v) {
    std::uint32_t u = 0;
    if (!u32(u)) return false;
    v = static_cast<std::int32_t>(u);
    return true;
  }
  bool i64(std::int64_t& v) {
    std::uint64_t u = 0;
    if (!u64(u)) return false;
    v = static_cast<std::int64_t>(u);
    return true;
  }
  bool str(std::string& v) {
    std::uint32_t n = 0;
    if (!u32(n) || n > s_.size() - pos_) return false;
    v.assign(s_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == s_.size(); }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

std::string sha256_hex(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  for (unsigned i = 0; i < len; ++i) {
    text.push_back(kHex[out[i] >> 4]);
    text.push_back(kHex[out[i] & 15]);
  }
  return text;
}

Result<void> write_all(int fd, std::string_view data, const std::string& path) {
  const int64_t n = sys::write_full(fd, data.data(), data.size());
  if (n < 0) return fail_errno(static_cast<int>(n), "write journal " + path);
  return {};
}

// Fills an out-parameter: returning the string through Result trips a GCC 12 false positive
// (-Wmaybe-uninitialized) in callers.
Result<void> slurp(const std::string& path, std::string& data) {
  const int raw = sys::open(path.c_str(), O_RDONLY);
  if (raw == -ENOENT) return {};
  if (raw < 0) return fail_errno(raw, "open journal " + path);
  UniqueFd fd(raw);
  char buf[1 << 16];
  for (;;) {
    const int64_t n = sys::read_full(fd.get(), buf, sizeof buf);
    if (n < 0) return fail_errno(static_cast<int>(n), "read journal " + path);
    data.append(buf, static_cast<std::size_t>(n));
    if (static_cast<std::size_t>(n) < sizeof buf) break;  // end of file
  }
  return {};
}

Result<void> fsync_parent(const std::string& path) {
  auto parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  const int raw = sys::open(parent.c_str(), O_RDONLY | O_DIRECTORY);
  if (raw < 0) return fail_errno(raw, "open journal directory " + parent.string());
  UniqueFd dir(raw);
  if (const int rc = sys::fsync(dir.get()); rc < 0) {
    return fail_errno(rc, "fsync " + parent.string());
  }
  return {};
}

}  // namespace

std::string encode_record(const JournalRecord& r) {
  std::string out;
  out.reserve(64 + r.name.size() + r.stdout_data.size() + r.stderr_data.size());
  out.push_back(static_cast<char>(r.type));
  put_str(out, r.name);
  put_str(out, r.spec_digest);
  put_u32(out, r.attempt);
  if (r.type == RecordType::Finished) {
    out.push_back(static_cast<char>(r.status));
    put_u32(out, static_cast<std::uint32_t>(r.exit_code));
    put_u32(out, static_cast<std::uint32_t>(r.signal));
    put_u64(out, static_cast<std::uint64_t>(r.wall_ns));
    put_u64(out, static_cast<std::uint64_t>(r.cpu_ns));
    put_u64(out, static_cast<std::uint64_t>(r.max_rss_kb));
    put_str(out, r.output_digest);
    put_str(out, r.stdout_data);
    put_str(out, r.stderr_data);
    put_str(out, r.error);
    put_u64(out, r.stdout_bytes);
    put_u64(out, r.stderr_bytes);
    if (!r.metadata.empty()) {  // issue 21: optional trailer
      put_u32(out, static_cast<std::uint32_t>(r.metadata.size()));
      for (const auto& [k, v] : r.metadata) {
        put_str(out, k);
        put_str(out, v);
      }
    }
  }
  return out;
}

Result<JournalRecord> decode_record(std::string_view payload) {
  Reader in(payload);
  JournalRecord r;
  std::uint8_t type = 0;
  bool ok = in.u8(type) && type >= 1 && type <= 3;
  if (ok) r.type = static_cast<RecordType>(type);
  ok = ok && in.str(r.name) && in.str(r.spec_digest) && in.u32(r.attempt);
  if (ok && r.type == RecordType::Finished) {
    ok = in.u8(r.status) && in.i32(r.exit_code) && in.i32(r.signal) && in.i64(r.wall_ns) &&
         in.i64(r.cpu_ns) && in.i64(r.max_rss_kb) && in.str(r.output_digest) &&
         in.str(r.stdout_data) && in.str(r.stderr_data) && in.str(r.error);
    if (ok && in.done()) {  // format 1: no byte counts
      r.stdout_bytes = r.stdout_data.size();
      r.stderr_bytes = r.stderr_data.size();
    } else {
      ok = ok && in.u64(r.stdout_bytes) && in.u64(r.stderr_bytes);
      std::uint32_t labels = 0;
      // Issue 21: the metadata trailer, written only when there are labels.
      if (ok && !in.done()) ok = in.u32(labels) && labels > 0;
      for (std::uint32_t i = 0; ok && i < labels; ++i) {
        std::string k, v;
        ok = in.str(k) && in.str(v);
        if (ok) r.metadata.emplace(std::move(k), std::move(v));
      }
    }
  }
  if (!ok || !in.done()) {
    return fail(ErrorCode::Corrupted, "journal record is malformed (bad type or field lengths)");
  }
  return r;
}

Result<Recovery> read_journal(const std::string& path) {
  std::string data;
  PEPITA_TRY_VOID(slurp(path, data));
  Recovery rec;
  if (data.size() < sizeof kMagic) {
    // Empty, or the magic itself was torn on creation: nothing was ever recorded.
    if (std::memcmp(data.data(), kMagic, data.size()) != 0 &&
        std::memcmp(data.data(), kMagicV1, data.size()) != 0) {
      return fail(ErrorCode::Corrupted, path +
                                            " is not a pepita journal (bad magic); move it "
                                            "away or run without --resume");
    }
    rec.torn_bytes = data.size();
    return rec;
  }
  if (!known_magic(data)) {
    return fail(
        ErrorCode::Corrupted,
        path + " is not a pepita journal (bad magic); move it away or run without --resume");
  }
  if (std::memcmp(data.data(), kMagicV1, sizeof kMagicV1) == 0) rec.format = 1;
  std::size_t pos = sizeof kMagic;
  const std::string_view view(data);
  while (pos < data.size()) {
    const std::size_t left = data.size() - pos;
    auto torn_or_corrupt = [&](std::string_view why) -> Result<Recovery> {
      // A crash can only damage the tail: either the bad record reaches the end of the file, or
      // everything after it is zero fill (a filesystem that extended the file before the data
      // reached it). Anything else is real damage and must not be silently skipped.
      const bool all_zero = std::all_of(data.begin() + static_cast<std::ptrdiff_t>(pos), data.end(),
                                        [](char c) { return c == 0; });
      std::uint32_t len = left >= 4 ? get_u32_at(view, pos) : 0;
      const bool reaches_end =
          left < kFrame || len > left - kFrame || pos + kFrame + len == data.size();
      if (all_zero || reaches_end) {
        rec.valid_bytes = pos;
        rec.torn_bytes = left;
        return std::move(rec);
      }
      return fail(ErrorCode::Corrupted, path + ": record at byte " + std::to_string(pos) + " " +
                                            std::string(why) +
                                            " and intact data follows; the journal is damaged. "
                                            "Move it away or run without --resume");
    };
    if (left < kFrame) return torn_or_corrupt("is truncated");
    const std::uint32_t len = get_u32_at(view, pos);
    const std::uint32_t crc = get_u32_at(view, pos + 4);
    if (len == 0 || len > kMaxPayload || len > left - kFrame) {
      return torn_or_corrupt("has an impossible length");
    }
    const std::string_view payload = view.substr(pos + kFrame, len);
    if (crc32c(payload) != crc) return torn_or_corrupt("fails its CRC32C");
    auto record = decode_record(payload);
    if (!record) return torn_or_corrupt("does not decode");
    rec.records.push_back(std::move(*record));
    pos += kFrame + len;
  }
  rec.valid_bytes = pos;
  return rec;
}

Journal::Journal(Private, std::string path, UniqueFd fd, std::vector<JournalRecord> recovered,
                 std::uint64_t torn)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      recovered_(std::move(recovered)),
      torn_bytes_(torn),
      syncer_([this](std::stop_token stop) { sync_loop(stop); }) {}

Journal::~Journal() {
  if (syncer_.joinable()) {
    syncer_.request_stop();
    sync_cv_.notify_all();
    syncer_.join();
  }
  if (fd_) (void)sys::fdatasync(fd_.get());
}

Result<std::unique_ptr<Journal>> Journal::open(const std::string& path, Mode mode) {
  if (path.empty()) return fail(ErrorCode::InvalidArgument, "journal path is empty");
  Recovery recovery;
  if (mode == Mode::Resume) recovery = PEPITA_TRY(read_journal(path));
  const int flags = O_WRONLY | O_CREAT | (mode == Mode::Truncate ? O_TRUNC : 0);
  const int raw = sys::open(path.c_str(), flags, 0644);
  if (raw < 0) return fail_errno(raw, "open journal " + path);
  UniqueFd fd(raw);
  const int64_t size = sys::file_size(fd.get());
  if (size < 0) return fail_errno(static_cast<int>(size), "fstat journal " + path);
  const std::uint64_t intact = recovery.valid_bytes;
  if (mode == Mode::Truncate || intact < sizeof kMagic) {
    if (const int rc = sys::ftruncate(fd.get(), 0); rc < 0) {
      return fail_errno(rc, "truncate journal " + path);
    }
    PEPITA_TRY_VOID(write_all(fd.get(), std::string_view(kMagic, sizeof kMagic), path));
  } else if (static_cast<std::uint64_t>(size) != intact) {
    // Cut the torn tail so the next record starts on a clean boundary.
    if (const int rc = sys::ftruncate(fd.get(), intact); rc < 0) {
      return fail_errno(rc, "truncate torn tail of journal " + path);
    }
  }
  if (mode == Mode::Resume && intact >= sizeof kMagic && recovery.format == 1) {
    // Its records are valid format 2 records; the ones appended now are not format 1 records,
    // so an older pepita must see a magic it refuses rather than records it calls damaged.
    if (const int64_t rc = sys::pwrite_full(fd.get(), kMagic, sizeof kMagic, 0); rc < 0) {
      return fail_errno(static_cast<int>(rc), "upgrade the magic of journal " + path);
    }
  }
  if (const int64_t rc = sys::lseek(fd.get(), 0, SEEK_END); rc < 0) {
    return fail_errno(static_cast<int>(rc), "seek journal " + path);
  }
  if (const int rc = sys::fsync(fd.get()); rc < 0) return fail_errno(rc, "fsync journal " + path);
  PEPITA_TRY_VOID(fsync_parent(path));
  return std::make_unique<Journal>(Private{}, path, std::move(fd), std::move(recovery.records),
                                   recovery.torn_bytes);
}

Result<void> Journal::append(JournalRecord record) {
  if (record.type == RecordType::Finished && record.output_digest.empty()) {
    record.output_digest = sha256_hex(record.stdout_data);
  }
  const std::string payload = encode_record(record);
  if (payload.size() > kMaxPayload) {
    return fail(ErrorCode::ResourceExhausted,
                "journal record for '" + record.name + "' is over 256 MiB; lower the output cap");
  }
  std::string frame;
  frame.reserve(kFrame + payload.size());
  put_u32(frame, static_cast<std::uint32_t>(payload.size()));
  put_u32(frame, crc32c(payload));
  frame += payload;
  std::lock_guard lock(write_mu_);
  return write_all(fd_.get(), frame, path_);
}

void Journal::commit() {
  {
    std::lock_guard lock(sync_mu_);
    dirty_ = true;
  }
  sync_cv_.notify_one();
}

Result<void> Journal::sync() {
  int earlier = 0;
  {
    std::lock_guard lock(sync_mu_);
    earlier = std::exchange(sync_errno_, 0);
  }
  if (earlier != 0) return fail_errno(earlier, "fdatasync journal " + path_);
  if (const int rc = sys::fdatasync(fd_.get()); rc < 0) {
    return fail_errno(rc, "fdatasync journal " + path_);
  }
  return {};
}

void Journal::sync_loop(std::stop_token stop) {
  std::unique_lock lock(sync_mu_);
  while (true) {
    sync_cv_.wait(lock, stop, [this] { return dirty_; });
    if (!dirty_) return;  // stop requested
    dirty_ = false;
    lock.unlock();
    const int err = -sys::fdatasync(fd_.get());  // 0 or a positive errno
    lock.lock();
    if (err != 0 && sync_errno_ == 0) sync_errno_ = err;
  }
}

}  // namespace pepita::fault
