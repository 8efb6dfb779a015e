// task::ShaderTask and Task::shader without a device: the crate's builder methods, the checks
// build() makes (each error naming the field), backend rules, and the spec digest covering the
// module, the inputs and the dispatch shape. Running shaders is tested in tests/gpu/.

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <vector>

#include "pepita/task/task.hpp"

namespace pepita::task {
namespace {

constexpr std::uint32_t kMagic = 0x07230203;

std::vector<std::byte> bytes(std::initializer_list<int> v) {
  std::vector<std::byte> out;
  for (int x : v) out.push_back(static_cast<std::byte>(x));
  return out;
}

// The message of a failed build, or "(built)" when it succeeded.
std::string error_of(const Result<Task>& t) { return t ? "(built)" : t.error().message(); }

TEST(ShaderTask, CrateBuilderMethodsSetEveryField) {
  const ShaderTask s = ShaderTask::create({kMagic, 1, 2})
                           .with_inputs({bytes({1, 2, 3, 4}), bytes({5, 6, 7, 8})})
                           .with_outputs({16})
                           .with_workgroups(8, 8, 4)
                           .with_push_constants(bytes({9, 9, 9, 9}))
                           .with_entry_point("run")
                           .with_spec_constants({64});
  EXPECT_EQ(s.spirv, (std::vector<std::uint32_t>{kMagic, 1, 2}));
  ASSERT_EQ(s.buffers.size(), 3u);
  EXPECT_EQ(s.buffers[0].data, bytes({1, 2, 3, 4}));
  EXPECT_FALSE(s.buffers[0].output);
  EXPECT_FALSE(s.buffers[1].output);
  EXPECT_TRUE(s.buffers[2].output);
  EXPECT_EQ(s.buffers[2].data, std::vector<std::byte>(16)) << "outputs start zero-filled";
  EXPECT_EQ(s.output_count(), 1u);
  EXPECT_EQ(s.total_workgroups(), 256u);
  EXPECT_EQ(s.push_constants.size(), 4u);
  EXPECT_EQ(s.entry_point, "run");
  EXPECT_EQ(s.spec_constants, (std::vector<std::uint32_t>{64}));
  EXPECT_TRUE(s.validate());
}

TEST(ShaderTask, TotalWorkgroupsDoesNotOverflow) {
  const ShaderTask s = ShaderTask::create({kMagic}).with_workgroups(UINT32_MAX, UINT32_MAX, 2);
  EXPECT_EQ(s.total_workgroups(), std::uint64_t{UINT32_MAX} * UINT32_MAX * 2);
}

TEST(ShaderTask, NamedValueBuildersChainToo) {
  ShaderTask s = ShaderTask::create({kMagic});
  s.with_outputs({4}).with_workgroups(2, 1, 1);
  EXPECT_EQ(s.buffers.size(), 1u);
  EXPECT_EQ(s.total_workgroups(), 2u);
}

TEST(TaskShader, BuildsOnGpuAndIsAShaderTask) {
  auto t = Task::shader({kMagic, 0, 0}, {4, 2, 1}, bytes({0, 0, 0, 0}),
                        {ShaderBuffer{bytes({1, 2, 3, 4})}, ShaderBuffer{bytes({0, 0}), true}})
               .name("k")
               .priority(3)
               .build();
  ASSERT_TRUE(t) << error_of(t);
  EXPECT_TRUE(t->is_shader());
  EXPECT_FALSE(t->is_process());
  EXPECT_EQ(t->function(), nullptr);
  EXPECT_EQ(t->backend(), Backend::Gpu);
  ASSERT_NE(t->shader(), nullptr);
  EXPECT_EQ(t->as_shader(), t->shader());
  EXPECT_EQ(t->shader()->workgroups.x, 4u);
  EXPECT_EQ(t->shader()->output_count(), 1u);
  auto binary = Task::binary("/bin/true").build();
  ASSERT_TRUE(binary);
  EXPECT_FALSE(binary->is_shader());
  EXPECT_EQ(binary->as_shader(), nullptr);
}

TEST(TaskShader, BadInputIsAnErrorNamingTheField) {
  const auto ok = [] { return ShaderTask::create({kMagic}).with_outputs({4}); };
  EXPECT_NE(error_of(Task::shader(ShaderTask::create({})).build())
                .find("spirv: the shader module "
                      "is empty"),
            std::string::npos);
  EXPECT_NE(error_of(Task::shader(ShaderTask::create({0x03022307})).build())
                .find("spirv: word 0 is 0x03022307, not the SPIR-V magic number"),
            std::string::npos)
      << error_of(Task::shader(ShaderTask::create({0x03022307})).build());
  EXPECT_NE(
      error_of(Task::shader(ok().with_workgroups(0, 1, 1)).build()).find("workgroups.x: is 0"),
      std::string::npos);
  EXPECT_NE(
      error_of(Task::shader(ok().with_workgroups(1, 1, 0)).build()).find("workgroups.z: is 0"),
      std::string::npos);
  EXPECT_NE(error_of(Task::shader(ok().with_push_constants(bytes({1, 2, 3}))).build())
                .find("push_constants: 3 bytes is not a multiple of 4"),
            std::string::npos);
  EXPECT_NE(error_of(Task::shader(ok().with_inputs({{}})).build()).find("buffers[1]: is empty"),
            std::string::npos);
  EXPECT_NE(error_of(Task::shader(ok().with_entry_point("")).build()).find("entry_point:"),
            std::string::npos);
  EXPECT_NE(error_of(Task::shader(ok()).backend(Backend::Process).build())
                .find("backend: a shader task cannot run on the process backend"),
            std::string::npos);
  EXPECT_NE(error_of(Task::shader(ok()).backend(Backend::Cpu).build()).find("backend:"),
            std::string::npos);
  EXPECT_NE(error_of(Task::shader(ok()).args({"x"}).build()).find("binary tasks only"),
            std::string::npos);
  auto custom = Backend::named("my-gpu");
  ASSERT_TRUE(custom);
  EXPECT_TRUE(Task::shader(ok()).backend(*custom).build()) << "a registered backend may run it";
}

TEST(TaskShader, DigestCoversModuleInputsAndDispatchShape) {
  const auto base = [] {
    return ShaderTask::create({kMagic, 7})
        .with_inputs({bytes({1, 2, 3, 4})})
        .with_outputs({4})
        .with_workgroups(2, 1, 1)
        .with_push_constants(bytes({0, 0, 0, 1}));
  };
  const auto digest = [](ShaderTask s) {
    return Task::shader(std::move(s)).build()->spec_digest();
  };
  const std::string d = digest(base());
  EXPECT_EQ(d, digest(base())) << "same spec, same digest";
  EXPECT_NE(d, digest(ShaderTask::create({kMagic, 8})
                          .with_inputs({bytes({1, 2, 3, 4})})
                          .with_outputs({4})
                          .with_workgroups(2, 1, 1)
                          .with_push_constants(bytes({0, 0, 0, 1}))));
  ShaderTask input = base();
  input.buffers[0].data[0] = std::byte{9};
  EXPECT_NE(d, digest(input)) << "input bytes";
  EXPECT_NE(d, digest(base().with_workgroups(3, 1, 1)));
  EXPECT_NE(d, digest(base().with_push_constants(bytes({0, 0, 0, 2}))));
  EXPECT_NE(d, digest(base().with_entry_point("other")));
  EXPECT_NE(d, digest(base().with_spec_constants({1})));
  ShaderTask flipped = base();
  flipped.buffers[1].output = false;
  EXPECT_NE(d, digest(flipped)) << "which buffers are outputs";
}

TEST(TaskShader, EachFieldAndBackendIsCheckedAtItsBoundary) {
  const auto ok = [] { return ShaderTask::create({kMagic}).with_outputs({4}); };
  EXPECT_EQ(error_of(Task::shader(ShaderTask::create({0xabc, kMagic})).build()),
            "invalid task: spirv: word 0 is 0x00000abc, not the SPIR-V magic number 0x07230203 "
            "(not SPIR-V, or byte-swapped; compile with glslangValidator -V)");
  EXPECT_EQ(error_of(Task::shader(ok().with_workgroups(1, 0, 1)).build()),
            "invalid task: workgroups.y: is 0; every workgroup count must be at least 1");
  EXPECT_EQ(error_of(Task::shader(ok().with_entry_point(std::string("m\0n", 3))).build()),
            "invalid task: entry_point: must be a non-empty name without NUL bytes (usually "
            "\"main\")");
  EXPECT_EQ(error_of(Task::shader(ShaderTask::create({kMagic}).with_outputs({0, 4})).build()),
            "invalid task: buffers[0]: is empty; a storage buffer needs at least 1 byte");
  EXPECT_EQ(error_of(Task::shader(ok().with_push_constants(bytes({1, 2, 3, 4, 5}))).build()),
            "invalid task: push_constants: 5 bytes is not a multiple of 4");
  EXPECT_EQ(error_of(Task::shader(ok().with_push_constants(bytes({1, 2, 3, 4}))).build()),
            "(built)");
  for (const Backend& b : {Backend::MicroVm, Backend::Remote}) {
    EXPECT_EQ(error_of(Task::shader(ok()).backend(b).build()),
              "invalid task: backend: a shader task cannot run on the " + std::string(b.name()) +
                  " backend (use gpu)");
  }
  EXPECT_NE(error_of(Task::shader(ok()).sandbox(SandboxPolicy::standard()).build())
                .find("only a binary or pipeline task runs in a sandbox"),
            std::string::npos);
  EXPECT_NE(error_of(Task::shader(ok()).affinity(CpuAffinity::Core(0)).build())
                .find("affinity applies to binary and pipeline tasks"),
            std::string::npos);
  ResourceRequest half;
  half.cpus = 0.5;
  EXPECT_NE(error_of(Task::shader(ok()).resources(half).build())
                .find("cpus = 0.5 on the gpu backend cannot be split"),
            std::string::npos);
}

TEST(TaskShader, TheShorthandKeepsEveryPartAndCountsOutputs) {
  const auto t = Task::shader({kMagic, 1}, {2, 3, 4}, bytes({5, 6, 7, 8}),
                              {ShaderBuffer{bytes({1}), true}, ShaderBuffer{bytes({2}), false},
                               ShaderBuffer{bytes({3, 3}), true}})
                     .build();
  ASSERT_TRUE(t) << error_of(t);
  EXPECT_EQ(t->kind(), TaskKind::Shader);
  const ShaderTask& s = *t->shader();
  EXPECT_EQ(s.spirv, (std::vector<std::uint32_t>{kMagic, 1}));
  EXPECT_EQ(s.workgroups.y, 3u);
  EXPECT_EQ(s.workgroups.z, 4u);
  EXPECT_EQ(s.push_constants, bytes({5, 6, 7, 8}));
  ASSERT_EQ(s.buffers.size(), 3u);
  EXPECT_EQ(s.buffers[2].data, bytes({3, 3}));
  EXPECT_EQ(s.output_count(), 2u);
  EXPECT_EQ(s.entry_point, "main");
}

}  // namespace
}  // namespace pepita::task
