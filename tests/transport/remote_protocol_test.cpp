// The dispatcher against a worker driven by hand (a Listener and Connection::accept, frame by
// frame): bad FetchBlob requests are answered with an error naming what is wrong and a good one
// still gets its bytes; a worker that breaks the protocol (an output its task does not declare,
// an Error frame, no Register, a frame a worker never sends, a bulk frame with data twice) loses
// its connection, and a task that loses its worker max_attempts times ends with SpawnError instead
// of running forever.
#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
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
using Clock = std::chrono::steady_clock;

// The next connection the dispatcher opens to `l`, authenticated (the worker's side).
std::unique_ptr<Connection> accept_driver(Listener& l, const Key& key) {
  pollfd pfd{l.fd(), POLLIN, 0};
  if (::poll(&pfd, 1, 10000) != 1) return nullptr;
  std::string peer;
  auto fd = l.accept(peer);
  if (!fd) return nullptr;
  auto c = Connection::accept(std::move(*fd), peer, key, {});
  return c ? std::move(*c) : nullptr;
}

// The next frame of `type` from the driver (its heartbeats skipped), or nullopt after 10 s or
// when the connection ends.
std::optional<Message> next_of(Connection& c, MessageType type) {
  const auto until = Clock::now() + 10s;
  while (Clock::now() < until) {
    auto m = c.receive(250ms);
    if (!m) return std::nullopt;
    if (*m && (**m).header.type == type) return std::move(**m);
  }
  return std::nullopt;
}

// Until the driver ends `c` (true), or 10 s passed.
bool ended_by_driver(Connection& c) {
  const auto until = Clock::now() + 10s;
  while (Clock::now() < until) {
    if (!c.receive(250ms)) return true;
  }
  return false;
}

bool log_shows(test::LogLines& log, std::string_view line) {
  const auto until = Clock::now() + 10s;
  while (!log.contains(line)) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

TEST(RemoteProtocol, BadFetchRequestsAreAnsweredAndAWorkerBreakingTheProtocolLosesItsTask) {
  test::KeyFile kf;
  pepita::test::TempDir dir("remote-protocol");
  const std::string input = dir.file("in.bin");
  { std::ofstream(input, std::ios::binary) << "hello"; }
  const Digest hello = sha256(as_bytes("hello"));
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  test::LogLines log;
  RemoteOptions o = test::fast_options(kf.key, {listener.endpoint().to_string()});
  o.max_attempts = 2;
  o.log = log.sink();
  std::promise<RemoteOutcome> outcome;  // outlives the dispatcher, which completes into it
  auto d = RemoteDispatcher::start(std::move(o)).value();
  RemoteTask t{.id = 1};
  t.spec.path = "/bin/cat";
  t.spec.args = {"in.bin"};
  t.spec.inputs = {{.path = "in.bin", .size = 5, .sha256 = hello}};
  t.input_sources = {input};
  ASSERT_TRUE(d->submit(std::move(t), [&](RemoteOutcome out) { outcome.set_value(out); }));
  const RegisterMsg reg{.slots = 1, .backends = {"process", "cpu"}, .name = "by-hand"};

  {
    auto c = accept_driver(listener, kf.key);
    ASSERT_TRUE(c) << "the dispatcher did not connect";
    ASSERT_TRUE(c->send(MessageType::Register, 0, encode(reg)));
    auto submit = next_of(*c, MessageType::Submit);
    ASSERT_TRUE(submit) << "the task was not submitted";
    const std::uint32_t attempt = decode_submit(submit->payload).value().attempt;
    auto fetch = [&](FetchBlobMsg f) -> std::pair<BlobChunkMsg, std::string> {
      EXPECT_TRUE(c->send(MessageType::FetchBlob, 0, encode(f)));
      auto m = next_of(*c, MessageType::BlobChunk);
      EXPECT_TRUE(m) << "no answer to fetch-blob";
      if (!m) return {};
      return {decode_blob_chunk(m->payload).value(), std::string(as_text(m->bulk))};
    };
    const Digest other = sha256(as_bytes("not an input"));
    auto [unknown, none] = fetch({.sha256 = other, .offset = 0, .length = 5});
    EXPECT_NE(unknown.error.find("no live task of this driver declares an input with SHA-256 " +
                                 to_hex(other)),
              std::string::npos)
        << unknown.error;
    EXPECT_TRUE(none.empty());
    auto [past, past_data] = fetch({.sha256 = hello, .offset = 5, .length = 5});
    EXPECT_NE(past.error.find("offset 5 is past the end of input " + input + " (5 bytes)"),
              std::string::npos)
        << past.error;
    EXPECT_TRUE(past_data.empty());
    // The refusals left the session as it was: a good request gets the bytes.
    auto [good, good_data] = fetch({.sha256 = hello, .offset = 1, .length = 4});
    EXPECT_TRUE(good.error.empty()) << good.error;
    EXPECT_EQ(good.offset, 1u);
    EXPECT_EQ(good_data, "ello");
    // Output 3 of a task that declares none: the driver ends this connection.
    ASSERT_TRUE(c->send(MessageType::OutputChunk, 1,
                        encode(OutputChunkMsg{
                            .attempt = attempt, .index = 3, .offset = 0, .size = 1, .data = "x"})));
    EXPECT_TRUE(ended_by_driver(*c)) << "an output the task does not declare was taken";
  }
  EXPECT_TRUE(log_shows(log, "output-chunk for output 3 of task 1, which declares 0")) << log.all();
  {
    // The task comes again (its second attempt); this time the worker says it quits.
    auto c = accept_driver(listener, kf.key);
    ASSERT_TRUE(c) << "the dispatcher did not reconnect";
    ASSERT_TRUE(c->send(MessageType::Register, 0, encode(reg)));
    ASSERT_TRUE(next_of(*c, MessageType::Submit)) << "the task was not submitted again";
    ASSERT_TRUE(c->send(MessageType::Error, 0, encode(ErrorMsg{.reason = "by-hand quits"})));
    EXPECT_TRUE(ended_by_driver(*c));
  }
  EXPECT_TRUE(log_shows(log, "worker sent error: by-hand quits")) << log.all();
  {
    // A worker that answers the handshake but never registers is refused.
    auto c = accept_driver(listener, kf.key);
    ASSERT_TRUE(c) << "the dispatcher did not reconnect";
    ASSERT_TRUE(c->send(MessageType::Heartbeat, 0, encode(HeartbeatMsg{})));
    EXPECT_TRUE(ended_by_driver(*c));
  }
  EXPECT_TRUE(log_shows(log, "worker did not register after auth")) << log.all();
  {
    // A frame only a driver sends, from a registered worker.
    auto c = accept_driver(listener, kf.key);
    ASSERT_TRUE(c) << "the dispatcher did not reconnect";
    ASSERT_TRUE(c->send(MessageType::Register, 0, encode(reg)));
    ASSERT_TRUE(c->send(MessageType::Submit, 7, encode(SubmitMsg{.path = "/bin/true"})));
    EXPECT_TRUE(ended_by_driver(*c));
  }
  EXPECT_TRUE(log_shows(log, "unexpected submit frame from worker")) << log.all();
  // The worker of the connection above registered: the task, lost twice, was given up then.
  auto done = outcome.get_future();
  ASSERT_EQ(done.wait_for(10s), std::future_status::ready) << "the task never ended";
  const RemoteOutcome out = done.get();
  EXPECT_EQ(out.result.status, TaskStatus::SpawnError);
  EXPECT_NE(out.result.error.find("giving up (max_attempts)"), std::string::npos)
      << out.result.error;
  {
    // A bulk output-chunk whose metadata carries data as well: which bytes are the output?
    auto c = accept_driver(listener, kf.key);
    ASSERT_TRUE(c) << "the dispatcher did not reconnect";
    ASSERT_TRUE(c->send(MessageType::Register, 0, encode(reg)));
    ASSERT_TRUE(c->send_bulk(MessageType::OutputChunk, 1,
                             encode(OutputChunkMsg{.size = 2, .data = "x"}), as_bytes("y")));
    EXPECT_TRUE(ended_by_driver(*c));
  }
  EXPECT_TRUE(log_shows(log, "bulk output-chunk frame with data in its metadata too")) << log.all();
  EXPECT_EQ(d->duplicates_dropped(), 0u);
}

// Declared outputs a worker reports but did not send whole: the task fails naming the output
// and nothing is left at its path (no file, no .pepita-part); chunks out of order end the
// connection.
TEST(RemoteProtocol, OutputsAWorkerReportsButDidNotSendFailTheTaskAndLeaveNothing) {
  test::KeyFile kf;
  pepita::test::TempDir dir("remote-outputs");
  auto listener = Listener::bind({.host = "127.0.0.1", .port = 0}, false).value();
  test::LogLines log;
  RemoteOptions o = test::fast_options(kf.key, {listener.endpoint().to_string()});
  o.max_attempts = 1;
  o.log = log.sink();
  std::mutex mu;  // these two outlive the dispatcher, which completes into them
  std::map<std::uint64_t, RemoteOutcome> outcomes;
  auto d = RemoteDispatcher::start(std::move(o)).value();
  for (std::uint64_t id = 1; id <= 3; ++id) {
    RemoteTask t{.id = id};
    t.spec.path = "/bin/true";
    t.spec.outputs = {"a.txt", "b.txt"};
    t.output_dir = dir.path();
    ASSERT_TRUE(d->submit(std::move(t), [&](RemoteOutcome out) {
      std::lock_guard lock(mu);
      outcomes[out.id] = std::move(out);
    }));
  }
  auto c = accept_driver(listener, kf.key);
  ASSERT_TRUE(c) << "the dispatcher did not connect";
  ASSERT_TRUE(c->send(MessageType::Register, 0,
                      encode(RegisterMsg{.slots = 3, .backends = {"process"}, .name = "by-hand"})));
  std::map<std::uint64_t, std::uint32_t> attempt;
  while (attempt.size() < 3) {
    auto submit = next_of(*c, MessageType::Submit);
    ASSERT_TRUE(submit) << "only " << attempt.size() << " of 3 tasks submitted";
    attempt[submit->header.request_id] = decode_submit(submit->payload).value().attempt;
  }
  const Digest a = sha256(as_bytes("a"));
  const std::vector<StagedFile> both = {{.path = "a.txt", .size = 1, .sha256 = a},
                                        {.path = "b.txt", .size = 1, .sha256 = a}};
  // Task 1 reports no outputs at all; task 2 reports both but sent neither.
  ASSERT_TRUE(c->send(MessageType::Result, 1, encode(ResultMsg{.attempt = attempt[1]})));
  ResultMsg two{.attempt = attempt[2]};
  two.outputs = both;
  ASSERT_TRUE(c->send(MessageType::Result, 2, encode(two)));
  // Task 3: the first byte of a.txt, then a chunk that skips ahead.
  ASSERT_TRUE(
      c->send(MessageType::OutputChunk, 3,
              encode(OutputChunkMsg{
                  .attempt = attempt[3], .index = 0, .offset = 0, .size = 4, .data = "a"})));
  ASSERT_TRUE(
      c->send(MessageType::OutputChunk, 3,
              encode(OutputChunkMsg{
                  .attempt = attempt[3], .index = 0, .offset = 2, .size = 4, .data = "b"})));
  EXPECT_TRUE(ended_by_driver(*c)) << "an output chunk out of order was taken";
  EXPECT_TRUE(log_shows(log, "output-chunk of task 3 at offset 2 of 4, expected offset 1 of 4"))
      << log.all();
  // Task 3 lost its worker; when one registers again it has used its one attempt.
  auto again = accept_driver(listener, kf.key);
  ASSERT_TRUE(again) << "the dispatcher did not reconnect";
  ASSERT_TRUE(
      again->send(MessageType::Register, 0,
                  encode(RegisterMsg{.slots = 3, .backends = {"process"}, .name = "by-hand"})));
  ASSERT_TRUE(d->wait_idle(10s)) << "the tasks never ended";
  std::lock_guard lock(mu);
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[1].result.status, TaskStatus::Failed);
  EXPECT_NE(outcomes[1].result.error.find("reported 0 outputs for the 2 declared"),
            std::string::npos)
      << outcomes[1].result.error;
  EXPECT_EQ(outcomes[2].result.status, TaskStatus::Failed);
  EXPECT_NE(outcomes[2].result.error.find("output 'a.txt' never arrived from worker"),
            std::string::npos)
      << outcomes[2].result.error;
  EXPECT_EQ(outcomes[3].result.status, TaskStatus::SpawnError);
  EXPECT_NE(outcomes[3].result.error.find("giving up (max_attempts)"), std::string::npos)
      << outcomes[3].result.error;
  for (const char* name : {"a.txt", "b.txt", "a.txt.pepita-part", "b.txt.pepita-part"}) {
    EXPECT_FALSE(std::filesystem::exists(dir.file(name))) << name << " left behind";
  }
}

}  // namespace
}  // namespace pepita::transport
