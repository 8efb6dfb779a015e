#include "pepita/io_uring/probe.hpp"

#include <gtest/gtest.h>

#include <set>

#include "common/require.hpp"
#include "pepita/io_uring/ring.hpp"

namespace pepita::io_uring {
namespace {

TEST(Probe, NamesFollowKernelOrder) {
  EXPECT_EQ(op_name(abi::Op::Nop), "nop");
  EXPECT_EQ(op_name(abi::Op::ReadFixed), "read_fixed");
  EXPECT_EQ(op_name(abi::Op::UringCmd), "uring_cmd");
  EXPECT_EQ(op_name(abi::Op::Listen), "listen");
  EXPECT_EQ(op_name(static_cast<std::uint8_t>(abi::Op::Last)), "unknown");
  EXPECT_EQ(op_name(255), "unknown");
  std::set<std::string_view> names;
  for (unsigned i = 0; i < static_cast<unsigned>(abi::Op::Last); ++i)
    EXPECT_TRUE(names.insert(op_name(static_cast<std::uint8_t>(i))).second) << i;
}

TEST(Probe, RunningKernelSupportsTheBasics) {
  PEPITA_REQUIRE_CAPABILITY(io_uring);
  auto probe = probe_supported_opcodes();
  ASSERT_TRUE(probe) << probe.error().to_string();
  EXPECT_TRUE(probe->supports(abi::Op::Nop));
  EXPECT_TRUE(probe->supports(abi::Op::Read));
  EXPECT_TRUE(probe->supports(abi::Op::Readv));
  EXPECT_GE(probe->last_op, static_cast<std::uint8_t>(abi::Op::Read));
  EXPECT_GE(probe->count(), 20u);
  const auto rows = probe->list();
  ASSERT_GE(rows.size(), static_cast<std::size_t>(abi::Op::Last));
  EXPECT_EQ(rows[22].name, "read");
  EXPECT_TRUE(rows[22].supported);
  std::size_t supported_rows = 0;
  for (const auto& row : rows) supported_rows += row.supported ? 1 : 0;
  EXPECT_EQ(supported_rows, probe->count());
}

}  // namespace
}  // namespace pepita::io_uring
