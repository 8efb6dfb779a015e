#pragma once
// Helpers of the dashboard's end-to-end tests: a job with quick, failing and slow tasks, the
// dashboard URL a background `pepita run` prints, its /api/snapshot, headless Chromium's DOM
// and screenshots (kept under <build>/test-artifacts/dashboard/), and DOM queries by regex.

#include <httplib.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <thread>

#include "cli/cli_runner.hpp"

namespace pepita::test::dash {

/// quick-0..2 succeed, `broken` fails twice (one retry) with "disk on fire" on stderr, `slow`
/// sleeps `slow_s` seconds.
inline std::string job_toml(int slow_s) {
  return std::string(R"([job]
name = "dash"
[pool]
process_slots = 2
retries = 1
retry_delay = 0.05
[[task]]
name = "quick"
count = 3
command = "/bin/sh"
args = ["-c", "sleep 0.1; echo hi"]
[[task]]
name = "broken"
command = "/bin/sh"
args = ["-c", "echo 'disk on fire: <b>not markup</b>' >&2; exit 3"]
[[task]]
name = "slow"
command = "/bin/sleep"
args = [")")
      .append(std::to_string(slow_s))
      .append("\"]\n");
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

/// The "dashboard at http://..." URL a run printed on stderr, waiting up to `limit`.
inline std::string dashboard_url(BackgroundPepita& run,
                                 std::chrono::seconds limit = std::chrono::seconds(60)) {
  static const std::regex url(R"(dashboard at (http://[^ \n]+))");
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    std::smatch m;
    const std::string err = run.err();
    if (std::regex_search(err, m, url)) return m[1];
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return {};
}

struct Url {
  std::string host;
  int port = 0;
  std::string token;
};
inline Url split(const std::string& url) {
  static const std::regex re(R"(http://([^:/]+):(\d+)/(?:\?token=([^ \n&]+))?)");
  std::smatch m;
  Url u;
  if (std::regex_search(url, m, re)) {
    u.host = m[1];
    u.port = std::stoi(m[2]);
    u.token = m[3];
  }
  return u;
}

inline std::optional<nlohmann::json> snapshot(const Url& u) {
  httplib::Client c(u.host, u.port);
  c.set_read_timeout(30, 0);
  httplib::Headers h;
  if (!u.token.empty()) h.emplace("X-Pepita-Token", u.token);
  auto r = c.Get("/api/snapshot", h);
  if (!r || r->status != 200) return std::nullopt;
  return nlohmann::json::parse(r->body, nullptr, false);
}

/// The state of task `name` in a snapshot, or "".
inline std::string state_of(const nlohmann::json& snap, const std::string& name) {
  for (const auto& t : snap["tasks"])
    if (t[1] == name) return t[3];
  return {};
}

/// Polls the snapshot until `done(snap)` holds (up to `limit`); the last snapshot.
template <typename Pred>
nlohmann::json wait_until(const Url& u, Pred done,
                          std::chrono::seconds limit = std::chrono::seconds(120)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  nlohmann::json last;
  while (std::chrono::steady_clock::now() < until) {
    if (auto s = snapshot(u); s && !s->is_discarded()) {
      last = *s;
      if (done(last)) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return last;
}

inline std::string artifact_dir() {
  const std::string dir = std::string(PEPITA_BINARY_DIR) + "/test-artifacts/dashboard";
  std::filesystem::create_directories(dir);
  return dir;
}

/// Headless Chromium on `url`: its DOM once the network is idle and `wait_ms` of virtual time
/// passed (a live page needs `#once`, which closes its event stream after the snapshot and one
/// delta), and a PNG screenshot to `png` when given. `extra` adds flags (e.g. no network).
inline std::string chromium_dom(const std::string& url, int wait_ms, const std::string& png = "",
                                const std::string& extra = "") {
  ScratchDir profile;
  const std::string base =
      "timeout 180 chromium --headless --no-sandbox --disable-gpu "
      "--hide-scrollbars --window-size=1300,1000 --user-data-dir=" +
      profile.path.string() + "/p " + extra +
      " --timeout=150000 --virtual-time-budget=" + std::to_string(wait_ms) + " ";
  if (!png.empty()) {
    const std::string shot = base + "--screenshot=" + png + " '" + url + "' >/dev/null 2>&1";
    (void)std::system(shot.c_str());
  }
  std::string dom;
  FILE* pipe = ::popen((base + "--dump-dom '" + url + "' 2>/dev/null").c_str(), "r");
  if (pipe == nullptr) return dom;
  char buf[65536];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) dom.append(buf, n);
  ::pclose(pipe);
  return dom;
}

/// Every match of `pattern`'s first group in `text`.
inline std::vector<std::string> all(const std::string& text, const std::string& pattern) {
  std::vector<std::string> out;
  const std::regex re(pattern);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it)
    out.push_back((*it)[1]);
  return out;
}

/// The data-state of the table row of task `name` in a DOM, or "".
inline std::string row_state(const std::string& dom, const std::string& name) {
  const auto s = all(dom, "<tr data-task=\"" + name + "\" data-state=\"([a-z-]+)\"");
  return s.empty() ? "" : s.front();
}

}  // namespace pepita::test::dash
