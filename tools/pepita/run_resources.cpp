// `pepita run`'s resource report (issue 22): JSON objects and the summary's table.
#include "run_resources.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "pepita/core/format.hpp"

namespace pepita::cli {
namespace {

using executor::ExecutionResult;
using executor::Status;

const char* growth(task::Growth g) { return g == task::Growth::PerAttempt ? "attempt" : "fixed"; }

std::string seconds(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fs", std::chrono::duration<double>(d).count());
  return buf;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out.push_back(' ');
    out.append(p);
  }
  return out;
}

std::string given_text(const task::Allocation& a) {
  std::vector<std::string> parts;
  if (!a.cores.empty()) {
    std::string cores = "cores=";
    for (std::size_t i = 0; i < a.cores.size(); ++i) {
      if (i) cores.push_back(',');
      cores.append(std::to_string(a.cores[i]));
    }
    parts.push_back(cores);
  } else if (a.cpus > 0) {
    parts.push_back(std::string("cpus=").append(number(a.cpus)));
  }
  if (a.memory) parts.push_back(std::string("memory=").append(task::format_bytes(a.memory)));
  if (!a.gpus.empty()) {
    std::string gpus = "gpus=";
    for (std::size_t i = 0; i < a.gpus.size(); ++i) {
      if (i) gpus.push_back(',');
      gpus.append(a.gpus[i].id);
      if (a.gpus[i].fraction < 1) gpus.append(":").append(number(a.gpus[i].fraction));
    }
    parts.push_back(gpus);
  }
  for (const auto& [name, count] : a.named) parts.push_back(pepita::fmt("{}={}", name, count));
  if (a.attempt > 1) parts.push_back(pepita::fmt("(attempt {})", a.attempt));
  return join(parts);
}

std::string used_text(const ExecutionResult& r) {
  std::vector<std::string> parts;
  if (r.peak_memory) {
    parts.push_back(std::string("peak=").append(task::format_bytes(r.peak_memory)));
  } else if (r.max_rss_kb > 0) {
    parts.push_back(std::string("rss=").append(
        task::format_bytes(static_cast<std::uint64_t>(r.max_rss_kb) * 1024)));
  }
  parts.push_back(std::string("cpu=").append(seconds(r.cpu)));
  parts.push_back(std::string("wall=").append(seconds(r.wall)));
  return join(parts);
}

}  // namespace

nlohmann::json requested_json(const Requested& req) {
  const task::ResourceRequest& r = req.request;
  if (r.empty() && req.retry_on.empty()) return nullptr;
  nlohmann::json retry_on = nlohmann::json::array();
  for (const auto& k : req.retry_on) retry_on.push_back(task::to_string(k));
  return {{"text", r.to_string()},
          {"cpus", r.cpus},
          {"cpus_growth", growth(r.cpus_growth)},
          {"pin_cpus", r.pin_cpus},
          {"memory", r.memory},
          {"memory_growth", growth(r.memory_growth)},
          {"gpus", r.gpus},
          {"gpus_growth", growth(r.gpus_growth)},
          {"gpu_ids", r.gpu_ids},
          {"resources", r.named},
          {"pids", r.pids},
          {"retry_on", retry_on}};
}

nlohmann::json given_json(const ExecutionResult& r) {
  if (!r.allocation) return nullptr;
  const task::Allocation& a = *r.allocation;
  nlohmann::json shares = nlohmann::json::array();
  std::vector<std::string> ids;
  for (const auto& g : a.gpus) {
    shares.push_back({{"id", g.id}, {"fraction", g.fraction}});
    ids.push_back(g.id);
  }
  return {{"text", given_text(a)}, {"attempt", a.attempt}, {"cpus", a.cpus},
          {"cores", a.cores},      {"memory", a.memory},   {"gpus", ids},
          {"gpu_shares", shares},  {"resources", a.named}, {"pids", a.pids}};
}

nlohmann::json used_json(const ExecutionResult& r) {
  return {{"peak_memory", r.peak_memory},
          {"memory_limit", r.memory_limit},
          {"max_rss_kb", r.max_rss_kb},
          {"cpu_s", std::chrono::duration<double>(r.cpu).count()},
          {"wall_s", std::chrono::duration<double>(r.wall).count()}};
}

void print_resources(const std::vector<ExecutionResult>& results,
                     const std::vector<Requested>& requested) {
  const std::size_t n = std::min(results.size(), requested.size());
  std::size_t width = 4, req_width = 9, given_width = 5;
  bool any = false;
  for (std::size_t i = 0; i < n; ++i) {
    if (requested[i].request.empty()) continue;
    any = true;
    width = std::max(width, std::min<std::size_t>(results[i].name.size(), 40));
    req_width = std::max(req_width, requested[i].request.to_string().size());
    if (results[i].allocation)
      given_width = std::max(given_width, given_text(*results[i].allocation).size());
  }
  if (any) {
    std::printf("\n%-*s  %-*s  %-*s  %s\n", static_cast<int>(width), "task",
                static_cast<int>(req_width), "requested", static_cast<int>(given_width), "given",
                "used");
    for (std::size_t i = 0; i < n; ++i) {
      if (requested[i].request.empty()) continue;
      const ExecutionResult& r = results[i];
      const std::string given = r.allocation ? given_text(*r.allocation) : std::string("-");
      std::printf("%-*s  %-*s  %-*s  %s\n", static_cast<int>(width), r.name.c_str(),
                  static_cast<int>(req_width), requested[i].request.to_string().c_str(),
                  static_cast<int>(given_width), given.c_str(),
                  r.from_journal ? "(from journal)" : used_text(r).c_str());
    }
  }
  std::string oom;
  for (const auto& r : results) {
    if (r.status != Status::OutOfMemory) continue;
    if (!oom.empty()) oom.append(", ");
    oom.append(r.name);
    if (r.peak_memory || r.memory_limit) {
      oom.append(pepita::fmt(" (peak {} of limit {})", task::format_bytes(r.peak_memory),
                             task::format_bytes(r.memory_limit)));
    }
  }
  if (!oom.empty()) {
    std::printf(
        "\nout of memory: %s. Raise `memory`, or let a retry get more: memory = \"... * "
        "attempt\" with retry_on = [\"oom\"] and retries = N.\n",
        oom.c_str());
  }
}

}  // namespace pepita::cli
