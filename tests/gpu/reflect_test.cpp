// SPIR-V interface reflection on the modules glslangValidator builds from tests/gpu/shaders/
// (no device needed), and check_compute_interface's errors, each naming the field.

#include "pepita/gpu/reflect.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gpu/gpu_env.hpp"
#include "pepita/gpu/kernel.hpp"

namespace pepita::gpu {
namespace {

using test::test_spirv;

// Index of the OpEntryPoint instruction (opcode 15) in `spirv`.
std::size_t entry_point_at(const std::vector<std::uint32_t>& spirv) {
  for (std::size_t at = 5; at < spirv.size(); at += spirv[at] >> 16)
    if ((spirv[at] & 0xffff) == 15) return at;
  return 0;
}

// The error message, or "(no error)" when reflection succeeded.
std::string error_of(const Result<ShaderInterface>& r) {
  return r ? std::string("(no error)") : r.error().message();
}

TEST(ReflectSpirv, AddScaleHasFourStorageBuffersAnEightBytePushBlockAndLocalSize64) {
  auto in = reflect_spirv(test_spirv("add_scale"));
  ASSERT_TRUE(in) << in.error().to_string();
  EXPECT_EQ(in->stage, ShaderStage::Compute);
  EXPECT_EQ(in->entry_point, "main");
  EXPECT_EQ(in->local_size, (std::array<std::uint32_t, 3>{64, 1, 1}));
  ASSERT_EQ(in->bindings.size(), 4u);
  for (std::uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(in->bindings[i].set, 0u);
    EXPECT_EQ(in->bindings[i].binding, i);
    EXPECT_EQ(in->bindings[i].kind, ResourceBinding::Kind::StorageBuffer);
  }
  EXPECT_EQ(in->storage_buffers(), 4u);
  EXPECT_EQ(in->push_constant_bytes, std::optional<std::uint32_t>(8));
  EXPECT_TRUE(check_compute_interface(*in, 4, 8));
}

TEST(ReflectSpirv, ScaleOffsetHasTwoBuffersAndAnEightBytePushBlock) {
  auto scale = reflect_spirv(test_spirv("scale_offset"));
  ASSERT_TRUE(scale) << scale.error().to_string();
  EXPECT_EQ(scale->storage_buffers(), 2u);
  EXPECT_EQ(scale->push_constant_bytes, std::optional<std::uint32_t>(8));
}

TEST(ReflectSpirv, CheckComputeInterfaceNamesTheField) {
  auto in = reflect_spirv(test_spirv("add_scale"));
  ASSERT_TRUE(in);
  auto few = check_compute_interface(*in, 3, 8);
  ASSERT_FALSE(few);
  EXPECT_EQ(few.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(few.error().message().find("buffers: the shader binds 4"), std::string::npos)
      << few.error().message();
  auto push = check_compute_interface(*in, 4, 16);
  ASSERT_FALSE(push);
  EXPECT_NE(push.error().message().find("push_constants: the shader's push-constant block is 8"),
            std::string::npos)
      << push.error().message();

  ShaderInterface gap = *in;
  gap.bindings.erase(gap.bindings.begin() + 1);
  auto g = check_compute_interface(gap, 3, 8);
  ASSERT_FALSE(g);
  EXPECT_NE(g.error().message().find("binding 1 is missing"), std::string::npos);

  ShaderInterface uniform = *in;
  uniform.bindings[2].kind = ResourceBinding::Kind::UniformBuffer;
  auto u = check_compute_interface(uniform, 4, 8);
  ASSERT_FALSE(u);
  EXPECT_NE(u.error().message().find("buffers: binding 2 is a uniform buffer"), std::string::npos);

  ShaderInterface set1 = *in;
  set1.bindings[3].set = 1;
  auto s = check_compute_interface(set1, 4, 8);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("descriptor set 1"), std::string::npos);
}

TEST(ReflectSpirv, AVertexEntryPointIsReportedAndRefusedForDispatch) {
  auto spirv = test_spirv("add_scale");
  const std::size_t at = entry_point_at(spirv);
  ASSERT_NE(at, 0u);
  spirv[at + 1] = 0;  // execution model: Vertex
  auto in = reflect_spirv(spirv);
  ASSERT_TRUE(in) << in.error().to_string();
  EXPECT_EQ(in->stage, ShaderStage::Vertex);
  auto c = check_compute_interface(*in, 4, 8);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("spirv: entry point 'main' is a vertex shader"),
            std::string::npos)
      << c.error().message();
  spirv[at + 1] = 3;  // Geometry: not a model pepita knows
  auto geo = reflect_spirv(spirv);
  EXPECT_NE(error_of(geo).find("execution model 3"), std::string::npos);
}

// Sets the decoration of every OpDecorate (71) / OpMemberDecorate (72) naming `decoration` to
// RelaxedPrecision (0), which reflection ignores; returns how many it changed.
int drop_decoration(std::vector<std::uint32_t>& spirv, std::uint32_t opcode,
                    std::uint32_t decoration) {
  const std::size_t slot = opcode == 71 ? 2 : 3;
  int dropped = 0;
  for (std::size_t at = 5; at < spirv.size() && (spirv[at] >> 16) != 0; at += spirv[at] >> 16) {
    if ((spirv[at] & 0xffff) == opcode && (spirv[at] >> 16) > slot &&
        spirv[at + slot] == decoration) {
      spirv[at + slot] = 0;
      ++dropped;
    }
  }
  return dropped;
}

TEST(ReflectSpirv, PushBlockWithVectorArrayAndMatrixIsSizedAndAUniformBlockIsReported) {
  const auto spirv = test_spirv("interface_kinds");
  auto in = reflect_spirv(spirv);
  ASSERT_TRUE(in) << in.error().to_string();
  EXPECT_EQ(in->local_size, (std::array<std::uint32_t, 3>{8, 4, 1}));
  // vec4 at 0 (16 bytes), float[3] at 16 (stride 4), mat4 at 32 (4 columns of stride 16).
  EXPECT_EQ(in->push_constant_bytes, std::optional<std::uint32_t>(96));
  ASSERT_EQ(in->bindings.size(), 2u);
  EXPECT_EQ(in->bindings[0].kind, ResourceBinding::Kind::StorageBuffer);
  EXPECT_EQ(in->bindings[1].binding, 1u);
  EXPECT_EQ(in->bindings[1].kind, ResourceBinding::Kind::UniformBuffer);
  EXPECT_EQ(in->storage_buffers(), 1u);
  auto c = check_compute_interface(*in, 2, 96);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("buffers: binding 1 is a uniform buffer"), std::string::npos)
      << c.error().message();

  // Without ArrayStride the array's stride is its element's size: the same 96 bytes.
  auto no_stride = spirv;
  ASSERT_EQ(drop_decoration(no_stride, 71, 6), 2);  // ArrayStride
  auto ns = reflect_spirv(no_stride);
  ASSERT_TRUE(ns) << ns.error().to_string();
  EXPECT_EQ(ns->push_constant_bytes, std::optional<std::uint32_t>(96));

  // A matrix member without MatrixStride cannot be sized, nor then the block: no size, no error.
  auto no_matrix_stride = spirv;
  ASSERT_EQ(drop_decoration(no_matrix_stride, 72, 7), 1);  // MatrixStride
  auto nm = reflect_spirv(no_matrix_stride);
  ASSERT_TRUE(nm) << nm.error().to_string();
  EXPECT_FALSE(nm->push_constant_bytes);
}

// Sizing stops at 16 levels of nesting, structs included (a module cannot make reflection
// recurse without bound): a push block with a member 20 structs deep reflects, without a size.
TEST(ReflectSpirv, APushBlockNestedPastTheDepthBoundHasNoSize) {
  const auto spirv = test_spirv("deep_structs");
  ASSERT_FALSE(spirv.empty());
  auto in = reflect_spirv(spirv);
  ASSERT_TRUE(in) << in.error().to_string();
  EXPECT_EQ(in->stage, ShaderStage::Compute);
  ASSERT_EQ(in->bindings.size(), 1u);
  EXPECT_EQ(in->bindings[0].kind, ResourceBinding::Kind::StorageBuffer);
  EXPECT_FALSE(in->push_constant_bytes);
}

TEST(ReflectSpirv, AFragmentEntryPointIsReportedAndStagesHaveNames) {
  auto spirv = test_spirv("add_scale");
  const std::size_t at = entry_point_at(spirv);
  ASSERT_NE(at, 0u);
  spirv[at + 1] = 4;  // execution model: Fragment
  auto in = reflect_spirv(spirv);
  ASSERT_TRUE(in) << in.error().to_string();
  EXPECT_EQ(in->stage, ShaderStage::Fragment);
  auto c = check_compute_interface(*in, 4, 8);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("is a fragment shader"), std::string::npos)
      << c.error().message();
  EXPECT_EQ(to_string(ShaderStage::Vertex), "vertex");
  EXPECT_EQ(to_string(ShaderStage::Fragment), "fragment");
  EXPECT_EQ(to_string(ShaderStage::Compute), "compute");
  EXPECT_EQ(to_string(static_cast<ShaderStage>(9)), "?") << "a value outside the enum";
}

// An entry-point name literal missing its nul terminator ends at the instruction's end: both
// reflection and validation read the name from the instruction's own words, never past them.
TEST(ReflectSpirv, EntryPointNameWithoutItsNulEndsAtTheInstruction) {
  auto spirv = test_spirv("add_scale");
  const std::size_t at = entry_point_at(spirv);
  ASSERT_NE(at, 0u);
  const std::size_t words = spirv[at] >> 16;
  ASSERT_GE(words, 4u);
  for (std::size_t w = at + 3; w < at + words; ++w) spirv[w] = 0x41414141;  // "AAAA", no nul
  const std::string name(4 * (words - 3), 'A');
  auto in = reflect_spirv(spirv, name);
  ASSERT_TRUE(in) << in.error().to_string();
  EXPECT_EQ(in->entry_point, name);
  EXPECT_TRUE(validate_spirv(spirv, name));
  EXPECT_NE(error_of(reflect_spirv(spirv, "main")).find("no entry point named 'main'"),
            std::string::npos);
  EXPECT_FALSE(validate_spirv(spirv, "main"));
}

TEST(ReflectSpirv, MalformedModulesAreInvalidArgument) {
  const auto good = test_spirv("add_scale");
  auto empty = reflect_spirv({});
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), ErrorCode::InvalidArgument);
  auto swapped = good;
  swapped[0] = 0x03022307;
  EXPECT_NE(error_of(reflect_spirv(swapped)).find("bad magic"), std::string::npos);
  auto cut = good;
  cut[5] = (0xffffu << 16) | (cut[5] & 0xffff);  // the first instruction claims 65535 words
  EXPECT_NE(error_of(reflect_spirv(cut)).find("runs past the end"), std::string::npos);
  auto zero = good;
  zero[5] = 0;
  EXPECT_NE(error_of(reflect_spirv(zero)).find("word count of 0"), std::string::npos);
  EXPECT_NE(error_of(reflect_spirv(good, "other")).find("no entry point named 'other'"),
            std::string::npos);
}

// Untrusted modules: any mutation of a real module, or random words after the magic number,
// gives a value or InvalidArgument — never a crash, a hang or another error code.
RC_GTEST_PROP(ReflectSpirv, MutatedModulesNeverCrashOrMisreport, ()) {
  static const std::vector<std::uint32_t> good = test_spirv("add_scale");
  RC_PRE(!good.empty());
  auto words = good;
  const auto edits =
      *rc::gen::container<std::vector<std::pair<std::size_t, std::uint32_t>>>(rc::gen::pair(
          rc::gen::inRange<std::size_t>(1, good.size()), rc::gen::arbitrary<std::uint32_t>()));
  for (const auto& [at, value] : edits) words[at] = value;
  if (*rc::gen::arbitrary<bool>())
    words.resize(*rc::gen::inRange<std::size_t>(0, words.size() + 1));
  auto in = reflect_spirv(words);
  if (!in) {
    RC_ASSERT(in.error().code() == ErrorCode::InvalidArgument);
    return;
  }
  auto fits =
      check_compute_interface(*in, in->bindings.size(), in->push_constant_bytes.value_or(0));
  // Not RC_ASSERT(fits || fits.error()...): rapidcheck captures the operands of a top-level ||
  // through an overloaded operator, which evaluates both sides (error() of a value is UB).
  if (!fits) RC_ASSERT(fits.error().code() == ErrorCode::InvalidArgument);
}

RC_GTEST_PROP(ReflectSpirv, RandomWordsAfterTheMagicAreInvalidArgumentOrValid, ()) {
  auto words = *rc::gen::container<std::vector<std::uint32_t>>(rc::gen::arbitrary<std::uint32_t>());
  words.insert(words.begin(), 0x07230203u);
  auto in = reflect_spirv(words);
  if (!in) RC_ASSERT(in.error().code() == ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace pepita::gpu
