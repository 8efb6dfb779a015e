// The GPU task language parser alone (no device): accepted forms and rejected input.

#include "detail/task_args.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <bit>
#include <string>
#include <vector>

namespace pepita::gpu::detail {
namespace {

Result<TaskPlan> parse(std::string_view kernel, std::vector<std::string> args) {
  return parse_task(kernel, args);
}

TEST(GpuTaskArgs, BuiltinForms) {
  auto p = parse("saxpy", {"x=data/x.f32", "y=ramp:1:0.5", "alpha=2", "n=7", "out=y.f32"});
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->kind, KernelKind::Saxpy);
  EXPECT_EQ(p->inputs.at("x").kind, Source::Kind::File);
  EXPECT_EQ(p->inputs.at("x").path, "data/x.f32");
  EXPECT_EQ(p->inputs.at("y").kind, Source::Kind::Ramp);
  EXPECT_EQ(p->inputs.at("y").start, 1.0f);
  EXPECT_EQ(p->inputs.at("y").step, 0.5f);
  EXPECT_EQ(p->alpha, 2.0f);
  EXPECT_EQ(*p->n, 7u);
  EXPECT_EQ(p->out, "y.f32");
  auto f = parse("sum", {"x=file:fill:odd-name"});
  ASSERT_TRUE(f);
  EXPECT_EQ(f->inputs.at("x").path, "fill:odd-name");
}

TEST(GpuTaskArgs, SpirvForms) {
  auto p = parse("k.spv", {"groups=4,2", "b0=in.f32", "b1=zeros:8", "push=u:3,i:-1,f:0.5,7,2.5",
                           "spec=64", "entry=run", "result=0"});
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->kind, KernelKind::Spirv);
  EXPECT_EQ(p->groups, (std::array<std::uint32_t, 3>{4, 2, 1}));
  ASSERT_EQ(p->buffers.size(), 2u);
  EXPECT_EQ(*p->buffers[1].count, 8u);
  ASSERT_EQ(p->push.size(), 5u);
  EXPECT_EQ(p->push[1], 0xffffffffu);
  EXPECT_EQ(p->push[2], std::bit_cast<std::uint32_t>(0.5f));
  EXPECT_EQ(p->push[3], 7u);
  EXPECT_EQ(p->push[4], std::bit_cast<std::uint32_t>(2.5f));
  EXPECT_EQ(p->entry, "run");
  EXPECT_EQ(p->result, 0u);
  auto d = parse("k.spv", {"groups=1", "b0=zeros:1", "b1=zeros:1"});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->result, 1u);  // default: the last buffer
}

TEST(GpuTaskArgs, RejectsWithTheReason) {
  struct Case {
    std::string kernel;
    std::vector<std::string> args;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"sgemv", {}, "unknown GPU kernel"},
      {"add", {"a=x", "b=y", "a=z"}, "given twice"},
      {"add", {"a"}, "not key=value"},
      {"add", {"=x"}, "not key=value"},
      {"add", {"a=", "b=y"}, "names no file"},
      {"add", {"a=x", "b=zeros:3"}, "only for .spv"},
      {"sum", {"x=x", "out=o"}, "reduction prints"},
      {"saxpy", {"x=x", "y=y", "alpha=fast"}, "expected a number"},
      {"sgemm", {"a=a", "b=b", "m=0", "n=1", "k=1"}, "m=0"},
      {"softmax", {"x=x", "rows=2"}, "cols= is required"},
      {"k.spv", {"b0=zeros:1"}, "groups="},
      {"k.spv", {"groups=1"}, "no buffers"},
      {"k.spv", {"groups=1", "b1=zeros:1"}, "b0= is missing"},
      {"k.spv", {"groups=0", "b0=zeros:1"}, "groups"},
      {"k.spv", {"groups=1,2,3,4", "b0=zeros:1"}, "at most X,Y,Z"},
      {"k.spv", {"groups=1,", "b0=zeros:1"}, "trailing comma"},
      {"k.spv", {"groups=1", "b0=zeros:1", "result=3"}, "only 1 buffers"},
      {"k.spv", {"groups=1", "b0=zeros:1", "push=x:1"}, "u:, i: or f:"},
      {"k.spv", {"groups=1", "b0=zeros:1", "push=i:3000000000"}, "32-bit signed"},
      {"k.spv", {"groups=1", "b99=zeros:1"}, "b99"},
  };
  for (const Case& c : cases) {
    auto p = parse(c.kernel, c.args);
    ASSERT_FALSE(p) << c.kernel << " " << c.expect;
    EXPECT_EQ(p.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(p.error().message().find(c.expect), std::string::npos)
        << "'" << p.error().message() << "' lacks '" << c.expect << "'";
  }
}

// Any argument list: parse either succeeds or fails with InvalidArgument, never crashes.
RC_GTEST_PROP(GpuTaskArgs, ArbitraryArgumentsNeverCrash,
              (const std::vector<std::string>& args, bool spirv)) {
  auto p = parse_task(spirv ? "k.spv" : "sgemm", args);
  if (!p) RC_ASSERT(p.error().code() == ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace pepita::gpu::detail
