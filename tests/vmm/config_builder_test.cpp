// VmConfig::builder() (pepita/vmm/config_builder.hpp): the crate's defaults, each setter landing in
// pepita's VmConfig, every bad input a clear error, and a built config creating a real VM.
#include "pepita/vmm/config_builder.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "pepita/vmm/uapi.hpp"
#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

// A file that exists for the test's length.
struct TempFile {
  std::string path;
  explicit TempFile(const char* bytes) {
    char name[] = "/tmp/pepita-builder-XXXXXX";
    const int fd = ::mkstemp(name);
    EXPECT_GE(fd, 0);
    if (fd >= 0) {
      EXPECT_GT(::write(fd, bytes, std::strlen(bytes)), 0);
      ::close(fd);
    }
    path = name;
  }
  ~TempFile() { ::unlink(path.c_str()); }
};

// The error build() gives, or a failure when it builds.
Error build_error(const VmConfigBuilder& b) {
  auto r = b.build();
  EXPECT_FALSE(r) << "built a config that must be refused";
  return r ? Error(ErrorCode::Ok, "") : r.error();
}

TEST(VmConfigBuilder, DefaultsAreTheCratesOneVcpu128MiBNoKernel) {
  auto c = VmConfig::builder().build();
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->vcpus, 1u);
  EXPECT_EQ(c->memory_bytes, 128 * kMiB);
  EXPECT_TRUE(c->kernel_path.empty());
  EXPECT_TRUE(c->cmdline.empty());
  EXPECT_TRUE(c->initrd.empty());
  EXPECT_TRUE(c->vsock_path.empty());
}

TEST(VmConfigBuilder, EachSetterFillsItsVmConfigField) {
  TempFile kernel("not really a kernel"), initrd("initramfs");
  auto c = VmConfig::builder()
               .vcpus(4)
               .memory_mb(256)
               .kernel_path(kernel.path)
               .kernel_cmdline("console=ttyS0")
               .initrd_path(initrd.path)
               .enable_kvm(true)
               .vsock_path("/tmp/v.sock")
               .build();
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->vcpus, 4u);
  EXPECT_EQ(c->memory_bytes, 256 * kMiB);
  EXPECT_EQ(c->kernel_path, kernel.path);
  EXPECT_EQ(c->cmdline, "console=ttyS0");
  EXPECT_EQ(c->initrd, initrd.path);
  EXPECT_EQ(c->vsock_path, "/tmp/v.sock");

  // The same through a named builder (lvalue setters), rebuilt after a change.
  VmConfigBuilder b;
  b.vcpus(3).memory_mb(2);
  auto c1 = b.build();
  ASSERT_TRUE(c1) << c1.error().to_string();
  EXPECT_EQ(c1->vcpus, 3u);
  EXPECT_EQ(c1->memory_bytes, 2 * kMiB);
  b.memory_mb(4096);
  auto c2 = b.build();
  ASSERT_TRUE(c2) << c2.error().to_string();
  EXPECT_EQ(c2->memory_bytes, 4096 * kMiB);
}

TEST(VmConfigBuilder, MaxVcpusIsTheCrates254AndBoundsVcpus) {
  EXPECT_EQ(MAX_VCPUS, 254u);
  EXPECT_TRUE(VmConfig::builder().vcpus(MAX_VCPUS).build());
  Error e = build_error(VmConfig::builder().vcpus(MAX_VCPUS + 1));
  EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
  EXPECT_NE(e.message().find("MAX_VCPUS (254)"), std::string::npos) << e.message();
}

TEST(VmConfigBuilder, BadInputIsEachAClearError) {
  struct Case {
    const char* what;
    VmConfigBuilder builder;
    ErrorCode code;
    const char* says;
  };
  TempFile kernel("k");
  const Case cases[] = {
      {"0 vcpus", VmConfig::builder().vcpus(0), ErrorCode::InvalidArgument, "at least 1 vCPU"},
      {"0 MiB", VmConfig::builder().memory_mb(0), ErrorCode::InvalidArgument, "2 .. 4096 MiB"},
      {"1 MiB", VmConfig::builder().memory_mb(1), ErrorCode::InvalidArgument, "memory_mb(1)"},
      {"4097 MiB", VmConfig::builder().memory_mb(4097), ErrorCode::InvalidArgument,
       "memory_mb(4097)"},
      {"huge MiB", VmConfig::builder().memory_mb(~0ull), ErrorCode::InvalidArgument, "outside"},
      {"missing kernel", VmConfig::builder().kernel_path("/nonexistent/vmlinux"),
       ErrorCode::NotFound, "kernel /nonexistent/vmlinux"},
      {"kernel is a directory", VmConfig::builder().kernel_path("/tmp"), ErrorCode::InvalidArgument,
       "not a regular file"},
      {"missing initrd", VmConfig::builder().kernel_path(kernel.path).initrd_path("/nonexistent/i"),
       ErrorCode::NotFound, "initrd /nonexistent/i"},
      {"initrd without kernel", VmConfig::builder().initrd_path(kernel.path),
       ErrorCode::InvalidArgument, "initrd_path without kernel_path"},
      {"cmdline without kernel", VmConfig::builder().kernel_cmdline("quiet"),
       ErrorCode::InvalidArgument, "kernel_cmdline without kernel_path"},
      {"cmdline too long",
       VmConfig::builder().kernel_path(kernel.path).kernel_cmdline(std::string(2048, 'x')),
       ErrorCode::InvalidArgument, "at most 2047"},
      {"no KVM", VmConfig::builder().enable_kvm(false), ErrorCode::Unsupported,
       "pepita runs VMs only on KVM"},
      {"vsock path too long", VmConfig::builder().vsock_path("/tmp/" + std::string(100, 'v')),
       ErrorCode::InvalidArgument, "use a shorter path"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Error e = build_error(c.builder);
    EXPECT_EQ(e.code(), c.code) << e.to_string();
    EXPECT_NE(e.message().find(c.says), std::string::npos) << e.message();
  }
}

TEST(VmConfigBuilder, BuiltConfigCreatesAVmWithItsVcpusThatRuns) {
  PEPITA_REQUIRE_KVM();
  const uint32_t vcpus = std::min<uint32_t>(2, *max_vcpus());
  auto config = VmConfig::builder().vcpus(vcpus).memory_mb(16).build();
  ASSERT_TRUE(config) << config.error().to_string();
  auto image = test::load_guest("hello");
  auto vm = MicroVm::create(image, *config);
  ASSERT_TRUE(vm) << vm.error().to_string();
  EXPECT_EQ(vm->vcpu_count(), vcpus);
  EXPECT_EQ(vm->memory().size(), 16 * kMiB);
  auto r = vm->run({});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->output, "hello from a pepita micro-VM\n");
}

}  // namespace
}  // namespace pepita::vmm
