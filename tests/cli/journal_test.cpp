// `pepita journal verify|export` and `pepita logs` (issue 24) on real runs of `pepita run`.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli/run_fixture.hpp"

namespace pepita::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class JournalCli : public RunFixture {
 protected:
  // A two-task run (one succeeds printing "hello", one fails) journalled under a key.
  void run_job() {
    key_ = (dir_ / "key").string();
    std::ofstream(key_) << "0123456789abcdef0123456789abcdef-key\n";
    ASSERT_EQ(::chmod(key_.c_str(), 0600), 0);
    write("job.toml",
          "[[task]]\nname = \"a\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"echo hello\"]\n"
          "[[task]]\nname = \"b\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"exit 2\"]\n");
    const auto r = run(
        {"run", (dir_ / "job.toml").string(), "--state-dir", state(), "--journal-key", key_, "-q"});
    ASSERT_EQ(r.exit_code, 1) << r.err;  // task b fails
    journal_ = state() + "/journal";
    ASSERT_TRUE(fs::exists(journal_));
  }
  std::string key_, journal_;
};

TEST_F(JournalCli, VerifyAcceptsAGoodRunWithAndWithoutTheKey) {
  run_job();
  const auto plain = run({"journal", "verify", state()});
  EXPECT_EQ(plain.exit_code, 0) << plain.out << plain.err;
  EXPECT_NE(plain.out.find("valid: 6 records"), std::string::npos) << plain.out;
  EXPECT_NE(plain.out.find("MACs not checked"), std::string::npos) << plain.out;
  const auto keyed = run({"journal", "verify", journal_, "--key", key_});
  EXPECT_EQ(keyed.exit_code, 0) << keyed.out << keyed.err;
  EXPECT_NE(keyed.out.find("MACs checked"), std::string::npos) << keyed.out;
}

TEST_F(JournalCli, VerifyNamesAnEditedRecordAndACutTail) {
  run_job();
  const std::string good = slurp(journal_);
  std::string edited = good;
  edited[40] ^= 0x01;  // inside record 0
  std::ofstream(journal_, std::ios::binary | std::ios::trunc) << edited;
  const auto bad = run({"journal", "verify", state(), "--key", key_});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("INVALID: record 0"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("edited"), std::string::npos) << bad.out;
  std::ofstream(journal_, std::ios::binary | std::ios::trunc) << good.substr(0, good.size() - 5);
  const auto cut = run({"journal", "verify", state()});
  EXPECT_EQ(cut.exit_code, 1);
  EXPECT_NE(cut.out.find("no end record"), std::string::npos) << cut.out;
}

TEST_F(JournalCli, VerifyWithTheWrongKeySaysSo) {
  run_job();
  const std::string other = (dir_ / "other.key").string();
  std::ofstream(other) << "another-key-another-key-another-key-!!\n";
  ASSERT_EQ(::chmod(other.c_str(), 0600), 0);
  const auto r = run({"journal", "verify", state(), "--key", other});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("wrong key"), std::string::npos) << r.out;
}

TEST_F(JournalCli, ExportPrintsEveryRecordAsOneJsonLine) {
  run_job();
  const auto r = run({"journal", "export", state(), "--jsonl"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::vector<nlohmann::json> records;
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    records.push_back(j);
  }
  ASSERT_EQ(records.size(), 7u);  // 2 submitted, 2 started, 2 finished, End
  EXPECT_EQ(records.back()["type"], "end");
  bool saw_a = false;
  for (const auto& j : records) {
    if (j["type"] != "finished" || j["name"] != "a") continue;
    saw_a = true;
    EXPECT_EQ(j["status"], "succeeded");
    EXPECT_EQ(j["stdout"], "hello\n");
    EXPECT_EQ(j["stdout_bytes"], 6);
    EXPECT_TRUE(j.contains("binary_sha256"));
    EXPECT_TRUE(j.contains("input_hashes"));
    EXPECT_GT(j["finished_unix_ns"].get<std::int64_t>(), 0);
  }
  EXPECT_TRUE(saw_a);
}

TEST_F(JournalCli, ExportWithoutAFormatIsAUsageError) {
  run_job();
  const auto r = run({"journal", "export", state()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--jsonl"), std::string::npos) << r.err;
}

// Bytes that are not UTF-8 cannot be a JSON string: export gives them as "<field>_base64" and
// keeps UTF-8 text (two-, three- and four-byte sequences) as text.
TEST_F(JournalCli, ExportGivesBytesThatAreNotUtf8AsBase64AndKeepsUtf8Text) {
  write("job.toml",
        "[[task]]\nname = \"text\"\ncommand = \"/bin/sh\"\n"
        "args = ['-c', 'printf \"\\303\\251\\342\\202\\254\\360\\237\\230\\200\\n\"; "
        "printf \"\\303(\" >&2']\n"
        "[[task]]\nname = \"binary\"\ncommand = \"/bin/sh\"\n"
        "args = ['-c', 'printf \"\\377\\376\\375\\374\"']\n");
  const auto ran = run({"run", (dir_ / "job.toml").string(), "--state-dir", state(), "-q"});
  ASSERT_EQ(ran.exit_code, 0) << ran.err;
  const auto r = run({"journal", "export", state(), "--jsonl"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::map<std::string, nlohmann::json> finished;
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    if (j["type"] == "finished") finished[j["name"].get<std::string>()] = j;
  }
  ASSERT_EQ(finished.size(), 2u) << r.out;
  const auto& text = finished["text"];
  EXPECT_EQ(text["stdout"], "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\n") << text.dump();
  EXPECT_FALSE(text.contains("stdout_base64")) << text.dump();
  // 0xC3 starts a two-byte sequence that '(' does not continue.
  EXPECT_EQ(text["stderr_base64"], "wyg=") << text.dump();
  EXPECT_FALSE(text.contains("stderr")) << text.dump();
  const auto& binary = finished["binary"];
  EXPECT_EQ(binary["stdout_base64"], "//79/A==") << binary.dump();  // FF FE FD FC
  EXPECT_FALSE(binary.contains("stdout")) << binary.dump();
  EXPECT_EQ(binary["stdout_bytes"], 4);
}

// A key file, journal or state directory that cannot be used: exit 1, the reason and what to do on
// stderr, nothing on stdout, and the journal left as it was.
TEST_F(JournalCli, VerifyAndExportOfAMissingOrForeignJournalFailSayingWhy) {
  run_job();
  const std::string journal = slurp(journal_);
  const std::string open_key = (dir_ / "open.key").string();
  fs::copy_file(key_, open_key);
  ASSERT_EQ(::chmod(open_key.c_str(), 0644), 0);
  const auto readable = run({"journal", "verify", state(), "--key", open_key});
  EXPECT_EQ(readable.exit_code, 1);
  EXPECT_EQ(readable.out, "");
  EXPECT_NE(readable.err.find("pepita journal verify: "), std::string::npos) << readable.err;
  EXPECT_NE(readable.err.find("chmod 600 " + open_key), std::string::npos) << readable.err;

  const std::string empty_dir = (dir_ / "empty").string();
  fs::create_directory(empty_dir);
  const auto none = run({"journal", "verify", empty_dir});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_EQ(none.out, "");
  EXPECT_NE(none.err.find(empty_dir + "/journal"), std::string::npos) << none.err;
  const auto no_export = run({"journal", "export", empty_dir, "--jsonl"});
  EXPECT_EQ(no_export.exit_code, 1);
  EXPECT_EQ(no_export.out, "");
  EXPECT_NE(no_export.err.find("no journal at " + empty_dir + "/journal"), std::string::npos)
      << no_export.err;

  const auto foreign = write("notes.txt", "these are not the records you are looking for\n");
  const auto bad_verify = run({"journal", "verify", foreign.string()});
  EXPECT_EQ(bad_verify.exit_code, 1);
  EXPECT_EQ(bad_verify.out, "");
  EXPECT_NE(bad_verify.err.find("is not a pepita journal"), std::string::npos) << bad_verify.err;
  const auto bad_export = run({"journal", "export", foreign.string(), "--jsonl"});
  EXPECT_EQ(bad_export.exit_code, 1);
  EXPECT_EQ(bad_export.out, "");
  EXPECT_NE(bad_export.err.find("is not a pepita journal"), std::string::npos) << bad_export.err;
  EXPECT_NE(bad_export.err.find("move it away"), std::string::npos) << bad_export.err;

  EXPECT_EQ(slurp(journal_), journal) << "a failed verify or export changed the journal";
  EXPECT_EQ(slurp(foreign), "these are not the records you are looking for\n");
}

// A log path that exists but cannot be read as a file (here a directory) fails naming it.
TEST_F(JournalCli, LogsOfAnUnreadableLogFailNamingIt) {
  run_job();
  const std::string log = state() + "/logs/a.stdout";
  ASSERT_TRUE(fs::remove(log));
  fs::create_directory(log);
  const auto r = run({"logs", state(), "a"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("pepita logs: cannot read " + log), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_directory(log));
}

TEST_F(JournalCli, LogsOfAnUnknownTaskFailNamingTheFile) {
  run_job();
  const auto a = run({"logs", state(), "a"});
  EXPECT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, "--- pepita: attempt 1 ---\nhello\n");
  const auto missing = run({"logs", state(), "zz"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("zz.stdout"), std::string::npos) << missing.err;
}

// A task that printed nothing has no log file (issue 27); the journal knows it, so its log is
// empty rather than "no log of task".
TEST_F(JournalCli, LogsOfATaskThatPrintedNothingAreEmpty) {
  run_job();
  EXPECT_FALSE(fs::exists(state() + "/logs/b.stdout"));
  const auto b = run({"logs", state(), "b"});
  EXPECT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(b.out, "");
  const auto b_err = run({"logs", state(), "b", "--stderr"});
  EXPECT_EQ(b_err.exit_code, 0) << b_err.err;
  EXPECT_EQ(b_err.out, "");
}

// `pepita logs --follow` prints lines while the task runs and ends, having printed everything,
// when the task's Finished record reaches the journal.
TEST_F(JournalCli, LogsFollowEndsWhenTheTaskEndsAndPrintedEverything) {
  const std::string go = (dir_ / "go").string();
  write("job.toml",
        "[[task]]\nname = \"slow\"\ncommand = \"/bin/sh\"\nargs = [\"-c\", "
        "\"echo first; i=0; while [ ! -e " +
            go +
            " ]; do sleep 0.05; i=$((i+1)); [ $i -gt 2400 ] && exit 3; done; "
            "echo last\"]\n");
  const pid_t runner =
      spawn({"run", (dir_ / "job.toml").string(), "--state-dir", state(), "-q"}, "run");
  // The log file appears once the task starts; follow it from then on.
  const std::string log = state() + "/logs/slow.stdout";
  const auto give_up = std::chrono::steady_clock::now() + 120s;
  while (slurp(log).find("first\n") == std::string::npos &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_NE(slurp(log).find("first\n"), std::string::npos) << "the task never printed";
  const pid_t follower = spawn({"logs", state(), "slow", "--follow"}, "follow");
  // The follower has printed the first line and is still waiting for the task.
  const auto seen_limit = std::chrono::steady_clock::now() + 120s;
  while (slurp(dir_ / "follow.out").find("first\n") == std::string::npos &&
         std::chrono::steady_clock::now() < seen_limit) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(slurp(dir_ / "follow.out").find("first\n"), std::string::npos);
  EXPECT_EQ(::waitpid(follower, nullptr, WNOHANG), 0) << "--follow ended before the task did";
  std::ofstream(go).put('\n');
  const auto ran = finish(runner, "run");
  EXPECT_EQ(ran.exit_code, 0) << ran.err;
  const auto followed = finish(follower, "follow");
  EXPECT_EQ(followed.exit_code, 0) << followed.err;
  EXPECT_EQ(followed.out, "--- pepita: attempt 1 ---\nfirst\nlast\n");
}

}  // namespace
}  // namespace pepita::test
