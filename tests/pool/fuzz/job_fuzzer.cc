// libFuzzer target for job files (pool::parse_job, the parser behind `pepita run`): the input is
// the file's text. toml++ is compiled in header-only so its parser is instrumented too. Checked:
// no crash or sanitizer report; every error is InvalidArgument and starts with the file name (the
// contract: "<file>:<line>:<column>: message"); every accepted job has unique, valid task names,
// one show_output flag per task, and dependencies only on tasks built before it.
//   build-fuzz/fuzz/fuzz_pool_job -dict=tests/pool/fuzz/job.dict
//   tests/pool/fuzz/corpus/fuzz_pool_job
#include <toml++/toml.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <unordered_set>

#include "pepita/pool/job.hpp"

using namespace pepita;

namespace {

// `count` may legitimately expand one [[task]] into 10 million: a job author's choice, not a bug,
// but no use to the fuzzer. Inputs that ask for more than kMaxTasks are skipped.
constexpr std::int64_t kMaxTasks = 256;

bool too_many_tasks(std::string_view text) {
  // Only inputs that can spell `count` (directly or through a \u escape in a quoted key) pay for
  // the extra parse.
  if (text.find("count") == std::string_view::npos && text.find("\\u") == std::string_view::npos &&
      text.find("\\U") == std::string_view::npos) {
    return false;
  }
  try {
    const toml::table doc = toml::parse(text);
    const auto* tasks = doc.get_as<toml::array>("task");
    if (tasks == nullptr) return false;
    std::int64_t total = 0;
    for (const auto& el : *tasks) {
      const auto* t = el.as_table();
      const auto* c = t ? t->get_as<std::int64_t>("count") : nullptr;
      total += c ? std::max<std::int64_t>(c->get(), 1) : 1;
      if (total > kMaxTasks) return true;
    }
  } catch (const toml::parse_error&) {
  }
  return false;
}

// toml++ 3.3 (Debian 12) reaches __builtin_unreachable in is_non_ascii_horizontal_whitespace() for
// code points its generated table misses (upstream marzer/tomlplusplus#190 and #295, fixed by
// #305): undefined behaviour in the library, not in pepita, and UBSan stops every run there. The
// fuzzer skips inputs holding such a code point (its own formula, so exactly those), e.g. U+00E9.
bool hits_toml_unicode_bug(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    const std::size_t n = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    char32_t c = n == 1 ? b : b & (0x7F >> n);
    for (std::size_t k = 1; k < n && i + k < text.size(); ++k)
      c = (c << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    i += n;
    if (c <= 0xA0 || c >= 0xFEFF || c == 0x3000) continue;
    const auto index = (static_cast<std::uint64_t>(c) - 0xA0) / 0x3FA;
    if (index == 0 || index == 11 || index == 63) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // SAFETY: the fuzzer's buffer is `size` readable bytes; viewed as chars, read-only.
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (hits_toml_unicode_bug(text) || too_many_tasks(text)) return 0;
  static const std::string kFile = "/fuzz/job.toml";
  // check_binaries off: commands are not looked up on this machine's PATH.
  const pool::JobOptions options{
      .pepita_dir = "/opt/pepita/bin", .state_dir = "/tmp/state", .check_binaries = false};
  auto job = pool::parse_job(text, kFile, options);
  if (!job) {
    if (job.error().code() != ErrorCode::InvalidArgument) std::abort();
    if (!job.error().message().starts_with(kFile)) std::abort();
    return 0;
  }
  if (job->show_output.size() != job->tasks.size() || job->tasks.empty()) std::abort();
  std::unordered_set<std::string> names;
  std::unordered_set<std::uint64_t> ids;
  for (const auto& t : job->tasks) {
    const std::string& name = t.name();
    if (name.empty() || name.size() > 200 || !names.insert(name).second) std::abort();
    ids.insert(t.id());
  }
  if (ids.size() != job->tasks.size()) std::abort();
  for (const auto& t : job->tasks) {
    for (const auto dep : t.dependencies()) {
      if (!ids.contains(dep)) std::abort();
    }
  }
  return 0;
}
