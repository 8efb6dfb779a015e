// The GPU task language parser alone (no device): accepted forms and rejected input.

#include "detail/task_args.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <bit>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/temp_dir.hpp"

namespace pepita::gpu::detail {
namespace {

Result<TaskPlan> parse(std::string_view kernel, std::vector<std::string> args) {
  return parse_task(kernel, args);
}

// "1,2,...,n": n push or spec words.
std::string many_words(int n) {
  std::string out;
  for (int i = 1; i <= n; ++i) out += (i > 1 ? "," : "") + std::to_string(i);
  return out;
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
      {"k.spv", {"groups=1", "b0=zeros:1", "n=0"}, "n=0: expected an integer in 1.."},
      {"k.spv", {"groups=1", "b0=zeros:1", "push=x:1"}, "u:, i: or f:"},
      {"k.spv", {"groups=1", "b0=zeros:1", "push=i:3000000000"}, "32-bit signed"},
      {"k.spv", {"groups=1", "b99=zeros:1"}, "b99"},
      {"k.spv", {"groups=1", "b0=zeros:1", "push=" + many_words(33)}, "push: more than 32 values"},
      {"k.spv", {"groups=1", "b0=zeros:1", "spec=" + many_words(40)}, "spec: more than 32 values"},
  };
  for (const Case& c : cases) {
    auto p = parse(c.kernel, c.args);
    ASSERT_FALSE(p) << c.kernel << " " << c.expect;
    EXPECT_EQ(p.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(p.error().message().find(c.expect), std::string::npos)
        << "'" << p.error().message() << "' lacks '" << c.expect << "'";
  }
}

// A file input that is a directory is refused by name before anything is read; a file input is
// read back whole.
TEST(GpuTaskArgs, FileInputMustBeARegularFileAndIsReadWhole) {
  pepita::test::TempDir dir("gpu-task-args");
  ASSERT_FALSE(dir.path().empty());
  std::filesystem::create_directory(dir.file("inputs"));
  Source src;
  src.kind = Source::Kind::File;
  src.key = "x";
  src.path = "inputs";  // relative: resolved against the cwd
  auto n = file_floats(src, dir.path());
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code(), ErrorCode::InvalidArgument);
  EXPECT_EQ(n.error().message(), "gpu task input x=inputs is not a regular file");
  auto v = materialize(src, 1, dir.path(), 1 << 20);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ErrorCode::InvalidArgument);

  const std::vector<float> data = {1.5f, -2.0f, 3.25f};
  {
    std::ofstream out(dir.file("x.f32"), std::ios::binary);
    out.write(reinterpret_cast<const char*>(data.data()),
              static_cast<std::streamsize>(data.size() * sizeof(float)));
  }
  src.path = "x.f32";
  auto count = file_floats(src, dir.path());
  ASSERT_TRUE(count) << count.error().to_string();
  EXPECT_EQ(*count, 3u);
  auto back = materialize(src, 3, dir.path(), 1 << 20);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, data);
}

// Any argument list: parse either succeeds or fails with InvalidArgument, never crashes.
RC_GTEST_PROP(GpuTaskArgs, ArbitraryArgumentsNeverCrash,
              (const std::vector<std::string>& args, bool spirv)) {
  auto p = parse_task(spirv ? "k.spv" : "sgemm", args);
  if (!p) RC_ASSERT(p.error().code() == ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace pepita::gpu::detail
