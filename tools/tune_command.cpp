// `nanoflow tune`: the automatic pipeline search from the command line. `tune profile` measures an operation
// profile on this GPU (CUDA builds only), `tune search` turns a profile and a workload point into a pipeline
// spec and its predicted timeline (any build, no GPU needed), and `tune` alone does both in one go. With
// --measure N the best candidates are then timed as whole steps on a backend (dummy weights) and the fastest
// measured one is written (by default in `tune`, which has the GPU at hand anyway).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "engine/step_benchmark.h"
#include "model/model_config.h"
#include "model_loading.h"
#include "pipeline/op_graph.h"
#include "tune/measured_choice.h"
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
  std::vector<std::string> memory_stream_ops{"decode_attention"};
  std::string output_spec;
  std::string output_prediction;
  // measurement
  int measure = -1;  // ranked candidates to time as whole steps; 0: none; -1: the command's default
  std::string measure_backend = "cuda";
  std::vector<int> measure_memory_sms{16, 24, 32, 40, 48, 56, 64};
  int measure_repeats = 15;
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
  command.add_option("--memory-stream-ops", o.memory_stream_ops,
                     "operations that may run on the memory stream beside the GEMMs; \"*\": every memory-bound one "
                     "(default: decode_attention)")
      ->delimiter(',');
  CLI::Option* spec = command.add_option("--output-spec", o.output_spec, "the pipeline spec JSON to write");
  CLI::Option* prediction =
      command.add_option("--output-prediction", o.output_prediction, "the predicted timeline JSON to write");
  if (required)
    for (CLI::Option* option : {decode, prefill, spec, prediction}) option->required();
  command.add_option("--measure", o.measure,
                     "time the N best-predicted specs, the sequential one and the best split at other SM partitions as "
                     "whole steps (dummy weights), and write the fastest measured (0: write the best predicted; "
                     "default 4 for `tune`, 0 for `tune search`)")
      ->check(CLI::Range(0, 64));
  command.add_option("--measure-backend", o.measure_backend, "backend the candidates are timed on")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  command.add_option("--measure-memory-sms", o.measure_memory_sms,
                     "memory-side SM budgets the best split is also timed at (its compute side gets the rest)")
      ->delimiter(',');
  command.add_option("--measure-repeats", o.measure_repeats, "timed steps per candidate (the median counts)")
      ->check(CLI::Range(1, 1000));
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

// A backend with dummy weights that times whole steps of a spec at a step mix (the median of --measure-repeats).
std::unique_ptr<backend> timing_backend(const tune_cli_options& o) {
  model_options m = o.model;
  m.backend = o.measure_backend;
  m.load_format = "dummy";
  m.schedule = "sequential";
  return load_backend(m);
}

// The shape of the synthetic step the specs are timed on: these row counts at the workload's mean decode context.
synthetic_step_shape timing_shape(const tune_cli_options& o, int num_decode, int num_prefill) {
  synthetic_step_shape shape;
  shape.num_decode = num_decode;
  shape.num_prefill = num_prefill;
  shape.mean_decode_context = o.mean_context;
  return shape;
}

model_batch timing_batch(const tune_cli_options& o, const backend& model, int num_decode, int num_prefill) {
  return synthetic_step_batch(timing_shape(o, num_decode, num_prefill), model.block_size(), model.num_kv_blocks(),
                              model.config().max_position_embeddings, model.config().vocab_size, 1);
}

double step_us(const tune_cli_options& o, backend& model, const pipeline_spec& spec, const model_batch& batch) {
  model.set_schedule(spec);
  return 1e3 * median_step_ms(model, batch, std::min(3, o.measure_repeats), o.measure_repeats);
}

// Times the candidates at the workload's step; returns the chosen index.
size_t measure_candidates(const tune_cli_options& o, backend& model, std::vector<timed_spec>& specs) {
  std::fprintf(stderr, "timing %zu specs on the %s backend: %d decode rows (contexts %.0f to %.0f) + %d prefill rows, "
               "median of %d steps each\n",
               specs.size(), model.name().c_str(), o.decode_rows, 0.5 * o.mean_context, 1.5 * o.mean_context,
               o.prefill_rows, o.measure_repeats);
  const model_batch batch = timing_batch(o, model, o.decode_rows, o.prefill_rows);
  const int64_t distinct_blocks =
      synthetic_step_distinct_blocks(timing_shape(o, o.decode_rows, o.prefill_rows), model.block_size());
  if (distinct_blocks > model.num_kv_blocks())
    std::fprintf(stderr, "the KV cache holds %d blocks, fewer than the %lld this step needs: its decode sequences share "
                 "blocks (the same bytes are read; this GPU would run fewer decodes at this context)\n",
                 model.num_kv_blocks(), static_cast<long long>(distinct_blocks));
  const step_timer timer = [&](const pipeline_spec& spec) { return step_us(o, model, spec, batch); };
  return time_and_choose(specs, timer, stdout);
}

// The chosen spec (without its row thresholds, which would send the step to the sequential spec) and the
// sequential one timed at one step mix, with a progress line under `label`.
step_mix_point time_step_mix(const tune_cli_options& o, backend& model, const pipeline_spec& spec, int num_decode,
                           int num_prefill, const char* label) {
  pipeline_spec unconditional = spec;
  unconditional.min_decode_rows = 0;
  unconditional.min_prefill_rows = 0;
  const model_batch batch = timing_batch(o, model, num_decode, num_prefill);
  step_mix_point p{num_decode, num_prefill, step_us(o, model, unconditional, batch),
                 step_us(o, model, sequential_spec(llama_op_graph()), batch)};
  std::printf("%s: %d decode + %d prefill rows: chosen spec %.3f ms, sequential %.3f ms (%.3fx)\n", label,
              p.num_decode, p.num_prefill, p.spec_us / 1e3, p.sequential_us / 1e3, p.sequential_us / p.spec_us);
  return p;
}

int search_and_write(const tune_cli_options& o, const operation_profile& profile, int default_measure) {
  tune_options options;
  options.workload = {o.decode_rows, o.prefill_rows, o.mean_context};
  options.max_nano_batches = o.max_nano_batches;
  options.stage1_time_limit_s = o.time_limit_s;
  options.stage2_time_limit_s = o.time_limit_s;
  options.spec_name = o.spec_name;
  options.interference_margin = !o.raw_interference;
  options.memory_stream_ops = o.memory_stream_ops;
  if (options.memory_stream_ops == std::vector<std::string>{"*"}) options.memory_stream_ops.clear();
  std::fprintf(stderr, "searching: %d decode + %d prefill rows, mean decode context %.0f, up to %d nano-batches ...\n",
               o.decode_rows, o.prefill_rows, o.mean_context, o.max_nano_batches);
  const std::vector<tune_result> ranked = search_ranked(profile, llama_op_graph(), options);
  const tune_result& result = ranked.front();
  std::printf("best predicted spec: %d nano-batches, %zu nano-ops per layer; predicted %.1f us per layer, %.3f ms per "
              "step (sequential on the whole GPU: %.1f us per layer)%s\n",
              result.problem.num_nano_batches(), result.spec.nano_ops.size(), result.per_layer_us(),
              result.per_step_us() / 1e3, result.sequential_per_layer_us,
              result.sequential ? "; no split was predicted faster, so it is the sequential one" : "");
  const int measure = o.measure >= 0 ? o.measure : default_measure;
  if (measure == 0) {
    write_tune_result(result, o.output_spec, o.output_prediction);
    std::printf("tuned spec \"%s\": the best predicted\n", result.spec.name.c_str());
    std::printf("wrote %s and %s\n", o.output_spec.c_str(), o.output_prediction.c_str());
    return 0;
  }
  std::vector<timed_spec> specs =
      measurement_candidates(ranked, llama_op_graph(), profile.num_sms, measure, o.measure_memory_sms);
  const std::unique_ptr<backend> model = timing_backend(o);
  const size_t chosen = measure_candidates(o, *model, specs);
  const timed_spec& best = specs[chosen];
  const tune_result& base = ranked[best.ranked_index];
  pipeline_spec spec = best.spec;
  double sequential_us = 0.0;
  for (const timed_spec& s : specs)
    if (s.label == "sequential") sequential_us = s.measured_step_us;
  spec.description = fmt::format("{}; chosen by timing {} specs as whole steps: {}, {:.3f} ms per step (sequential "
                                 "{:.3f} ms)",
                                 base.spec.description, specs.size(), best.label, best.measured_step_us / 1e3,
                                 sequential_us / 1e3);
  nlohmann::json prediction = base.prediction_json();
  prediction["measured"] = measurement_json(specs, chosen);
  if (best.label != "sequential" && sequential_us > 0.0) {
    const step_mix_timer time_mix = [&](int num_decode, int num_prefill, const char* ladder) {
      return time_step_mix(o, *model, spec, num_decode, num_prefill, ladder);
    };
    const row_thresholds thresholds = measure_row_thresholds(
        o.decode_rows, o.prefill_rows, {o.decode_rows, o.prefill_rows, best.measured_step_us, sequential_us}, time_mix);
    spec.min_decode_rows = thresholds.min_decode_rows;
    spec.min_prefill_rows = thresholds.min_prefill_rows;
    prediction["decode_ladder"] = thresholds.decode_ladder;
    prediction["prefill_ladder"] = thresholds.prefill_ladder;
    std::printf("min_decode_rows %d, min_prefill_rows %d: steps with fewer decode or prefill rows run the sequential "
                "spec\n",
                spec.min_decode_rows, spec.min_prefill_rows);
  }
  if (best.predicted_step_us < 0)
    prediction["measured"]["chosen_note"] =
        "the chosen spec is the ranked one with its SM partition moved; the timeline is the ranked one's prediction";
  write_tune_files(spec, prediction, o.output_spec, o.output_prediction);
  std::printf("tuned spec \"%s\": %s, measured %.3f ms per step against %.3f ms sequential (%.3fx)\n",
              spec.name.c_str(), best.label.c_str(), best.measured_step_us / 1e3, sequential_us / 1e3,
              sequential_us / best.measured_step_us);
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
  return search_and_write(o, profile, 0);
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
  return search_and_write(o, profile, 4);
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
