// A model's shape and hyper-parameters, read from a Hugging Face config.json (transformers 4 or 5 dialect).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace nf {

enum class model_architecture { llama, mistral, qwen2 };

// Rotary position embedding: the base and an optional frequency scaling (none, linear or llama3).
struct rope_config {
  enum class scaling { none, linear, llama3 };
  double theta = 10000.0;
  scaling type = scaling::none;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
};

struct model_config {
  model_architecture architecture = model_architecture::llama;
  std::string architecture_name;  // as in config.json, e.g. "LlamaForCausalLM"
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_position_embeddings = 0;  // the model's context, after any sliding-window cap
  double rms_norm_eps = 1e-6;
  rope_config rope;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2, or Llama with attention_bias
  bool o_bias = false;    // Llama with attention_bias
  bool mlp_bias = false;  // Llama with mlp_bias
  std::string stored_dtype;  // "bfloat16", "float16", "float32" as the config says, informational
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  // from config.json, then generation_config.json when present

  int q_size() const { return num_q_heads * head_dim; }
  int kv_size() const { return num_kv_heads * head_dim; }
  int qkv_size() const { return q_size() + 2 * kv_size(); }
  // Parameters of the dense model (embeddings and LM head counted once when tied).
  int64_t num_parameters() const;
  // Multiply-accumulate FLOPs per token of the weight GEMMs (2 * parameters touched per token), excluding attention.
  double gemm_flops_per_token() const;
};

// Parses config.json text; throws nf::error naming the missing or invalid field.
model_config parse_model_config(const nlohmann::json& config);
// Reads `dir/config.json` and, when present, `dir/generation_config.json` (for EOS ids).
model_config load_model_config(const std::filesystem::path& dir);

std::string describe(const model_config& config);

}  // namespace nf
