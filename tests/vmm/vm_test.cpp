#include "pepita/vmm/vm.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "vmm_test_util.hpp"

namespace pepita::vmm {
namespace {

using test::guest_path;
using test::load_guest;

TEST(Vm, HelloPrintsAndExitsZero) {
  PEPITA_REQUIRE_KVM();
  auto image = load_guest("hello");
  auto r = run_guest(image, {}, VmConfig{});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->kind, ExitKind::Exited) << r->describe();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->output, "hello from a pepita micro-VM\n");
  EXPECT_EQ(r->exits, 1u) << "print and exit must share one VM exit";
}

}  // namespace
}  // namespace pepita::vmm
