// Model loading for the command line: config, weights (checkpoint or dummy), backend, tokenizer.
#include "model_loading.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "engine/cpu_backend.h"
#include "model/weights.h"

namespace nf::cli {

void model_options::add_to(CLI::App& command) {
  command.add_option("--model", model_dir, "Hugging Face model directory (config.json, *.safetensors, tokenizer)")
      ->required();
  command.add_option("--load-format", load_format, "auto: read the safetensors weights; dummy: random weights")
      ->check(CLI::IsMember({"auto", "safetensors", "dummy"}));
  command.add_option("--backend", backend, "where the model runs")->check(CLI::IsMember({"cpu"}));
  command.add_option("--block-size", block_size, "tokens per KV-cache block")->check(CLI::Range(1, 1024));
  command.add_option("--num-kv-blocks", num_kv_blocks, "KV-cache blocks (0: one full context)")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--dummy-seed", dummy_seed, "seed of the random weights of --load-format dummy");
}

std::unique_ptr<backend> load_backend(const model_options& options) {
  const auto start = std::chrono::steady_clock::now();
  const model_config config = load_model_config(options.model_dir);
  model_weights weights =
      options.load_format == "dummy" ? dummy_weights(config, options.dummy_seed) : load_weights(options.model_dir, config);
  const int blocks_for_context = (config.max_position_embeddings + options.block_size - 1) / options.block_size;
  const int num_blocks = options.num_kv_blocks > 0 ? options.num_kv_blocks : blocks_for_context;
  auto result = std::make_unique<cpu_backend>(std::move(weights), num_blocks, options.block_size);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "model: %s (%s weights, %s backend, loaded in %.2f s)\n", describe(config).c_str(),
               options.load_format == "dummy" ? "dummy" : "checkpoint", result->name().c_str(), seconds);
  std::fprintf(stderr, "KV cache: %d blocks = %d tokens\n", num_blocks, num_blocks * options.block_size);
  return result;
}

std::unique_ptr<tokenizer> load_tokenizer_if_present(const model_options& options) {
  const std::filesystem::path dir = options.model_dir;
  if (!std::filesystem::exists(dir / "tokenizer.json") && !std::filesystem::exists(dir / "tokenizer.model"))
    return nullptr;
  return load_tokenizer(dir);
}

}  // namespace nf::cli
