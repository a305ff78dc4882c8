// `nanoflow tune`: the automatic pipeline search from the command line. `tune profile` measures an operation
// profile on this GPU (CUDA builds only), `tune search` turns a profile and a workload point into a pipeline
// spec and its predicted timeline (any build, no GPU needed), and `tune` alone does both in one go.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "model/model_config.h"
#include "model_loading.h"
#include "pipeline/op_graph.h"
#include "tune/operation_profile.h"
#include "tune/search.h"
#if NANOFLOW_HAS_TUNE_CUDA
#include "tune/cuda/op_profiler.h"
#endif

namespace nf::cli {
namespace {

struct tune_cli_options {
  model_options model;  // --model (its config.json gives the shapes) and --load-format (no weights are read)
  // profile
  std::string output;  // the profile JSON written
  int max_num_batched_tokens = 2048;
  std::vector<double> decode_contexts{512, 1024, 2048, 4096};
  int sm_budget_stride = 1;
  bool representative_interference = false;
  // search
  std::string profile;  // the profile JSON read (tune search)
  int decode_rows = -1;
  int prefill_rows = -1;
  double mean_context = 1024.0;
  int max_nano_batches = 4;
  double time_limit_s = 10.0;
  std::string gpu;
  std::string spec_name = "tuned";
  bool raw_interference = false;
  std::string output_spec;
  std::string output_prediction;
};

void add_model_options(CLI::App& command, tune_cli_options& o, bool required) {
  CLI::Option* model = command.add_option("--model", o.model.model_dir, "model directory: its config.json gives the shapes");
  if (required) model->required();
  command.add_option("--load-format", o.model.load_format,
                     "accepted for symmetry with the other commands; tuning reads no weights")
      ->check(CLI::IsMember({"auto", "safetensors", "dummy"}));
}

void add_profile_options(CLI::App& command, tune_cli_options& o, bool required) {
  CLI::Option* output = command.add_option("--output,--output-profile", o.output, "the operation profile JSON to write");
  if (required) output->required();
  command.add_option("--max-num-batched-tokens", o.max_num_batched_tokens,
                     "dense token budget of one step: token counts 128, 256, ... up to it")
      ->check(CLI::Range(1, 1 << 16));
  command.add_option("--decode-contexts", o.decode_contexts, "decode context lengths to time decode attention at")
      ->delimiter(',');
  command.add_option("--sm-budget-stride", o.sm_budget_stride,
                     "time every k-th SM budget (and the whole GPU); interpolate the rest")
      ->check(CLI::Range(1, 64));
  command.add_option("--block-size", o.model.block_size, "KV-cache block size of the decode and prefill attention")
      ->check(CLI::Range(16, 1024));
  command.add_flag("--representative-interference", o.representative_interference,
                   "measure interference for gate_up_gemm only, standing for every compute operation");
}

void add_search_options(CLI::App& command, tune_cli_options& o, bool required) {
  CLI::Option* decode = command.add_option("--decode-rows", o.decode_rows, "decode rows of the step tuned for")
                            ->check(CLI::NonNegativeNumber);
  CLI::Option* prefill = command.add_option("--prefill-rows", o.prefill_rows, "prefill rows of the step tuned for")
                             ->check(CLI::NonNegativeNumber);
  command.add_option("--mean-context", o.mean_context, "mean KV length of the decode rows")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--max-nano-batches", o.max_nano_batches, "most nano-batches a candidate splits the step into")
      ->check(CLI::Range(1, 4));
  command.add_option("--time-limit", o.time_limit_s, "seconds per MILP solve (each stage, each candidate)")
      ->check(CLI::Range(0.01, 3600.0));
  command.add_option("--spec-name", o.spec_name, "name of the written pipeline spec");
  command.add_flag("--raw-interference", o.raw_interference,
                   "price each SM split by its own interference reading alone (default: the worst of it and the "
                   "neighbouring measured splits)");
  CLI::Option* spec = command.add_option("--output-spec", o.output_spec, "the pipeline spec JSON to write");
  CLI::Option* prediction =
      command.add_option("--output-prediction", o.output_prediction, "the predicted timeline JSON to write");
  if (required)
    for (CLI::Option* option : {decode, prefill, spec, prediction}) option->required();
}

// Fails before minutes of work when an output cannot be written there.
void check_writable(const std::string& path, const char* option) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && !std::filesystem::is_directory(parent))
    fail("{} {}: the folder {} does not exist", option, path, parent.string());
}

operation_profile measure_profile(const tune_cli_options& o, const model_config& config) {
#if NANOFLOW_HAS_TUNE_CUDA
  op_profiler_options options;
  options.dense_budget = o.max_num_batched_tokens;
  options.decode_context_lengths = o.decode_contexts;
  options.sm_budget_stride = o.sm_budget_stride;
  options.interference_per_compute_op = !o.representative_interference;
  options.block_size = o.model.block_size;
  return profile_operations(config, options);
#else
  (void)o;
  (void)config;
  fail("this nanoflow was built without CUDA, so it cannot profile a GPU; build it with CUDA for `nanoflow tune "
       "profile` (`nanoflow tune search` works on any build, from a profile made elsewhere)");
#endif
}

std::string device_name() {
#if NANOFLOW_HAS_TUNE_CUDA
  return current_gpu_name();
#else
  return "";
#endif
}

int search_and_write(const tune_cli_options& o, const operation_profile& profile) {
  tune_options options;
  options.workload = {o.decode_rows, o.prefill_rows, o.mean_context};
  options.max_nano_batches = o.max_nano_batches;
  options.stage1_time_limit_s = o.time_limit_s;
  options.stage2_time_limit_s = o.time_limit_s;
  options.spec_name = o.spec_name;
  options.interference_margin = !o.raw_interference;
  std::fprintf(stderr, "searching: %d decode + %d prefill rows, mean decode context %.0f, up to %d nano-batches ...\n",
               o.decode_rows, o.prefill_rows, o.mean_context, o.max_nano_batches);
  const tune_result result = search_pipeline(profile, llama_op_graph(), options);
  write_tune_result(result, o.output_spec, o.output_prediction);
  std::printf("tuned spec \"%s\": %d nano-batches, %zu nano-ops per layer; predicted %.1f us per layer, %.3f ms per "
              "step (sequential on the whole GPU: %.1f us per layer)%s\n",
              result.spec.name.c_str(), result.problem.num_nano_batches(), result.spec.nano_ops.size(),
              result.per_layer_us(), result.per_step_us() / 1e3, result.sequential_per_layer_us,
              result.sequential ? "; no split was predicted faster, so the spec is the sequential one" : "");
  std::printf("wrote %s and %s\n", o.output_spec.c_str(), o.output_prediction.c_str());
  return 0;
}

int run_profile(const tune_cli_options& o) {
  check_writable(o.output, "--output");
  const model_config config = load_model_config(o.model.model_dir);
  const operation_profile profile = measure_profile(o, config);
  save_operation_profile(profile, o.output);
  std::printf("wrote %s (%s, %d SMs)\n", o.output.c_str(), profile.gpu.c_str(), profile.num_sms);
  return 0;
}

int run_search(const tune_cli_options& o) {
  check_writable(o.output_spec, "--output-spec");
  check_writable(o.output_prediction, "--output-prediction");
  const model_config config = load_model_config(o.model.model_dir);
  profile_expectation expected;
  expected.model = &config;
  expected.gpu = o.gpu.empty() ? device_name() : o.gpu;
  const operation_profile profile = load_operation_profile(o.profile, llama_op_graph(), expected);
  return search_and_write(o, profile);
}

int run_all(const tune_cli_options& o) {
  std::vector<std::string> missing;
  if (o.model.model_dir.empty()) missing.push_back("--model");
  if (o.output.empty()) missing.push_back("--output");
  if (o.decode_rows < 0) missing.push_back("--decode-rows");
  if (o.prefill_rows < 0) missing.push_back("--prefill-rows");
  if (o.output_spec.empty()) missing.push_back("--output-spec");
  if (o.output_prediction.empty()) missing.push_back("--output-prediction");
  if (!missing.empty())
    fail("nanoflow tune (profile, then search) needs {}; or run `nanoflow tune profile` and `nanoflow tune search`",
         fmt::join(missing, ", "));
  check_writable(o.output, "--output");
  check_writable(o.output_spec, "--output-spec");
  check_writable(o.output_prediction, "--output-prediction");
  const model_config config = load_model_config(o.model.model_dir);
  if (o.decode_rows + o.prefill_rows > o.max_num_batched_tokens)
    fail("--decode-rows {} + --prefill-rows {} exceeds --max-num-batched-tokens {}", o.decode_rows, o.prefill_rows,
         o.max_num_batched_tokens);
  const operation_profile profile = measure_profile(o, config);
  save_operation_profile(profile, o.output);
  std::fprintf(stderr, "wrote %s\n", o.output.c_str());
  return search_and_write(o, profile);
}

}  // namespace

command_action add_tune_command(CLI::App& app) {
  auto options = std::make_shared<tune_cli_options>();
  CLI::App* tune = app.add_subcommand(
      "tune", "Automatic pipeline search: profile the GPU's operations, then search for the fastest pipeline spec");
  tune->require_subcommand(0, 1);
  add_model_options(*tune, *options, false);
  add_profile_options(*tune, *options, false);
  add_search_options(*tune, *options, false);

  CLI::App* profile = tune->add_subcommand("profile", "Time every operation of the model on this GPU into a profile");
  add_model_options(*profile, *options, true);
  add_profile_options(*profile, *options, true);

  CLI::App* search = tune->add_subcommand("search", "From a profile and a workload point, the fastest pipeline spec");
  search->add_option("--profile", options->profile, "operation profile JSON (from `nanoflow tune profile`)")->required();
  search->add_option("--gpu", options->gpu,
                     "check the profile against this GPU name (default: this machine's GPU, when it has one)");
  add_model_options(*search, *options, true);
  add_search_options(*search, *options, true);

  return [options, profile, search] {
    if (profile->parsed()) return run_profile(*options);
    if (search->parsed()) return run_search(*options);
    return run_all(*options);
  };
}

}  // namespace nf::cli
