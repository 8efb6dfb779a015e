// Resources (issue 22): parsing and validating requests, amounts and retry_on; at_attempt
// growth; Inventory detection on this machine and overrides; the Ledger's placement
// (properties: never oversubscribed, give_back restores exactly, fractional GPUs pack).
#include "pepita/task/resources.hpp"

#include <dirent.h>
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string_view>

#include "common/temp_dir.hpp"
#include "pepita/task/affinity.hpp"
#include "pepita/task/task.hpp"

namespace pepita::task {
namespace {

using namespace std::string_literals;

constexpr std::uint64_t kGiB = 1ULL << 30;

// ---- parse_bytes / format_bytes ----

TEST(ParseBytes, AcceptsUnitsOfBothBases) {
  EXPECT_EQ(parse_bytes("4G").value(), 4 * kGiB);
  EXPECT_EQ(parse_bytes("4g").value(), 4 * kGiB);
  EXPECT_EQ(parse_bytes("4GiB").value(), 4 * kGiB);
  EXPECT_EQ(parse_bytes("4GB").value(), 4'000'000'000ULL);
  EXPECT_EQ(parse_bytes("512M").value(), 512ULL << 20);
  EXPECT_EQ(parse_bytes("1.5G").value(), 3 * kGiB / 2);
  EXPECT_EQ(parse_bytes("123").value(), 123u);
  EXPECT_EQ(parse_bytes("123B").value(), 123u);
  EXPECT_EQ(parse_bytes(" 2 K ").value(), 2048u);
  EXPECT_EQ(parse_bytes("1T").value(), 1ULL << 40);
}

TEST(ParseBytes, RejectsWordsNegativesAndUnknownUnitsSayingWhatIsAccepted) {
  auto lots = parse_bytes("lots");
  ASSERT_FALSE(lots);
  EXPECT_EQ(lots.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(lots.error().message().find("'lots' is not a size"), std::string::npos);
  EXPECT_NE(lots.error().message().find("4G"), std::string::npos);
  auto neg = parse_bytes("-1");
  ASSERT_FALSE(neg);
  EXPECT_NE(neg.error().message().find("negative"), std::string::npos);
  auto unit = parse_bytes("4X");
  ASSERT_FALSE(unit);
  EXPECT_NE(unit.error().message().find("unknown unit 'X'"), std::string::npos);
  EXPECT_FALSE(parse_bytes(""));
  EXPECT_FALSE(parse_bytes("1e9"));
  EXPECT_FALSE(parse_bytes("nan"));
  EXPECT_FALSE(parse_bytes("1.2.3G"));
  EXPECT_FALSE(parse_bytes("99999999999T"));
}

TEST(FormatBytes, PrintsTheShortestExactUnit) {
  EXPECT_EQ(format_bytes(4 * kGiB), "4G");
  EXPECT_EQ(format_bytes(512ULL << 20), "512M");
  EXPECT_EQ(format_bytes(3 * kGiB / 2), "1.5G");
  EXPECT_EQ(format_bytes(123), "123");
  EXPECT_EQ(format_bytes(1024), "1K");
  EXPECT_EQ(format_bytes(1025), "1025");                  // not "1K": that would hide a byte
  EXPECT_EQ(format_bytes(24683744ULL * 1024), "23.54G");  // a MemTotal: rounded
}

TEST(ParseBytes, ReadsEveryBinaryAndDecimalSpellingUpToTheLastSizeBelow2To64) {
  EXPECT_EQ(parse_bytes("4Ki").value(), 4096u);
  EXPECT_EQ(parse_bytes("4kib").value(), 4096u);
  EXPECT_EQ(parse_bytes("2KB").value(), 2000u);
  EXPECT_EQ(parse_bytes("3MB").value(), 3'000'000u);
  EXPECT_EQ(parse_bytes("1TB").value(), 1'000'000'000'000u);
  EXPECT_EQ(parse_bytes("5TiB").value(), 5ULL << 40);
  // 2^64 - 2^40 is the largest size in T; 2^64 itself does not fit a uint64_t.
  EXPECT_EQ(parse_bytes("16777215T").value(), ((1ULL << 24) - 1) << 40);
  auto max = parse_bytes("16777216T");
  ASSERT_FALSE(max);
  EXPECT_EQ(max.error().message(), "memory '16777216T' is too large");
  EXPECT_FALSE(parse_bytes("4GIBS"));
  EXPECT_FALSE(parse_bytes("4BB"));
}

TEST(FormatBytes, TenThousandOfAUnitOrMoreTakesTwoDecimalsOfTheLargerUnit) {
  EXPECT_EQ(format_bytes(9999), "9999");
  EXPECT_EQ(format_bytes(10000), "9.77K");  // 10000 bytes are not a quarter of a K
  EXPECT_EQ(format_bytes(9999ULL << 10), "9999K");
  EXPECT_EQ(format_bytes(10001ULL << 10), "9.77M");
}

TEST(ParseBytes, ReadsOnlyTheViewItIsGiven) {
  // The views end where digits go on in memory: nothing past them may be read.
  EXPECT_EQ(parse_bytes(std::string_view("4096", 2)).value(), 40u);
  EXPECT_EQ(parse_amount(std::string_view("25", 1), false).value().value, 2);
  EXPECT_EQ(parse_amount(std::string_view("1.5", 2), false).value().value, 1);
}

RC_GTEST_PROP(FormatBytes, SmallMultiplesOfAUnitRoundTrip, (std::uint16_t n, std::uint8_t unit)) {
  const std::uint64_t bytes = std::uint64_t{n % 10000u} << (10 * (unit % 4));
  RC_ASSERT(parse_bytes(format_bytes(bytes)).value() == bytes);
}

// ---- parse_amount ----

TEST(ParseAmount, ReadsGrowthPerAttempt) {
  auto m = parse_amount("4G * attempt", true).value();
  EXPECT_EQ(m.value, static_cast<double>(4 * kGiB));
  EXPECT_EQ(m.growth, Growth::PerAttempt);
  auto c = parse_amount("2", false).value();
  EXPECT_EQ(c.value, 2);
  EXPECT_EQ(c.growth, Growth::Fixed);
  auto g = parse_amount("0.5*attempt", false).value();
  EXPECT_EQ(g.value, 0.5);
  EXPECT_EQ(g.growth, Growth::PerAttempt);
}

TEST(ParseAmount, RejectsOtherFactorsNegativesAndWords) {
  auto factor = parse_amount("4G * attempts", true);
  ASSERT_FALSE(factor);
  EXPECT_NE(factor.error().message().find("only factor is 'attempt'"), std::string::npos);
  auto neg = parse_amount("-1", false);
  ASSERT_FALSE(neg);
  EXPECT_NE(neg.error().message().find("negative"), std::string::npos);
  EXPECT_FALSE(parse_amount("lots", false));
  EXPECT_FALSE(parse_amount("lots * attempt", true));
  EXPECT_FALSE(parse_amount("4X", true));
  for (const char* dots : {"1.5.2", "1..2", "1.2.", ".", "..5"}) {
    EXPECT_FALSE(parse_amount(dots, false)) << dots;
  }
  EXPECT_EQ(parse_amount(".5", false).value().value, 0.5);
  EXPECT_EQ(parse_amount("2.", false).value().value, 2);
}

// ---- retry_on ----

TEST(RetryOnParse, ReadsEveryKindAndRoundTrips) {
  for (const char* text :
       {"oom", "timeout", "exit", "exit:137", "signal", "signal:9", "launch", "any"}) {
    auto r = parse_retry_on(text);
    ASSERT_TRUE(r) << text;
    EXPECT_EQ(to_string(*r), text);
  }
  EXPECT_EQ(parse_retry_on("exit:3").value(), RetryOn::exit(3));
  EXPECT_EQ(parse_retry_on("oom").value(), RetryOn::oom());
}

TEST(RetryOnParse, RejectsUnknownKindsAndBadCodesListingTheKinds) {
  auto r = parse_retry_on("crash");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("oom, timeout, exit"), std::string::npos);
  EXPECT_FALSE(parse_retry_on("exit:abc"));
  EXPECT_FALSE(parse_retry_on("exit:256"));
  EXPECT_FALSE(parse_retry_on("signal:0"));
  EXPECT_FALSE(parse_retry_on("oom:1"));
  EXPECT_FALSE(parse_retry_on(""));
}

TEST(RetryOnParse, AcceptsExitStatuses0To255AndSignals1To64Only) {
  EXPECT_EQ(parse_retry_on("exit:0").value(), RetryOn::exit(0));
  EXPECT_EQ(to_string(RetryOn::exit(0)), "exit:0");  // 0 is a status, not "any status"
  EXPECT_EQ(parse_retry_on("exit:255").value(), RetryOn::exit(255));
  EXPECT_EQ(parse_retry_on("signal:1").value(), RetryOn::signal(1));
  EXPECT_EQ(parse_retry_on("signal:64").value(), RetryOn::signal(64));
  for (const char* text : {"exit:-1", "exit:256"}) {
    auto r = parse_retry_on(text);
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message().find("has an exit status outside 0..255"), std::string::npos)
        << text;
  }
  for (const char* text : {"signal:0", "signal:65", "signal:-1"}) {
    auto r = parse_retry_on(text);
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message().find("has a signal outside 1..64"), std::string::npos) << text;
  }
  for (const char* text : {"timeout:1", "launch:0", "any:2"}) {
    auto r = parse_retry_on(text);
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message().find("takes no code"), std::string::npos) << text;
  }
}

TEST(RetryOnParse, LaunchAndAnyCarryNoCode) {
  EXPECT_EQ(parse_retry_on("launch").value(), (RetryOn{RetryOn::Kind::Launch, -1}));
  EXPECT_EQ(parse_retry_on("any").value(), (RetryOn{RetryOn::Kind::Any, -1}));
  EXPECT_EQ(parse_retry_on("timeout").value(), RetryOn::timeout());
  EXPECT_EQ(parse_retry_on("exit").value(), RetryOn::exit());
  EXPECT_EQ(parse_retry_on("signal").value(), RetryOn::signal());
}

TEST(RetryOnParse, AnEmptyOrOutOfRangeCodeIsNotANumber) {
  for (const char* text : {"exit:", "signal:", "exit:99999999999", "signal:-99999999999"}) {
    auto r = parse_retry_on(text);
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message().find("has a code that is not a number"), std::string::npos)
        << text << ": " << r.error().message();
  }
}

// ---- ResourceRequest ----

TEST(ResourceRequest, DefaultIsEmptyAndAnyFieldMakesItNonEmpty) {
  ResourceRequest r;
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.to_string(), "none");
  r.named["license"] = 1;
  EXPECT_FALSE(r.empty());
}

TEST(ResourceRequest, AtAttemptMultipliesOnlyPerAttemptAmounts) {
  ResourceRequest r;
  r.cpus = 2;
  r.memory = 4 * kGiB;
  r.memory_growth = Growth::PerAttempt;
  r.gpus = 0.5;
  EXPECT_EQ(r.at_attempt(1), r);
  const ResourceRequest third = r.at_attempt(3);
  EXPECT_EQ(third.memory, 12 * kGiB);
  EXPECT_EQ(third.cpus, 2);
  EXPECT_EQ(third.gpus, 0.5);
  r.gpus_growth = Growth::PerAttempt;
  EXPECT_EQ(r.at_attempt(2).gpus, 1.0);
  EXPECT_EQ(r.at_attempt(3).gpus, 2.0);  // 1.5 cannot be placed: whole GPUs
  EXPECT_EQ(r.at_attempt(0), r);         // attempt 0 reads as the first
}

TEST(ResourceRequest, ValidateNamesTheField) {
  auto msg = [](const ResourceRequest& r) {
    auto ok = r.validate();
    return ok ? std::string() : ok.error().message();
  };
  ResourceRequest r;
  r.gpus = -1;
  EXPECT_EQ(msg(r), "resources: gpus = -1 is negative");
  r = {};
  r.cpus = -2;
  EXPECT_NE(msg(r).find("cpus = -2 is negative"), std::string::npos);
  r = {};
  r.gpus = 1.5;
  EXPECT_NE(msg(r).find("gpus = 1.5"), std::string::npos);
  r = {};
  r.cpus = 1.5;
  r.pin_cpus = true;
  EXPECT_NE(msg(r).find("pin_cpus"), std::string::npos);
  r = {};
  r.gpu_ids = {"0", "0"};
  EXPECT_NE(msg(r).find("listed twice"), std::string::npos);
  r = {};
  r.named["Bad-Name"] = 1;
  EXPECT_NE(msg(r).find("'Bad-Name'"), std::string::npos);
  r = {};
  r.named["memory"] = 1;
  EXPECT_NE(msg(r).find("not a named resource"), std::string::npos);
  r = {};
  r.cpus = std::nan("");
  EXPECT_NE(msg(r).find("not a finite number"), std::string::npos);
  r = {};
  r.cpus = 0.5;
  r.gpus = 0.5;
  r.named["license"] = 1;
  EXPECT_TRUE(r.validate());
}

TEST(ResourceRequest, NamedResourceNamesHold1To31Characters) {
  ResourceRequest r;
  r.named[std::string(31, 'a')] = 1;
  EXPECT_TRUE(r.validate());
  r = {};
  r.named[std::string(32, 'a')] = 1;
  auto long_name = r.validate();
  ASSERT_FALSE(long_name);
  EXPECT_NE(long_name.error().message().find("' is too long: use 1..31 characters"),
            std::string::npos);
  r = {};
  r.named[""] = 1;
  auto empty = r.validate();
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().message(),
            "resources: named resource '' is empty: use 1..31 characters of a-z, 0-9 and '_' "
            "(e.g. license, ssd_gb)");
}

TEST(ResourceRequest, DistinctGpuIdsAreValid) {
  ResourceRequest r;
  r.gpu_ids = {"0"};
  EXPECT_TRUE(r.validate());
  r.gpu_ids = {"0", "1", "GPU-3"};
  EXPECT_TRUE(r.validate());
}

TEST(ResourceRequest, ToStringShowsOnlyWhatIsAskedForAndWholeAmountsInFull) {
  ResourceRequest r;
  r.cpus = 2;
  EXPECT_EQ(r.to_string(), "cpus=2");
  r.named["license"] = 1e14;
  EXPECT_EQ(r.to_string(), "cpus=2 license=100000000000000");
  r.named["license"] = 1e15;  // from there on, the shortest form
  EXPECT_EQ(r.to_string(), "cpus=2 license=1e+15");
}

TEST(ResourceRequest, ToStringShowsGrowth) {
  ResourceRequest r;
  r.cpus = 2;
  r.memory = 4 * kGiB;
  r.memory_growth = Growth::PerAttempt;
  r.gpus = 0.5;
  r.named["license"] = 1;
  EXPECT_EQ(r.to_string(), "cpus=2 memory=4G*attempt gpus=0.5 license=1");
}

// ---- Task::Builder validation ----

std::string build_error(Builder b) {
  auto t = b.build();
  return t ? std::string() : t.error().message();
}

TEST(TaskResources, BuildRejectsAnInvalidRequestNamingTheField) {
  ResourceRequest r;
  r.gpus = -1;
  EXPECT_NE(build_error(Task::binary("true").resources(r)).find("resources: gpus = -1 is negative"),
            std::string::npos);
}

TEST(TaskResources, FunctionTaskMayRequestOnlyWholeCpus) {
  ResourceRequest cpus;
  cpus.cpus = 2;
  EXPECT_TRUE(Task::function([] {}).resources(cpus).build());
  ResourceRequest mem;
  mem.memory = kGiB;
  EXPECT_NE(build_error(Task::function([] {}).resources(mem)).find("may request only cpus"),
            std::string::npos);
  ResourceRequest half;
  half.cpus = 0.5;
  EXPECT_NE(build_error(Task::function([] {}).resources(half))
                .find("cpus = 0.5 on the cpu backend cannot be split"),
            std::string::npos);
}

TEST(TaskResources, FractionalCpusOnlyWhereProcessesRun) {
  ResourceRequest half;
  half.cpus = 0.5;
  EXPECT_TRUE(Task::binary("true").resources(half).build());
  EXPECT_TRUE(Task::binary("true").backend(Backend::Cpu).resources(half).build());
  EXPECT_TRUE(Task::binary("true").backend(Backend::Any).resources(half).build());
  const std::string microvm =
      build_error(Task::binary("true").backend(Backend::MicroVm).resources(half));
  EXPECT_NE(microvm.find("cpus = 0.5 on the microvm backend cannot be split"), std::string::npos)
      << microvm;
  EXPECT_NE(microvm.find("(fractional CPUs are a CFS quota, applied to processes on the process "
                         "backend)"),
            std::string::npos)
      << microvm;
}

TEST(TaskResources, PinCpusWithAffinityIsAConflict) {
  ResourceRequest r;
  r.cpus = 1;
  r.pin_cpus = true;
  EXPECT_NE(build_error(Task::binary("true").resources(r).affinity(CpuAffinity::Core(0)))
                .find("pin_cpus and affinity"),
            std::string::npos);
  EXPECT_TRUE(Task::binary("true").resources(r).build());
}

TEST(TaskResources, BuiltTaskCarriesRequestRetryOnAndAllocationCopy) {
  ResourceRequest r;
  r.memory = kGiB;
  auto t = Task::binary("true").resources(r).retry_on({RetryOn::oom()}).build().value();
  EXPECT_EQ(t.resources(), r);
  ASSERT_EQ(t.retry_on().size(), 1u);
  EXPECT_EQ(t.allocation(), nullptr);
  Allocation a;
  a.memory = kGiB;
  a.gpus = {{"1", 1.0}, {"3", 1.0}};
  const Task with = t.with_allocation(a);
  ASSERT_NE(with.allocation(), nullptr);
  EXPECT_EQ(with.allocation()->gpu_list(), "1,3");
  EXPECT_EQ(with.id(), t.id());
  EXPECT_EQ(t.allocation(), nullptr);
}

// ---- Inventory ----

std::uint64_t meminfo_total() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit) {
    if (key == "MemTotal:") return kb * 1024;
  }
  return 0;
}

// Every memory limit on our cgroup's path (v1 memory.limit_in_bytes, v2 memory.max), read here
// independently of inventory.cpp, with the usual mount points.
std::vector<std::uint64_t> cgroup_limits() {
  std::vector<std::uint64_t> out;
  std::ifstream self("/proc/self/cgroup");
  std::string line;
  while (std::getline(self, line)) {
    const auto a = line.find(':'), b = line.find(':', a + 1);
    const std::string ctls = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    std::vector<std::string> files;
    if (ctls == "memory" || ctls.find("memory,") == 0 ||
        ctls.find(",memory") != std::string::npos) {
      files = {"/sys/fs/cgroup/memory", "memory.limit_in_bytes"};
    } else if (line.rfind("0::", 0) == 0) {
      files = {"/sys/fs/cgroup/unified", "memory.max"};
    } else {
      continue;
    }
    for (const std::string& mount : {files[0], std::string("/sys/fs/cgroup")}) {
      for (std::string p = path;; p = p.substr(0, p.rfind('/'))) {
        std::ifstream f(mount + (p == "/" ? "" : p) + "/" + files[1]);
        std::uint64_t v = 0;
        if (f >> v) out.push_back(v);
        if (p.empty() || p == "/") break;
      }
    }
  }
  return out;
}

TEST(Inventory, DetectFindsCpusAndMemoryOfThisMachine) {
  auto inv = Inventory::detect();
  ASSERT_TRUE(inv) << inv.error().message();
  EXPECT_FALSE(inv->cpus.empty());
  EXPECT_TRUE(std::is_sorted(inv->cpus.begin(), inv->cpus.end()));
  EXPECT_GT(inv->memory, 0u);
  const std::uint64_t total = meminfo_total();
  ASSERT_GT(total, 0u);
  // MemTotal, or a cgroup limit below it: the smallest of them.
  std::uint64_t expect = total;
  for (std::uint64_t limit : cgroup_limits()) expect = std::min(expect, limit);
  EXPECT_EQ(inv->memory, expect);
  for (const auto& [node, cores] : inv->numa) {
    for (unsigned c : cores) {
      EXPECT_TRUE(std::binary_search(inv->cpus.begin(), inv->cpus.end(), c))
          << "node " << node << " core " << c << " is outside the affinity mask";
    }
  }
  EXPECT_NE(inv->to_string().find("cpus="), std::string::npos);
}

// Each NUMA node's cores, read through numa_node_cpus() (affinity.cpp's own sysfs reader) and cut
// to the affinity mask: what detect() and a "cpus=" override must report. Empty without NUMA
// nodes in sysfs (a container may hide them).
TEST(Inventory, DetectAndCpusOverrideReportEachNumaNodesUsableCores) {
  auto inv = Inventory::detect();
  ASSERT_TRUE(inv) << inv.error().message();
  std::map<int, std::vector<unsigned>> expect;
  if (auto* dir = ::opendir("/sys/devices/system/node")) {
    while (auto* e = ::readdir(dir)) {
      const std::string name(e->d_name);
      if (name.size() <= 4 || name.rfind("node", 0) != 0 ||
          name.find_first_not_of("0123456789", 4) != std::string::npos) {
        continue;
      }
      const int node = std::stoi(name.substr(4));
      auto cores = numa_node_cpus(node);
      if (!cores) continue;
      std::vector<unsigned> mine;
      std::set_intersection(cores->begin(), cores->end(), inv->cpus.begin(), inv->cpus.end(),
                            std::back_inserter(mine));
      if (!mine.empty()) expect[node] = mine;
    }
    ::closedir(dir);
  }
  EXPECT_EQ(inv->numa, expect);
  // Overriding the CPUs with the same list keeps the nodes (every core belongs to one of them).
  std::size_t covered = 0;
  for (const auto& [node, cores] : expect) covered += cores.size();
  std::string list;
  for (unsigned c : inv->cpus) list.append(list.empty() ? "" : ",").append(std::to_string(c));
  Inventory copy = *inv;
  copy.numa.clear();
  ASSERT_TRUE(copy.apply_overrides(std::string("cpus=").append(list)));
  EXPECT_EQ(copy.numa, covered == inv->cpus.size() ? expect : decltype(expect){});
}

// A stand-in nvidia-smi on PATH: detect() reads GPU indexes from `nvidia-smi -L`, and falls
// back (to /sys/class/drm) when it fails.
class FakeNvidiaSmi {
 public:
  explicit FakeNvidiaSmi(const std::string& script) {
    const std::string file = dir_.file("nvidia-smi");
    std::ofstream(file) << "#!/bin/sh\n" << script;
    ::chmod(file.c_str(), 0755);
    const char* old = std::getenv("PATH");
    old_ = old ? old : "";
    ::setenv("PATH", (dir_.path() + ":" + old_).c_str(), 1);
  }
  ~FakeNvidiaSmi() { ::setenv("PATH", old_.c_str(), 1); }

 private:
  pepita::test::TempDir dir_{"nvsmi"};
  std::string old_;
};

TEST(Inventory, DetectReadsGpuIndexesFromNvidiaSmi) {
  FakeNvidiaSmi fake(
      "[ \"$1\" = -L ] || exit 2\n"
      "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)'\n"
      "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbbb)'\n");
  auto inv = Inventory::detect();
  ASSERT_TRUE(inv) << inv.error().message();
  EXPECT_EQ(inv->gpus, (std::vector<std::string>{"0", "1"}));
}

TEST(Inventory, DetectFallsBackWhenNvidiaSmiFails) {
  std::size_t render_nodes = 0;
  if (auto* dir = ::opendir("/sys/class/drm")) {
    while (auto* e = ::readdir(dir))
      render_nodes += std::string(e->d_name).rfind("renderD", 0) == 0;
    ::closedir(dir);
  }
  FakeNvidiaSmi fake("echo 'NVIDIA-SMI has failed'; exit 9\n");
  auto inv = Inventory::detect();
  ASSERT_TRUE(inv) << inv.error().message();
  EXPECT_EQ(inv->gpus.size(), render_nodes);
}

TEST(Inventory, OverridesReplaceWhatTheSpecNames) {
  Inventory inv;
  inv.cpus = {0, 1};
  inv.memory = kGiB;
  ASSERT_TRUE(inv.apply_overrides("gpus=0,1,2,3"));
  EXPECT_EQ(inv.gpus, (std::vector<std::string>{"0", "1", "2", "3"}));
  ASSERT_TRUE(inv.apply_overrides("gpus=2"));
  EXPECT_EQ(inv.gpus, (std::vector<std::string>{"0", "1"}));
  ASSERT_TRUE(inv.apply_overrides("cpus=0-3,8, memory=64G, license=2, gpus=a,b"));
  EXPECT_EQ(inv.cpus, (std::vector<unsigned>{0, 1, 2, 3, 8}));
  EXPECT_EQ(inv.memory, 64 * kGiB);
  EXPECT_EQ(inv.named.at("license"), 2);
  EXPECT_EQ(inv.gpus, (std::vector<std::string>{"a", "b"}));
  ASSERT_TRUE(inv.apply_overrides("cpus=32"));
  EXPECT_EQ(inv.cpus.size(), 32u);
  EXPECT_EQ(inv.to_string(), "cpus=32 memory=64G gpus=a,b license=2");
}

TEST(Inventory, BadOverridesNameTheItemAndChangeNothing) {
  Inventory inv;
  inv.cpus = {0};
  inv.memory = kGiB;
  const Inventory before = inv;
  auto lots = inv.apply_overrides("gpus=1, memory=lots");
  ASSERT_FALSE(lots);
  EXPECT_NE(lots.error().message().find("memory=lots"), std::string::npos);
  EXPECT_EQ(inv, before);
  EXPECT_FALSE(inv.apply_overrides("cpus=0"));
  EXPECT_FALSE(inv.apply_overrides("cpus=3-1"));
  EXPECT_FALSE(inv.apply_overrides("0,1"));
  EXPECT_FALSE(inv.apply_overrides("gpus=0,0"));
  EXPECT_FALSE(inv.apply_overrides("Bad=1"));
  EXPECT_FALSE(inv.apply_overrides("license=-1"));
  EXPECT_EQ(inv, before);
}

TEST(Inventory, CanEverFitSaysWhatIsMissing) {
  Inventory inv;
  inv.cpus = {0, 1};
  inv.memory = 8 * kGiB;
  inv.gpus = {"0", "1"};
  ResourceRequest r;
  r.gpus = 4;
  auto gpus = inv.can_ever_fit(r);
  ASSERT_FALSE(gpus);
  EXPECT_EQ(gpus.error().code(), ErrorCode::Unsupported);
  EXPECT_EQ(gpus.error().message(), "needs 4 GPUs; this host has 2");
  r = {};
  r.named["license"] = 1;
  EXPECT_EQ(inv.can_ever_fit(r).error().message(), "needs license=1; this host has no 'license'");
  inv.named["license"] = 2;
  r.named["license"] = 3;
  EXPECT_EQ(inv.can_ever_fit(r).error().message(), "needs license=3; this host has 2");
  r.named["license"] = 2;
  r.named["scratch"] = 0;  // none of a resource the host lacks: fits
  EXPECT_TRUE(inv.can_ever_fit(r));
  inv.named.clear();
  r = {};
  r.cpus = 3;
  EXPECT_EQ(inv.can_ever_fit(r).error().message(), "needs 3 CPUs; this host has 2");
  r = {};
  r.memory = 16 * kGiB;
  EXPECT_EQ(inv.can_ever_fit(r).error().message(), "needs 16G of memory; this host has 8G");
  r = {};
  r.gpu_ids = {"7"};
  EXPECT_EQ(inv.can_ever_fit(r).error().message(), "needs GPU '7'; this host has GPUs 0,1");
  r = {};
  r.cpus = 2;
  r.memory = 8 * kGiB;
  r.gpus = 2;
  EXPECT_TRUE(inv.can_ever_fit(r));
}

// ---- Ledger ----

Inventory small_host() {
  Inventory inv;
  inv.cpus = {0, 1, 2, 3};
  inv.numa = {{0, {0, 1}}, {1, {2, 3}}};
  inv.memory = 8 * kGiB;
  inv.gpus = {"0", "1", "2", "3"};
  inv.named = {{"license", 2}};
  return inv;
}

TEST(Ledger, WholeGpusGetDisjointIds) {
  Ledger l(small_host());
  ResourceRequest r;
  r.gpus = 1;
  std::set<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    auto a = l.try_take(r, 1);
    ASSERT_TRUE(a);
    ASSERT_EQ(a->gpus.size(), 1u);
    ids.insert(a->gpus[0].id);
  }
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_FALSE(l.try_take(r, 1));
}

TEST(Ledger, FractionalGpusPackTwoHalvesOnOneId) {
  Ledger l(small_host());
  ResourceRequest half;
  half.gpus = 0.5;
  auto a = l.try_take(half, 1).value();
  auto b = l.try_take(half, 1).value();
  auto c = l.try_take(half, 1).value();
  ASSERT_EQ(a.gpus.size(), 1u);
  EXPECT_EQ(a.gpus[0].id, b.gpus[0].id);
  EXPECT_EQ(a.gpus[0].fraction, 0.5);
  EXPECT_NE(c.gpus[0].id, a.gpus[0].id);
  // A whole GPU avoids the shared ones.
  ResourceRequest one;
  one.gpus = 1;
  auto d = l.try_take(one, 1).value();
  EXPECT_NE(d.gpus[0].id, a.gpus[0].id);
  EXPECT_NE(d.gpus[0].id, c.gpus[0].id);
}

TEST(Ledger, PinnedCpusTakeWholeCoresOfOneNumaNode) {
  Ledger l(small_host());
  ResourceRequest r;
  r.cpus = 2;
  r.pin_cpus = true;
  auto a = l.try_take(r, 1).value();
  EXPECT_EQ(a.cores, (std::vector<unsigned>{0, 1}));
  auto b = l.try_take(r, 1).value();
  EXPECT_EQ(b.cores, (std::vector<unsigned>{2, 3}));
  EXPECT_FALSE(l.try_take(r, 1));
  l.give_back(a);
  EXPECT_EQ(l.try_take(r, 1).value().cores, (std::vector<unsigned>{0, 1}));
}

TEST(Ledger, PinnedCpusPreferOneNumaNodeOverTheLowestFreeCores) {
  Inventory inv = small_host();
  inv.numa = {{0, {0, 2}}, {1, {1, 3}}};
  Ledger l(inv);
  ResourceRequest r;
  r.cpus = 2;
  r.pin_cpus = true;
  EXPECT_EQ(l.try_take(r, 1).value().cores, (std::vector<unsigned>{0, 2}));
  EXPECT_EQ(l.try_take(r, 1).value().cores, (std::vector<unsigned>{1, 3}));
}

TEST(Ledger, PinnedCpusSpanNodesWhenNoNodeHasEnoughFree) {
  Ledger l(small_host());
  ResourceRequest three;
  three.cpus = 3;
  three.pin_cpus = true;
  auto a = l.try_take(three, 1);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->cores, (std::vector<unsigned>{0, 1, 2}));
  ResourceRequest one = three;
  one.cpus = 1;
  EXPECT_EQ(l.try_take(one, 1).value().cores, (std::vector<unsigned>{3}));
  EXPECT_FALSE(l.try_take(one, 1));
}

TEST(Ledger, ARequestWithoutGpusGetsNoGpuShare) {
  Ledger l(small_host());
  ResourceRequest r;
  r.cpus = 1;
  auto a = l.try_take(r, 1);
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->gpus.empty());
  EXPECT_EQ(a->gpu_list(), "");
}

TEST(Ledger, GivenBackGpusAreFreeAgainWhileOtherAllocationsAreOut) {
  Ledger l(small_host());
  ResourceRequest two;
  two.gpus = 2;
  auto a = l.try_take(two, 1).value();
  auto b = l.try_take(two, 1).value();
  EXPECT_FALSE(l.try_take(two, 1));
  l.give_back(a);  // b is still out: only a's ids come back
  auto c = l.try_take(two, 1);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->gpu_list(), a.gpu_list());
  EXPECT_FALSE(l.try_take(two, 1));
}

TEST(Ledger, CompetesForGpusOnlyWhenTheWaiterLacksGpusAndTheTaskTakesSome) {
  Ledger l(small_host());
  ResourceRequest all;
  all.gpus = 4;
  auto held = l.try_take(all, 1).value();
  ResourceRequest waiter;  // waits: one GPU, none free
  waiter.gpus = 1;
  ResourceRequest gpu_task;
  gpu_task.gpus = 0.5;
  ResourceRequest cpu_task;
  cpu_task.cpus = 1;
  EXPECT_TRUE(l.competes(gpu_task, 1, waiter, 1));
  EXPECT_FALSE(l.competes(cpu_task, 1, waiter, 1));
  l.give_back(held);
  EXPECT_FALSE(l.competes(gpu_task, 1, waiter, 1));  // the waiter fits now
}

TEST(Ledger, APinnedWaiterShortOfCpusCompetesEvenWithItsCoresFree) {
  Ledger l(small_host());
  ResourceRequest three;  // unpinned: takes 3 CPUs' worth but no core
  three.cpus = 3;
  auto held = l.try_take(three, 1).value();
  ResourceRequest pinned;  // waits: 2 whole cores, every core is free but only 1 CPU is
  pinned.cpus = 2;
  pinned.pin_cpus = true;
  EXPECT_FALSE(l.try_take(pinned, 1));
  ResourceRequest small;
  small.cpus = 1;
  EXPECT_TRUE(l.competes(small, 1, pinned, 1));
  l.give_back(held);
  EXPECT_FALSE(l.competes(small, 1, pinned, 1));
}

TEST(Ledger, MemoryGrowsWithTheAttempt) {
  Ledger l(small_host());
  ResourceRequest r;
  r.memory = 3 * kGiB;
  r.memory_growth = Growth::PerAttempt;
  EXPECT_EQ(l.try_take(r, 2).value().memory, 6 * kGiB);
  EXPECT_FALSE(l.try_take(r, 1));  // 3G more does not fit in the 2G left
  EXPECT_EQ(l.free_memory(), 2 * kGiB);
}

TEST(Ledger, CompetesOnlyForWhatTheWaitingTaskIsShortOf) {
  Ledger l(small_host());
  ResourceRequest three;
  three.cpus = 3;
  auto held = l.try_take(three, 1).value();
  ResourceRequest big;  // waits: 2 CPUs, only 1 free
  big.cpus = 2;
  ResourceRequest small;
  small.cpus = 1;
  ResourceRequest gpu_only;
  gpu_only.gpus = 1;
  EXPECT_TRUE(l.competes(small, 1, big, 1));
  EXPECT_FALSE(l.competes(gpu_only, 1, big, 1));
  l.give_back(held);
  EXPECT_FALSE(l.competes(small, 1, big, 1));  // big fits now: nothing to protect
}

// A waiter asking for exactly the free memory fits now (try_take places it), so nothing that
// takes memory competes with it; one byte more and every request that takes memory does.
TEST(Ledger, CompetesForMemoryOnlyWhenTheWaiterNeedsMoreThanIsFree) {
  Ledger l(small_host());
  ResourceRequest five;
  five.memory = 5 * kGiB;
  auto held = l.try_take(five, 1).value();
  ASSERT_EQ(l.free_memory(), 3 * kGiB);
  ResourceRequest exact;  // exactly the 3 GiB free
  exact.memory = 3 * kGiB;
  ResourceRequest more;  // one byte short
  more.memory = 3 * kGiB + 1;
  ResourceRequest small;
  small.memory = kGiB;
  ResourceRequest cpu_only;
  cpu_only.cpus = 1;
  EXPECT_FALSE(l.competes(small, 1, exact, 1));
  EXPECT_TRUE(l.competes(small, 1, more, 1));
  EXPECT_FALSE(l.competes(cpu_only, 1, more, 1));  // takes no memory
  auto placed = l.try_take(exact, 1);
  ASSERT_TRUE(placed);
  EXPECT_EQ(placed->memory, 3 * kGiB);
  EXPECT_EQ(l.free_memory(), 0u);
  l.give_back(*placed);
  l.give_back(held);
}

TEST(Ledger, GpusByIdAreTakenWholeOnlyWhileFree) {
  Ledger l(small_host());
  ResourceRequest r;
  r.gpu_ids = {"1", "3"};
  EXPECT_EQ(r.to_string(), "gpus=1,3");
  auto a = l.try_take(r, 1);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->gpus, (std::vector<GpuShare>{{"1", 1.0}, {"3", 1.0}}));
  EXPECT_EQ(a->gpu_list(), "1,3");
  ResourceRequest three;  // taken: refused until given back
  three.gpu_ids = {"3"};
  EXPECT_FALSE(l.try_take(three, 1));
  ResourceRequest unknown;  // not on this host: never free
  unknown.gpu_ids = {"7"};
  EXPECT_FALSE(l.try_take(unknown, 1));
  l.give_back(*a);
  EXPECT_TRUE(l.try_take(three, 1));
}

TEST(ResourceRequest, GpuIdsThatCannotBeIdsAreRefused) {
  for (const std::string& id : {std::string(), std::string("0,1"), std::string("a=b")}) {
    ResourceRequest r;
    r.gpu_ids = {id};
    auto ok = r.validate();
    ASSERT_FALSE(ok) << id;
    EXPECT_EQ(ok.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(ok.error().message().find("gpu id '" + id + "'"), std::string::npos)
        << ok.error().message();
  }
}

TEST(Ledger, CompetesForPinnedCoresAndNamedResourcesTheWaiterLacks) {
  Ledger l(small_host());
  ResourceRequest one_core;
  one_core.cpus = 1;
  one_core.pin_cpus = true;
  auto a = l.try_take(one_core, 1).value();  // core 0
  auto b = l.try_take(one_core, 1).value();  // core 1 ...
  ResourceRequest other_node;
  other_node.cpus = 1;
  other_node.pin_cpus = true;
  auto c = l.try_take(other_node, 1).value();  // ... and one core of node 1
  ASSERT_EQ(l.free_cpus(), 1);
  ResourceRequest pinned_two;  // waits: 2 whole cores, 1 core free
  pinned_two.cpus = 2;
  pinned_two.pin_cpus = true;
  ResourceRequest cpu;
  cpu.cpus = 1;
  EXPECT_TRUE(l.competes(cpu, 1, pinned_two, 1));
  l.give_back(a);  // 2 cores free again: nothing to protect
  EXPECT_FALSE(l.competes(cpu, 1, pinned_two, 1));
  l.give_back(b);
  l.give_back(c);

  ResourceRequest both;  // waits: both licenses
  both.named = {{"license", 2}};
  ResourceRequest one;
  one.named = {{"license", 1}};
  auto held = l.try_take(one, 1).value();
  EXPECT_TRUE(l.competes(one, 1, both, 1));
  EXPECT_FALSE(l.competes(cpu, 1, both, 1));  // asks for no license
  l.give_back(held);
  EXPECT_FALSE(l.competes(one, 1, both, 1));
}

// A random sequence of takes and give-backs: free amounts never go below zero or above the
// inventory, every allocation's GPU shares fit their ids, pinned cores are never shared, and
// giving everything back restores the Ledger exactly.
RC_GTEST_PROP(Ledger, NeverOversubscribedAndGiveBackRestoresExactly, ()) {
  const Inventory inv = small_host();
  Ledger l(inv);
  const Ledger fresh(inv);
  std::vector<Allocation> live;
  const int steps = *rc::gen::inRange(1, 60);
  for (int s = 0; s < steps; ++s) {
    if (!live.empty() && *rc::gen::inRange(0, 3) == 0) {
      const auto i =
          static_cast<std::size_t>(*rc::gen::inRange<int>(0, static_cast<int>(live.size())));
      l.give_back(live[i]);
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    ResourceRequest r;
    r.pin_cpus = *rc::gen::arbitrary<bool>();
    r.cpus = r.pin_cpus ? *rc::gen::inRange(1, 3) : *rc::gen::inRange(0, 9) * 0.25;
    r.memory = static_cast<std::uint64_t>(*rc::gen::inRange(0, 5)) * kGiB;
    r.gpus = *rc::gen::element(0.0, 0.25, 0.5, 1.0, 2.0);
    if (*rc::gen::inRange(0, 3) == 0) r.named["license"] = 1;
    if (auto a = l.try_take(r, 1)) live.push_back(std::move(*a));
    // Totals over live allocations stay within the inventory.
    double cpus = 0;
    std::uint64_t mem = 0;
    double license = 0;
    std::map<std::string, double> gpu_use;
    std::set<unsigned> cores;
    for (const Allocation& a : live) {
      cpus += a.cpus;
      mem += a.memory;
      if (auto it = a.named.find("license"); it != a.named.end()) license += it->second;
      for (const GpuShare& g : a.gpus) gpu_use[g.id] += g.fraction;
      for (unsigned c : a.cores) RC_ASSERT(cores.insert(c).second);
    }
    RC_ASSERT(cpus <= 4 + 1e-9);
    RC_ASSERT(mem <= inv.memory);
    RC_ASSERT(license <= 2 + 1e-9);
    for (const auto& [id, used] : gpu_use) RC_ASSERT(used <= 1 + 1e-9);
    RC_ASSERT(l.free_cpus() >= -1e-9);
    RC_ASSERT(std::fabs(l.free_cpus() + cpus - 4) < 1e-6);
    RC_ASSERT(l.free_memory() + mem == inv.memory);
  }
  for (const Allocation& a : live) l.give_back(a);
  RC_ASSERT(l.free_cpus() == fresh.free_cpus());
  RC_ASSERT(l.free_memory() == fresh.free_memory());
  // Exactly: the whole inventory fits again in one take.
  ResourceRequest all;
  all.cpus = 4;
  all.pin_cpus = true;
  all.memory = inv.memory;
  all.gpus = 4;
  all.named["license"] = 2;
  RC_ASSERT(l.try_take(all, 1).has_value());
}

RC_GTEST_PROP(Ledger, TwoHalvesAlwaysShareOneId, (std::uint8_t gpus)) {
  Inventory inv;
  inv.cpus = {0};
  inv.memory = kGiB;
  const int n = 1 + gpus % 8;
  for (int i = 0; i < n; ++i) inv.gpus.push_back(std::to_string(i));
  Ledger l(inv);
  ResourceRequest half;
  half.gpus = 0.5;
  for (int i = 0; i < n; ++i) {
    auto a = l.try_take(half, 1);
    auto b = l.try_take(half, 1);
    RC_ASSERT(a && b);
    RC_ASSERT(a->gpus[0].id == b->gpus[0].id);
  }
  RC_ASSERT(!l.try_take(half, 1));
}

}  // namespace
}  // namespace pepita::task
