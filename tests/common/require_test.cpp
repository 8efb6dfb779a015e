// The PEPITA_REQUIRE rule of tests/common/require.hpp: parsing the list, and skip versus fail for
// a missing capability. (The probes themselves are exercised by every test that requires one.)
#include "common/require.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace pepita::test {
namespace {

bool has(const Requirements& r, Capability c) {
  return std::find(r.required.begin(), r.required.end(), c) != r.required.end();
}

TEST(PepitaRequire, EmptyListRequiresNothing) {
  const Requirements r = parse_requirements("");
  EXPECT_TRUE(r.required.empty());
  EXPECT_TRUE(r.unknown.empty());
}

TEST(PepitaRequire, CommaListIsTrimmedAndCaseInsensitive) {
  const Requirements r = parse_requirements(" kvm, IO_URING,,netns ");
  EXPECT_TRUE(r.unknown.empty());
  EXPECT_EQ(r.required.size(), 3u);
  EXPECT_TRUE(has(r, Capability::kvm));
  EXPECT_TRUE(has(r, Capability::io_uring));
  EXPECT_TRUE(has(r, Capability::netns));
  EXPECT_FALSE(has(r, Capability::vulkan));
}

TEST(PepitaRequire, AllIsEveryCiCapabilityButNotUblk) {
  const Requirements r = parse_requirements("all");
  for (Capability c :
       {Capability::kvm, Capability::zram, Capability::io_uring, Capability::guest,
        Capability::vulkan, Capability::slurm, Capability::netns, Capability::root,
        Capability::cgroup, Capability::userns, Capability::chromium, Capability::torch})
    EXPECT_TRUE(has(r, c)) << capability_info(c).name;
  EXPECT_FALSE(has(r, Capability::ublk));
  EXPECT_TRUE(has(parse_requirements("all,ublk"), Capability::ublk));
}

TEST(PepitaRequire, MinusNameTakesOneCapabilityBackOutOfAll) {
  const Requirements r = parse_requirements("all,-kvm");
  EXPECT_FALSE(has(r, Capability::kvm));
  EXPECT_TRUE(has(r, Capability::zram));
  EXPECT_TRUE(has(r, Capability::cgroup));
  EXPECT_TRUE(r.unknown.empty());
  EXPECT_TRUE(has(parse_requirements("all,-kvm,kvm"), Capability::kvm));  // later entries win
  const Verdict v =
      decide(Capability::kvm, ProbeResult{"no /dev/kvm"}, parse_requirements("all,-kvm"));
  EXPECT_FALSE(v.fail);
  EXPECT_NE(v.message.find("capability 'kvm' missing"), std::string::npos);
}

TEST(PepitaRequire, MinusUnknownNameIsAnUnknownName) {
  const Requirements r = parse_requirements("all,-kvn");
  ASSERT_EQ(r.unknown.size(), 1u);
  EXPECT_EQ(r.unknown[0], "-kvn");
}

TEST(PepitaRequire, UnknownNamesAreKept) {
  const Requirements r = parse_requirements("kvm,vulcan");
  ASSERT_EQ(r.unknown.size(), 1u);
  EXPECT_EQ(r.unknown[0], "vulcan");
}

TEST(PepitaRequire, PresentCapabilityNeitherSkipsNorFails) {
  const Verdict v = decide(Capability::kvm, ProbeResult{}, parse_requirements("all"));
  EXPECT_TRUE(v.message.empty());
  EXPECT_FALSE(v.fail);
}

TEST(PepitaRequire, MissingCapabilitySkipsNamingItAndHowToProvideIt) {
  const Verdict v =
      decide(Capability::zram, ProbeResult{"no /sys/block/zram0"}, parse_requirements("kvm"));
  EXPECT_FALSE(v.fail);
  EXPECT_NE(v.message.find("capability 'zram' missing: no /sys/block/zram0"), std::string::npos)
      << v.message;
  EXPECT_NE(v.message.find("modprobe zram"), std::string::npos) << v.message;
  EXPECT_NE(v.message.find("PEPITA_REQUIRE=zram"), std::string::npos) << v.message;
}

TEST(PepitaRequire, MissingRequiredCapabilityFails) {
  for (const char* list : {"zram", "all", "kvm,zram"}) {
    const Verdict v =
        decide(Capability::zram, ProbeResult{"no /sys/block/zram0"}, parse_requirements(list));
    EXPECT_TRUE(v.fail) << list;
    EXPECT_NE(v.message.find("capability 'zram' missing"), std::string::npos) << v.message;
  }
}

TEST(PepitaRequire, UnknownNameFailsEvenWhenTheCapabilityIsPresent) {
  const Verdict v = decide(Capability::kvm, ProbeResult{}, parse_requirements("kvm,vulcan"));
  EXPECT_TRUE(v.fail);
  EXPECT_NE(v.message.find("'vulcan'"), std::string::npos) << v.message;
}

TEST(PepitaRequire, RootProbeMatchesGeteuid) {
  EXPECT_EQ(probe(Capability::root).present(), ::geteuid() == 0);
}

TEST(PepitaRequire, KvmProbeMatchesAccess) {
  EXPECT_EQ(probe(Capability::kvm).present(), ::access("/dev/kvm", R_OK | W_OK) == 0);
}

}  // namespace
}  // namespace pepita::test
