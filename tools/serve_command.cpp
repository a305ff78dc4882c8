// `nanoflow serve`: the OpenAI-compatible HTTP server in front of the engine, until SIGINT or SIGTERM.
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "core/error.h"
#include "engine_factory.h"
#include "model_loading.h"
#include "server/http_server.h"

namespace nf::cli {
namespace {

struct serve_options {
  model_options model;
  engine_cli_options engine;
  server_options server;
};

int run_serve(serve_options& options) {
  // Block the stop signals in every thread (the engine's and the server's inherit the mask), and wait for
  // them here: no signal handler, no global state.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigset_t previous_mask;
  pthread_sigmask(SIG_BLOCK, &stop_signals, &previous_mask);
  struct restore_mask {
    sigset_t mask;
    ~restore_mask() { pthread_sigmask(SIG_SETMASK, &mask, nullptr); }
  } restore{previous_mask};

  std::unique_ptr<tokenizer> tok = load_tokenizer_if_present(options.model);
  if (!tok) fail("serve needs a tokenizer (tokenizer.json or tokenizer.model) in {}", options.model.model_dir);
  if (options.server.served_model_name.empty()) options.server.served_model_name = options.model.model_dir;
  std::unique_ptr<engine_service> engine = make_engine_service(options.model, options.engine);
  http_server server(*engine, *tok, model_chat_formatter(options.model.model_dir), options.server);
  const int port = server.start();
  std::fprintf(stderr, "serving %s on http://%s:%d (OpenAI API under /v1)\n", options.server.served_model_name.c_str(),
               options.server.host.c_str(), port);
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::fprintf(stderr, "%s: stopping\n", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  server.stop();
  return 0;
}

}  // namespace

command_action add_serve_command(CLI::App& app) {
  auto options = std::make_shared<serve_options>();
  CLI::App* command = app.add_subcommand("serve", "Serve the OpenAI-compatible HTTP API");
  options->model.add_to(*command);
  options->engine.add_to(*command);
  server_options& s = options->server;
  s.served_model_name.clear();
  command->add_option("--host", s.host, "address to listen on");
  command->add_option("--port", s.port, "port to listen on (0: any free port)")->check(CLI::Range(0, 65535));
  command->add_option("--served-model-name", s.served_model_name, "model name clients use (default: --model)");
  command->add_option("--api-key", s.api_key, "require 'Authorization: Bearer KEY' on /v1 routes")
      ->envname("NANOFLOW_API_KEY");
  command->add_option("--max-body-bytes", s.max_body_bytes, "largest request body accepted (413 beyond)")
      ->check(CLI::PositiveNumber);
  command->add_option("--http-threads", s.num_threads, "connections served at once")->check(CLI::Range(1, 4096));
  return [options] { return run_serve(*options); };
}

}  // namespace nf::cli
