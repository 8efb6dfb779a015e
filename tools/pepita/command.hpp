#pragma once
// Subcommand registry for the pepita CLI: each tools/pepita/<command>.cpp registers itself with
// a static PEPITA_REGISTER_COMMAND, so adding a subcommand touches no other file.
//
//   namespace {
//   int run_hello(const HelloOptions& o);
//   void add_hello(CLI::App& app, pepita::cli::Dispatch& dispatch) {
//     auto* sub = app.add_subcommand("hello", "Say hello");
//     auto options = std::make_shared<HelloOptions>();
//     sub->add_option("--name", options->name);
//     dispatch.on(sub, [options] { return run_hello(*options); });
//   }
//   }  // namespace
//   PEPITA_REGISTER_COMMAND(hello, add_hello);

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pepita::cli {

/// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

/// "pepita ublk add" for the `add` subcommand of `ublk`.
inline std::string command_path(const CLI::App* cmd) {
  std::string path = cmd->get_name();
  for (const CLI::App* p = cmd->get_parent(); p != nullptr; p = p->get_parent())
    path = p->get_name() + " " + path;
  return path;
}

/// Reports a usage error the same way for every subcommand: "<command>: error: <message>", the
/// command's usage line and where to read more, on stderr. Returns kExitUsage, for
/// `return usage_error(...)`. Call it before anything is created (sockets, devices, files).
inline int usage_error(std::string_view command, std::string_view usage, std::string_view message) {
  std::fprintf(stderr, "%.*s: error: %.*s\nUsage: %.*s\nRun `%.*s --help` for every option.\n",
               static_cast<int>(command.size()), command.data(), static_cast<int>(message.size()),
               message.data(), static_cast<int>(usage.size()), usage.data(),
               static_cast<int>(command.size()), command.data());
  return kExitUsage;
}

/// Maps a parsed subcommand to the function that runs it and returns the exit code, and each
/// subcommand to its usage line (printed with every usage error, CLI11's own included).
class Dispatch {
 public:
  /// `usage` is the synopsis without "Usage: ", e.g. "pepita ublk del ID".
  void on(CLI::App* subcommand, std::function<int()> action, std::string usage = {}) {
    actions_.emplace_back(subcommand, std::move(action));
    if (!usage.empty()) set_usage(subcommand, std::move(usage));
  }
  /// The usage line of a command that has no action itself (a group such as `ublk`).
  void set_usage(const CLI::App* command, std::string usage) {
    usages_[command] = std::move(usage);
  }
  /// "Usage: ..." for `command`: the registered line, else CLI11's generic one.
  std::string usage_line(const CLI::App* command) const {
    if (auto it = usages_.find(command); it != usages_.end()) return "Usage: " + it->second;
    if (auto f = std::dynamic_pointer_cast<CLI::Formatter>(command->get_formatter())) {
      std::string line = f->make_usage(command, command_path(command));
      while (!line.empty() && line.back() == '\n') line.pop_back();
      return line;
    }
    return "Usage: " + command_path(command) + " [OPTIONS]";
  }
  /// Runs the action of the subcommand the user chose; -1 when none was chosen.
  int run_selected() const {
    for (const auto& [app, action] : actions_) {
      if (app->parsed()) return action();
    }
    return -1;
  }

 private:
  std::vector<std::pair<CLI::App*, std::function<int()>>> actions_;
  std::map<const CLI::App*, std::string> usages_;
};

using AddCommand = void (*)(CLI::App& app, Dispatch& dispatch);

/// All registered subcommands, in registration order.
std::vector<AddCommand>& registered_commands();

struct Registration {
  explicit Registration(AddCommand add) { registered_commands().push_back(add); }
};

}  // namespace pepita::cli

#define PEPITA_REGISTER_COMMAND(name, add_function) \
  static const ::pepita::cli::Registration pepita_register_##name##_ { add_function }
