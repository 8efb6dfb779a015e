// /metrics: the Prometheus text exposition format (0.0.4) parsed back — every sample line
// well-formed, one HELP and one TYPE per family before its samples, histogram buckets
// cumulative and ending at +Inf == _count — for a run's model and a worker's counters.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "dashboard_model.hpp"
#include "pepita/executor/result.hpp"

namespace pepita::cli::dashboard {
namespace {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> type;  // family -> TYPE
  std::map<std::string, int> help;          // family -> HELP lines
  std::vector<Sample> samples;
  std::vector<std::string> errors;
};

// The family a sample belongs to: histograms' _bucket/_sum/_count go to their base name.
std::string family_of(const std::string& name, const Exposition& e) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s(suffix);
    if (name.size() > s.size() && name.ends_with(s)) {
      const std::string base = name.substr(0, name.size() - s.size());
      if (auto it = e.type.find(base); it != e.type.end() && it->second == "histogram") return base;
    }
  }
  return name;
}

Exposition parse(const std::string& text) {
  Exposition e;
  static const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
  static const std::regex type(
      R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
  static const std::regex sample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$)");
  static const std::regex label(R"(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)\")");
  if (text.empty() || text.back() != '\n') e.errors.push_back("does not end with a newline");
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, help)) {
      ++e.help[m[1]];
    } else if (std::regex_match(line, m, type)) {
      if (e.type.contains(m[1])) e.errors.push_back("second TYPE for " + m[1].str());
      e.type[m[1]] = m[2];
    } else if (std::regex_match(line, m, sample)) {
      Sample s;
      s.name = m[1];
      const std::string labels = m[3];
      for (auto it = std::sregex_iterator(labels.begin(), labels.end(), label);
           it != std::sregex_iterator(); ++it)
        s.labels[(*it)[1]] = (*it)[2];
      const std::string v = m[4];
      s.value = v == "+Inf" ? INFINITY : std::stod(v);
      const std::string fam = family_of(s.name, e);
      if (!e.type.contains(fam)) e.errors.push_back("sample before its TYPE: " + line);
      if (!e.help.contains(fam)) e.errors.push_back("sample without HELP: " + line);
      e.samples.push_back(std::move(s));
    } else {
      e.errors.push_back("malformed line: '" + line + "'");
    }
  }
  for (const auto& [fam, n] : e.help)
    if (n != 1) e.errors.push_back("HELP " + std::to_string(n) + " times for " + fam);
  return e;
}

void expect_histograms_cumulative(const Exposition& e) {
  for (const auto& [fam, type] : e.type) {
    if (type != "histogram") continue;
    double last = -1, inf = -1, count = -1;
    int buckets = 0;
    for (const auto& s : e.samples) {
      if (s.name == fam + "_bucket") {
        ++buckets;
        ASSERT_TRUE(s.labels.contains("le")) << fam;
        EXPECT_GE(s.value, last) << fam << " bucket le=" << s.labels.at("le") << " decreases";
        last = s.value;
        if (s.labels.at("le") == "+Inf") inf = s.value;
      } else if (s.name == fam + "_count") {
        count = s.value;
      }
    }
    EXPECT_GT(buckets, 1) << fam;
    EXPECT_GE(inf, 0) << fam << " has no +Inf bucket";
    EXPECT_EQ(inf, count) << fam << ": +Inf bucket != _count";
  }
}

double value(const Exposition& e, const std::string& name,
             const std::map<std::string, std::string>& labels = {}) {
  for (const auto& s : e.samples)
    if (s.name == name && s.labels == labels) return s.value;
  ADD_FAILURE() << "no sample " << name;
  return NAN;
}

TEST(Metrics, ARunsExpositionParsesBackWithEveryFamily) {
  RunModel m("job");
  m.add_synthetic("a", "process", 0, 0, 30, "succeeded");
  m.add_synthetic("b", "process", 1, 0, 2000, "failed", "oops");
  m.add_synthetic("c", "process", 0, 40, 70000, "succeeded");
  m.set_workers({{"process", 1, 4, 2}, {"cpu", 0, 1, 0}}, 5);
  const auto e = parse(m.metrics());
  EXPECT_TRUE(e.errors.empty()) << ::testing::PrintToString(e.errors);
  for (const char* fam : {"pepita_tasks", "pepita_attempts_total", "pepita_retries_total",
                          "pepita_queue_depth", "pepita_slots_used", "pepita_slots",
                          "pepita_bytes_staged_total", "pepita_attempt_duration_seconds"})
    EXPECT_TRUE(e.type.contains(fam)) << fam;
  EXPECT_EQ(value(e, "pepita_tasks", {{"state", "succeeded"}}), 2);
  EXPECT_EQ(value(e, "pepita_tasks", {{"state", "failed"}}), 1);
  EXPECT_EQ(value(e, "pepita_queue_depth"), 5);
  EXPECT_EQ(value(e, "pepita_slots_used", {{"backend", "process"}}), 1);
  EXPECT_EQ(value(e, "pepita_slots", {{"backend", "process"}}), 4);
  EXPECT_EQ(value(e, "pepita_bytes_staged_total"), 0);
  expect_histograms_cumulative(e);
}

TEST(Metrics, LatencyHistogramCountsEveryFinishedAttempt) {
  RunModel m("job");
  for (std::uint64_t i = 1; i <= 3; ++i) {
    m.on_event({.kind = pool::Event::Kind::Started,
                .id = i,
                .name = "t" + std::to_string(i),
                .attempt = 1});
    executor::ExecutionResult r =
        executor::ExecutionResult::success(i, std::chrono::milliseconds(1));
    r.name = "t" + std::to_string(i);
    r.attempts = 1;
    m.on_event(
        {.kind = pool::Event::Kind::Finished, .id = i, .name = r.name, .attempt = 1, .result = &r});
  }
  const auto e = parse(m.metrics());
  EXPECT_TRUE(e.errors.empty()) << ::testing::PrintToString(e.errors);
  EXPECT_EQ(value(e, "pepita_attempt_duration_seconds_count"), 3);
  EXPECT_EQ(value(e, "pepita_attempts_total"), 3);
  expect_histograms_cumulative(e);
}

TEST(Metrics, LabelValuesAreEscaped) {
  RunModel m("job");
  m.set_workers({{"we\"ird\\back\nend", 0, 1, 0}}, 0);
  const auto e = parse(m.metrics());
  EXPECT_TRUE(e.errors.empty()) << ::testing::PrintToString(e.errors);
}

TEST(Metrics, AWorkersExpositionParsesBack) {
  const auto e = parse(worker_metrics({.clients_accepted = 2,
                                       .clients_rejected = 1,
                                       .tasks_run = 7,
                                       .tasks_returned = 0,
                                       .blobs_stored = 3,
                                       .slots = 4,
                                       .bytes_staged = 5000}));
  EXPECT_TRUE(e.errors.empty()) << ::testing::PrintToString(e.errors);
  EXPECT_EQ(value(e, "pepita_worker_tasks_run_total"), 7);
  EXPECT_EQ(value(e, "pepita_worker_slots"), 4);
  EXPECT_EQ(value(e, "pepita_bytes_staged_total"), 5000);
}

TEST(Metrics, TheParserRejectsMalformedLines) {        // the checker itself can fail
  EXPECT_FALSE(parse("pepita_x 1\n").errors.empty());  // no TYPE/HELP
  EXPECT_FALSE(parse("# HELP a x\n# TYPE a gauge\na{b=\"c} 1\n").errors.empty());
  EXPECT_FALSE(parse("# HELP a x\n# TYPE a gauge\na one\n").errors.empty());
  EXPECT_TRUE(parse("# HELP a x\n# TYPE a gauge\na{b=\"c\"} 1\n").errors.empty());
}

}  // namespace
}  // namespace pepita::cli::dashboard
