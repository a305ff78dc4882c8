// Entry point of the `nanoflow` binary: parses the command line and runs one subcommand. User errors are
// printed as one line and give exit code 1; nothing here calls exit() from library code.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"

namespace {

struct registered_command {
  CLI::App* parent;
  std::string name;
  nf::cli::command_action action;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nanoflow: LLM serving engine after NanoFlow (OSDI 2025)"};
  app.require_subcommand(1);
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  const std::vector<registered_command> commands = {
      {&app, "generate", nf::cli::add_generate_command(app)},
      {bench, "throughput", nf::cli::add_bench_throughput_command(*bench)},
      {bench, "serve", nf::cli::add_bench_serve_command(*bench)},
      {&app, "serve", nf::cli::add_serve_command(app)},
      {&app, "tune", nf::cli::add_tune_command(app)},
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (const registered_command& command : commands)
      if (command.parent->parsed() && command.parent->got_subcommand(command.name)) return command.action();
  } catch (const nf::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 1;
}
