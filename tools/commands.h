// The subcommands of the `nanoflow` binary: each registers its options and returns the action to run.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace nf::cli {

// Runs the parsed command; returns the process exit code. nf::error escapes to main, which prints it.
using command_action = std::function<int()>;

command_action add_generate_command(CLI::App& app);
// Registers under the `bench` subcommand.
command_action add_bench_throughput_command(CLI::App& bench);
command_action add_bench_serve_command(CLI::App& bench);
command_action add_serve_command(CLI::App& app);
// `tune` with its `profile` and `search` subcommands.
command_action add_tune_command(CLI::App& app);

}  // namespace nf::cli
