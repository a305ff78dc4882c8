// A model's weights in bf16 on the device, fused as the kernels expect (Q/K/V rows, then gate/up rows), in one
// allocation. Filled layer by layer from a safetensors checkpoint (converted to bf16 through small pinned
// buffers, never the whole model on the host), or generated on the device for `--load-format dummy`.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <filesystem>
#include <vector>

#include "engine/cuda/device_memory.h"
#include "model/model_config.h"

namespace nf::cuda {

struct device_layer_weights {
  __nv_bfloat16* input_norm = nullptr;           // [hidden_size]
  __nv_bfloat16* qkv = nullptr;                  // [q_size + 2 * kv_size, hidden_size]
  __nv_bfloat16* qkv_bias = nullptr;             // [q_size + 2 * kv_size] or nullptr
  __nv_bfloat16* o = nullptr;                    // [hidden_size, q_size]
  __nv_bfloat16* o_bias = nullptr;               // [hidden_size] or nullptr
  __nv_bfloat16* post_attention_norm = nullptr;  // [hidden_size]
  __nv_bfloat16* gate_up = nullptr;              // [2 * intermediate_size, hidden_size]
  __nv_bfloat16* gate_up_bias = nullptr;         // [2 * intermediate_size] or nullptr
  __nv_bfloat16* down = nullptr;                 // [hidden_size, intermediate_size]
  __nv_bfloat16* down_bias = nullptr;            // [hidden_size] or nullptr
};

struct device_weights {
  memory_block storage;                 // every tensor below lives in it
  __nv_bfloat16* embed = nullptr;       // [vocab_size, hidden_size]
  __nv_bfloat16* lm_head = nullptr;     // [vocab_size, hidden_size] (== embed when tied)
  __nv_bfloat16* final_norm = nullptr;  // [hidden_size]
  std::vector<device_layer_weights> layers;
};

// Where the weights come from.
struct weight_source {
  std::filesystem::path model_dir;  // safetensors checkpoint; empty with `dummy`
  bool dummy = false;
  uint64_t dummy_seed = 0;
  float dummy_std = 0.02f;
};

// Allocates and fills; `show_progress` draws a progress bar on stderr when it is a terminal.
device_weights load_device_weights(const model_config& config, const weight_source& source, bool show_progress);

}  // namespace nf::cuda
