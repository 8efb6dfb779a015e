// RemoteExecutor: task::Task -> SubmitMsg, and ResultMsg -> executor::ExecutionResult through
// result_codec.hpp.
#include "pepita/transport/remote_executor.hpp"

#include <fstream>
#include <sstream>

#include "pepita/core/format.hpp"
#include "pepita/transport/result_codec.hpp"

namespace pepita::transport {

RemoteExecutor::RemoteExecutor(Private, std::unique_ptr<RemoteDispatcher> d, std::size_t slots,
                               bool ship, task::Backend backend)
    : dispatcher_(std::move(d)), slots_(slots), ship_(ship), backend_(backend) {}

RemoteExecutor::~RemoteExecutor() { shutdown(); }

Result<std::shared_ptr<RemoteExecutor>> RemoteExecutor::create(RemoteExecutorOptions options) {
  const std::size_t slots =
      options.slots ? options.slots : 64 * std::max<std::size_t>(1, options.remote.workers.size());
  auto d = PEPITA_TRY(RemoteDispatcher::start(std::move(options.remote)));
  return std::make_shared<RemoteExecutor>(Private{}, std::move(d), slots, options.ship_binaries,
                                          options.backend);
}

Result<std::string> RemoteExecutor::shipped_path(const std::string& path) {
  std::lock_guard lock(ship_mu_);
  if (auto it = shipped_.find(path); it != shipped_.end()) return it->second;
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return fail(ErrorCode::NotFound, "cannot read " + path + " to ship it to remote workers");
  }
  std::ostringstream data;
  data << f.rdbuf();
  const Digest d = dispatcher_->add_blob(std::move(data).str());
  return shipped_[path] = "blob:" + to_hex(d);
}

Result<void> RemoteExecutor::start(const task::Task& task, std::stop_token stop,
                                   executor::Completion done) {
  if (shut_.load()) return fail(ErrorCode::Cancelled, "remote executor is shut down");
  const task::ProcessSpec* p = task.process();
  if (p == nullptr) {
    return fail(ErrorCode::InvalidArgument,
                "task '" + task.name() +
                    "' is a function task; only process tasks can run on remote workers");
  }
  if (task.backend() != backend_) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("task '{}' has backend '{}'; this executor "
                            "runs backend = \"{}\" tasks",
                            task.name(), task.backend().name(), backend_.name()));
  }
  RemoteTask rt{.id = next_id_.fetch_add(1)};
  SubmitMsg& m = rt.spec;
  m.kind = TaskKind::Process;
  m.path = p->path;
  if (ship_ && p->path.find('/') != std::string::npos) m.path = PEPITA_TRY(shipped_path(p->path));
  m.args = p->args;
  m.env = p->env;
  m.inherit_env = p->inherit_env;
  m.cwd = p->cwd;
  m.stdin_data = p->stdin_data;
  m.timeout_ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, task.timeout().count()));
  m.output_cap = task.output_cap();
  m.sandbox = task.sandbox();  // the worker raises it to its floor (protocol 4)
  rt.resources = task.resources();
  rt.log_sink = task.log_sink();  // issue 24: the pool's live-log files
  if (const task::Allocation* a = task.allocation()) rt.resource_attempt = a->attempt;
  const std::uint64_t id = rt.id;
  // The stop callback lives inside the completion's shared state, so it is destroyed (and can
  // no longer fire) once the outcome has been delivered.
  struct State {
    std::optional<std::stop_callback<std::function<void()>>> on_stop;
  };
  auto state = std::make_shared<State>();
  auto callback = [state, done = std::move(done), tid = task.id(),
                   name = task.name()](RemoteOutcome o) mutable {
    executor::ExecutionResult r = to_execution_result(std::move(o.result), tid, std::move(name));
    if (!o.worker.empty() && r.status != executor::Status::Succeeded) {
      if (!r.error.empty()) r.error += ' ';
      r.error.append("(on worker ").append(o.worker).append(")");
    }
    done(std::move(r));
  };
  PEPITA_TRY_VOID(dispatcher_->submit(std::move(rt), std::move(callback)));
  RemoteDispatcher* d = dispatcher_.get();
  state->on_stop.emplace(std::move(stop), std::function<void()>([d, id] { d->cancel(id); }));
  return {};
}

Result<void> RemoteExecutor::can_ever_fit(const task::ResourceRequest& request) const {
  return dispatcher_->can_ever_fit(request);
}

void RemoteExecutor::shutdown() {
  if (shut_.exchange(true)) return;
  dispatcher_->wait_idle();
}

executor::ExecutorFactory remote_workers(RemoteExecutorOptions options) {
  return [options = std::move(options)]() -> Result<std::shared_ptr<executor::Executor>> {
    return PEPITA_TRY(RemoteExecutor::create(options));
  };
}

// ---- issue 21: the "remote" registry entry Pool::Builder::remote_workers builds ----

Result<void> register_remote(executor::Registry& registry) {
  return registry.add(
      task::Backend::Remote,
      [](const executor::BackendOptions& o) -> Result<std::shared_ptr<executor::Executor>> {
        PEPITA_TRY_VOID(o.expect_only({"workers", "key", "tls", "ship_binaries", "give_up_after"}));
        RemoteExecutorOptions options;
        options.slots = o.slots;
        options.remote.workers = o.list("workers");
        if (options.remote.workers.empty()) {
          return fail(ErrorCode::InvalidArgument,
                      "remote: setting workers=host:port,... is required (the pepita workers to "
                      "connect to)");
        }
        const std::string key = o.string_or("key", "");
        if (key.empty()) {
          return fail(ErrorCode::InvalidArgument,
                      "remote: setting key=<file> is required (the workers' pre-shared key, "
                      "mode 0600)");
        }
        options.remote.key = PEPITA_TRY(Key::from_file(key));
        options.remote.connection.tls = PEPITA_TRY(o.bool_or("tls", false));
        options.ship_binaries = PEPITA_TRY(o.bool_or("ship_binaries", false));
        options.remote.give_up_without_workers =
            std::chrono::duration_cast<std::chrono::milliseconds>(
                PEPITA_TRY(o.duration_or("give_up_after", std::chrono::seconds(30))));
        return PEPITA_TRY(RemoteExecutor::create(std::move(options)));
      },
      "pepita workers over the transport");
}

}  // namespace pepita::transport
