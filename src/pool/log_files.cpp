// Live log files: one pair per task under the log dir, written straight through per chunk.
#include "pepita/pool/log_files.hpp"

#include <fcntl.h>

#include <filesystem>
#include <mutex>
#include <system_error>

#include "pepita/core/sys/fd.hpp"
#include "pepita/core/unique_fd.hpp"

namespace pepita::pool {
namespace {

class FileLogSink final : public task::LogSink {
 public:
  FileLogSink(UniqueFd out, UniqueFd err) : out_(std::move(out)), err_(std::move(err)) {}
  void write(task::LogStream stream, std::string_view bytes) noexcept override {
    const int fd = stream == task::LogStream::Stderr ? err_.get() : out_.get();
    // A failed write (full disk) loses only the log's copy; the result keeps its own.
    (void)sys::write_full(fd, bytes.data(), bytes.size());
  }

 private:
  UniqueFd out_, err_;
};

Result<UniqueFd> open_append(const std::string& path) {
  const int raw = sys::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (raw < 0) return fail_errno(raw, "open log file " + path);
  return UniqueFd(raw);
}

// What the pool attaches: a stream's file is created (and its attempt header written) by the
// first chunk of that stream, so a task that prints nothing creates no file. Creating two
// files per task was most of `pepita run`'s CPU per /bin/true task (ext4 inode allocation,
// issue 27: 2 openat(O_CREAT) per task, ~55% of the CLI's samples under perf).
class LazyFileLogSink final : public task::LogSink {
 public:
  LazyFileLogSink(std::string out_path, std::string err_path, std::uint32_t attempt)
      : paths_{std::move(out_path), std::move(err_path)}, attempt_(attempt) {}
  void write(task::LogStream stream, std::string_view bytes) noexcept override {
    const std::size_t i = stream == task::LogStream::Stderr ? 1 : 0;
    std::lock_guard lock(mu_);
    if (!tried_[i]) {
      tried_[i] = true;
      // A file that cannot be opened loses only the log's copy; the result keeps its own.
      if (auto fd = open_append(paths_[i])) {
        fds_[i] = std::move(*fd);
        const std::string header = log_attempt_header(attempt_);
        (void)sys::write_full(fds_[i].get(), header.data(), header.size());
      }
    }
    if (fds_[i]) (void)sys::write_full(fds_[i].get(), bytes.data(), bytes.size());
  }

 private:
  std::mutex mu_;
  const std::string paths_[2];
  const std::uint32_t attempt_;
  bool tried_[2] = {false, false};
  UniqueFd fds_[2];
};

}  // namespace

std::string log_attempt_header(std::uint32_t attempt) {
  return std::string("--- pepita: attempt ").append(std::to_string(attempt)).append(" ---\n");
}

std::string log_file_path(const std::string& dir, std::string_view task_name,
                          task::LogStream stream) {
  std::string name;
  for (char ch : task_name) {
    const bool safe = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
    name.push_back(safe ? ch : '_');
  }
  if (name.empty() || name.front() == '.') name.insert(name.begin(), '_');
  return std::string(dir).append("/").append(name).append(
      stream == task::LogStream::Stderr ? ".stderr" : ".stdout");
}

Result<void> create_log_dir(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec) return fail_errno(-ec.value(), "create log directory " + dir);
  }
  if (!std::filesystem::is_directory(dir, ec)) {
    return fail(ErrorCode::InvalidArgument,
                "log directory " + dir + " exists and is not a directory; move it away");
  }
  return {};
}

Result<std::shared_ptr<task::LogSink>> open_log_files(const std::string& dir,
                                                      std::string_view task_name,
                                                      std::uint32_t attempt) {
  UniqueFd out = PEPITA_TRY(open_append(log_file_path(dir, task_name, task::LogStream::Stdout)));
  UniqueFd err = PEPITA_TRY(open_append(log_file_path(dir, task_name, task::LogStream::Stderr)));
  const std::string header = log_attempt_header(attempt);
  (void)sys::write_full(out.get(), header.data(), header.size());
  (void)sys::write_full(err.get(), header.data(), header.size());
  return std::make_shared<FileLogSink>(std::move(out), std::move(err));
}

void attach_log_files(task::Task& task, const std::string& dir, std::uint32_t attempt) {
  if (!task.process() && !task.is_pipeline()) return;
  task = task.with_log_sink(std::make_shared<LazyFileLogSink>(
      log_file_path(dir, task.name(), task::LogStream::Stdout),
      log_file_path(dir, task.name(), task::LogStream::Stderr), attempt));
}

}  // namespace pepita::pool
