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
#include <functional>
#include <utility>
#include <vector>

namespace pepita::cli {

/// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

/// Maps a parsed subcommand to the function that runs it and returns the exit code.
class Dispatch {
 public:
  void on(CLI::App* subcommand, std::function<int()> action) {
    actions_.emplace_back(subcommand, std::move(action));
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
