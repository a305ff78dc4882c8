// Options every command that loads a model shares (--model, --load-format, --seed of dummy weights, --backend),
// and the loading itself.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "engine/backend.h"
#include "tokenizer/tokenizer.h"

namespace nf::cli {

struct model_options {
  std::string model_dir;
  std::string load_format = "auto";  // auto (safetensors) or dummy (random weights from config.json)
  std::string backend = "cpu";
  int block_size = 16;
  int num_kv_blocks = 0;  // 0: enough for one full context
  uint64_t dummy_seed = 0;

  void add_to(CLI::App& command);
};

// Loads the model on the chosen backend; logs what was loaded to stderr.
std::unique_ptr<backend> load_backend(const model_options& options);
// The model directory's tokenizer, or nullptr when it has none.
std::unique_ptr<tokenizer> load_tokenizer_if_present(const model_options& options);

}  // namespace nf::cli
