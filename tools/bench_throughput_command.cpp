// `nanoflow bench throughput`: offline throughput, comparable to `vllm bench throughput`. Every request is
// queued at the start with random prompt ids and a forced output length (ignore_eos); the result is
// quoted in tokens/s and as a fraction of the compute-bound ceiling Compute / (2 * P_model), with Compute
// the backend's own GEMM rate at the dense-batch shape, measured in the same run.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/error.h"
#include "engine/llm_engine.h"
#include "model_loading.h"
#include "workload/workload.h"

namespace nf::cli {
namespace {

struct bench_options {
  model_options model;
  engine_cli_options engine;
  int input_len = 1024;
  int output_len = 512;
  std::string trace;
  int num_prompts = 1000;
  uint64_t seed = 0;
  std::string output_json;
  bool progress = true;
};

class progress_bar {
 public:
  progress_bar(size_t total, bool enabled) : total_(total), enabled_(enabled && ::isatty(STDERR_FILENO)) {}
  void update(size_t done, int64_t tokens, double seconds) {
    if (!enabled_ || (done == last_ && seconds - last_time_ < 0.25)) return;
    last_ = done;
    last_time_ = seconds;
    constexpr int width = 40;
    const int filled = total_ ? static_cast<int>(width * done / total_) : width;
    std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu requests, %.0f tokens/s ", filled,
                 "========================================", width - filled, "", done, total_,
                 tokens / std::max(seconds, 1e-9));
    std::fflush(stderr);
  }
  void finish() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  size_t total_;
  bool enabled_;
  size_t last_ = SIZE_MAX;
  double last_time_ = 0.0;
};

int run_bench(const bench_options& options) {
  std::unique_ptr<backend> model = load_backend(options.model);
  const model_config config = model->config();
  const int max_len = config.max_position_embeddings;
  std::vector<request_lengths> lengths;
  std::string workload_name;
  if (!options.trace.empty()) {
    lengths = sample_trace(read_trace(options.trace), options.num_prompts, options.seed, max_len);
    workload_name = options.trace;
  } else {
    if (options.input_len + options.output_len > max_len)
      fail("--input-len {} + --output-len {} exceeds the model's context of {}", options.input_len, options.output_len,
           max_len);
    lengths = fixed_lengths(options.num_prompts, options.input_len, options.output_len);
    workload_name = fmt::format("fixed {}/{}", options.input_len, options.output_len);
  }
  const auto prompts = random_prompts(lengths, config.vocab_size, options.seed);

  const int gemm_tokens = options.engine.max_num_batched_tokens;
  std::fprintf(stderr, "measuring the %s backend's GEMM rate at %d x %d x %d ...\n", model->name().c_str(), gemm_tokens,
               2 * config.intermediate_size, config.hidden_size);
  const double gemm_flops = model->measure_gemm_flops(gemm_tokens);
  const double ceiling = gemm_flops / (2.0 * static_cast<double>(config.num_parameters()));

  const engine_options engine_settings = options.engine.make(*model);
  llm_engine engine(std::move(model), engine_settings);
  int64_t input_tokens = 0, output_tokens = 0;
  for (size_t i = 0; i < lengths.size(); ++i) {
    completion_request request;
    request.prompt_token_ids = prompts[i];
    request.params.temperature = 0.0f;
    request.params.max_tokens = lengths[i].output_len;
    request.params.ignore_eos = true;
    engine.add_request(i, std::move(request));
    input_tokens += lengths[i].input_len;
  }
  std::fprintf(stderr, "running %zu requests (%s) ...\n", lengths.size(), workload_name.c_str());
  progress_bar bar(lengths.size(), options.progress);
  size_t finished = 0;
  const auto start = std::chrono::steady_clock::now();
  auto seconds_since_start = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  while (engine.has_unfinished()) {
    for (const completion_delta& delta : engine.step()) {
      output_tokens += static_cast<int64_t>(delta.token_ids.size());
      finished += delta.finished;
    }
    bar.update(finished, input_tokens * finished / std::max<size_t>(lengths.size(), 1) + output_tokens, seconds_since_start());
  }
  const double elapsed = seconds_since_start();
  bar.finish();

  const engine_stats stats = engine.stats();
  const double total_rate = (input_tokens + output_tokens) / elapsed;
  nlohmann::json result = {
      {"backend", engine.model().name()},
      {"model", describe(config)},
      {"num_parameters", config.num_parameters()},
      {"workload", workload_name},
      {"num_requests", lengths.size()},
      {"input_tokens", input_tokens},
      {"output_tokens", output_tokens},
      {"elapsed_s", elapsed},
      {"requests_per_s", lengths.size() / elapsed},
      {"total_tokens_per_s", total_rate},
      {"output_tokens_per_s", output_tokens / elapsed},
      {"num_devices", 1},
      {"total_tokens_per_s_per_device", total_rate},
      {"gemm_shape", {gemm_tokens, 2 * config.intermediate_size, config.hidden_size}},
      {"gemm_flops_per_s", gemm_flops},
      {"ceiling_tokens_per_s", ceiling},
      {"fraction_of_ceiling", total_rate / ceiling},
      {"max_num_batched_tokens", options.engine.max_num_batched_tokens},
      {"max_num_seqs", options.engine.max_num_seqs},
      {"schedule", options.model.schedule},
      {"async_loop", !options.engine.sync_loop},
      {"steps", stats.num_steps},
      {"mean_step_ms", 1e3 * elapsed / std::max<int64_t>(stats.num_steps, 1)},
      {"kv_cache", {{"blocks", stats.num_kv_blocks}, {"block_size", stats.block_size},
                    {"tokens", int64_t{stats.num_kv_blocks} * stats.block_size}, {"preemptions", stats.num_preemptions}}},
      {"prefix_cache", {{"enabled", !options.engine.disable_prefix_caching}, {"hit_rate", stats.prefix_cache_hit_rate}}},
  };
  std::printf("\n== nanoflow bench throughput (%s backend) ==\n", engine.model().name().c_str());
  std::printf("workload:              %s, %zu requests, %lld input + %lld output tokens\n", workload_name.c_str(),
              lengths.size(), static_cast<long long>(input_tokens), static_cast<long long>(output_tokens));
  std::printf("elapsed:               %.3f s in %lld steps (%.2f ms/step)\n", elapsed,
              static_cast<long long>(stats.num_steps), 1e3 * elapsed / std::max<int64_t>(stats.num_steps, 1));
  std::printf("requests/s:            %.2f\n", lengths.size() / elapsed);
  std::printf("total tokens/s:        %.1f (per device)\n", total_rate);
  std::printf("output tokens/s:       %.1f\n", output_tokens / elapsed);
  std::printf("GEMM rate (measured):  %.3f TFLOP/s at %d x %d x %d\n", gemm_flops / 1e12, gemm_tokens,
              2 * config.intermediate_size, config.hidden_size);
  std::printf("ceiling:               %.1f tokens/s = Compute / (2 x %.3g parameters)\n", ceiling,
              static_cast<double>(config.num_parameters()));
  std::printf("fraction of ceiling:   %.1f%%\n", 100.0 * total_rate / ceiling);
  std::printf("KV cache:              %d blocks x %d = %lld tokens, %lld preemptions; prefix-cache hit rate %.1f%%\n",
              stats.num_kv_blocks, stats.block_size, static_cast<long long>(int64_t{stats.num_kv_blocks} * stats.block_size),
              static_cast<long long>(stats.num_preemptions), 100.0 * stats.prefix_cache_hit_rate);
  std::printf("%s\n", result.dump().c_str());
  if (!options.output_json.empty()) {
    std::ofstream file(options.output_json);
    if (!file) fail("cannot write {}", options.output_json);
    file << result.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

command_action add_bench_throughput_command(CLI::App& bench) {
  auto options = std::make_shared<bench_options>();
  CLI::App* command = bench.add_subcommand("throughput", "Offline throughput over a fixed or traced workload");
  options->model.add_to(*command);
  options->engine.add_to(*command);
  command->add_option("--input-len", options->input_len, "prompt tokens per request (fixed workload)")
      ->check(CLI::PositiveNumber);
  command->add_option("--output-len", options->output_len, "output tokens per request (fixed workload)")
      ->check(CLI::PositiveNumber);
  command->add_option("--trace", options->trace, "CSV trace TIMESTAMP,ContextTokens,GeneratedTokens (e.g. data/traces/)");
  command->add_option("--num-prompts", options->num_prompts, "requests to run")->check(CLI::PositiveNumber);
  command->add_option("--seed", options->seed, "seed of the prompts and of the trace sample");
  command->add_option("--output-json", options->output_json, "also write the result to this file");
  command->add_flag("!--no-progress", options->progress, "no progress bar");
  return [options, command] {
    if (!options->trace.empty() && (command->count("--input-len") || command->count("--output-len")))
      fail("give either --trace or --input-len/--output-len, not both");
    return run_bench(*options);
  };
}

}  // namespace nf::cli
