// `nanoflow bench serve`: load against any OpenAI-compatible server (nanoflow serve, vLLM, SGLang, ...),
// comparable to `vllm bench serve`: same arrival process, same request shape, same metric definitions.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>

#include "commands.h"
#include "core/error.h"
#include "loadgen/bench_serve.h"
#include "tokenizer/tokenizer.h"

namespace nf::cli {
namespace {

struct bench_serve_cli {
  bench_serve_options run;
  std::string request_rate = "inf";
  std::vector<std::string> goodput;
  std::string tokenizer_dir;
  std::string output_json;
  int num_errors_shown = 5;
};

int run_bench_serve_command(bench_serve_cli& cli) {
  bench_serve_options& options = cli.run;
  if (cli.request_rate == "inf") {
    options.request_rate = std::numeric_limits<double>::infinity();
  } else {
    size_t used = 0;
    try {
      options.request_rate = std::stod(cli.request_rate, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != cli.request_rate.size() || !(options.request_rate > 0.0))
      fail("--request-rate must be a positive number or inf, got '{}'", cli.request_rate);
  }
  options.slo = parse_slo_targets(cli.goodput);
  std::unique_ptr<tokenizer> tok;
  if (!cli.tokenizer_dir.empty()) tok = load_tokenizer(cli.tokenizer_dir);
  const bench_serve_workload workload = make_workload(options, tok.get());

  std::fprintf(stderr, "bench serve: %zu requests (%s) to %s%s, rate %s, burstiness %g, max concurrency %s\n",
               workload.requests.size(), workload.description.c_str(), options.base_url.c_str(),
               options.endpoint.c_str(), cli.request_rate.c_str(), options.burstiness,
               options.max_concurrency > 0 ? std::to_string(options.max_concurrency).c_str() : "none");
  const bench_serve_result result = run_bench_serve(options, workload);
  const auto errors = first_errors(result.outputs, static_cast<size_t>(cli.num_errors_shown));
  for (const auto& [message, count] : errors) std::fprintf(stderr, "failed (%d requests): %s\n", count, message.c_str());
  std::printf("%s", format_report(options, workload, result).c_str());
  if (!cli.output_json.empty()) {
    std::ofstream file(cli.output_json);
    if (!file) fail("cannot write {}", cli.output_json);
    file << report_json(options, workload, result).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    if (!file) fail("cannot write {}", cli.output_json);
  }
  return 0;
}

}  // namespace

command_action add_bench_serve_command(CLI::App& bench) {
  auto cli = std::make_shared<bench_serve_cli>();
  bench_serve_options& o = cli->run;
  CLI::App* command = bench.add_subcommand("serve", "Load an OpenAI-compatible server and measure TTFT, TPOT, ITL, E2EL");
  command->add_option("--base-url", o.base_url, "server address, http://HOST:PORT[/PREFIX]")->capture_default_str();
  command->add_option("--endpoint", o.endpoint, "/v1/completions or /v1/chat/completions")->capture_default_str();
  command->add_option("--model", o.model, "the served model name to request")->required();
  command->add_option("--api-key", o.client.api_key, "sent as 'Authorization: Bearer KEY'")->envname("OPENAI_API_KEY");
  command->add_option("--input-len", o.input_len, "prompt tokens per request (random ids)");
  command->add_option("--output-len", o.output_len, "output tokens per request (max_tokens with ignore_eos)");
  command->add_option("--trace", o.trace, "request lengths from a trace CSV (data/traces/)")->check(CLI::ExistingFile);
  command->add_flag("--use-trace-arrivals", o.use_trace_arrivals, "send a contiguous window of the trace at its own times");
  command->add_option("--max-model-len", o.max_model_len, "cap trace lengths to this context (0: no cap)")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--num-prompts", o.num_prompts, "requests to send")->capture_default_str()->check(CLI::PositiveNumber);
  command->add_option("--request-rate", cli->request_rate, "mean requests/s, or inf to send all at once")
      ->capture_default_str();
  command->add_option("--burstiness", o.burstiness, "gamma shape of the arrival gaps: 1 Poisson, <1 burstier")
      ->capture_default_str()->check(CLI::PositiveNumber);
  command->add_option("--max-concurrency", o.max_concurrency,
                      "most requests in flight (0: no limit beyond " + std::to_string(max_client_threads) + " threads)")
      ->check(CLI::Range(0, max_client_threads));
  command->add_option("--seed", o.seed, "seed of prompts and arrivals")->capture_default_str();
  command->add_option("--goodput", cli->goodput, "SLOs for goodput: ttft:MS tpot:MS e2el:MS")->expected(1, 3);
  command->add_option("--metric-percentiles", o.percentiles, "percentiles to report")->expected(1, 16)
      ->capture_default_str();
  command->add_option("--tokenizer", cli->tokenizer_dir, "model dir whose tokenizer makes text prompts (needed for chat)")
      ->check(CLI::ExistingDirectory);
  command->add_option("--vocab-size", o.vocab_size, "random prompt ids are below this without --tokenizer")
      ->capture_default_str();
  command->add_option("--request-timeout", o.client.read_timeout_s, "seconds of silence before a request fails")
      ->capture_default_str()->check(CLI::PositiveNumber);
  command->add_option("--output-json", cli->output_json, "write the result (and per-request data) as JSON");
  command->add_flag("!--no-progress", o.progress, "no progress line");
  return [cli] { return run_bench_serve_command(*cli); };
}

}  // namespace nf::cli
