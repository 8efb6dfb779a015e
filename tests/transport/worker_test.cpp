// A real worker on loopback: tasks, blobs, timeouts, drain, and every kind of bad client —
// each must be cut off while the worker keeps serving well-behaved clients.
#include "pepita/transport/worker.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/temp_dir.hpp"
#include "pepita/transport/connection.hpp"
#include "pepita/transport/messages.hpp"
#include "pepita/transport/remote.hpp"
#include "test_support.hpp"

namespace pepita::transport {
namespace {

using namespace std::chrono_literals;
using test::fast_options;

RemoteTask process_task(std::uint64_t id, std::string path, std::vector<std::string> args) {
  RemoteTask t{.id = id};
  t.spec.kind = TaskKind::Process;
  t.spec.path = std::move(path);
  t.spec.args = std::move(args);
  return t;
}

// A bare TCP client for sending hostile bytes.
struct RawSocket {
  explicit RawSocket(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // SAFETY: sockaddr_in is a valid sockaddr of the given length.
    connected = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    timeval tv{.tv_sec = 5, .tv_usec = 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawSocket() { ::close(fd); }
  void send(ByteSpan b) { (void)::send(fd, b.data(), b.size(), MSG_NOSIGNAL); }
  // Reads until the worker closes; returns the bytes, or nullopt if it stayed open 5 s.
  std::optional<Bytes> read_until_closed() {
    Bytes all;
    std::byte chunk[4096];
    for (;;) {
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n == 0) return all;
      if (n < 0) return errno == ECONNRESET ? std::optional<Bytes>(all) : std::nullopt;
      all.insert(all.end(), chunk, chunk + n);
    }
  }
  Bytes read_frame() {  // one whole frame (handshake replies)
    Bytes buf;
    std::byte chunk[4096];
    for (;;) {
      auto d = decode_frame(buf);
      if (d && d->frame) {
        buf.resize(d->consumed);
        return buf;
      }
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return {};
      buf.insert(buf.end(), chunk, chunk + n);
    }
  }
  int fd = -1;
  bool connected = false;
};

// Performs the client handshake by hand over a RawSocket, returning the session.
std::optional<Session> raw_handshake(RawSocket& s, const Key& key) {
  auto [client, hello] = ClientHandshake::start(key, "raw").value();
  Bytes w;
  if (!encode_frame({.type = MessageType::Hello}, hello, w)) return std::nullopt;
  s.send(w);
  Bytes ch = s.read_frame();
  auto d = decode_frame(ch);
  if (!d || !d->frame) return std::nullopt;
  auto r = client.on_challenge(d->frame->payload);
  if (!r) return std::nullopt;
  w.clear();
  if (!encode_frame({.type = MessageType::Auth, .sequence = 1}, r->first, w)) return std::nullopt;
  s.send(w);
  Bytes ok = s.read_frame();   // AuthOk
  Bytes reg = s.read_frame();  // Register
  if (ok.empty() || reg.empty()) return std::nullopt;
  return std::move(r->second);
}

// The worker still serves an honest client.
void expect_still_serving(Worker& w, const Key& key) {
  auto d = RemoteDispatcher::start(fast_options(key, {w.endpoint().to_string()})).value();
  RemoteTask t{.id = 1};
  t.spec.kind = TaskKind::Function;
  t.spec.path = "echo";
  t.spec.stdin_data = "still here";
  auto out = d->run(std::move(t));
  ASSERT_TRUE(out);
  EXPECT_EQ(out->result.status, TaskStatus::Succeeded);
  EXPECT_EQ(out->result.stdout_data, "still here");
}

// TMPDIR pointed at a fresh directory for one test, put back after it.
class TmpdirIn {
 public:
  TmpdirIn() {
    if (const char* old = std::getenv("TMPDIR")) old_ = old;
    ::setenv("TMPDIR", dir_.path().c_str(), 1);
  }
  ~TmpdirIn() {
    if (old_) {
      ::setenv("TMPDIR", old_->c_str(), 1);
    } else {
      ::unsetenv("TMPDIR");
    }
  }
  TmpdirIn(const TmpdirIn&) = delete;
  TmpdirIn& operator=(const TmpdirIn&) = delete;
  /// The names in the directory, sorted.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  const std::string& path() const { return dir_.path(); }

 private:
  pepita::test::TempDir dir_{"worker-tmpdir"};
  std::optional<std::string> old_;
};

WorkerOptions quiet_worker(const Key& key) {
  WorkerOptions o;
  o.key = key;
  o.slots = 1;
  o.sandbox = task::SandboxPolicy::none();
  o.log = [](std::string_view) {};
  return o;
}

// A worker on a port the kernel chose, or one that dials its driver, could never be found again
// by a later worker: the cache it makes by default is its own (each its own, also two in one
// process), under $TMPDIR, and it is gone with everything in it once the worker ends.
TEST(Worker, ADefaultCacheNoLaterWorkerCouldFindIsItsOwnAndRemovedWhenItEnds) {
  TmpdirIn tmp;
  ASSERT_FALSE(tmp.path().empty());
  const Key key = Key::generate().value();
  const std::string prefix = "pepita-worker-" + std::to_string(::getuid()) + "-";
  {
    WorkerOptions listening = quiet_worker(key);
    listening.listen = "127.0.0.1:0";
    WorkerOptions dial_a = quiet_worker(key);
    dial_a.connect_to = "127.0.0.1:1";  // nothing listens there: it keeps dialing
    dial_a.give_up_after = 60s;
    WorkerOptions dial_b = dial_a;
    auto l = Worker::start(std::move(listening));
    auto a = Worker::start(std::move(dial_a));
    auto b = Worker::start(std::move(dial_b));
    ASSERT_TRUE(l && a && b);
    const auto made = tmp.entries();
    ASSERT_EQ(made.size(), 3u) << "each worker makes a cache of its own";
    for (const auto& name : made) {
      EXPECT_TRUE(name.starts_with(prefix)) << name;
      EXPECT_TRUE(std::filesystem::is_directory(tmp.path() + "/" + name + "/blobs")) << name;
    }
    // Something staged in one of them goes with it.
    std::ofstream(tmp.path() + "/" + made[0] + "/blobs/extra") << "staged";
  }
  EXPECT_EQ(tmp.entries(), std::vector<std::string>{}) << "a worker left its own cache behind";
}

// A cache the user named, or the one of a worker listening on a port given (a restart there
// finds its staged inputs), is kept when the worker ends.
TEST(Worker, ACacheGivenOrKeyedByAFixedPortIsKeptWhenTheWorkerEnds) {
  TmpdirIn tmp;
  ASSERT_FALSE(tmp.path().empty());
  const Key key = Key::generate().value();
  std::uint16_t port = 0;
  {
    WorkerOptions o = quiet_worker(key);
    o.listen = "127.0.0.1:0";
    o.cache_dir = tmp.path() + "/named";
    auto w = Worker::start(std::move(o));
    ASSERT_TRUE(w) << w.error().to_string();
    port = (*w)->endpoint().port;
  }
  EXPECT_TRUE(std::filesystem::is_directory(tmp.path() + "/named/blobs"));
  {
    // The port the last worker had is free again; another process may take it first.
    WorkerOptions o = quiet_worker(key);
    o.listen = "127.0.0.1:" + std::to_string(port);
    auto w = Worker::start(std::move(o));
    if (!w) GTEST_SKIP() << "port " << port << " was taken meanwhile: " << w.error().to_string();
  }
  const std::string kept =
      "pepita-worker-" + std::to_string(::getuid()) + "-" + std::to_string(port);
  EXPECT_EQ(tmp.entries(), (std::vector<std::string>{"named", kept}));
}

TEST(Worker, RunsProcessAndFunctionTasks) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 2);
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(fast_options(kf.key, {w->endpoint().to_string()})).value();
  auto out = d->run(process_task(1, "/bin/echo", {"hello", "world"}));
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(out->result.status, TaskStatus::Succeeded);
  EXPECT_EQ(out->result.stdout_data, "hello world\n");
  EXPECT_EQ(out->attempts, 1u);
  auto fail_task = process_task(2, "/bin/sh", {"-c", "echo oops >&2; exit 3"});
  auto failed = d->run(std::move(fail_task)).value();
  EXPECT_EQ(failed.result.status, TaskStatus::Failed);
  EXPECT_EQ(failed.result.exit_code, 3);
  EXPECT_EQ(failed.result.stderr_data, "oops\n");
  auto missing = d->run(process_task(3, "/nonexistent/binary", {})).value();
  EXPECT_EQ(missing.result.status, TaskStatus::SpawnError);
  EXPECT_NE(missing.result.error.find("/nonexistent/binary"), std::string::npos);
  auto stdin_task = process_task(4, "cat", {});
  stdin_task.spec.stdin_data = "piped input";
  EXPECT_EQ(d->run(std::move(stdin_task)).value().result.stdout_data, "piped input");
  RemoteTask fn{.id = 5};
  fn.spec.kind = TaskKind::Function;
  fn.spec.path = "no-such-function";
  EXPECT_EQ(d->run(std::move(fn)).value().result.status, TaskStatus::SpawnError);
}

// Issue 19: a task cancelled while it waits on the worker for a free runner must still get a
// Result — the driver that leased it waits for one, and `pepita run` hung in wait_all() after a
// Ctrl-C that landed between the lease and the start.
TEST(Worker, AFunctionTaskThatFailsReportsFailedWithItsError) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(fast_options(kf.key, {w->endpoint().to_string()})).value();
  RemoteTask t = test::sleep_task(1, 0);
  t.spec.stdin_data = "soon";
  auto out = d->run(std::move(t));
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(out->result.status, TaskStatus::Failed);
  EXPECT_EQ(out->result.exit_code, 1);
  EXPECT_NE(out->result.error.find("sleep_ms wants digits"), std::string::npos)
      << out->result.error;
  EXPECT_TRUE(out->result.stdout_data.empty());
}

TEST(Worker, TaskCancelledWhileQueuedStillGetsAResult) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);  // one runner: the second task queues behind the first
  ASSERT_TRUE(w);
  ConnectionOptions copts;
  copts.name = "raw-driver";
  auto conn = Connection::connect(w->endpoint(), kf.key, copts);
  ASSERT_TRUE(conn) << conn.error().to_string();
  auto reg = (*conn)->receive(5s);
  ASSERT_TRUE(reg && *reg && (**reg).header.type == MessageType::Register);
  auto submit = [&](std::uint64_t id, std::vector<std::string> args) {
    SubmitMsg m;
    m.kind = TaskKind::Process;
    m.path = "/bin/sleep";
    m.args = std::move(args);
    m.attempt = 1;
    return (*conn)->send(MessageType::Submit, id, encode(m));
  };
  ASSERT_TRUE(submit(1, {"0.5"}));
  ASSERT_TRUE(submit(2, {"30"}));
  ASSERT_TRUE((*conn)->send(MessageType::Cancel, 2, {}));
  std::map<std::uint64_t, TaskStatus> results;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (results.size() < 2 && std::chrono::steady_clock::now() < until) {
    ASSERT_TRUE((*conn)->send(MessageType::Heartbeat, 0, encode(HeartbeatMsg{})));  // stay alive
    auto m = (*conn)->receive(250ms);
    ASSERT_TRUE(m) << m.error().to_string();
    if (!*m || (**m).header.type != MessageType::Result) continue;
    auto r = decode_result((**m).payload);
    ASSERT_TRUE(r);
    results[(**m).header.request_id] = r->status;
  }
  ASSERT_EQ(results.size(), 2u) << "no Result within 10 s for a task cancelled while queued";
  EXPECT_EQ(results[1], TaskStatus::Succeeded);
  EXPECT_EQ(results[2], TaskStatus::Cancelled);
}

// A worker with its log captured, one runner, its cache in `cache`.
std::unique_ptr<Worker> logged_worker(const Key& key, const std::string& cache, test::LogLines& log,
                                      std::size_t max_clients = 64,
                                      std::chrono::milliseconds dead_after = 5000ms) {
  WorkerOptions o;
  o.listen = "127.0.0.1:0";
  o.key = key;
  o.slots = 1;
  o.heartbeat_interval = 100ms;
  o.dead_after = dead_after;
  o.cache_dir = cache;
  o.max_clients = max_clients;
  o.sandbox = task::SandboxPolicy::none();
  o.log = log.sink();
  auto w = Worker::start(std::move(o));
  EXPECT_TRUE(w) << (w ? "" : w.error().to_string());
  return w ? std::move(*w) : nullptr;
}

// A driver's connection to `w`, past the worker's Register.
std::unique_ptr<Connection> raw_driver(Worker& w, const Key& key) {
  auto conn = Connection::connect(w.endpoint(), key, {});
  EXPECT_TRUE(conn) << (conn ? "" : conn.error().to_string());
  if (!conn) return nullptr;
  auto reg = (*conn)->receive(5s);
  EXPECT_TRUE(reg && *reg && (**reg).header.type == MessageType::Register);
  return std::move(*conn);
}

SubmitMsg sleep_ms(int ms) {
  SubmitMsg m;
  m.kind = TaskKind::Function;
  m.path = "sleep_ms";
  m.stdin_data = std::to_string(ms);
  m.attempt = 1;
  return m;
}

// Results on `conn` until `n` have come (heartbeats answered meanwhile) or 10 s passed.
std::map<std::uint64_t, ResultMsg> results_on(Connection& conn, std::size_t n) {
  std::map<std::uint64_t, ResultMsg> out;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (out.size() < n && std::chrono::steady_clock::now() < until) {
    if (!conn.send(MessageType::Heartbeat, 0, encode(HeartbeatMsg{}))) break;
    auto m = conn.receive(250ms);
    if (!m) break;
    if (!*m || (**m).header.type != MessageType::Result) continue;
    if (auto r = decode_result((**m).payload)) out[(**m).header.request_id] = std::move(*r);
  }
  return out;
}

// Until `conn` reports the worker closed it (true), or 10 s passed.
bool closed_by_worker(Connection& conn) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < until) {
    if (!conn.receive(250ms)) return true;
  }
  return false;
}

bool log_shows(test::LogLines& log, std::string_view line) {
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!log.contains(line)) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

TEST(Worker, ADriverThatBreaksTheProtocolLosesOnlyItsOwnConnection) {
  test::KeyFile kf;
  test::LogLines log;
  pepita::test::TempDir cache("worker-protocol");
  auto w = logged_worker(kf.key, cache.path(), log);
  ASSERT_TRUE(w);
  {
    // A function task that declares files is refused by itself; the connection stays.
    auto conn = raw_driver(*w, kf.key);
    ASSERT_TRUE(conn);
    SubmitMsg f = sleep_ms(1);
    f.outputs = {"out.txt"};
    ASSERT_TRUE(conn->send(MessageType::Submit, 1, encode(f)));
    auto refused = results_on(*conn, 1);
    ASSERT_EQ(refused.count(1), 1u) << "no Result for the refused task";
    EXPECT_EQ(refused[1].status, TaskStatus::SpawnError);
    EXPECT_NE(refused[1].error.find("function tasks take no declared input or output files"),
              std::string::npos)
        << refused[1].error;
    // Task 2 runs, task 3 queues behind it, then task 2 comes again: the driver is broken,
    // its connection ends and its tasks with it.
    ASSERT_TRUE(conn->send(MessageType::Submit, 2, encode(sleep_ms(5000))));
    ASSERT_TRUE(conn->send(MessageType::Submit, 3, encode(sleep_ms(5000))));
    ASSERT_TRUE(conn->send(MessageType::Submit, 2, encode(sleep_ms(5000))));
    EXPECT_TRUE(closed_by_worker(*conn)) << "a task submitted twice was accepted";
    EXPECT_TRUE(log_shows(log, "task 2 submitted twice while running")) << log.all();
  }
  {
    auto conn = raw_driver(*w, kf.key);
    ASSERT_TRUE(conn);
    ASSERT_TRUE(conn->send(MessageType::Register, 0, encode(RegisterMsg{})));
    EXPECT_TRUE(closed_by_worker(*conn)) << "a Register from a driver was accepted";
    EXPECT_TRUE(log_shows(log, "unexpected register frame from a driver")) << log.all();
  }
  {
    auto conn = raw_driver(*w, kf.key);
    ASSERT_TRUE(conn);
    ASSERT_TRUE(conn->send(MessageType::Error, 0, encode(ErrorMsg{.reason = "going away"})));
    EXPECT_TRUE(closed_by_worker(*conn));
    EXPECT_TRUE(log_shows(log, "driver closed with: going away")) << log.all();
  }
  {
    auto conn = raw_driver(*w, kf.key);
    ASSERT_TRUE(conn);
    ASSERT_TRUE(conn->send_bulk(MessageType::BlobChunk, 0,
                                encode(BlobChunkMsg{.size = 2, .data = "x"}), as_bytes("y")));
    EXPECT_TRUE(closed_by_worker(*conn)) << "a blob chunk with its data twice was accepted";
    EXPECT_TRUE(log_shows(log, "bulk blob-chunk frame with data in its metadata too")) << log.all();
  }
  expect_still_serving(*w, kf.key);
}

TEST(Worker, StopReturnsQueuedTasksUnstartedToTheirDriver) {
  test::KeyFile kf;
  test::LogLines log;
  pepita::test::TempDir cache("worker-stop");
  auto w = logged_worker(kf.key, cache.path(), log);
  ASSERT_TRUE(w);
  auto conn = raw_driver(*w, kf.key);
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->send(MessageType::Submit, 1, encode(sleep_ms(2000))));
  ASSERT_TRUE(conn->send(MessageType::Submit, 2, encode(sleep_ms(2000))));  // waits for the slot
  // The worker answers frames in order: once it answers this query, task 2 is in its queue.
  ASSERT_TRUE(conn->send(MessageType::HaveBlob, 9, encode(HaveBlobMsg{})));
  for (;;) {
    auto m = conn->receive(10s);
    ASSERT_TRUE(m && *m) << "no answer to have-blob";
    if ((**m).header.type == MessageType::HaveBlob) break;
  }
  w->stop(Worker::StopMode::Drain);
  auto results = results_on(*conn, 2);
  ASSERT_EQ(results.count(2), 1u) << "the queued task got no Result";
  EXPECT_EQ(results[2].status, TaskStatus::Returned);
  EXPECT_NE(results[2].error.find("returned unstarted"), std::string::npos) << results[2].error;
  EXPECT_GE(w->stats().tasks_returned, 1u);
  w->wait();
}

TEST(Worker, ConnectionsPastMaxClientsAreRefusedAndCounted) {
  test::KeyFile kf;
  test::LogLines log;
  pepita::test::TempDir cache("worker-max-clients");
  auto w = logged_worker(kf.key, cache.path(), log, 1);
  ASSERT_TRUE(w);
  auto first = raw_driver(*w, kf.key);
  ASSERT_TRUE(first);
  ConnectionOptions quick;
  quick.handshake_timeout = 3000ms;
  auto second = Connection::connect(w->endpoint(), kf.key, quick);
  ASSERT_FALSE(second) << "a second client was served past max_clients = 1";
  EXPECT_TRUE(log_shows(log, "already serving 1 clients")) << log.all();
  EXPECT_GE(w->stats().clients_rejected, 1u);
  // The first client is still served.
  ASSERT_TRUE(first->send(MessageType::Submit, 1, encode(sleep_ms(1))));
  auto r = results_on(*first, 1);
  ASSERT_EQ(r.count(1), 1u);
  EXPECT_EQ(r[1].status, TaskStatus::Succeeded) << r[1].error;
}

TEST(Worker, ADriverSilentPastDeadAfterIsDroppedAndItsTaskCancelled) {
  test::KeyFile kf;
  test::LogLines log;
  pepita::test::TempDir cache("worker-silent");
  auto w = logged_worker(kf.key, cache.path(), log, 64, 400ms);
  ASSERT_TRUE(w);
  auto conn = raw_driver(*w, kf.key);
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->send(MessageType::Submit, 1, encode(sleep_ms(30000))));
  // No heartbeat from here on: the worker gives up on this driver, not on itself.
  EXPECT_TRUE(log_shows(log, "driver silent for 400 ms")) << log.all();
  EXPECT_TRUE(closed_by_worker(*conn));
  expect_still_serving(*w, kf.key);  // its one slot is free again: the task was cancelled
}

TEST(Worker, StartRefusesACacheDirectoryItCannotCreateOrThatOthersCanWrite) {
  test::KeyFile kf;
  pepita::test::TempDir root("worker-cache-dir");
  auto start_with = [&](const std::string& cache) {
    WorkerOptions o;
    o.listen = "127.0.0.1:0";
    o.key = kf.key;
    o.slots = 1;
    o.cache_dir = cache;
    o.log = [](std::string_view) {};
    return Worker::start(std::move(o));
  };
  { std::ofstream(root.file("plain")) << "a file, not a directory"; }
  auto under_file = start_with(root.file("plain") + "/cache");
  ASSERT_FALSE(under_file);
  EXPECT_EQ(under_file.error().sys_errno(), ENOTDIR) << under_file.error().to_string();
  EXPECT_NE(under_file.error().message().find("create cache directory"), std::string::npos)
      << under_file.error().to_string();

  const std::string shared = root.file("shared");
  ASSERT_EQ(::mkdir(shared.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(shared.c_str(), 0777), 0);
  auto open = start_with(shared);
  ASSERT_FALSE(open);
  EXPECT_EQ(open.error().code(), ErrorCode::PermissionDenied) << open.error().to_string();
  EXPECT_NE(open.error().message().find("not writable by others"), std::string::npos)
      << open.error().to_string();
  EXPECT_FALSE(std::filesystem::exists(shared + "/blobs")) << "the refused cache was written to";
}

TEST(Worker, TimeoutKillsTheProcessGroup) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(fast_options(kf.key, {w->endpoint().to_string()})).value();
  auto t = process_task(1, "/bin/sh", {"-c", "sleep 30; echo never"});
  t.spec.timeout_ns = 200'000'000;
  const auto t0 = std::chrono::steady_clock::now();
  auto out = d->run(std::move(t)).value();
  EXPECT_EQ(out.result.status, TaskStatus::TimedOut);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST(Worker, UploadedBinaryAndInputFilesRunFromTheBlobCache) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(fast_options(kf.key, {w->endpoint().to_string()})).value();
  Digest script = d->add_blob("#!/bin/sh\necho \"script says $1\"\ncat input.txt\n");
  Digest input = d->add_blob("file contents\n");
  auto t = process_task(1, "blob:" + to_hex(script), {"hi"});
  t.spec.files.push_back({.name = "input.txt", .sha256 = input, .executable = false});
  auto out = d->run(std::move(t)).value();
  EXPECT_EQ(out.result.status, TaskStatus::Succeeded) << out.result.error;
  EXPECT_EQ(out.result.stdout_data, "script says hi\nfile contents\n");
  auto bad = process_task(2, "/bin/true", {});
  bad.spec.files.push_back({.name = "../escape", .sha256 = input});
  EXPECT_EQ(d->run(std::move(bad)).value().result.status, TaskStatus::SpawnError);
  EXPECT_GE(w->stats().blobs_stored, 2u);
}

// A worker whose log lines are kept, with its cache directory known to the test.
struct LoggedWorker {
  std::unique_ptr<Worker> worker;
  std::string cache_dir;
  std::shared_ptr<std::mutex> mu = std::make_shared<std::mutex>();
  std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();

  bool logged(std::string_view text) const {
    std::lock_guard lock(*mu);
    for (const auto& l : *lines)
      if (l.find(text) != std::string::npos) return true;
    return false;
  }
  // The names in the blob cache: what has been stored.
  std::vector<std::string> cached() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(cache_dir)) {
      if (e.is_directory()) continue;  // blobs/: the staged-input store (issue 24)
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
};

LoggedWorker start_logged_worker(const Key& key, const std::string& cache_dir) {
  LoggedWorker lw;
  lw.cache_dir = cache_dir;
  WorkerOptions o;
  o.listen = "127.0.0.1:0";
  o.key = key;
  o.slots = 1;
  o.heartbeat_interval = 100ms;
  o.dead_after = 2000ms;
  o.cache_dir = cache_dir;
  o.sandbox = task::SandboxPolicy::none();  // a test root of mode 0700 (see test_support.cpp)
  o.log = [mu = lw.mu, lines = lw.lines](std::string_view line) {
    std::lock_guard lock(*mu);
    lines->emplace_back(line);
  };
  if (auto w = Worker::start(std::move(o))) lw.worker = std::move(*w);
  return lw;
}

// Sends one request on `conn` and returns the reply with the same request id (skipping the
// worker's Register and Heartbeat frames).
std::optional<Message> request(Connection& conn, MessageType type, std::uint64_t id,
                               const Bytes& payload) {
  if (!conn.send(type, id, payload)) return std::nullopt;
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < until) {
    auto m = conn.receive(200ms);
    if (!m) return std::nullopt;
    if (*m && (*m)->header.request_id == id && (*m)->header.type != MessageType::Heartbeat &&
        (*m)->header.type != MessageType::Register)
      return std::move(**m);
  }
  return std::nullopt;
}

TEST(Worker, UploadWhoseSha256DoesNotMatchIsRefusedAndNothingIsStored) {
  test::KeyFile kf;
  const std::string cache = kf.path + ".cache";
  std::filesystem::create_directory(cache);
  ::chmod(cache.c_str(), 0700);
  auto lw = start_logged_worker(kf.key, cache);
  ASSERT_TRUE(lw.worker);
  auto conn = Connection::connect(lw.worker->endpoint(), kf.key, {});
  ASSERT_TRUE(conn) << conn.error().to_string();

  const std::string real = "#!/bin/sh\necho the real thing\n";
  const std::string impostor = "#!/bin/sh\necho an impostor\n";
  const Digest claimed = sha256(as_bytes(real));
  auto reply = request(**conn, MessageType::Upload, 7,
                       encode(UploadMsg{.sha256 = claimed, .data = impostor}));
  ASSERT_TRUE(reply) << "no reply to the forged upload";
  ASSERT_EQ(reply->header.type, MessageType::HaveBlob);
  auto have = decode_have_blob(reply->payload);
  ASSERT_TRUE(have);
  EXPECT_EQ(have->sha256, claimed);
  EXPECT_FALSE(have->present) << "the worker acknowledged a blob whose bytes do not match";
  EXPECT_TRUE(lw.logged("does not match its SHA-256 (claims " + to_hex(claimed)))
      << "no log line says why the upload was refused";
  // Nothing under the claimed hash, the impostor's own hash, or a temporary name.
  EXPECT_EQ(lw.cached(), std::vector<std::string>{});
  EXPECT_EQ(lw.worker->stats().blobs_stored, 0u);

  // The same session goes on: the worker still says it lacks the blob, takes the genuine
  // upload, and runs it.
  auto query = request(**conn, MessageType::HaveBlob, 8,
                       encode(HaveBlobMsg{.sha256 = claimed, .present = false}));
  ASSERT_TRUE(query);
  EXPECT_FALSE(decode_have_blob(query->payload).value().present);
  auto genuine =
      request(**conn, MessageType::Upload, 9, encode(UploadMsg{.sha256 = claimed, .data = real}));
  ASSERT_TRUE(genuine);
  EXPECT_TRUE(decode_have_blob(genuine->payload).value().present);
  EXPECT_EQ(lw.cached(), std::vector<std::string>{to_hex(claimed)});
  EXPECT_EQ(lw.worker->stats().blobs_stored, 1u);
  (*conn)->shutdown();

  auto d =
      RemoteDispatcher::start(fast_options(kf.key, {lw.worker->endpoint().to_string()})).value();
  auto out = d->run(process_task(1, "blob:" + to_hex(claimed), {})).value();
  EXPECT_EQ(out.result.status, TaskStatus::Succeeded) << out.result.error;
  EXPECT_EQ(out.result.stdout_data, "the real thing\n");
  expect_still_serving(*lw.worker, kf.key);
  lw.worker.reset();
  std::filesystem::remove_all(cache);
}

TEST(Worker, MalformedBlobReferenceIsASpawnErrorThatNamesIt) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto d = RemoteDispatcher::start(fast_options(kf.key, {w->endpoint().to_string()})).value();
  const std::string hex64 = to_hex(sha256(as_bytes("x")));
  std::uint64_t id = 1;
  for (const std::string& ref :
       {std::string("blob:"), std::string("blob:xyz"), "blob:" + hex64.substr(1),
        "blob:" + hex64.substr(2), "blob:" + hex64 + "00", "blob:" + std::string(64, 'g'),
        std::string("blob:../../../bin/sh"), "blob:" + hex64 + "/../../bin/sh"}) {
    auto out = d->run(process_task(id++, ref, {})).value();
    EXPECT_EQ(out.result.status, TaskStatus::SpawnError) << ref;
    EXPECT_NE(out.result.error.find("bad blob reference '" + ref + "'"), std::string::npos)
        << ref << ": " << out.result.error;
    EXPECT_NE(out.result.error.find("64 hex digits"), std::string::npos) << out.result.error;
  }
  // Well formed, but nothing was uploaded under it.
  const std::string absent = to_hex(sha256(as_bytes("never uploaded")));
  auto out = d->run(process_task(id++, "blob:" + absent, {})).value();
  EXPECT_EQ(out.result.status, TaskStatus::SpawnError);
  EXPECT_NE(out.result.error.find("blob " + absent + " is not on this worker"), std::string::npos)
      << out.result.error;
  EXPECT_EQ(w->stats().blobs_stored, 0u);
  expect_still_serving(*w, kf.key);
}

TEST(Worker, WrongKeyIsRejectedAndWorkerKeepsServing) {
  test::KeyFile kf, other;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  auto c = Connection::connect(w->endpoint(), other.key, {});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), ErrorCode::PermissionDenied);
  expect_still_serving(*w, kf.key);
}

TEST(Worker, NoHandshakeGetsNothing) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  // A client with no key sends a Submit straight away: the worker must close without running.
  RawSocket s(w->endpoint().port);
  ASSERT_TRUE(s.connected);
  Bytes f;
  ASSERT_TRUE(encode_frame({.type = MessageType::Submit, .request_id = 1},
                           encode(SubmitMsg{.path = "/bin/touch", .args = {"/tmp/pwned"}}), f));
  s.send(f);
  auto reply = s.read_until_closed();
  ASSERT_TRUE(reply) << "worker kept an unauthenticated connection open";
  EXPECT_TRUE(reply->empty());
  EXPECT_EQ(w->stats().tasks_run, 0u);
  expect_still_serving(*w, kf.key);
}

TEST(Worker, GarbageOversizedAndTruncatedInputCloseTheConnection) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  {
    RawSocket s(w->endpoint().port);
    std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\nxxxxxxxxxxxxxxxxxxxx";
    s.send(as_bytes(junk));
    EXPECT_TRUE(s.read_until_closed());
  }
  {
    RawSocket s(w->endpoint().port);
    Bytes f;
    ASSERT_TRUE(encode_frame({.type = MessageType::Hello}, {}, f));
    const std::uint32_t huge = 0xFFFFFFF0u;
    std::memcpy(f.data() + 24, &huge, 4);
    s.send(ByteSpan(f).first(kHeaderSize));
    EXPECT_TRUE(s.read_until_closed()) << "oversized length not refused from the header";
  }
  {
    // Within the 64 MiB limit but far beyond any handshake frame: refused before buffering.
    RawSocket s(w->endpoint().port);
    Bytes f;
    ASSERT_TRUE(encode_frame({.type = MessageType::Hello}, {}, f));
    const std::uint32_t big = 32u << 20;
    std::memcpy(f.data() + 24, &big, 4);
    s.send(ByteSpan(f).first(kHeaderSize));
    EXPECT_TRUE(s.read_until_closed()) << "unauthenticated peer may announce a 32 MiB frame";
  }
  {
    RawSocket s(w->endpoint().port);
    auto [client, hello] = ClientHandshake::start(kf.key, "trunc").value();
    Bytes f;
    ASSERT_TRUE(encode_frame({.type = MessageType::Hello}, hello, f));
    s.send(ByteSpan(f).first(f.size() - 5));
    ::shutdown(s.fd, SHUT_WR);  // truncated frame, then EOF
    EXPECT_TRUE(s.read_until_closed());
  }
  // The socket closes just before the worker counts the rejection; allow it a moment.
  const auto until = std::chrono::steady_clock::now() + 2s;
  while (w->stats().clients_rejected < 4 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_GE(w->stats().clients_rejected, 4u);
  expect_still_serving(*w, kf.key);
}

TEST(Worker, SlowlorisIsCutOff) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1, 300ms);
  ASSERT_TRUE(w);
  RawSocket s(w->endpoint().port);
  auto [client, hello] = ClientHandshake::start(kf.key, "slow").value();
  Bytes f;
  ASSERT_TRUE(encode_frame({.type = MessageType::Hello}, hello, f));
  s.send(ByteSpan(f).first(10));                                  // half a frame, then silence
  std::thread honest([&] { expect_still_serving(*w, kf.key); });  // meanwhile others are served
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(s.read_until_closed());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  honest.join();
}

TEST(Worker, ReplayedAndTamperedFramesCloseTheSession) {
  test::KeyFile kf;
  auto w = test::start_worker(kf.key, 1);
  ASSERT_TRUE(w);
  {
    RawSocket s(w->endpoint().port);
    auto session = raw_handshake(s, kf.key);
    ASSERT_TRUE(session);
    Bytes hb = session->seal(MessageType::Heartbeat, 0, encode(HeartbeatMsg{})).value();
    s.send(hb);
    s.send(hb);  // replay
    EXPECT_TRUE(s.read_until_closed()) << "replayed frame accepted";
  }
  {
    RawSocket s(w->endpoint().port);
    auto session = raw_handshake(s, kf.key);
    ASSERT_TRUE(session);
    SubmitMsg m{.path = "/bin/true"};
    Bytes sealed = session->seal(MessageType::Submit, 1, encode(m)).value();
    // Change the command and recompute the CRC (the attacker can), keeping the old MAC.
    Bytes forged;
    ASSERT_TRUE(encode_frame(
        {.type = MessageType::Submit, .flags = kFlagMac, .request_id = 1, .sequence = 0},
        encode(SubmitMsg{.path = "/bin/false"}), forged));
    forged.insert(forged.end(), sealed.end() - kMacSize, sealed.end());
    s.send(forged);
    EXPECT_TRUE(s.read_until_closed()) << "tampered frame accepted";
  }
  EXPECT_EQ(w->stats().tasks_run, 0u);
  expect_still_serving(*w, kf.key);
}

TEST(Worker, RefusesNonLoopbackWithoutPermissionAndStartsOnlyWithAKey) {
  auto l = Listener::bind(parse_endpoint("0.0.0.0:0").value(), false);
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code(), ErrorCode::PermissionDenied);
  WorkerOptions o;
  o.listen = "127.0.0.1:0";
  auto w = Worker::start(std::move(o));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), ErrorCode::InvalidArgument);
  EXPECT_TRUE(is_loopback_host("127.0.0.2"));
  EXPECT_FALSE(is_loopback_host("10.0.0.1"));
  EXPECT_FALSE(parse_endpoint("nohost"));
  EXPECT_FALSE(parse_endpoint("h:99999"));
  EXPECT_EQ(parse_endpoint("[::1]:80").value().host, "::1");
}

TEST(Worker, DrainFinishesRunningTasksAndTheRestMoveToAnotherWorker) {
  test::KeyFile kf;
  auto a = test::start_worker(kf.key, 1);
  auto b = test::start_worker(kf.key, 1);
  ASSERT_TRUE(a && b);
  auto d = RemoteDispatcher::start(
               fast_options(kf.key, {a->endpoint().to_string(), b->endpoint().to_string()}))
               .value();
  std::mutex mu;
  std::map<std::uint64_t, int> seen;
  for (std::uint64_t i = 1; i <= 6; ++i) {
    ASSERT_TRUE(d->submit(test::sleep_task(i, 60), [&](RemoteOutcome o) {
      EXPECT_EQ(o.result.status, TaskStatus::Succeeded) << o.result.error;
      std::lock_guard lock(mu);
      ++seen[o.id];
    }));
  }
  std::this_thread::sleep_for(80ms);
  a->stop(Worker::StopMode::Drain);  // like SIGTERM: finish the running task, take no more
  a->wait();
  ASSERT_TRUE(d->wait_idle(10s));
  std::lock_guard lock(mu);
  ASSERT_EQ(seen.size(), 6u);
  for (auto& [id, n] : seen) EXPECT_EQ(n, 1) << id;
  EXPECT_GE(b->stats().tasks_run, 3u);
}

}  // namespace
}  // namespace pepita::transport
