// A model's weights in float32 on the host, with Q/K/V and gate/up fused as the kernels expect them.
// Loaded from a checkpoint (any of f32, f16, bf16) or made up from the config alone (`--load-format dummy`).
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "model/model_config.h"

namespace nf {

struct layer_weights {
  std::vector<float> input_norm;           // [hidden_size]
  std::vector<float> qkv;                  // [q_size + 2 * kv_size, hidden_size]: rows of q, then k, then v
  std::vector<float> qkv_bias;             // [q_size + 2 * kv_size], empty without bias
  std::vector<float> o;                    // [hidden_size, q_size]
  std::vector<float> o_bias;               // [hidden_size], empty without bias
  std::vector<float> post_attention_norm;  // [hidden_size]
  std::vector<float> gate_up;              // [2 * intermediate_size, hidden_size]: rows of gate, then up
  std::vector<float> gate_up_bias;         // [2 * intermediate_size], empty without bias
  std::vector<float> down;                 // [hidden_size, intermediate_size]
  std::vector<float> down_bias;            // [hidden_size], empty without bias
};

struct model_weights {
  model_config config;
  std::vector<float> embed;  // [vocab_size, hidden_size]
  std::vector<layer_weights> layers;
  std::vector<float> final_norm;  // [hidden_size]
  std::vector<float> lm_head;     // [vocab_size, hidden_size]; empty when tied to `embed`

  const float* lm_head_data() const { return lm_head.empty() ? embed.data() : lm_head.data(); }
};

// Reads every weight of `config` from the safetensors files of `model_dir`, checking each shape.
model_weights load_weights(const std::filesystem::path& model_dir, const model_config& config);

// Random weights from the config alone: uniform with the standard deviation `init_std`, norms at 1.
// The same seed gives the same weights.
model_weights dummy_weights(const model_config& config, uint64_t seed, float init_std = 0.02f);

}  // namespace nf
