#pragma once
// Registry: backends by name. Maps a backend name ("process", "gpu", or one a program adds) to a
// factory that builds its executor from BackendOptions (slots plus string settings with typed
// getters), so the CLI and programs build backends in a loop instead of editing an enum. Explicit:
// each module offers register_<x>(Registry&) and a program calls the ones it links (a static
// initializer in a static library would be dropped by the linker).
//
//   executor::Registry registry;
//   executor::register_builtins(registry);                 // cpu, process, zero
//   gpu::register_gpu(registry);                           // if the program links
//   pepita_gpu_executor registry.add(Backend::named("echo").value(), make_echo, "prints its
//   arguments"); auto pool = pool::Pool::builder().executor(registry.factory(Backend::Gpu,
//   {})).build();

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pepita/error.hpp"
#include "pepita/executor/executor.hpp"

namespace pepita::executor {

/// What a backend is built with: a slot count (0: the backend's default) and string settings
/// (`memory=16M`, `device=lavapipe`, ...) read through typed getters whose errors name the key,
/// the bad value and what to write instead.
class BackendOptions {
 public:
  /// Attempts in flight; 0 leaves it to the backend.
  std::size_t slots = 0;

  /// Sets (or replaces) one setting.
  BackendOptions& set(std::string key, std::string value);
  /// Parses "key=value"; InvalidArgument without '=' or with an empty key.
  Result<void> set(std::string_view key_value);
  bool has(std::string_view key) const;
  std::optional<std::string> get(std::string_view key) const;
  const std::map<std::string, std::string, std::less<>>& settings() const noexcept {
    return settings_;
  }

  std::string string_or(std::string_view key, std::string fallback) const;
  /// A decimal integer in [min, max].
  Result<std::uint64_t> uint_or(std::string_view key, std::uint64_t fallback, std::uint64_t min = 0,
                                std::uint64_t max = UINT64_MAX) const;
  /// true/false, yes/no, on/off, 1/0.
  Result<bool> bool_or(std::string_view key, bool fallback) const;
  /// A number with a unit: ms, s, m (minutes); a bare number is seconds.
  Result<std::chrono::nanoseconds> duration_or(std::string_view key,
                                               std::chrono::nanoseconds fallback) const;
  /// A byte count as parse_size() reads it (pepita/core/size.hpp: 4096, 16M, 1G, 512MiB).
  Result<std::uint64_t> bytes_or(std::string_view key, std::uint64_t fallback) const;
  /// A comma-separated list (empty items dropped); empty when the key is not set.
  std::vector<std::string> list(std::string_view key) const;

  /// InvalidArgument naming every setting not in `known` (a typo must not pass silently).
  Result<void> expect_only(std::initializer_list<std::string_view> known) const;

 private:
  std::map<std::string, std::string, std::less<>> settings_;
};

/// Builds one backend's executor.
using BackendFactory = std::function<Result<std::shared_ptr<Executor>>(const BackendOptions&)>;

/// Backend names and their factories. Not thread-safe to modify; build it, then share it const.
class Registry {
 public:
  /// Registers `backend`. AlreadyExists when the name is taken (replace() overrides).
  Result<void> add(Backend backend, BackendFactory make, std::string description = {});
  /// Registers or replaces `backend`.
  void replace(Backend backend, BackendFactory make, std::string description = {});

  bool contains(const Backend& backend) const;
  /// Registered names, in registration order.
  std::vector<Backend> names() const;
  /// The description given at registration ("" when none); empty for an unknown name.
  std::string_view description(const Backend& backend) const;

  /// Builds the executor. NotFound listing the registered names for an unknown backend; the
  /// factory's error otherwise, prefixed with "backend '<name>': ". The executor's backend()
  /// must be the name it was registered under (Internal otherwise).
  Result<std::shared_ptr<Executor>> create(const Backend& backend,
                                           const BackendOptions& options) const;
  /// The same, deferred: a factory for Pool::Builder::executor, so the error is the pool's.
  ExecutorFactory factory(const Backend& backend, BackendOptions options) const;

 private:
  struct Entry {
    Backend backend;
    BackendFactory make;
    std::string description;
  };
  std::vector<Entry> entries_;
};

/// Registers "cpu": functions on a work-stealing scheduler of its own (slots = workers; no
/// settings). AlreadyExists when taken.
Result<void> register_cpu(Registry& registry);
/// Registers "process": child processes (settings: kill_grace=2s). AlreadyExists when taken.
Result<void> register_process(Registry& registry);
/// Registers "zero": completes every task at once, Succeeded, without running anything
/// (HyperQueue's zero-worker mode; ZeroExecutor in zero.hpp). No settings. AlreadyExists when
/// taken.
Result<void> register_zero(Registry& registry);
/// The three above: cpu, process, zero.
Result<void> register_builtins(Registry& registry);

}  // namespace pepita::executor
