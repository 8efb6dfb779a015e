// expose_host_simd: which CPUID bits of the vCPUs' table it sets for a host CPU and an XCR0, with a
// fake host, so that every flag's leaf, subleaf, register, bit and XCR0 need are checked on any
// machine (a KVM that already reports the flags itself would hide a wrong one).
#include "detail/kvm_system.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace pepita::vmm::detail {
namespace {

constexpr unsigned kEax = 0, kEbx = 1, kEcx = 2, kEdx = 3;

uint32_t bits(std::initializer_list<unsigned> positions) {
  uint32_t v = 0;
  for (unsigned p : positions) v |= 1u << p;
  return v;
}

// Leaf 1, leaf 7 subleaves 0 and 1, and two entries no flag lives in.
std::vector<kvm_cpuid_entry2> table() {
  std::vector<kvm_cpuid_entry2> t(5);
  t[0].function = 1;
  t[1].function = 7;
  t[2].function = 7;
  t[2].index = 1;
  t[3].function = 7;
  t[3].index = 2;
  t[4].function = 0xd;
  return t;
}

struct Regs {
  uint32_t eax, ebx, ecx, edx;
};

Regs regs(const kvm_cpuid_entry2& e) { return {e.eax, e.ebx, e.ecx, e.edx}; }

void expect_regs(const kvm_cpuid_entry2& e, Regs want) {
  SCOPED_TRACE(::testing::Message() << "leaf " << e.function << " subleaf " << e.index);
  const Regs got = regs(e);
  EXPECT_EQ(got.eax, want.eax) << std::hex << got.eax << " want " << want.eax;
  EXPECT_EQ(got.ebx, want.ebx) << std::hex << got.ebx << " want " << want.ebx;
  EXPECT_EQ(got.ecx, want.ecx) << std::hex << got.ecx << " want " << want.ecx;
  EXPECT_EQ(got.edx, want.edx) << std::hex << got.edx << " want " << want.edx;
}

bool host_has_everything(unsigned, unsigned, unsigned, unsigned) { return true; }

// XSAVE, AVX2, AVX-512 BW, VNNI and BF16 only.
bool host_has_some(unsigned leaf, unsigned subleaf, unsigned reg, unsigned bit) {
  struct Flag {
    unsigned leaf, subleaf, reg, bit;
  };
  constexpr Flag kHas[] = {
      {1, 0, kEcx, 26}, {7, 0, kEbx, 5}, {7, 0, kEbx, 30}, {7, 0, kEcx, 11}, {7, 1, kEax, 5}};
  for (const Flag& f : kHas)
    if (f.leaf == leaf && f.subleaf == subleaf && f.reg == reg && f.bit == bit) return true;
  return false;
}

const uint32_t kXsave = bits({26});
const uint32_t kAvxFmaF16c = bits({28, 12, 29});         // leaf 1 ECX
const uint32_t kAvx2 = bits({5});                        // leaf 7.0 EBX
const uint32_t kAvx512Ebx = bits({16, 17, 28, 30, 31});  // F DQ CD BW VL: leaf 7.0 EBX
const uint32_t kVnni = bits({11});                       // leaf 7.0 ECX
const uint32_t kBf16 = bits({5});                        // leaf 7.1 EAX

TEST(ExposeHostSimd, SetsEveryFlagInItsOwnLeafSubleafAndRegister) {
  auto t = table();
  expose_host_simd(t, host_has_everything, /*xsave=*/true, /*xcr0=*/0xe7);
  expect_regs(t[0], {0, 0, kXsave | kAvxFmaF16c, 0});
  expect_regs(t[1], {0, kAvx2 | kAvx512Ebx, kVnni, 0});
  expect_regs(t[2], {kBf16, 0, 0, 0});
  expect_regs(t[3], {0, 0, 0, 0});
  expect_regs(t[4], {0, 0, 0, 0});
}

TEST(ExposeHostSimd, SetsOnlyTheFlagsTheHostCpuHas) {
  auto t = table();
  expose_host_simd(t, host_has_some, /*xsave=*/true, /*xcr0=*/0xe7);
  expect_regs(t[0], {0, 0, kXsave, 0});
  expect_regs(t[1], {0, kAvx2 | bits({30}), kVnni, 0});
  expect_regs(t[2], {kBf16, 0, 0, 0});
}

TEST(ExposeHostSimd, AvxNeedsAvxStateAndAvx512AlsoOpmaskAndZmmState) {
  struct Case {
    uint64_t xcr0;
    Regs leaf1, leaf7, leaf7_1;
  };
  const Case cases[] = {
      {0x3, {0, 0, kXsave, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}},                     // x87|SSE
      {0x7, {0, 0, kXsave | kAvxFmaF16c, 0}, {0, kAvx2, 0, 0}, {0, 0, 0, 0}},   // + AVX
      {0x67, {0, 0, kXsave | kAvxFmaF16c, 0}, {0, kAvx2, 0, 0}, {0, 0, 0, 0}},  // no opmask
      {0xc7, {0, 0, kXsave | kAvxFmaF16c, 0}, {0, kAvx2, 0, 0}, {0, 0, 0, 0}},  // no ZMM_Hi256
      {0xe3, {0, 0, kXsave, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}},                    // no AVX
      {0xe7, {0, 0, kXsave | kAvxFmaF16c, 0}, {0, kAvx2 | kAvx512Ebx, kVnni, 0}, {kBf16, 0, 0, 0}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "xcr0 0x" << std::hex << c.xcr0);
    auto t = table();
    expose_host_simd(t, host_has_everything, /*xsave=*/true, c.xcr0);
    expect_regs(t[0], c.leaf1);
    expect_regs(t[1], c.leaf7);
    expect_regs(t[2], c.leaf7_1);
  }
}

TEST(ExposeHostSimd, SetsNothingWithoutXsave) {
  auto t = table();
  expose_host_simd(t, host_has_everything, /*xsave=*/false, /*xcr0=*/0xe7);
  for (const auto& e : t) expect_regs(e, {0, 0, 0, 0});
}

TEST(ExposeHostSimd, KeepsTheBitsKvmAlreadyReports) {
  auto t = table();
  t[0].edx = 0xffffffffu;
  t[1].ebx = bits({0, 3});
  t[2].eax = bits({4});
  expose_host_simd(t, host_has_some, /*xsave=*/true, /*xcr0=*/0xe7);
  expect_regs(t[0], {0, 0, kXsave, 0xffffffffu});
  expect_regs(t[1], {0, bits({0, 3}) | kAvx2 | bits({30}), kVnni, 0});
  expect_regs(t[2], {bits({4}) | kBf16, 0, 0, 0});
}

}  // namespace
}  // namespace pepita::vmm::detail
