// Staged files (issue 24, protocol 5): a remote task's declared inputs reach its worker
// content-addressed (fetched in chunks, verified, deduplicated, cached under a cap with LRU
// eviction) and its declared outputs come back into the driver's directory atomically; bad paths
// and bad chunks are clear errors; a 1 GiB input survives a connection cut mid-transfer.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/temp_dir.hpp"
#include "pepita/core/sha256.hpp"
#include "pepita/pool/pool.hpp"
#include "pepita/transport/remote.hpp"
#include "pepita/transport/remote_executor.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

void write_file(const std::string& path, const std::string& data) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << data;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

struct StagingWorker {
  std::string cache_dir;
  std::unique_ptr<Worker> worker;
};

// A loopback worker with its blob store in `cache_dir`, no sandbox and no log.
WorkerOptions staging_worker_options(const Key& key, const std::string& cache_dir) {
  WorkerOptions o;
  o.listen = "127.0.0.1:0";
  o.key = key;
  o.slots = 2;
  o.heartbeat_interval = 100ms;
  o.dead_after = 5000ms;
  o.cache_dir = cache_dir;
  o.sandbox = task::SandboxPolicy::none();
  o.log = [](std::string_view) {};
  return o;
}

StagingWorker start_staging_worker(const Key& key, const std::string& cache_dir,
                                   std::uint64_t cache_size = 10ull << 30,
                                   std::function<void(std::string_view, std::string&)> hook = {},
                                   test::LogLines* log = nullptr) {
  WorkerOptions o = staging_worker_options(key, cache_dir);
  o.cache_size = cache_size;
  o.output_chunk_hook = std::move(hook);
  if (log != nullptr) o.log = log->sink();
  auto w = Worker::start(std::move(o));
  EXPECT_TRUE(w) << (w ? "" : w.error().to_string());
  return {cache_dir, w ? std::move(*w) : nullptr};
}

RemoteExecutorOptions options_for(const Key& key, const std::string& worker) {
  RemoteExecutorOptions o;
  o.remote = test::fast_options(key, {worker});
  o.remote.dead_after = 5000ms;
  return o;
}

task::Task staged(const std::string& cwd, const std::string& script,
                  std::vector<std::string> inputs, std::vector<std::string> outputs = {}) {
  return task::Task::binary("/bin/sh")
      .args({"-c", script})
      .cwd(cwd)
      .inputs(std::move(inputs))
      .outputs(std::move(outputs))
      .backend(task::Backend::Remote)
      .build()
      .value();
}

std::vector<executor::ExecutionResult> run_all(std::shared_ptr<RemoteExecutor> remote,
                                               const std::vector<task::Task>& tasks) {
  auto pool = pool::Pool::builder().executor(std::move(remote)).build().value();
  EXPECT_TRUE(pool.submit_all(tasks));
  auto results = pool.wait_all();
  pool.shutdown();
  return results;
}

TEST(Staging, InputsAreStagedIntoTheTasksDirectoryAndRead) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  write_file(driver.file("data/a.txt"), "alpha\n");
  write_file(driver.file("b.txt"), "beta\n");
  auto w = start_staging_worker(kf.key, cache.path());
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  auto results =
      run_all(*remote, {staged(driver.path(), "cat data/a.txt b.txt", {"data/a.txt", "b.txt"})});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  EXPECT_EQ(results[0].stdout_data, "alpha\nbeta\n");
  EXPECT_EQ(results[0].input_hashes.at("data/a.txt"), sha256_hex("alpha\n"));
  EXPECT_EQ(results[0].input_hashes.at("b.txt"), sha256_hex("beta\n"));
  EXPECT_EQ(results[0].host, w.worker->endpoint().to_string());
  // Both blobs are in the store, read-only, under their hashes.
  const std::string blob = cache.path() + "/blobs/" + sha256_hex("alpha\n");
  ASSERT_TRUE(fs::exists(blob));
  EXPECT_EQ(fs::status(blob).permissions() & fs::perms::owner_write, fs::perms::none);
  EXPECT_EQ(w.worker->stats().blobs_fetched, 2u);
}

TEST(Staging, SameContentIsTransferredOnce) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  const std::string content(3 * kStageChunk + 123, 'x');  // several chunks
  write_file(driver.file("one.bin"), content);
  write_file(driver.file("two.bin"), content);
  auto w = start_staging_worker(kf.key, cache.path());
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  // One task names the content twice; a second task names it again.
  auto results = run_all(
      *remote, {staged(driver.path(), "cat one.bin two.bin | wc -c", {"one.bin", "two.bin"}),
                staged(driver.path(), "wc -c < one.bin", {"one.bin"})});
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  EXPECT_EQ(results[1].status, executor::Status::Succeeded) << results[1].error;
  EXPECT_EQ(std::stoull(results[0].stdout_data), 2 * content.size());
  EXPECT_EQ(std::stoull(results[1].stdout_data), content.size());
  const WorkerStats s = w.worker->stats();
  EXPECT_EQ(s.blobs_fetched, 1u);
  EXPECT_EQ(s.bytes_fetched, content.size());
}

TEST(Staging, StoreEvictsLeastRecentlyUsedPastItsCap) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  const std::size_t mib = 1 << 20;
  for (char c : std::string("abcd"))
    write_file(driver.file(std::string(1, c)), std::string(mib, c));
  // Room for three 1 MiB blobs.
  auto w = start_staging_worker(kf.key, cache.path(), 3 * mib + mib / 2);
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  auto pool = pool::Pool::builder().executor(*remote).build().value();
  // a, b, c, then a again (a is now more recent than b), then d: b is the least recently used.
  for (std::string name : {"a", "b", "c", "a", "d"}) {
    ASSERT_TRUE(pool.submit(staged(driver.path(), "wc -c < " + name, {name})));
    auto r = pool.wait_all();
    ASSERT_EQ(r.size(), 1u);
    ASSERT_EQ(r[0].status, executor::Status::Succeeded) << r[0].error;
  }
  pool.shutdown();
  const auto blob = [&](char c) {
    return cache.path() + "/blobs/" + sha256_hex(std::string(mib, c));
  };
  EXPECT_TRUE(fs::exists(blob('a')));
  EXPECT_FALSE(fs::exists(blob('b'))) << "b was the least recently used";
  EXPECT_TRUE(fs::exists(blob('c')));
  EXPECT_TRUE(fs::exists(blob('d')));
  EXPECT_EQ(w.worker->stats().blobs_evicted, 1u);
  EXPECT_EQ(w.worker->stats().bytes_fetched, 4 * mib);  // a's second use came from the store
}

TEST(Staging, OutputsComeBackIntoTheDriversDirectory) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  write_file(driver.file("in.txt"), "one two three\n");
  auto w = start_staging_worker(kf.key, cache.path());
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  const std::string big(2 * kStageChunk + 7, 'z');
  write_file(driver.file("big.src"), big);
  auto results = run_all(
      *remote, {staged(driver.path(),
                       "mkdir -p out && wc -w < in.txt > out/count.txt && cat big.src > big.out "
                       "&& : > empty.out",
                       {"in.txt", "big.src"}, {"out/count.txt", "big.out", "empty.out"})});
  ASSERT_EQ(results.size(), 1u);
  ASSERT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  EXPECT_EQ(read_file(driver.file("out/count.txt")), "3\n");
  EXPECT_EQ(read_file(driver.file("big.out")), big);
  EXPECT_TRUE(fs::exists(driver.file("empty.out")));
  EXPECT_EQ(fs::file_size(driver.file("empty.out")), 0u);
  EXPECT_FALSE(fs::exists(driver.file("out/count.txt.pepita-part")));
  EXPECT_EQ(results[0].output_hashes.at("out/count.txt"), sha256_hex("3\n"));
  EXPECT_EQ(results[0].output_hashes.at("big.out"), sha256_hex(big));
  EXPECT_EQ(results[0].output_hashes.at("empty.out"), sha256_hex(""));
}

TEST(Staging, InputsAndOutputsCrossATlsConnectionAsBulkFrames) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  const std::string big(kStageChunk + kStageChunk / 2 + 3, 'q');  // two chunks each way
  write_file(driver.file("big.src"), big);
  WorkerOptions wo = staging_worker_options(kf.key, cache.path());
  wo.slots = 1;
  wo.connection.tls = true;
  auto w = Worker::start(std::move(wo));
  ASSERT_TRUE(w) << w.error().to_string();
  auto o = options_for(kf.key, (*w)->endpoint().to_string());
  o.remote.connection.tls = true;
  auto remote = RemoteExecutor::create(std::move(o));
  ASSERT_TRUE(remote);
  auto results =
      run_all(*remote, {staged(driver.path(), "cat big.src > big.out", {"big.src"}, {"big.out"})});
  ASSERT_EQ(results.size(), 1u);
  ASSERT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  EXPECT_EQ(read_file(driver.file("big.out")), big);
  EXPECT_EQ(results[0].output_hashes.at("big.out"), sha256_hex(big));
  EXPECT_EQ((*w)->stats().blobs_fetched, 1u);
}

TEST(Staging, MissingOutputFailsTheTaskNamingIt) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  auto w = start_staging_worker(kf.key, cache.path());
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  auto results = run_all(
      *remote, {staged(driver.path(), "echo made > made.txt", {}, {"made.txt", "never.txt"})});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_NE(results[0].status, executor::Status::Succeeded);
  EXPECT_NE(results[0].error.find("declared output 'never.txt' was not produced"),
            std::string::npos)
      << results[0].error;
  EXPECT_FALSE(fs::exists(driver.file("made.txt")));  // a failed task leaves no outputs
}

TEST(Staging, CorruptedOutputFailsAndLeavesNoFileAtItsPath) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  // The worker flips a byte of every chunk after hashing it: what arrives does not match.
  auto w = start_staging_worker(kf.key, cache.path(), 10ull << 30,
                                [](std::string_view, std::string& chunk) {
                                  if (!chunk.empty()) chunk[0] ^= 0x20;
                                });
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  auto results = run_all(*remote, {staged(driver.path(), "echo result > r.txt", {}, {"r.txt"})});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, executor::Status::Failed);
  EXPECT_NE(results[0].error.find("output 'r.txt'"), std::string::npos) << results[0].error;
  EXPECT_NE(results[0].error.find("does not match its SHA-256"), std::string::npos)
      << results[0].error;
  EXPECT_FALSE(fs::exists(driver.file("r.txt")));
  EXPECT_FALSE(fs::exists(driver.file("r.txt.pepita-part")));
}

TEST(Staging, OutputLinkingOutsideTheTasksDirectoryFailsTheTask) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  auto w = start_staging_worker(kf.key, cache.path());
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  auto results =
      run_all(*remote, {staged(driver.path(), "ln -s /etc/hostname out.txt", {}, {"out.txt"})});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, executor::Status::Failed);
  EXPECT_NE(results[0].error.find("'out.txt' is a link to outside the task's directory"),
            std::string::npos)
      << results[0].error;
  EXPECT_FALSE(fs::exists(driver.file("out.txt")));
}

TEST(Staging, InputWhoseBytesDoNotMatchItsHashIsNotStored) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  write_file(driver.file("changed.txt"), "what the file holds now");
  auto w = start_staging_worker(kf.key, cache.path());
  ASSERT_TRUE(w.worker);
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w.worker->endpoint().to_string()}))
               .value();
  // The driver hashed the file before it changed: same size, other bytes.
  const std::string before = "what the file held before";
  ASSERT_EQ(before.size(), std::string("what the file holds now").size() + 2);
  write_file(driver.file("changed.txt"), "what the file holds now!!");
  RemoteTask t{.id = 1};
  t.spec.path = "/bin/cat";
  t.spec.args = {"changed.txt"};
  t.spec.inputs = {
      StagedFile{.path = "changed.txt", .size = before.size(), .sha256 = sha256(as_bytes(before))}};
  t.input_sources = {driver.file("changed.txt")};
  auto out = d->run(std::move(t)).value();
  EXPECT_EQ(out.result.status, TaskStatus::SpawnError);
  EXPECT_NE(out.result.error.find("do not hash to its SHA-256"), std::string::npos)
      << out.result.error;
  EXPECT_FALSE(fs::exists(cache.path() + "/blobs/" + sha256_hex(before)));
  EXPECT_FALSE(fs::exists(cache.path() + "/blobs/" + sha256_hex(before) + ".part"));
  EXPECT_EQ(w.worker->stats().blobs_fetched, 0u);
}

TEST(Staging, AbsoluteOrEscapingPathsAreRefused) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  write_file(driver.file("ok.txt"), "ok");
  auto w = start_staging_worker(kf.key, cache.path());
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  // The driver refuses an absolute input before anything is sent.
  auto abs = staged(driver.path(), "true", {driver.file("ok.txt")});
  auto started = (*remote)->start(abs, {}, [](executor::ExecutionResult) {});
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(started.error().message().find("is absolute; declare it relative"), std::string::npos)
      << started.error().message();
  auto up = staged(driver.path(), "true", {}, {"../escape.txt"});
  started = (*remote)->start(up, {}, [](executor::ExecutionResult) {});
  ASSERT_FALSE(started);
  EXPECT_NE(started.error().message().find("'..'"), std::string::npos);

  // A Submit from the wire naming such paths fails that task, and the worker goes on serving.
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w.worker->endpoint().to_string()}))
               .value();
  RemoteTask bad{.id = 1};
  bad.spec.path = "/bin/true";
  bad.spec.inputs = {StagedFile{.path = "../../etc/passwd", .size = 1}};
  bad.input_sources = {driver.file("ok.txt")};
  auto out = d->run(std::move(bad)).value();
  EXPECT_EQ(out.result.status, TaskStatus::SpawnError);
  EXPECT_NE(out.result.error.find("'..' component"), std::string::npos) << out.result.error;
  RemoteTask abs_out{.id = 2};
  abs_out.spec.path = "/bin/true";
  abs_out.spec.outputs = {"/tmp/x"};
  out = d->run(std::move(abs_out)).value();
  EXPECT_EQ(out.result.status, TaskStatus::SpawnError);
  EXPECT_NE(out.result.error.find("is absolute"), std::string::npos) << out.result.error;
  RemoteTask fine{.id = 3};
  fine.spec.path = "/bin/echo";
  fine.spec.args = {"still here"};
  out = d->run(std::move(fine)).value();
  EXPECT_EQ(out.result.status, TaskStatus::Succeeded);
  EXPECT_EQ(out.result.stdout_data, "still here\n");
}

TEST(Staging, ChunkForABlobNotAskedForEndsOnlyThatConnection) {
  test::KeyFile kf;
  pepita::test::TempDir cache("stage-cache");
  test::LogLines log;
  auto w = start_staging_worker(kf.key, cache.path(), 10ull << 30, {}, &log);
  ASSERT_TRUE(w.worker);
  {
    auto conn = Connection::connect(w.worker->endpoint(), kf.key, {}).value();
    auto reg = conn->receive(2000ms).value();
    ASSERT_TRUE(reg);
    ASSERT_EQ(reg->header.type, MessageType::Register);
    BlobChunkMsg junk{
        .sha256 = sha256(as_bytes("nobody asked")), .offset = 0, .size = 3, .data = "abc"};
    ASSERT_TRUE(conn->send(MessageType::BlobChunk, 0, encode(junk)));
    // The worker closes this connection...
    bool closed = false;
    for (int i = 0; i < 50 && !closed; ++i) {
      auto m = conn->receive(200ms);
      closed = !m;
    }
    EXPECT_TRUE(closed);
  }
  EXPECT_TRUE(log.contains("that this worker did not ask this driver for")) << log.all();
  // ...and serves the next driver.
  auto d = RemoteDispatcher::start(test::fast_options(kf.key, {w.worker->endpoint().to_string()}))
               .value();
  RemoteTask t{.id = 1};
  t.spec.path = "/bin/echo";
  t.spec.args = {"alive"};
  auto out = d->run(std::move(t)).value();
  EXPECT_EQ(out.result.status, TaskStatus::Succeeded);
}

TEST(Staging, WireDecodersRefuseChunksThatDoNotFit) {
  BlobChunkMsg past{.offset = 10, .size = 5};
  auto a = decode_blob_chunk(encode(past));
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code(), ErrorCode::Protocol);
  BlobChunkMsg over{.offset = 3, .size = 5, .data = "abcd"};
  EXPECT_FALSE(decode_blob_chunk(encode(over)));
  OutputChunkMsg out{.offset = 6, .size = 5};
  EXPECT_FALSE(decode_output_chunk(encode(out)));
  FetchBlobMsg huge{.offset = 0, .length = kMaxChunk + 1};
  EXPECT_FALSE(decode_fetch_blob(encode(huge)));
  FetchBlobMsg zero{.offset = 0, .length = 0};
  EXPECT_FALSE(decode_fetch_blob(encode(zero)));
  BlobChunkMsg fine{.offset = 1, .size = 5, .data = "bcde"};
  auto back = decode_blob_chunk(encode(fine));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, fine);
  SubmitMsg sub{.attempt = 3, .path = "/bin/sh"};
  sub.inputs = {StagedFile{.path = "in/a.txt", .size = 6, .sha256 = sha256(as_bytes("alpha\n"))}};
  sub.outputs = {"out/b.txt", "c"};
  auto sub_back = decode_submit(encode(sub));
  ASSERT_TRUE(sub_back) << sub_back.error().message();
  EXPECT_EQ(*sub_back, sub);
  ResultMsg res{.attempt = 3};
  res.outputs = {StagedFile{.path = "c", .size = 0, .sha256 = sha256(as_bytes(""))}};
  auto res_back = decode_result(encode(res));
  ASSERT_TRUE(res_back) << res_back.error().message();
  EXPECT_EQ(*res_back, res);
  EXPECT_TRUE(check_staged_path("a/b.txt", "input"));
  EXPECT_FALSE(check_staged_path("a/../b", "input"));
  EXPECT_FALSE(check_staged_path("/etc/passwd", "input"));
  EXPECT_FALSE(check_staged_path("", "input"));
  EXPECT_FALSE(check_staged_path("a//b", "input"));
  EXPECT_FALSE(check_staged_path("dir/", "output"));
}

// A TCP proxy from a loopback port to `upstream`: its first connection is cut once `cut_after`
// bytes went from the driver to the worker, and has the byte at each offset of `flips` (in that
// direction) inverted, as an attacker on the path would; later connections pass whole.
class CuttingProxy {
 public:
  CuttingProxy(std::uint16_t upstream, std::uint64_t cut_after,
               std::vector<std::uint64_t> flips = {})
      : upstream_(upstream), cut_after_(cut_after), flips_(std::move(flips)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    // SAFETY: sockaddr_in is a sockaddr for AF_INET sockets.
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listen_fd_, 8);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::jthread([this](std::stop_token st) { accept_loop(st); });
  }
  ~CuttingProxy() {
    acceptor_.request_stop();
    acceptor_.join();
    for (auto& t : pumps_) t.join();
    for (int fd : fds_) ::close(fd);
    ::close(listen_fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_.load(); }
  std::uint64_t bytes_to_worker() const { return to_worker_.load(); }
  bool cut() const { return cut_.load(); }
  int flipped() const { return flipped_.load(); }

 private:
  void accept_loop(std::stop_token st) {
    while (!st.stop_requested()) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int down = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (down < 0) continue;
      const int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(upstream_);
      // SAFETY: as above.
      if (::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(up);
        ::close(down);
        continue;
      }
      const bool first = connections_.fetch_add(1) == 0;
      fds_.push_back(down);
      fds_.push_back(up);
      pumps_.emplace_back([this, down, up, first] { pump(down, up, first, true); });
      pumps_.emplace_back([this, down, up] { pump(up, down, false, false); });
    }
  }
  void pump(int from, int to, bool cuts, bool counts) {
    std::vector<char> buf(256 << 10);
    std::uint64_t moved = 0;
    for (;;) {
      const ssize_t n = ::read(from, buf.data(), buf.size());
      if (n <= 0) break;
      if (counts) to_worker_.fetch_add(static_cast<std::uint64_t>(n));
      if (cuts) {
        for (std::uint64_t at : flips_) {
          if (at >= moved && at < moved + static_cast<std::uint64_t>(n)) {
            buf[at - moved] = static_cast<char>(~buf[at - moved]);
            flipped_.fetch_add(1);
          }
        }
      }
      ssize_t off = 0;
      while (off < n) {
        const ssize_t w =
            ::send(to, buf.data() + off, static_cast<std::size_t>(n - off), MSG_NOSIGNAL);
        if (w <= 0) break;
        off += w;
      }
      if (off < n) break;
      moved += static_cast<std::uint64_t>(n);
      if (cuts && moved >= cut_after_) {
        cut_.store(true);
        break;
      }
    }
    ::shutdown(from, SHUT_RDWR);
    ::shutdown(to, SHUT_RDWR);
  }

  std::uint16_t upstream_;
  std::uint64_t cut_after_;
  std::vector<std::uint64_t> flips_;
  std::atomic<int> flipped_{0};
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<int> connections_{0};
  std::atomic<std::uint64_t> to_worker_{0};
  std::atomic<bool> cut_{false};
  std::vector<int> fds_;  // accept thread only, closed after it stopped
  std::vector<std::thread> pumps_;
  std::jthread acceptor_;
};

// Bulk frames (protocol 6) do not MAC a chunk's bytes: the blob's SHA-256 proves them. A byte
// changed on the path is caught there, and the blob is fetched once more.
TEST(Staging, InputTamperedInTransitIsCaughtByItsHashAndFetchedAgain) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver");
  pepita::test::TempDir cache("stage-cache");
  constexpr std::uint64_t kMib = 1 << 20;
  std::string data(2 * kMib, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + i / 4096);
  write_file(driver.file("in.bin"), data);
  test::LogLines log;
  auto w = start_staging_worker(kf.key, cache.path(), 10ull << 30, {}, &log);
  ASSERT_TRUE(w.worker);
  // 1 MiB into the driver's stream is the middle of the first chunk's data.
  CuttingProxy proxy(w.worker->endpoint().port, ~std::uint64_t{0}, {kMib});
  auto remote = RemoteExecutor::create(options_for(kf.key, proxy.address()));
  ASSERT_TRUE(remote);
  auto results = run_all(*remote, {staged(driver.path(), "sha256sum < in.bin", {"in.bin"})});
  ASSERT_EQ(results.size(), 1u);
  ASSERT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  // What the task read is the driver's file, not the tampered bytes.
  EXPECT_EQ(results[0].stdout_data, sha256_hex(data) + "  -\n");
  EXPECT_EQ(proxy.flipped(), 1);
  EXPECT_EQ(proxy.connections(), 1);             // no frame check failed: the session stayed up
  EXPECT_GT(proxy.bytes_to_worker(), 4 * kMib);  // the blob crossed twice
  EXPECT_TRUE(log.contains("did not hash to its name")) << log.all();
}

TEST(Staging, InputTamperedOnEveryTransferFailsTheTaskNamingIt) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver");
  pepita::test::TempDir cache("stage-cache");
  constexpr std::uint64_t kMib = 1 << 20;
  write_file(driver.file("in.bin"), std::string(2 * kMib, 'z'));
  auto w = start_staging_worker(kf.key, cache.path());
  ASSERT_TRUE(w.worker);
  // The middle of the first transfer's data and of the second's (2 MiB and a frame later).
  CuttingProxy proxy(w.worker->endpoint().port, ~std::uint64_t{0}, {kMib, 3 * kMib});
  auto o = options_for(kf.key, proxy.address());
  auto remote = RemoteExecutor::create(std::move(o));
  ASSERT_TRUE(remote);
  auto results = run_all(*remote, {staged(driver.path(), "cat in.bin > /dev/null", {"in.bin"})});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_NE(results[0].status, executor::Status::Succeeded);
  EXPECT_EQ(proxy.flipped(), 2);
  EXPECT_NE(results[0].error.find("in.bin"), std::string::npos) << results[0].error;
  EXPECT_NE(results[0].error.find("do not hash to its SHA-256"), std::string::npos)
      << results[0].error;
  // Nothing entered the store under that name.
  std::size_t blobs = 0;
  for (const auto& e : std::filesystem::directory_iterator(cache.path() + "/blobs")) {
    if (e.path().extension() != ".part") ++blobs;
  }
  EXPECT_EQ(blobs, 0u);
}

// A partial input left by a dropped connection, cut at a length that is no multiple of the
// page size: the worker hashes that prefix again (through a mapping of the file), fetches the
// rest from an unaligned offset, and the whole verifies.
TEST(Staging, PartialInputOfAnUnalignedLengthIsResumedAndVerified) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  std::string data(2 * kStageChunk + 5000, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 13 + i / 4093);
  write_file(driver.file("in.bin"), data);
  constexpr std::size_t kHave = (1 << 20) + 4099;
  write_file(cache.path() + "/blobs/" + sha256_hex(data) + ".part", data.substr(0, kHave));
  test::LogLines log;
  auto w = start_staging_worker(kf.key, cache.path(), 10ull << 30, {}, &log);
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  auto results = run_all(*remote, {staged(driver.path(), "sha256sum < in.bin", {"in.bin"})});
  ASSERT_EQ(results.size(), 1u);
  ASSERT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  EXPECT_EQ(results[0].stdout_data, sha256_hex(data) + "  -\n");
  EXPECT_TRUE(log.contains("at byte " + std::to_string(kHave))) << log.all();
  EXPECT_EQ(w.worker->stats().bytes_fetched, data.size() - kHave);  // resumed, not restarted
}

// The same with a prefix that is not the blob's: the whole fails to verify, nothing is stored
// under the name, and the blob is fetched again from byte 0.
TEST(Staging, PartialInputWithWrongBytesIsFetchedAgainFromTheStart) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  const std::string data(kStageChunk + 777, 'd');
  write_file(driver.file("in.bin"), data);
  write_file(cache.path() + "/blobs/" + sha256_hex(data) + ".part", std::string(8195, 'X'));
  test::LogLines log;
  auto w = start_staging_worker(kf.key, cache.path(), 10ull << 30, {}, &log);
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  auto results = run_all(*remote, {staged(driver.path(), "sha256sum < in.bin", {"in.bin"})});
  ASSERT_EQ(results.size(), 1u);
  ASSERT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  EXPECT_EQ(results[0].stdout_data, sha256_hex(data) + "  -\n");
  EXPECT_TRUE(log.contains("did not hash to its name")) << log.all();
  EXPECT_EQ(w.worker->stats().bytes_fetched, data.size() - 8195 + data.size());
}

// A partial input already as long as the blob but with other bytes: the worker verifies it at
// once, it does not verify, and the task fails with a staging error naming the input (it is not
// run without its input, and does not wait); nothing enters the store under that name.
TEST(Staging, WholePartialInputWithWrongBytesFailsTheTaskNamingTheInput) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  const std::string data(kStageChunk + 777, 'd');
  write_file(driver.file("in.bin"), data);
  const std::string blob = cache.path() + "/blobs/" + sha256_hex(data);
  write_file(blob + ".part", std::string(data.size(), 'X'));
  auto w = start_staging_worker(kf.key, cache.path());
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  auto results = run_all(*remote, {staged(driver.path(), "sha256sum < in.bin", {"in.bin"})});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].status, executor::Status::LaunchFailed) << results[0].error;
  EXPECT_NE(
      results[0].error.find("input 'in.bin': partial blob " + sha256_hex(data) + " did not verify"),
      std::string::npos)
      << results[0].error;
  EXPECT_TRUE(results[0].stdout_data.empty()) << results[0].stdout_data;
  EXPECT_FALSE(fs::exists(blob));
  EXPECT_FALSE(fs::exists(blob + ".part"));
  EXPECT_EQ(w.worker->stats().bytes_fetched, 0u);
}

// A partial input already whole and right (the connection dropped after its last chunk) is
// verified and admitted at once: nothing is fetched, and it is in the store, read-only.
TEST(Staging, WholePartialInputWithTheRightBytesIsAdmittedWithoutAFetch) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  const std::string data(kStageChunk + 321, 'w');
  write_file(driver.file("in.bin"), data);
  const std::string blob = cache.path() + "/blobs/" + sha256_hex(data);
  write_file(blob + ".part", data);
  auto w = start_staging_worker(kf.key, cache.path());
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  auto results = run_all(*remote, {staged(driver.path(), "wc -c < in.bin", {"in.bin"})});
  ASSERT_EQ(results.size(), 1u);
  ASSERT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  EXPECT_EQ(std::stoull(results[0].stdout_data), data.size());
  EXPECT_EQ(w.worker->stats().bytes_fetched, 0u) << "a whole partial input was fetched again";
  EXPECT_EQ(w.worker->stats().blobs_fetched, 1u);
  EXPECT_FALSE(fs::exists(blob + ".part"));
  ASSERT_TRUE(fs::exists(blob));
  EXPECT_EQ(fs::status(blob).permissions() & fs::perms::owner_write, fs::perms::none);
}

// A partial input longer than the blob it names cannot be a prefix of it: it is cut to nothing
// and the blob fetched whole.
TEST(Staging, PartialInputLongerThanItsBlobIsFetchedAgainFromTheStart) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  const std::string data(kStageChunk / 2 + 11, 'e');
  write_file(driver.file("in.bin"), data);
  write_file(cache.path() + "/blobs/" + sha256_hex(data) + ".part",
             std::string(data.size() + 100, 'X'));
  auto w = start_staging_worker(kf.key, cache.path());
  ASSERT_TRUE(w.worker);
  auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
  ASSERT_TRUE(remote);
  auto results = run_all(*remote, {staged(driver.path(), "sha256sum < in.bin", {"in.bin"})});
  ASSERT_EQ(results.size(), 1u);
  ASSERT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  EXPECT_EQ(results[0].stdout_data, sha256_hex(data) + "  -\n");
  EXPECT_EQ(w.worker->stats().bytes_fetched, data.size()) << "not fetched from byte 0";
  EXPECT_EQ(read_file(cache.path() + "/blobs/" + sha256_hex(data)), data);
}

// A worker started on the cache an earlier one left serves the inputs already there without
// fetching them again, and removes the temporaries a crash can leave (other files stay).
TEST(Staging, ARestartedWorkerServesInputsFromTheStoreItLeft) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
  const std::string data(kStageChunk + 5, 'r');
  write_file(driver.file("in.bin"), data);
  const auto run_once = [&](std::uint64_t expect_fetched) {
    auto w = start_staging_worker(kf.key, cache.path());
    ASSERT_TRUE(w.worker);
    auto remote = RemoteExecutor::create(options_for(kf.key, w.worker->endpoint().to_string()));
    ASSERT_TRUE(remote);
    auto results = run_all(*remote, {staged(driver.path(), "wc -c < in.bin", {"in.bin"})});
    ASSERT_EQ(results.size(), 1u);
    ASSERT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
    EXPECT_EQ(std::stoull(results[0].stdout_data), data.size());
    EXPECT_EQ(w.worker->stats().blobs_fetched, expect_fetched);
  };
  run_once(1);
  const std::string blobs = cache.path() + "/blobs/";
  write_file(blobs + "left-by-a-crash.tmp", "half");
  write_file(blobs + "NOTES", "not a blob");
  write_file(blobs + std::string(64, 'z'), "a 64-character name that is not hex");
  run_once(0);
  EXPECT_FALSE(fs::exists(blobs + "left-by-a-crash.tmp"));
  EXPECT_TRUE(fs::exists(blobs + "NOTES"));
  EXPECT_TRUE(fs::exists(blobs + sha256_hex(data)));
}

// An input the driver cannot read (gone, or shorter than the size it declared): the worker's
// fetch is answered with the reason, and the task fails with it, naming the input; with and
// without TLS (the driver reads the file differently under each).
TEST(Staging, InputTheDriverCannotReadFailsTheTaskNamingIt) {
  for (const bool tls : {false, true}) {
    SCOPED_TRACE(tls ? "tls" : "plain");
    test::KeyFile kf;
    pepita::test::TempDir driver("stage-driver"), cache("stage-cache");
    WorkerOptions wo = staging_worker_options(kf.key, cache.path());
    wo.slots = 1;
    wo.connection.tls = tls;
    auto w = Worker::start(std::move(wo));
    ASSERT_TRUE(w) << w.error().to_string();
    auto o = test::fast_options(kf.key, {(*w)->endpoint().to_string()});
    o.connection.tls = tls;
    auto d = RemoteDispatcher::start(std::move(o)).value();
    const auto with_input = [&](std::uint64_t id, const std::string& content,
                                const std::string& source) {
      RemoteTask t{.id = id};
      t.spec.path = "/bin/cat";
      t.spec.args = {"in.bin"};
      t.spec.inputs = {
          {.path = "in.bin", .size = content.size(), .sha256 = sha256(as_bytes(content))}};
      t.input_sources = {source};
      return t;
    };
    const std::string gone = driver.file("gone.bin");
    auto missing = d->run(with_input(1, "the missing bytes", gone));
    ASSERT_TRUE(missing) << missing.error().to_string();
    EXPECT_EQ(missing->result.status, TaskStatus::SpawnError);
    EXPECT_NE(missing->result.error.find("input 'in.bin': the driver cannot send it: cannot open "
                                         "input " +
                                         gone + " on the driver"),
              std::string::npos)
        << missing->result.error;
    const std::string short_file = driver.file("short.bin");
    write_file(short_file, "only this");
    auto shrank = d->run(with_input(2, "only this and more", short_file));
    ASSERT_TRUE(shrank) << shrank.error().to_string();
    EXPECT_EQ(shrank->result.status, TaskStatus::SpawnError);
    EXPECT_NE(shrank->result.error.find("input " + short_file + " shrank on the driver"),
              std::string::npos)
        << shrank->result.error;
    EXPECT_NE(shrank->result.error.find("input 'in.bin'"), std::string::npos);
    EXPECT_EQ((*w)->stats().blobs_fetched, 0u);
    EXPECT_EQ((*w)->stats().tasks_run, 0u) << "a task ran without its input";
    // The refusals cost nothing else: an input the driver can read still arrives.
    write_file(driver.file("ok.bin"), "fine");
    auto ok = d->run(with_input(3, "fine", driver.file("ok.bin")));
    ASSERT_TRUE(ok) << ok.error().to_string();
    EXPECT_EQ(ok->result.status, TaskStatus::Succeeded) << ok->result.error;
    EXPECT_EQ(ok->result.stdout_data, "fine");
  }
}

std::uint64_t vm_hwm_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.starts_with("VmHWM:")) return std::stoull(line.substr(6));
  }
  return 0;
}

TEST(Staging, OneGibInputSurvivesAConnectionCutMidTransferInBoundedMemory) {
  test::KeyFile kf;
  pepita::test::TempDir driver("stage-driver");
  // 1 GiB; 128 MiB under the sanitizers (every byte is copied and SHA-256 hashed, and
  // ASan/TSan make that 5-15x slower: the full size would pass ctest's limit there).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr std::uint64_t kSize = 128ull << 20;
  constexpr std::uint64_t kMaxWorkerHwmKib = 512u * 1024;  // the sanitizer runtimes' own use
#else
  constexpr std::uint64_t kSize = 1ull << 30;
  constexpr std::uint64_t kMaxWorkerHwmKib = 256u * 1024;
#endif
  {
    std::ofstream f(driver.file("big.bin"), std::ios::binary);
    std::string block(1 << 20, '\0');
    for (std::uint64_t i = 0; i < kSize / block.size(); ++i) {
      std::fill(block.begin(), block.end(), static_cast<char>(i * 7 + 1));
      std::memcpy(block.data(), &i, sizeof i);
      f.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
    ASSERT_TRUE(f.good());
  }
  auto wp = test::WorkerProcess::spawn(kf.path, 1);
  ASSERT_TRUE(wp);
  CuttingProxy proxy(wp->port(), kSize / 1024 * 400);  // cut 40% of the way towards the worker
  auto o = options_for(kf.key, proxy.address());
  o.remote.dead_after = 20000ms;  // the loaded box hashes 1 GiB on both sides
  o.remote.suspect_after = 10000ms;
  auto remote = RemoteExecutor::create(std::move(o));
  ASSERT_TRUE(remote);
  auto results = run_all(*remote, {staged(driver.path(), "wc -c < big.bin", {"big.bin"})});
  ASSERT_EQ(results.size(), 1u);
  ASSERT_EQ(results[0].status, executor::Status::Succeeded) << results[0].error;
  EXPECT_EQ(results[0].stdout_data, std::to_string(kSize) + "\n");
  EXPECT_TRUE(proxy.cut());
  EXPECT_GE(proxy.connections(), 2);
  // Resumed, not restarted: about 1 GiB crossed in all (frames and MACs add a little).
  EXPECT_LT(proxy.bytes_to_worker(), kSize + kSize / 10) << proxy.bytes_to_worker();
  // The worker never held the blob in memory.
  const std::uint64_t hwm = vm_hwm_kib(wp->pid());
  std::fprintf(stderr, "staging: %d connections, %llu bytes to the worker, worker VmHWM %llu KiB\n",
               proxy.connections(), static_cast<unsigned long long>(proxy.bytes_to_worker()),
               static_cast<unsigned long long>(hwm));
  EXPECT_GT(hwm, 0u);
  EXPECT_LT(hwm, kMaxWorkerHwmKib) << "worker peak RSS " << hwm << " KiB";
}

}  // namespace
}  // namespace pepita::transport
