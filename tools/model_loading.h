// Options every command that loads a model shares (--model, --load-format, --seed of dummy weights, --backend,
// --schedule), and the loading itself.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "engine/backend.h"
#include "engine/llm_engine.h"
#include "tokenizer/tokenizer.h"

namespace nf::cli {

struct model_options {
  std::string model_dir;
  std::string load_format = "auto";  // auto (safetensors) or dummy (random weights from config.json)
  std::string backend = "cpu";
  int block_size = 16;
  int64_t kv_cache_tokens = 0;  // 0: the backend's default (CPU: 64k tokens within 2 GiB, at least one context)
  uint64_t dummy_seed = 0;
  double gpu_memory_utilization = 0.90;  // cuda: share of device memory for weights, activations and KV cache
  bool profile_ops = false;              // cuda: per-op timing table of a representative step on exit
  bool enforce_eager = false;            // cuda: no CUDA graphs, every kernel launched eagerly
  std::string schedule = "sequential";  // pipeline spec: sequential, nanobatch, overlap, or a spec file's path

  void add_to(CLI::App& command);
};

// Options of the continuous-batching engine, shared by `bench throughput` and `serve`.
struct engine_cli_options {
  int max_num_batched_tokens = 2048;
  int max_num_seqs = 1024;
  bool disable_prefix_caching = false;
  bool sync_loop = false;
  bool priority_scheduling = false;

  void add_to(CLI::App& command);
  engine_options make(const backend& model) const;
};

// Loads the model on the chosen backend; logs what was loaded to stderr.
std::unique_ptr<backend> load_backend(const model_options& options);
// The model directory's tokenizer, or nullptr when it has none.
std::unique_ptr<tokenizer> load_tokenizer_if_present(const model_options& options);

}  // namespace nf::cli
