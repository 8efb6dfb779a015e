// verify_journal: walks a format 3 journal's hash chain, sequence numbers, MACs and End record
// and names the first record that does not check, and why.
#include <fcntl.h>

#include <algorithm>

#include "detail/journal_format.hpp"
#include "pepita/core/crc32c.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/fault/journal.hpp"

namespace pepita::fault {
namespace {

struct Entry {
  std::size_t offset = 0;
  std::string_view payload;
  std::optional<detail::ChainedPayload> chained;
};

}  // namespace

Result<JournalVerification> verify_journal(const std::string& path,
                                           const std::optional<std::string>& key) {
  using namespace detail;
  std::string data;
  PEPITA_TRY_VOID(detail::read_journal_bytes(path, data, /*missing_is_empty=*/false));
  JournalVerification v;
  v.format = magic_format(data);
  if (v.format == 0) {
    return fail(ErrorCode::Corrupted, path + " is not a pepita journal (bad magic)");
  }
  if (v.format < 3) {
    v.reason = pepita::fmt(
        "format {} journal predates the hash chain (pepita before issue 24): it cannot be "
        "verified; resuming it once rewrites it as format 3",
        v.format);
    return v;
  }
  if (key && key->size() < kJournalKeyMinBytes) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("journal key of {} bytes is too short; use at least {}", key->size(),
                            kJournalKeyMinBytes));
  }
  const std::string_view view(data);
  // Pass 1: frames. A frame that fails its length or CRC ends the walk: at the tail it is a torn
  // record (crash or cut), before intact data it is an edit.
  std::vector<Entry> entries;
  std::size_t pos = kMagicBytes;
  std::string frame_problem;
  bool torn = false;
  while (pos < data.size()) {
    const std::size_t left = data.size() - pos;
    const std::uint32_t len = left >= kFrame ? get_u32_at(view, pos) : 0;
    const bool framed = left >= kFrame && len > 0 && len <= kMaxPayload && len <= left - kFrame;
    if (!framed || crc32c(view.substr(pos + kFrame, len)) != get_u32_at(view, pos + 4)) {
      torn = !framed || pos + kFrame + len == data.size();
      frame_problem = torn ? pepita::fmt(
                                 "is torn at byte {} (cut mid-record); no end record: the "
                                 "run crashed or the tail was removed",
                                 pos)
                           : pepita::fmt("fails its CRC32C at byte {}: its bytes were edited", pos);
      break;
    }
    Entry e;
    e.offset = pos;
    e.payload = view.substr(pos + kFrame, len);
    e.chained = split_payload(e.payload);
    entries.push_back(e);
    pos += kFrame + len;
  }
  v.keyed = !entries.empty() && entries.front().chained && entries.front().chained->keyed;
  v.macs_checked = key.has_value() && v.keyed;
  auto bad = [&](std::uint64_t index, std::string why) -> Result<JournalVerification> {
    v.valid = false;
    v.bad_record = index;
    v.reason = pepita::fmt("record {}: {}", index, why);
    return v;
  };
  if (key && !entries.empty() && !v.keyed) {
    return bad(0, "the journal carries no MACs: it was written without a key");
  }
  // A wrong key: no record's MAC matches (an edit breaks only the records it touched).
  std::vector<bool> mac_ok(entries.size(), true);
  if (v.macs_checked) {
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const auto& c = entries[i].chained;
      mac_ok[i] = c && c->keyed && same_bytes(hmac_raw(*key, c->signed_part, c->body), c->mac);
    }
    if (std::none_of(mac_ok.begin(), mac_ok.end(), [](bool b) { return b; })) {
      return bad(0, "no record's MAC matches: wrong key");
    }
  }
  std::string prev = sha256_raw(view.substr(0, kMagicBytes));
  std::uint64_t records = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& c = entries[i].chained;
    if (!c) return bad(i, "malformed chain header: edited");
    if (c->keyed != v.keyed) return bad(i, "MACed and unMACed records are mixed: edited");
    if (!mac_ok[i]) return bad(i, "MAC mismatch: the record was edited");
    if (c->sequence != i) {
      return bad(i, pepita::fmt("carries sequence number {}: records were dropped or reordered "
                                "before it",
                                c->sequence));
    }
    if (c->prev != prev) {
      // The sequence is right, so nothing was dropped here: the previous record's bytes changed.
      return bad(i == 0 ? 0 : i - 1,
                 pepita::fmt("its hash no longer matches the one record {} carries: it was "
                             "edited (hash chain break)",
                             i));
    }
    if (is_end_body(c->body)) {
      const auto end = parse_end(c->body);
      if (!end) return bad(i, "malformed End record: edited");
      if (end->count != records || end->head != prev) {
        return bad(i, "the End record's count or chain head does not match the records before it");
      }
      if (i + 1 != entries.size() || !frame_problem.empty()) {
        return bad(i + 1, "records follow the End record: appended after a clean close");
      }
      v.ended = true;
    } else {
      auto decoded = decode_record(c->body);
      if (!decoded) return bad(i, "its body does not decode: edited");
      ++records;
    }
    v.records = records;
    prev = sha256_raw(entries[i].payload);
  }
  if (!frame_problem.empty()) {
    return bad(entries.size(), frame_problem);
  }
  if (!v.ended) {
    return bad(entries.size(), "no end record: the run crashed or the tail was removed");
  }
  v.valid = true;
  return v;
}

}  // namespace pepita::fault
