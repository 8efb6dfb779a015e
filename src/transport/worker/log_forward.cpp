// Live logs on the worker (issue 24): each chunk the process executor reads from a task's pipes
// goes to the driver as a Log frame (protocol 5), in order, while the task runs.
#include <atomic>

#include "worker/worker_impl.hpp"

namespace pepita::transport::worker {
namespace {

class ForwardLogs final : public task::LogSink {
 public:
  ForwardLogs(std::shared_ptr<Client> client, std::uint64_t id)
      : client_(std::move(client)), id_(id) {}
  void write(task::LogStream stream, std::string_view bytes) noexcept override {
    if (broken_ || !client_->open.load()) return;
    LogMsg m{.stream = static_cast<std::uint8_t>(stream), .data = std::string(bytes)};
    // A chunk is at most the executor's 64 KiB read buffer, far below the frame limit.
    if (!client_->conn->send(MessageType::Log, id_, encode(m))) broken_ = true;
  }

 private:
  std::shared_ptr<Client> client_;
  std::uint64_t id_;
  bool broken_ = false;  // the executor calls write from one thread per attempt
};

}  // namespace

std::shared_ptr<task::LogSink> forward_logs(std::shared_ptr<Client> client, std::uint64_t id) {
  return std::make_shared<ForwardLogs>(std::move(client), id);
}

}  // namespace pepita::transport::worker
