// GpuExecutor through a real pool: built-in kernels against CPU references at odd sizes, user
// SPIR-V, every kind of bad task (Failed with the reason; the pool and its circuit breaker keep
// running the others),
// cancellation and timeouts of a kernel that is still on the device.

#include "pepita/gpu/gpu_executor.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gpu_env.hpp"
#include "pepita/pool/pool.hpp"

namespace pepita::gpu {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using pool::ExecutionResult;
using pool::Status;
using task::Backend;
using task::Task;
using test::env;

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

class GpuExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PEPITA_REQUIRE_GPU();
    std::string tmpl = (fs::temp_directory_path() / "pepita-gpu-exec-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::shared_ptr<GpuExecutor> executor(GpuExecutor::Options o = {}) {
    auto exec = GpuExecutor::create(*env().device, o);
    EXPECT_TRUE(exec) << exec.error().to_string();
    return exec ? *exec : nullptr;
  }
  pool::Pool make_pool(std::shared_ptr<GpuExecutor> exec) {
    auto p = pool::Pool::builder().executor(std::move(exec)).build();
    EXPECT_TRUE(p) << p.error().to_string();
    return std::move(*p);
  }

  std::string write_floats(const std::string& name, const std::vector<float>& v) {
    const fs::path p = dir_ / name;
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(v.data()),
              static_cast<std::streamsize>(v.size() * sizeof(float)));
    return p.string();
  }
  std::vector<float> read_floats(const std::string& name) {
    std::ifstream in(dir_ / name, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
    std::vector<float> v(bytes.size() / sizeof(float));
    std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
    return v;
  }

  // A GPU task running in dir_, so relative file names resolve there.
  Task gpu_task(const std::string& kernel, std::vector<std::string> args, std::string name = "") {
    auto b = Task::binary(kernel).backend(Backend::Gpu).args(std::move(args)).cwd(dir_.string());
    b.max_retries(0);
    if (!name.empty()) b.name(std::move(name));
    auto t = b.build();
    EXPECT_TRUE(t) << t.error().to_string();
    return *t;
  }

  static std::string shader(const char* name) {
    return (fs::path(PEPITA_GPU_TEST_SHADER_DIR) / name).string();
  }

  fs::path dir_;
};

TEST_F(GpuExecutorTest, SaxpyOddSizesMatchCpu) {
  auto p = make_pool(executor());
  for (std::size_t n : {1u, 257u, 10007u}) {
    const auto x = random_floats(n, 1), y = random_floats(n, 2);
    write_floats("x.f32", x);
    write_floats("y.f32", y);
    auto h = p.submit(gpu_task("saxpy", {"x=x.f32", "y=y.f32", "alpha=-2.5", "out=r.f32"}));
    ASSERT_TRUE(h);
    const ExecutionResult& r = h->wait();
    ASSERT_EQ(r.status, Status::Succeeded) << r.error;
    EXPECT_EQ(r.stdout_data, "saxpy: " + std::to_string(n) + " floats -> r.f32\n");
    const auto out = read_floats("r.f32");
    ASSERT_EQ(out.size(), n);
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_NEAR(out[i], std::fma(-2.5f, x[i], y[i]), 4e-7f) << "n=" << n << " i=" << i;
  }
}

TEST_F(GpuExecutorTest, AddWithGeneratedInputsPrintsValues) {
  auto p = make_pool(executor());
  auto h = p.submit(gpu_task("add", {"a=ramp:0", "b=fill:0.5", "n=5"}));
  ASSERT_TRUE(h);
  const ExecutionResult& r = h->wait();
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  EXPECT_EQ(r.stdout_data, "0.5\n1.5\n2.5\n3.5\n4.5\n");
}

TEST_F(GpuExecutorTest, SgemmSmallMatchesCpu) {
  auto p = make_pool(executor());
  const std::size_t m = 7, n = 9, k = 5;
  const auto a = random_floats(m * k, 3), b = random_floats(k * n, 4), c = random_floats(m * n, 5);
  write_floats("a.f32", a);
  write_floats("b.f32", b);
  write_floats("c.f32", c);
  auto h = p.submit(gpu_task("sgemm", {"a=a.f32", "b=b.f32", "c=c.f32", "m=7", "n=9", "k=5",
                                       "alpha=1.5", "beta=-1", "out=out.f32"}));
  ASSERT_TRUE(h);
  const ExecutionResult& r = h->wait();
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  const auto out = read_floats("out.f32");
  ASSERT_EQ(out.size(), m * n);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double ref = 0;
      for (std::size_t q = 0; q < k; ++q) ref += static_cast<double>(a[i * k + q]) * b[q * n + j];
      ref = 1.5 * ref - c[i * n + j];
      ASSERT_NEAR(out[i * n + j], ref, 1e-5) << i << "," << j;
    }
}

TEST_F(GpuExecutorTest, ReductionsAndSoftmax) {
  auto p = make_pool(executor());
  const auto x = random_floats(3001, 6);
  write_floats("x.f32", x);
  auto sum = p.submit(gpu_task("sum", {"x=ramp:1", "n=1000"}));
  auto max = p.submit(gpu_task("max", {"x=x.f32"}));
  auto soft = p.submit(gpu_task("softmax", {"x=ramp:0", "rows=2", "cols=3"}));
  ASSERT_TRUE(sum && max && soft);
  ASSERT_EQ(sum->wait().status, Status::Succeeded) << sum->wait().error;
  EXPECT_EQ(sum->wait().stdout_data, "500500\n");  // exact: every partial sum is below 2^24
  ASSERT_EQ(max->wait().status, Status::Succeeded) << max->wait().error;
  EXPECT_EQ(std::stof(max->wait().stdout_data), *std::max_element(x.begin(), x.end()));
  ASSERT_EQ(soft->wait().status, Status::Succeeded) << soft->wait().error;
  std::istringstream in(soft->wait().stdout_data);
  std::vector<float> s;
  for (float v; in >> v;) s.push_back(v);
  ASSERT_EQ(s.size(), 6u);
  const double e0 = 1, e1 = std::exp(1.0), e2 = std::exp(2.0);
  for (int row = 0; row < 2; ++row) {  // each row is 0,1,2 after max subtraction shifts
    EXPECT_NEAR(s[row * 3 + 0], e0 / (e0 + e1 + e2), 1e-6);
    EXPECT_NEAR(s[row * 3 + 2], e2 / (e0 + e1 + e2), 1e-6);
  }
}

TEST_F(GpuExecutorTest, UserSpirvKernelFromAFile) {
  auto p = make_pool(executor());
  // y = x * SCALE + offset; SCALE is spec constant 1 (id 0 is the workgroup size).
  auto h =
      p.submit(gpu_task(shader("scale_offset.spv"), {"groups=2", "spec=64,f:3", "push=100,f:0.5",
                                                     "b0=ramp:0", "b1=zeros:100", "n=100"}));
  ASSERT_TRUE(h);
  const ExecutionResult& r = h->wait();
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  std::istringstream in(r.stdout_data);
  std::vector<float> y;
  for (float v; in >> v;) y.push_back(v);
  ASSERT_EQ(y.size(), 100u);
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], static_cast<float>(i) * 3 + 0.5f);
}

TEST_F(GpuExecutorTest, BadTasksFailClearlyAndThePoolGoesOn) {
  GpuExecutor::Options o;
  o.max_buffer_bytes = 1 << 20;
  auto p = make_pool(executor(o));
  write_floats("nine.f32", std::vector<float>(9, 1.0f));
  {
    std::ofstream(dir_ / "odd.f32") << "abcde";  // 5 bytes: not whole floats
    std::ofstream(dir_ / "garbage.spv") << "this is not SPIR-V at all";
    std::ofstream(dir_ / "empty.f32");  // 0 floats
    fs::create_directories(dir_ / "taken" / "sub");
  }
  struct Case {
    Task task;
    std::string expect;  // in the error message
  };
  std::vector<Case> cases = {
      {gpu_task("saxpi", {"x=fill:1", "y=fill:1", "n=4"}), "unknown GPU kernel 'saxpi'"},
      {gpu_task("saxpy", {"x=missing.f32", "y=fill:1"}), "missing.f32: no such file"},
      {gpu_task("saxpy", {"x=nine.f32", "y=fill:1", "n=10"}),
       "holds 9 floats, but the kernel needs 10"},
      {gpu_task("add", {"a=odd.f32", "b=fill:0"}), "not a whole number of 4-byte floats"},
      {gpu_task("sum", {"x=fill:1", "n=4000000"}), "over the executor's limit"},
      {gpu_task("saxpy", {"x=fill:1"}), "y= is required"},
      {gpu_task("saxpy", {"x=fill:1", "y=fill:1", "n=4", "bogus=1"}), "unknown argument 'bogus='"},
      {gpu_task("saxpy", {"x=fill:1", "y=fill:1", "n=four"}), "n=four: expected an integer"},
      {gpu_task("sgemm", {"a=fill:1", "b=fill:1", "m=2", "n=2", "k=2", "beta=1"}), "give c="},
      {gpu_task("sum", {"x=fill:1"}), "n= is required"},
      {gpu_task(shader("scale_offset.spv"),
                {"groups=4294967295", "spec=64,f:1", "push=1,f:0", "b0=zeros:4", "b1=zeros:4"}),
       "over the device limit"},
      {gpu_task("garbage.spv", {"groups=1", "b0=zeros:4"}), "SPIR-V"},
      {gpu_task("add", {"a=fill:1", "b=fill:2", "n=3", "out=no/such/dir/o.f32"}),
       "does the directory exist?"},
      {gpu_task("max", {"x=fill:1", "n=0"}), "the input is empty (max of 0 elements)"},
      {gpu_task(shader("scale_offset.spv"),
                {"groups=1", "spec=64,f:1", "push=1,f:0", "b0=fill:1", "b1=zeros:4"}),
       "b0= is fill:/ramp:, so n= must give its size"},
      {gpu_task(shader("scale_offset.spv"),
                {"groups=1", "spec=64,f:1", "push=1,f:0", "b0=empty.f32", "b1=zeros:4"}),
       "buffer b0= is empty"},
      // The output path is a directory: the rename fails and the temporary file goes.
      {gpu_task("add", {"a=fill:1", "b=fill:2", "n=3", "out=taken"}), "taken: rename failed"},
  };
  std::vector<pool::TaskHandle> handles;
  for (auto& c : cases) handles.push_back(*p.submit(c.task));
  auto good = p.submit(gpu_task("sum", {"x=nine.f32"}));
  ASSERT_TRUE(good);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const ExecutionResult& r = handles[i].wait();
    EXPECT_EQ(r.status, Status::Failed) << i << ": " << r.error;
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.error.find(cases[i].expect), std::string::npos)
        << "case " << i << ": '" << r.error << "' lacks '" << cases[i].expect << "'";
  }
  ASSERT_EQ(good->wait().status, Status::Succeeded) << good->wait().error;
  EXPECT_EQ(good->wait().stdout_data, "9\n");
  EXPECT_FALSE(fs::exists(dir_ / "taken.tmp")) << "a failed rename leaves no temporary file";
  EXPECT_TRUE(fs::is_directory(dir_ / "taken" / "sub")) << "nor touches what was there";
}

// Without out=, at most 4096 values are printed, and the text says how to get the rest.
TEST_F(GpuExecutorTest, LongOutputIsCutAndSaysHowToGetItAll) {
  auto p = make_pool(executor());
  auto h = p.submit(gpu_task("add", {"a=ramp:0", "b=fill:0", "n=5000"}));
  ASSERT_TRUE(h);
  const ExecutionResult& r = h->wait();
  ASSERT_EQ(r.status, Status::Succeeded) << r.error;
  std::istringstream in(r.stdout_data);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4097u);
  EXPECT_EQ(lines[0], "0");
  EXPECT_EQ(lines[4095], "4095");
  EXPECT_EQ(lines[4096], "... 904 more values (give out=FILE to get them all)");
}

// Several workers submitting at once on one device: every result must still be its own.
TEST_F(GpuExecutorTest, ConcurrentTasksEachGetTheirOwnResult) {
  GpuExecutor::Options three;
  three.slots = 3;
  auto p = make_pool(executor(three));
  std::vector<pool::TaskHandle> sums, saxpys;
  for (int i = 1; i <= 24; ++i) {
    // sum of i, i+1, ..., i+999 = 1000 i + 499500 (exact in float)
    sums.push_back(*p.submit(gpu_task("sum", {"x=ramp:" + std::to_string(i), "n=1000"})));
    saxpys.push_back(*p.submit(gpu_task("saxpy", {"x=fill:1", "y=fill:" + std::to_string(i),
                                                  "alpha=2", "n=" + std::to_string(i)})));
  }
  for (int i = 1; i <= 24; ++i) {
    const ExecutionResult& s = sums[i - 1].wait();
    ASSERT_EQ(s.status, Status::Succeeded) << s.error;
    EXPECT_EQ(s.stdout_data, std::to_string(1000 * i + 499500) + "\n");
    const ExecutionResult& y = saxpys[i - 1].wait();
    ASSERT_EQ(y.status, Status::Succeeded) << y.error;
    std::string expect;
    for (int k = 0; k < i; ++k) expect += std::to_string(2 + i) + "\n";
    EXPECT_EQ(y.stdout_data, expect);
  }
}

TEST_F(GpuExecutorTest, NotAGpuTaskIsRejectedAtStart) {
  auto exec = executor();
  auto t = Task::binary("/bin/true").build();
  ASSERT_TRUE(t);
  auto r = exec->start(*t, {}, [](ExecutionResult) { ADD_FAILURE() << "must not complete"; });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  // Slots 1..64: each end accepted, one past each refused by the executor itself, by name.
  for (const std::size_t slots : {std::size_t{0}, std::size_t{65}}) {
    GpuExecutor::Options bad;
    bad.slots = slots;
    auto e = GpuExecutor::create(*env().device, bad);
    ASSERT_FALSE(e) << slots;
    EXPECT_EQ(e.error().code(), ErrorCode::InvalidArgument);
    EXPECT_NE(e.error().message().find("GpuExecutor slots must be 1..64"), std::string::npos)
        << e.error().message();
  }
  GpuExecutor::Options most;
  most.slots = 64;
  EXPECT_TRUE(GpuExecutor::create(*env().device, most));
  GpuExecutor::Options no_time;
  no_time.default_timeout = std::chrono::seconds(0);
  auto z = GpuExecutor::create(*env().device, no_time);
  ASSERT_FALSE(z);
  EXPECT_EQ(z.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(z.error().message().find("default_timeout must be positive"), std::string::npos)
      << z.error().message();
  EXPECT_EQ(exec->device_info().name, env().device->info().name);
  EXPECT_EQ(exec->device_info().index, env().device->info().index);
}

TEST_F(GpuExecutorTest, RegistersAsGpuWithTypedSettings) {
  executor::Registry registry;
  ASSERT_TRUE(register_gpu(registry));
  EXPECT_FALSE(register_gpu(registry));  // AlreadyExists
  executor::BackendOptions bad;
  bad.set("timeout", "soon");
  auto e = registry.create(task::Backend::Gpu, bad);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("backend 'gpu'"), std::string::npos);
  EXPECT_NE(e.error().message().find("timeout='soon'"), std::string::npos) << e.error().message();
  executor::BackendOptions good;
  good.slots = 3;
  good.set("timeout", "5s").set("max_buffer", "64M");
  good.set("device", std::to_string(env().device->info().index));
  auto made = registry.create(task::Backend::Gpu, good);
  ASSERT_TRUE(made) << made.error().message();
  EXPECT_EQ((*made)->backend(), task::Backend::Gpu);
  EXPECT_EQ((*made)->slots(), 3u);
  auto* gpu = dynamic_cast<GpuExecutor*>(made->get());
  ASSERT_NE(gpu, nullptr);
  EXPECT_EQ(gpu->device_info().index, env().device->info().index) << "device= picks it";
  (*made)->shutdown();
  executor::BackendOptions far;
  far.set("device", "4096");
  auto missing = registry.create(task::Backend::Gpu, far);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("GPU device index 4096 does not exist"),
            std::string::npos)
      << missing.error().message();
}

// Workgroups of spin.comp that keep the device busy for about `target`: grows the count until
// one run takes long enough to time (the first runs are dominated by pipeline creation). Each
// invocation loops a fixed 60000 times: llvmpipe caps a loop at 65535 iterations.
template <typename MakeTask>
std::uint32_t calibrate_spin(pool::Pool& p, MakeTask make, std::chrono::nanoseconds target) {
  constexpr double kMaxGroups = 65535;
  double groups = 1;
  for (;;) {
    auto h = p.submit(make(static_cast<std::uint32_t>(groups), "probe"));
    const ExecutionResult& r = h->wait();
    EXPECT_EQ(r.status, Status::Succeeded) << r.error;
    if (!r.ok()) return 0;
    const double secs = std::chrono::duration<double>(r.wall).count();
    const double want = std::chrono::duration<double>(target).count();
    if (secs >= 0.1) return static_cast<std::uint32_t>(std::min(kMaxGroups, groups * want / secs));
    if (groups >= kMaxGroups) return static_cast<std::uint32_t>(kMaxGroups);
    groups = std::min(kMaxGroups, groups * 8);
  }
}

TEST_F(GpuExecutorTest, CancelAndTimeoutReportPromptlyWhileTheKernelRuns) {
  GpuExecutor::Options one;
  one.slots = 1;
  auto exec = executor(one);
  auto p = make_pool(exec);
  const std::string spin = shader("spin.spv");
  auto spin_args = [&](std::uint32_t groups) {
    return std::vector<std::string>{"groups=" + std::to_string(groups), "b0=zeros:64",
                                    "push=u:60000"};
  };
  auto spin_task = [&](std::uint32_t groups, const std::string& name) {
    return gpu_task(spin, spin_args(groups), name);
  };
  const std::uint32_t groups = calibrate_spin(p, spin_task, 2500ms);
  ASSERT_GT(groups, 0u);
  if (groups >= 65535) GTEST_SKIP() << "device too fast to keep busy with spin.comp";

  // Cancel: reported long before the kernel could have finished.
  auto running = p.submit(spin_task(groups, "cancel-me"));
  auto queued = p.submit(spin_task(groups, "queued"));  // slots = 1: waits behind it
  ASSERT_TRUE(running && queued);
  std::this_thread::sleep_for(100ms);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(p.cancel(running->id()));
  EXPECT_TRUE(p.cancel(queued->id()));
  EXPECT_EQ(running->wait().status, Status::Cancelled) << running->wait().error;
  EXPECT_EQ(queued->wait().status, Status::Cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);  // the kernel runs ~2.5 s

  // Timeout: the task's own limit.
  auto timed = Task::binary(spin)
                   .backend(Backend::Gpu)
                   .args(spin_args(groups))
                   .timeout(200ms)
                   .max_retries(0)
                   .build();
  ASSERT_TRUE(timed);
  auto th = p.submit(*timed);
  ASSERT_TRUE(th);
  EXPECT_EQ(th->wait().status, Status::TimedOut) << th->wait().error;
  EXPECT_LT(th->wait().wall, 1s);

  // The executor still works after all that.
  auto after = p.submit(gpu_task("sum", {"x=fill:2", "n=10"}));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->wait().stdout_data, "20\n") << after->wait().error;
}

}  // namespace
}  // namespace pepita::gpu
