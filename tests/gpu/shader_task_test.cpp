// Shader tasks (task::ShaderTask) on GpuExecutor through a real pool, on lavapipe in CI: a
// four-buffer kernel checked element by element against the CPU, the pipeline cache, and every
// kind of bad task — each fails with an error naming the field while the pool runs the next one.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "detail/shader_runner.hpp"
#include "gpu_env.hpp"
#include "pepita/gpu/gpu_executor.hpp"
#include "pepita/gpu/kernel.hpp"
#include "pepita/pool/pool.hpp"

namespace pepita::gpu {
namespace {

using pool::ExecutionResult;
using pool::Status;
using task::ShaderBuffer;
using task::ShaderTask;
using task::Task;
using test::bytes_of;
using test::env;
using test::test_spirv;

template <typename T>
std::vector<T> values_of(const std::vector<std::byte>& b) {
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

// add_scale.comp's push-constant block: { uint n; float scale; }.
std::vector<std::byte> params(std::uint32_t n, float scale) {
  return bytes_of(std::vector<std::uint32_t>{n, std::bit_cast<std::uint32_t>(scale)});
}

class ShaderTaskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PEPITA_REQUIRE_GPU();
    auto exec = GpuExecutor::create(*env().device, {});
    ASSERT_TRUE(exec) << exec.error().to_string();
    exec_ = *exec;
    auto p = pool::Pool::builder().executor(exec_).build();
    ASSERT_TRUE(p) << p.error().to_string();
    pool_.emplace(std::move(*p));
    spirv_ = test_spirv("add_scale");
    ASSERT_FALSE(spirv_.empty());
  }

  ExecutionResult run(Task t) {
    auto h = pool_->submit(std::move(t));
    EXPECT_TRUE(h) << h.error().to_string();
    if (!h) return {};
    ExecutionResult r = h->wait();
    return r;
  }
  // add_scale over n elements: a, b inputs, o output, counts read-modify-write from 7.
  ShaderTask add_scale(std::uint32_t n, float scale, std::uint32_t seed = 1) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
    a_.assign(n, 0);
    b_.assign(n, 0);
    for (std::uint32_t i = 0; i < n; ++i) a_[i] = dist(rng), b_[i] = dist(rng);
    return ShaderTask::create(spirv_)
        .with_inputs({bytes_of(a_), bytes_of(b_)})
        .with_outputs({n * sizeof(float)})
        .with_buffer({bytes_of(std::vector<std::uint32_t>(n, 7)), true})
        .with_workgroups((n + 63) / 64, 1, 1)
        .with_push_constants(params(n, scale));
  }
  // A good task after a bad one: the pool and the executor still work.
  void expect_pool_still_runs() {
    auto next = Task::shader(add_scale(70, 1.0f)).build();
    ASSERT_TRUE(next) << next.error().to_string();
    const ExecutionResult r = run(*next);
    EXPECT_EQ(r.status, Status::Succeeded) << r.error;
    EXPECT_EQ(r.output_buffers.size(), 2u);
  }

  std::shared_ptr<GpuExecutor> exec_;
  std::optional<pool::Pool> pool_;
  std::vector<std::uint32_t> spirv_;
  std::vector<float> a_, b_;
};

TEST_F(ShaderTaskTest, AddScaleOutputsMatchCpuElementByElement) {
  for (std::uint32_t n : {1u, 64u, 1000u}) {
    auto t = Task::shader(add_scale(n, -1.5f, n)).name("add-scale").build();
    ASSERT_TRUE(t) << t.error().to_string();
    EXPECT_EQ(t->backend(), task::Backend::Gpu);
    const ExecutionResult r = run(*t);
    ASSERT_EQ(r.status, Status::Succeeded) << r.error;
    ASSERT_EQ(r.output_buffers.size(), 2u) << "outputs: o and counts, in binding order";
    const auto o = values_of<float>(r.output_buffers[0]);
    const auto counts = values_of<std::uint32_t>(r.output_buffers[1]);
    ASSERT_EQ(o.size(), n);
    ASSERT_EQ(counts.size(), n);
    for (std::uint32_t i = 0; i < n; ++i) {
      ASSERT_FLOAT_EQ(o[i], (a_[i] + b_[i]) * -1.5f) << "n=" << n << " i=" << i;
      ASSERT_EQ(counts[i], 7 + i) << "n=" << n << " i=" << i;
    }
    EXPECT_EQ(r.stdout_data, "shader main: " + std::to_string((n + 63) / 64) +
                                 "x1x1 workgroups, 4 buffers, 2 outputs (" + std::to_string(8 * n) +
                                 " bytes)\n");
  }
}

TEST_F(ShaderTaskTest, FourPartFormWithExplicitBuffersRuns) {
  const std::vector<float> a{1, 2, 3}, b{10, 20, 30};
  auto t = Task::shader(spirv_, {1, 1, 1}, params(3, 2.0f),
                        {ShaderBuffer{bytes_of(a)}, ShaderBuffer{bytes_of(b)},
                         ShaderBuffer{std::vector<std::byte>(12), true},
                         ShaderBuffer{std::vector<std::byte>(12), false}})
               .build();
  ASSERT_TRUE(t) << t.error().to_string();
  const ExecutionResult r = run(*t);
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  ASSERT_EQ(r.output_buffers.size(), 1u) << "only the buffer marked output comes back";
  EXPECT_EQ(values_of<float>(r.output_buffers[0]), (std::vector<float>{22, 44, 66}));
}

TEST_F(ShaderTaskTest, SameShaderAndLayoutReuseTheCachedPipeline) {
  const std::uint64_t before = exec_->pipelines_built();
  for (int i = 0; i < 3; ++i) {
    auto t = Task::shader(add_scale(100, static_cast<float>(i))).build();
    ASSERT_TRUE(t);
    ASSERT_EQ(run(*t).status, Status::Succeeded);
  }
  EXPECT_EQ(exec_->pipelines_built(), before + 1) << "push-constant values are not the layout";
  auto other = Task::shader(add_scale(100, 1.0f).with_spec_constants({5})).build();
  ASSERT_TRUE(other);
  ASSERT_EQ(run(*other).status, Status::Succeeded) << run(*other).error;
  EXPECT_EQ(exec_->pipelines_built(), before + 2) << "other specialization constants: new pipeline";
}

// The runner alone: 33 distinct layouts fill the 32-entry pipeline cache and push out the least
// recently used one (the one used again most recently stays); a buffer over the per-buffer cap
// fails naming it; a stop request before the upload cancels the attempt.
TEST_F(ShaderTaskTest, RunnerKeepsThe32MostRecentlyUsedPipelinesAndHonoursItsLimits) {
  Device& dev = *env().device;
  detail::ShaderRunner runner(dev, 4096);
  const auto never = [] { return false; };
  const auto spec = [this](std::uint32_t v) {
    return add_scale(16, 1.0f).with_spec_constants({v});
  };
  ASSERT_TRUE(runner.run(spec(0), never));
  for (std::uint32_t v = 1; v < detail::ShaderRunner::kCacheEntries; ++v) {
    auto r = runner.run(spec(v), never);
    ASSERT_TRUE(r) << v << ": " << r.error().to_string();
  }
  EXPECT_EQ(runner.pipelines_built(), detail::ShaderRunner::kCacheEntries);
  EXPECT_EQ(runner.pipelines_cached(), detail::ShaderRunner::kCacheEntries);
  ASSERT_TRUE(runner.run(spec(0), never));  // a hit: 0 is now the most recently used
  EXPECT_EQ(runner.pipelines_built(), detail::ShaderRunner::kCacheEntries);
  ASSERT_TRUE(runner.run(spec(100), never));  // a miss: evicts 1, the least recently used
  EXPECT_EQ(runner.pipelines_built(), detail::ShaderRunner::kCacheEntries + 1);
  EXPECT_EQ(runner.pipelines_cached(), detail::ShaderRunner::kCacheEntries) << "still bounded";
  ASSERT_TRUE(runner.run(spec(0), never));
  EXPECT_EQ(runner.pipelines_built(), detail::ShaderRunner::kCacheEntries + 1) << "0 stayed";
  ASSERT_TRUE(runner.run(spec(1), never));
  EXPECT_EQ(runner.pipelines_built(), detail::ShaderRunner::kCacheEntries + 2) << "1 was evicted";

  auto big = runner.run(add_scale(2048, 1.0f), never);  // 8 KiB buffers over the 4 KiB cap
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(big.error().message().find("buffers[0]: 8192 bytes is over the 4096-byte limit per "
                                       "buffer"),
            std::string::npos)
      << big.error().message();

  auto stopped = runner.run(add_scale(16, 1.0f), [] { return true; });
  ASSERT_FALSE(stopped);
  EXPECT_EQ(stopped.error().code(), ErrorCode::Cancelled);
  EXPECT_NE(stopped.error().message().find("attempt already reported (cancelled or timed out)"),
            std::string::npos)
      << stopped.error().message();
}

TEST_F(ShaderTaskTest, ConcurrentShaderTasksOnFourSlotsAllGetTheirOwnOutputs) {
  GpuExecutor::Options options;
  options.slots = 4;
  auto exec = GpuExecutor::create(*env().device, options);
  ASSERT_TRUE(exec) << exec.error().to_string();
  auto p = pool::Pool::builder().executor(*exec).build();
  ASSERT_TRUE(p) << p.error().to_string();
  std::vector<pool::TaskHandle> handles;
  std::vector<std::vector<float>> want;
  for (int i = 0; i < 16; ++i) {
    const float scale = static_cast<float>(i + 1);
    auto t = Task::shader(add_scale(200, scale, 100 + i)).build();
    ASSERT_TRUE(t);
    std::vector<float> w(200);
    for (std::size_t k = 0; k < w.size(); ++k) w[k] = (a_[k] + b_[k]) * scale;
    want.push_back(std::move(w));
    auto h = p->submit(*t);
    ASSERT_TRUE(h) << h.error().to_string();
    handles.push_back(std::move(*h));
  }
  for (std::size_t i = 0; i < handles.size(); ++i) {
    const ExecutionResult r = handles[i].wait();
    ASSERT_EQ(r.status, Status::Succeeded) << "task " << i << ": " << r.error;
    ASSERT_EQ(r.output_buffers.size(), 2u);
    const auto o = values_of<float>(r.output_buffers[0]);
    for (std::size_t k = 0; k < o.size(); ++k)
      ASSERT_FLOAT_EQ(o[k], want[i][k]) << "task " << i << " element " << k;
  }
  EXPECT_GE((*exec)->pipelines_built(), 1u);
  EXPECT_LE((*exec)->pipelines_built(), 4u) << "at most one racing build per slot";
}

TEST_F(ShaderTaskTest, WrongBufferCountFailsNamingBuffers) {
  ShaderTask s = add_scale(64, 1.0f);
  s.buffers.pop_back();
  auto t = Task::shader(std::move(s)).name("three-buffers").build();
  ASSERT_TRUE(t) << "the count is checked against the module by the gpu backend";
  const ExecutionResult r = run(*t);
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_NE(r.error.find("buffers: the shader binds 4 storage buffer(s)"), std::string::npos)
      << r.error;
  EXPECT_NE(r.error.find("but 3 were given"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("three-buffers"), std::string::npos) << r.error;
  EXPECT_TRUE(r.output_buffers.empty());
  expect_pool_still_runs();
}

TEST_F(ShaderTaskTest, PushConstantsOverTheDeviceLimitFail) {
  const std::uint32_t limit = env().device->info().max_push_constant_bytes;
  ShaderTask s = add_scale(64, 1.0f);
  s.push_constants.assign(limit + 4, std::byte{0});
  auto t = Task::shader(std::move(s)).build();
  ASSERT_TRUE(t);
  const ExecutionResult r = run(*t);
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_NE(r.error.find("push_constants: " + std::to_string(limit + 4) +
                         " bytes is over this device's limit of " + std::to_string(limit)),
            std::string::npos)
      << r.error;
  expect_pool_still_runs();
}

TEST_F(ShaderTaskTest, PushConstantsOfAnotherSizeThanTheBlockFail) {
  ShaderTask s = add_scale(64, 1.0f);
  s.push_constants.resize(4);
  auto short_push = Task::shader(std::move(s)).build();
  ASSERT_TRUE(short_push);
  const ExecutionResult r = run(*short_push);
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_NE(r.error.find("push_constants: the shader's push-constant block is 8 bytes, but 4"),
            std::string::npos)
      << r.error;
  expect_pool_still_runs();
}

TEST_F(ShaderTaskTest, WorkgroupsOverTheDeviceLimitFail) {
  const std::uint32_t limit = env().device->info().max_group_count[1];
  if (limit == UINT32_MAX) GTEST_SKIP() << "the device allows every 32-bit workgroup count";
  auto t = Task::shader(add_scale(64, 1.0f).with_workgroups(1, limit + 1, 1)).build();
  ASSERT_TRUE(t);
  const ExecutionResult r = run(*t);
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_NE(r.error.find("workgroups.y: " + std::to_string(limit + 1) + " is over"),
            std::string::npos)
      << r.error;
  expect_pool_still_runs();
}

TEST_F(ShaderTaskTest, TruncatedSpirvFailsWithoutReachingTheDriver) {
  ShaderTask s = add_scale(64, 1.0f);
  s.spirv[5] = (0xffffu << 16) | (s.spirv[5] & 0xffff);  // an instruction runs past the end
  auto t = Task::shader(std::move(s)).build();
  ASSERT_TRUE(t) << "build checks only the magic number";
  const ExecutionResult r = run(*t);
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_NE(r.error.find("invalid SPIR-V: instruction at word 5 runs past the end"),
            std::string::npos)
      << r.error;
  expect_pool_still_runs();
}

TEST_F(ShaderTaskTest, MissingEntryPointFailsNamingIt) {
  auto t = Task::shader(add_scale(64, 1.0f).with_entry_point("not_main")).build();
  ASSERT_TRUE(t);
  const ExecutionResult r = run(*t);
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_NE(r.error.find("no entry point named 'not_main'"), std::string::npos) << r.error;
  expect_pool_still_runs();
}

TEST_F(ShaderTaskTest, BadInputCaughtByBuildNeverReachesThePool) {
  auto zero = Task::shader(add_scale(64, 1.0f).with_workgroups(1, 0, 1)).build();
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().message().find("workgroups.y: is 0"), std::string::npos)
      << zero.error().message();
  std::vector<std::uint32_t> swapped = spirv_;
  swapped[0] = std::byteswap(swapped[0]);
  auto bad_magic = Task::shader(ShaderTask::create(swapped)).build();
  ASSERT_FALSE(bad_magic);
  EXPECT_NE(bad_magic.error().message().find("spirv: word 0 is 0x03022307"), std::string::npos)
      << bad_magic.error().message();
  expect_pool_still_runs();
}

TEST_F(ShaderTaskTest, AJournalledShaderTaskRunsAgainWithItsOutputs) {
  char tmpl[] = "/tmp/pepita-shader-journal-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string journal = std::string(tmpl) + "/run.journal";
  for (int round = 0; round < 2; ++round) {
    auto exec = GpuExecutor::create(*env().device, {});  // a pool shuts its executors down
    ASSERT_TRUE(exec) << exec.error().to_string();
    auto p = pool::Pool::builder().executor(*exec).journal(journal, /*resume=*/round == 1).build();
    ASSERT_TRUE(p) << p.error().to_string();
    auto t = Task::shader(add_scale(10, 2.0f)).name("journalled").build();
    ASSERT_TRUE(t);
    auto h = p->submit(*t);
    ASSERT_TRUE(h);
    const ExecutionResult r = h->wait();
    ASSERT_EQ(r.status, Status::Succeeded) << r.error;
    EXPECT_FALSE(r.from_journal) << "round " << round << ": outputs are not journalled";
    ASSERT_EQ(r.output_buffers.size(), 2u) << "round " << round;
    EXPECT_FLOAT_EQ(values_of<float>(r.output_buffers[0])[3], (a_[3] + b_[3]) * 2.0f);
  }
  std::filesystem::remove_all(tmpl);
}

TEST(GpuExecutorAvailability, IsAvailableMatchesTheVulkanProbe) {
  const bool listed = [] {
    auto devices = list_devices();
    if (!devices) return false;
    for (const auto& d : *devices)
      if (d.has_compute_queue) return true;
    return false;
  }();
  EXPECT_EQ(GpuExecutor::is_available(), listed);
  if (listed) {
    EXPECT_TRUE(GpuExecutor::create({})) << "is_available() promises create() works";
  }
}

}  // namespace
}  // namespace pepita::gpu
