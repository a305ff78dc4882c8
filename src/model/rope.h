// RoPE inverse frequencies of a model, with its frequency scaling applied (the kernels take them as data).
#pragma once

#include <vector>

#include "model/model_config.h"

namespace nf {

// [head_dim / 2]: inv_freq[i] = theta^(-2i/head_dim), then scaled as `rope.type` says.
std::vector<float> rope_inverse_frequencies(const rope_config& rope, int head_dim);

}  // namespace nf
