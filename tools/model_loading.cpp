// Model loading for the command line: config, weights (checkpoint or dummy), backend, tokenizer.
#include "model_loading.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "engine/cpu_backend.h"
#if NANOFLOW_HAS_CUDA_BACKEND
#include "engine/cuda/cuda_backend.h"
#endif
#include "model/weights.h"
#include "pipeline/pipeline_spec.h"

namespace nf::cli {

void model_options::add_to(CLI::App& command) {
  command.add_option("--model", model_dir, "Hugging Face model directory (config.json, *.safetensors, tokenizer)")
      ->required();
  command.add_option("--load-format", load_format, "auto: read the safetensors weights; dummy: random weights")
      ->check(CLI::IsMember({"auto", "safetensors", "dummy"}));
#if NANOFLOW_HAS_CUDA_BACKEND
  command.add_option("--backend", backend, "where the model runs")->check(CLI::IsMember({"cpu", "cuda"}));
  command.add_option("--gpu-memory-utilization", gpu_memory_utilization,
                     "cuda: share of device memory for weights, activations and the KV cache")
      ->check(CLI::Range(0.01, 1.0));
  command.add_flag("--profile-ops", profile_ops, "cuda: time every op with events; print a per-op table at exit");
  command.add_flag("--enforce-eager", enforce_eager,
                   "cuda: launch every kernel eagerly (no CUDA graphs for decode-only steps)");
#else
  command.add_option("--backend", backend, "where the model runs (this build has no CUDA)")
      ->check(CLI::IsMember({"cpu"}));
#endif
  command.add_option("--block-size", block_size, "tokens per KV-cache block")->check(CLI::Range(1, 1024));
  command.add_option("--kv-cache-tokens", kv_cache_tokens, "KV-cache capacity in tokens (0: backend default)")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--dummy-seed", dummy_seed, "seed of the random weights of --load-format dummy");
  command.add_option("--schedule", schedule,
                     "pipeline spec of a step: sequential, or a spec of configs/pipelines by name (nanobatch, overlap, ...), "
                     "or a spec file's path");
}

namespace {

// The named spec of configs/pipelines (under the working directory, else the source tree the binary was
// built from), or the spec file at `schedule`.
pipeline_spec load_schedule(const std::string& schedule) {
  if (schedule == "sequential") return sequential_spec(llama_op_graph());
  const bool is_name = schedule.find('/') == std::string::npos && !schedule.ends_with(".json");
  if (!is_name) return load_pipeline_spec(schedule, llama_op_graph());
  const std::filesystem::path name = std::filesystem::path("pipelines") / (schedule + ".json");
  const std::filesystem::path local = std::filesystem::path("configs") / name;
  const std::filesystem::path installed = std::filesystem::path(NANOFLOW_CONFIG_DIR) / name;
  if (std::filesystem::exists(local)) return load_pipeline_spec(local, llama_op_graph());
  if (std::filesystem::exists(installed)) return load_pipeline_spec(installed, llama_op_graph());
  fail("--schedule {}: no spec of that name in configs/pipelines (give a name there, or a spec file's path)", schedule);
}

}  // namespace

std::unique_ptr<backend> load_backend(const model_options& options) {
  const auto start = std::chrono::steady_clock::now();
  const model_config config = load_model_config(options.model_dir);
#if NANOFLOW_HAS_CUDA_BACKEND
  if (options.backend == "cuda") {
    cuda_backend_options cuda_options;
    cuda_options.schedule = load_schedule(options.schedule);
    cuda_options.block_size = options.block_size;
    cuda_options.kv_cache_tokens = options.kv_cache_tokens;
    cuda_options.gpu_memory_utilization = options.gpu_memory_utilization;
    cuda_options.profile_ops = options.profile_ops;
    cuda_options.cuda_graphs = !options.enforce_eager;
    cuda::weight_source source;
    source.dummy = options.load_format == "dummy";
    source.dummy_seed = options.dummy_seed;
    if (!source.dummy) source.model_dir = options.model_dir;
    auto result = std::make_unique<cuda_backend>(config, source, cuda_options);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "model: %s (%s weights, %.2f GiB in bf16, cuda backend, loaded in %.2f s)\n",
                 describe(config).c_str(), source.dummy ? "dummy" : "checkpoint",
                 result->weight_bytes() / double(1 << 30), seconds);
    std::fprintf(stderr, "KV cache: %d blocks = %lld tokens (%.2f GiB)\n", result->num_kv_blocks(),
                 static_cast<long long>(result->num_kv_blocks()) * options.block_size,
                 result->kv_cache_bytes() / double(1 << 30));
    std::fprintf(stderr, "schedule: %s (%zu nano-ops per layer)\n", result->schedule().name.c_str(),
                 result->schedule().nano_ops.size());
    return result;
  }
#endif
  model_weights weights =
      options.load_format == "dummy" ? dummy_weights(config, options.dummy_seed) : load_weights(options.model_dir, config);
  const int64_t bytes_per_token = 2LL * config.num_layers * config.kv_size() * sizeof(float);
  const int64_t default_tokens =
      std::max<int64_t>(config.max_position_embeddings, std::min<int64_t>(65536, (2LL << 30) / bytes_per_token));
  const int64_t tokens = options.kv_cache_tokens > 0 ? options.kv_cache_tokens : default_tokens;
  const int num_blocks = static_cast<int>((tokens + options.block_size - 1) / options.block_size);
  auto result =
      std::make_unique<cpu_backend>(std::move(weights), num_blocks, options.block_size, load_schedule(options.schedule));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "model: %s (%s weights, %s backend, loaded in %.2f s)\n", describe(config).c_str(),
               options.load_format == "dummy" ? "dummy" : "checkpoint", result->name().c_str(), seconds);
  std::fprintf(stderr, "KV cache: %d blocks = %d tokens\n", num_blocks, num_blocks * options.block_size);
  std::fprintf(stderr, "schedule: %s (%zu nano-ops per layer)\n", result->schedule().name.c_str(),
               result->schedule().nano_ops.size());
  return result;
}

std::unique_ptr<tokenizer> load_tokenizer_if_present(const model_options& options) {
  const std::filesystem::path dir = options.model_dir;
  if (!std::filesystem::exists(dir / "tokenizer.json") && !std::filesystem::exists(dir / "tokenizer.model"))
    return nullptr;
  return load_tokenizer(dir);
}

void engine_cli_options::add_to(CLI::App& command) {
  command.add_option("--max-num-batched-tokens", max_num_batched_tokens, "dense token budget of one step")
      ->check(CLI::Range(1, 1 << 20));
  command.add_option("--max-num-seqs", max_num_seqs, "most requests running at once")->check(CLI::Range(1, 1 << 20));
  command.add_flag("--no-enable-prefix-caching", disable_prefix_caching, "turn the prefix cache off");
  command.add_flag("--sync-loop", sync_loop, "run the synchronous step loop (no CPU/backend overlap)");
  command.add_flag("--priority-scheduling", priority_scheduling, "order waiting requests by priority, then arrival");
}

engine_options engine_cli_options::make(const backend& model) const {
  engine_options options;
  options.async_loop = !sync_loop;
  options.scheduling.max_num_batched_tokens = max_num_batched_tokens;
  options.scheduling.max_num_seqs = max_num_seqs;
  options.scheduling.max_model_len = model.config().max_position_embeddings;
  options.scheduling.policy = priority_scheduling ? scheduling_policy::priority : scheduling_policy::fcfs;
  options.scheduling.kv.enable_prefix_caching = !disable_prefix_caching;
  options.scheduling.kv.num_tokens = int64_t{model.num_kv_blocks()} * model.block_size();
  return options;
}

}  // namespace nf::cli
