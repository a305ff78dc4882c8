// The operation profiler behind `nanoflow tune profile`: times every operation of the Llama op graph on this
// GPU over the profile's token counts and SM budgets (decode attention also over decode context lengths), and
// the slowdown of compute operations beside memory operations at SM splits, into an operation_profile
// (tune/operation_profile.h). Synthetic buffers of the model's shape; no weights are read.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "model/model_config.h"
#include "tune/operation_profile.h"

namespace nf {

struct op_profiler_options {
  int dense_budget = 2048;  // the most tokens of one step: token counts 128, 256, ..., dense_budget
  std::vector<double> decode_context_lengths{512, 1024, 2048, 4096};  // increasing, whole tokens
  // Measure every k-th SM budget (always the first and the whole GPU); the others are interpolated linearly in
  // 1 / budget (exact when time = fixed + work / SMs).
  int sm_budget_stride = 1;
  // Interference: the memory operation's SMs m (those that are profiled budgets below the GPU's SM count), the
  // compute operation taking the largest profiled budget c with c + m <= the GPU's SMs.
  std::vector<int> interference_memory_sms{16, 24, 32, 40, 48, 64};
  // true: every compute operation beside decode attention and beside "*" (the other memory operations,
  // represented by the activation kernel); false: gate_up_gemm stands for every compute operation ("*").
  bool interference_per_compute_op = true;
  int block_size = 16;                  // KV block size, a multiple of 16
  int prefill_chunk = 1024;             // prefill attention rows are prompts of this many tokens
  double replay_target_us = 1000.0;     // launches per captured graph: about this long a replay (at most 256)
  int num_replays = 3;                  // timed replays per measurement; the median counts
  double overlap_target_us = 4000.0;    // interference: each side's loop runs about this long alone (or one
                                        // launch of the longer kernel)
  double kv_memory_fraction = 0.4;      // the KV cache takes at most this share of free device memory
  uint64_t seed = 0;
  FILE* progress = stderr;              // one line per operation; nullptr: quiet
};

// Profiles the current CUDA device. Throws nf::error when there is no device, for shapes the kernels do not
// take, for bad options, and on CUDA errors (naming the call).
operation_profile profile_operations(const model_config& config, const op_profiler_options& options);

// The current CUDA device's name as cudaGetDeviceProperties reports it, or "" when there is no device.
std::string current_gpu_name();

}  // namespace nf
