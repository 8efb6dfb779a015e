// RemoteExecutor: task::Task -> SubmitMsg, and ResultMsg -> executor::ExecutionResult through
// result_codec.hpp.
#include "pepita/transport/remote_executor.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "pepita/core/format.hpp"
#include "pepita/core/sha256.hpp"
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
  PEPITA_TRY_VOID(stage_files(task, rt));
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
  std::map<std::string, std::string> input_hashes;
  for (const auto& in : rt.spec.inputs) input_hashes[in.path] = to_hex(in.sha256);
  auto callback = [state, done = std::move(done), tid = task.id(), name = task.name(),
                   input_hashes = std::move(input_hashes)](RemoteOutcome o) mutable {
    std::vector<StagedFile> outputs = std::move(o.result.outputs);
    executor::ExecutionResult r = to_execution_result(std::move(o.result), tid, std::move(name));
    r.host = o.worker;
    r.input_hashes = std::move(input_hashes);
    for (const auto& out : outputs) r.output_hashes[out.path] = to_hex(out.sha256);
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

// Issue 24: declared files, relative to the task's cwd on this machine (the driver's), are
// described in the Submit by size and SHA-256; the worker fetches what it lacks and runs the
// task in a directory of its own holding them, and sends its outputs back here.
Result<void> RemoteExecutor::stage_files(const task::Task& task, RemoteTask& rt) {
  if (task.inputs().empty() && task.outputs().empty()) return {};
  const task::ProcessSpec* p = task.process();
  std::error_code ec;
  const std::string base = p->cwd.empty() ? std::filesystem::current_path(ec).string() : p->cwd;
  if (ec) return fail(ErrorCode::Io, "cannot tell the current directory: " + ec.message());
  const auto refuse = [&](const Error& e) {
    return fail(ErrorCode::InvalidArgument,
                pepita::fmt("task '{}': {} (a remote task's files are staged into its directory "
                            "on the worker)",
                            task.name(), e.message()));
  };
  for (const auto& in : task.inputs()) {
    if (auto ok = check_staged_path(in, "input"); !ok) return refuse(ok.error());
    const std::string local = base + "/" + in;
    struct stat st {};
    if (::stat(local.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return fail(ErrorCode::NotFound, pepita::fmt("task '{}': input '{}' does not exist as a "
                                                   "regular file at {}",
                                                   task.name(), in, local));
    }
    const std::string hex = PEPITA_TRY(sha256_file(local));
    const Bytes raw = PEPITA_TRY(from_hex(hex));
    StagedFile f{.path = in, .size = static_cast<std::uint64_t>(st.st_size)};
    std::copy(raw.begin(), raw.end(), f.sha256.begin());
    rt.spec.inputs.push_back(std::move(f));
    rt.input_sources.push_back(local);
  }
  for (const auto& out : task.outputs()) {
    if (auto ok = check_staged_path(out, "output"); !ok) return refuse(ok.error());
  }
  rt.spec.outputs = task.outputs();
  rt.output_dir = base;
  rt.spec.cwd.clear();  // the worker runs it in the directory it staged the files in
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
