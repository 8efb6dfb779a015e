// The KVM ioctl numbers and layouts that vmm/detail/sys.hpp defines by hand (because Linux 6.1's
// UAPI gets them wrong in C++), against the values a C compiler computes from <linux/kvm.h>.
#include "detail/sys.hpp"

#include <gtest/gtest.h>

#include <cstddef>

namespace pepita::vmm::sys {
namespace {

static_assert(sizeof(CpuidHeader) == 8);
static_assert(sizeof(Xsave) == 4096);
static_assert(sizeof(kvm_cpuid_entry2) == 40);

TEST(KvmSys, IoctlNumbersMatchTheCAbi) {
  // gcc -x c: printf("%lx", KVM_GET_SUPPORTED_CPUID) etc. on <linux/kvm.h>.
  EXPECT_EQ(kGetSupportedCpuid, 0xc008ae05ul);
  EXPECT_EQ(kSetCpuid2, 0x4008ae90ul);
  EXPECT_EQ(kGetXsave, 0x9000aea4ul);
  EXPECT_EQ(kSetXsave, 0x5000aea5ul);
  // Fixed-size structs whose numbers come straight from the header are unaffected.
  EXPECT_EQ(static_cast<unsigned long>(KVM_SET_USER_MEMORY_REGION), 0x4020ae46ul);
  EXPECT_EQ(static_cast<unsigned long>(KVM_SET_XCRS), 0x4188aea7ul);
}

}  // namespace
}  // namespace pepita::vmm::sys
