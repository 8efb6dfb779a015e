// The reference crate's vmm names (pepita/vmm/uapi.hpp): KVM_API_VERSION against <linux/kvm.h> and
// against what this host's /dev/kvm answers, and the aliases naming the real types.
#include "pepita/vmm/uapi.hpp"

namespace {
constexpr int kOurApiVersion = pepita::vmm::KVM_API_VERSION;
}  // namespace

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/kvm.h>  // after kOurApiVersion: it defines KVM_API_VERSION as a macro
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <type_traits>

namespace pepita::vmm {
namespace {

static_assert(std::is_same_v<MicroVm, Vm> && std::is_same_v<ExitReason, ExitKind>);

TEST(VmmUapi, ApiVersionIsTheKernelHeadersAndTheHosts) {
  EXPECT_EQ(kOurApiVersion, KVM_API_VERSION);
  const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) GTEST_SKIP() << "/dev/kvm: " << std::strerror(errno) << "; the header check ran";
  const int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
  ::close(fd);
  EXPECT_EQ(version, kOurApiVersion);
}

}  // namespace
}  // namespace pepita::vmm
