// pepita command-line entry point: global flags, then the chosen subcommand.
#include <cstdio>

#include "command.hpp"
#include "pepita/version.hpp"

namespace pepita::cli {

std::vector<AddCommand>& registered_commands() {
  static std::vector<AddCommand> commands;
  return commands;
}

}  // namespace pepita::cli

int main(int argc, char** argv) {
  using namespace pepita::cli;
  CLI::App app{"pepita: distributed-computing and Linux-kernel primitives for AI workloads"};
  app.name("pepita");
  app.set_version_flag("--version", std::string("pepita ") + pepita::kVersion);
  app.require_subcommand(0, 1);

  Dispatch dispatch;
  for (AddCommand add : registered_commands()) add(app, dispatch);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    // CLI11 uses 0 for --help/--version and various codes for bad input; usage errors are 2.
    if (code == 0) return kExitOk;
    // The usage line of the innermost subcommand the user named (`pepita ublk add --size`).
    const CLI::App* command = &app;
    for (auto subs = app.get_subcommands(); !subs.empty(); subs = command->get_subcommands())
      command = subs.front();
    std::fprintf(stderr, "%s\n", dispatch.usage_line(command).c_str());
    return kExitUsage;
  }

  const int code = dispatch.run_selected();
  if (code >= 0) return code;
  std::fputs(app.help().c_str(), stdout);
  return kExitOk;
}
