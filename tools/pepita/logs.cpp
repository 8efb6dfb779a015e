// `pepita logs STATE_DIR TASK [--follow] [--stderr]`: print a task's live log (issue 24), kept
// under STATE_DIR/logs by `pepita run`; --follow keeps printing what arrives until the task's
// Finished record is in the run's journal (STATE_DIR/journal), like `tail -f`.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "command.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/fault/journal.hpp"
#include "pepita/pool/log_files.hpp"

namespace pepita::cli {
namespace {

constexpr const char* kUsage = "pepita logs STATE_DIR TASK [--follow] [--stderr]";

struct LogsOptions {
  std::string state_dir;
  std::string task;
  bool follow = false;
  bool stderr_stream = false;
};

// Copies what `fd` holds past its offset to stdout; false on a read error.
bool copy_new(int fd) {
  char buf[1 << 16];
  for (;;) {
    const long n = sys::read(fd, buf, sizeof buf);
    if (n == -EINTR) continue;
    if (n < 0) return false;
    if (n == 0) break;
    std::fwrite(buf, 1, static_cast<std::size_t>(n), stdout);
  }
  std::fflush(stdout);
  return true;
}

// Whether the journal holds any record of the task (it was submitted in this state dir).
bool known_to_journal(const std::string& journal, const std::string& task) {
  auto rec = fault::read_journal(journal);
  if (!rec) return false;
  for (const auto& r : rec->records) {
    if (r.name == task) return true;
  }
  return false;
}

// Whether the journal holds the task's Finished record. A journal that cannot be read (not yet
// created, or mid-rewrite) is "not yet".
bool finished_in_journal(const std::string& journal, const std::string& task) {
  auto rec = fault::read_journal(journal);
  if (!rec) return false;
  for (const auto& r : rec->records) {
    if (r.type == fault::RecordType::Finished && r.name == task) return true;
  }
  return false;
}

int run_logs(const LogsOptions& o) {
  const auto stream = o.stderr_stream ? task::LogStream::Stderr : task::LogStream::Stdout;
  const std::string path = pool::log_file_path(o.state_dir + "/logs", o.task, stream);
  const std::string journal = o.state_dir + "/journal";
  UniqueFd fd(sys::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  // A log file is created by its stream's first output: a task the journal knows that
  // printed nothing there has none, and its log is empty.
  if (!fd && !o.follow && known_to_journal(journal, o.task)) return kExitOk;
  if (!fd && !o.follow) {
    std::fprintf(stderr,
                 "pepita logs: no log of task '%s' at %s; is the task name right, and was the "
                 "run started with this --state-dir?\n",
                 o.task.c_str(), path.c_str());
    return kExitFailure;
  }
  for (;;) {
    // Check for the end first, then read: whatever was written before the Finished record is
    // then printed by the read that follows.
    const bool done = o.follow && finished_in_journal(journal, o.task);
    if (!fd) fd = UniqueFd(sys::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd && !copy_new(fd.get())) {
      std::fprintf(stderr, "pepita logs: cannot read %s\n", path.c_str());
      return kExitFailure;
    }
    if (!o.follow || done) return kExitOk;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void add_logs(CLI::App& app, Dispatch& dispatch) {
  auto* sub = app.add_subcommand("logs", "Print a task's stdout (or stderr) log from a run");
  auto o = std::make_shared<LogsOptions>();
  sub->add_option("state_dir", o->state_dir, "The run's state directory (pepita run --state-dir)")
      ->required();
  sub->add_option("task", o->task, "The task's name")->required();
  sub->add_flag("-f,--follow", o->follow,
                "Keep printing until the task's Finished record is in the journal (Ctrl-C stops)");
  sub->add_flag("--stderr", o->stderr_stream, "The stderr log instead of stdout");
  dispatch.on(
      sub, [o] { return run_logs(*o); }, kUsage);
}

}  // namespace
}  // namespace pepita::cli

PEPITA_REGISTER_COMMAND(logs, pepita::cli::add_logs);
