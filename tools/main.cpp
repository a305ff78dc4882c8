// Entry point of the `nanoflow` binary: parses the command line and runs one subcommand. User errors are
// printed as one line and give exit code 1; nothing here calls exit() from library code.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"nanoflow: LLM serving engine after NanoFlow (OSDI 2025)"};
  app.require_subcommand(1);
  nf::cli::command_action generate = nf::cli::add_generate_command(app);
  nf::cli::command_action serve = nf::cli::add_serve_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (app.got_subcommand("generate")) return generate();
    if (app.got_subcommand("serve")) return serve();
  } catch (const nf::error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 1;
}
