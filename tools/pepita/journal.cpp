// `pepita journal verify|export`: check a run's journal (hash chain, MACs, End record; issue 24)
// and print its records as JSON lines.
#include "pepita/fault/journal.hpp"

#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "command.hpp"
#include "pepita/executor/result.hpp"

namespace pepita::cli {
namespace {

struct JournalOptions {
  std::string target;  // STATE_DIR or a journal file
  std::string key;
  bool jsonl = false;
};

// A state directory names its journal file "journal" (what `pepita run` writes there).
std::string journal_path(const std::string& target) {
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return target + "/journal";
  return target;
}

// Structure only (lead and continuation bytes); dump() below replaces what nlohmann still
// rejects (overlong forms, surrogates) instead of throwing.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t extra = 0;
    if (c < 0x80) {
      extra = 0;
    } else if ((c >> 5) == 0x6) {
      extra = 1;
    } else if ((c >> 4) == 0xE) {
      extra = 2;
    } else if ((c >> 3) == 0x1E) {
      extra = 3;
    } else {
      return false;
    }
    if (extra > s.size() - i - 1) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    }
    i += extra + 1;
  }
  return true;
}

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string base64(std::string_view s) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((s.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < s.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(s[i]) << 16) |
                       (static_cast<unsigned char>(s[i + 1]) << 8) |
                       static_cast<unsigned char>(s[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (i < s.size()) {
    unsigned v = static_cast<unsigned char>(s[i]) << 16;
    if (i + 1 < s.size()) v |= static_cast<unsigned char>(s[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < s.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

// Output bytes as "<field>": text when it is UTF-8, else "<field>_base64".
void put_bytes(nlohmann::json& j, const std::string& field, const std::string& bytes) {
  if (valid_utf8(bytes)) {
    j[field] = bytes;
  } else {
    j[field + "_base64"] = base64(bytes);
  }
}

const char* type_name(fault::RecordType t) {
  switch (t) {
    case fault::RecordType::Submitted: return "submitted";
    case fault::RecordType::Started: return "started";
    case fault::RecordType::Finished: return "finished";
  }
  return "unknown";
}

nlohmann::json to_json(const fault::JournalRecord& r, std::size_t index) {
  nlohmann::json j{{"index", index},
                   {"type", type_name(r.type)},
                   {"name", r.name},
                   {"spec_digest", r.spec_digest},
                   {"attempt", r.attempt}};
  if (r.type != fault::RecordType::Finished) return j;
  j["status"] = r.status < executor::kStatusCount
                    ? std::string(executor::to_string(static_cast<executor::Status>(r.status)))
                    : std::to_string(r.status);
  j["exit_code"] = r.exit_code;
  j["signal"] = r.signal;
  j["wall_ns"] = r.wall_ns;
  j["cpu_ns"] = r.cpu_ns;
  j["max_rss_kb"] = r.max_rss_kb;
  j["output_digest"] = r.output_digest;
  put_bytes(j, "stdout", r.stdout_data);
  put_bytes(j, "stderr", r.stderr_data);
  put_bytes(j, "error", r.error);
  j["stdout_bytes"] = r.stdout_bytes;
  j["stderr_bytes"] = r.stderr_bytes;
  j["metadata"] = r.metadata;
  j["from_cache"] = r.from_cache;
  j["host"] = r.host;
  j["binary_sha256"] = r.binary_sha256;
  j["input_hashes"] = r.input_hashes;
  j["output_hashes"] = r.output_hashes;
  j["resources"] = r.resources;
  j["started_unix_ns"] = r.started_unix_ns;
  j["finished_unix_ns"] = r.finished_unix_ns;
  return j;
}

std::optional<std::string> load_key(const std::string& path, const char* command, bool& ok) {
  ok = true;
  if (path.empty()) return std::nullopt;
  auto key = fault::load_journal_key(path);
  if (!key) {
    std::fprintf(stderr, "%s: %s\n", command, key.error().to_string().c_str());
    ok = false;
    return std::nullopt;
  }
  return std::move(*key);
}

int run_verify(const JournalOptions& o) {
  bool ok = true;
  const auto key = load_key(o.key, "pepita journal verify", ok);
  if (!ok) return kExitFailure;
  const std::string path = journal_path(o.target);
  auto v = fault::verify_journal(path, key);
  if (!v) {
    std::fprintf(stderr, "pepita journal verify: %s\n", v.error().to_string().c_str());
    return kExitFailure;
  }
  if (!v->valid) {
    std::printf("%s: INVALID: %s (%llu records checked before it)\n", path.c_str(),
                v->reason.c_str(), static_cast<unsigned long long>(v->records));
    return kExitFailure;
  }
  const char* macs = v->macs_checked ? "MACs checked"
                     : v->keyed      ? "MACed, but MACs not checked (no --key)"
                                     : "no MACs (written without a key)";
  std::printf("%s: valid: %llu records, hash chain intact, %s, End record present\n", path.c_str(),
              static_cast<unsigned long long>(v->records), macs);
  return kExitOk;
}

int run_export(const JournalOptions& o) {
  if (!o.jsonl) {
    return usage_error("pepita journal export", "pepita journal export STATE_DIR|FILE --jsonl",
                       "choose the output format: --jsonl");
  }
  const std::string path = journal_path(o.target);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "pepita journal export: no journal at %s\n", path.c_str());
    return kExitFailure;
  }
  auto rec = fault::read_journal(path);
  if (!rec) {
    std::fprintf(stderr, "pepita journal export: %s\n", rec.error().to_string().c_str());
    return kExitFailure;
  }
  for (std::size_t i = 0; i < rec->records.size(); ++i) {
    std::printf("%s\n", dump(to_json(rec->records[i], i)).c_str());
  }
  if (rec->ended) {
    nlohmann::json end{
        {"index", rec->records.size()}, {"type", "end"}, {"records", rec->records.size()}};
    std::printf("%s\n", dump(end).c_str());
  }
  return kExitOk;
}

void add_journal(CLI::App& app, Dispatch& dispatch) {
  auto* group = app.add_subcommand("journal", "Check or export a run's journal");
  group->require_subcommand(1);
  dispatch.set_usage(group, "pepita journal verify|export STATE_DIR|FILE ...");
  auto o = std::make_shared<JournalOptions>();
  auto* verify = group->add_subcommand(
      "verify",
      "Check the journal's hash chain, End record and (with --key) MACs; exit 1 "
      "naming the first bad record");
  verify->add_option("target", o->target, "State directory of the run, or the journal file")
      ->required();
  verify->add_option("--key", o->key, "The run's --journal-key file: check every MAC too");
  dispatch.on(
      verify, [o] { return run_verify(*o); }, "pepita journal verify STATE_DIR|FILE [--key FILE]");
  auto* exp = group->add_subcommand("export", "Print every record as one JSON object a line");
  exp->add_option("target", o->target, "State directory of the run, or the journal file")
      ->required();
  exp->add_flag("--jsonl", o->jsonl, "JSON lines (the only format)");
  dispatch.on(
      exp, [o] { return run_export(*o); }, "pepita journal export STATE_DIR|FILE --jsonl");
}

}  // namespace
}  // namespace pepita::cli

PEPITA_REGISTER_COMMAND(journal, pepita::cli::add_journal);
