// Per-operation timing of the CUDA backend's steps (profiling mode only): CUDA events around every launch,
// read back after the step's final synchronisation, plus the host time inside and between forward calls.
// The report averages the steps of the most common (largest) shape, so it describes one representative step.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace nf::cuda {

enum class step_op {
  metadata_copy,
  embedding,
  norms,
  qkv_gemm,
  rope_kv_append,
  q_copy,
  decode_attention,
  prefill_attention,
  o_gemm,
  gate_up_gemm,
  activation,
  down_gemm,
  lm_head,
  sampling,
  count
};

const char* step_op_name(step_op op);

class step_profiler {
 public:
  static constexpr int num_ops = static_cast<int>(step_op::count);

  explicit step_profiler(bool enabled) : enabled_(enabled) {}
  ~step_profiler();
  step_profiler(const step_profiler&) = delete;
  step_profiler& operator=(const step_profiler&) = delete;

  bool enabled() const { return enabled_; }
  void begin_step(cudaStream_t stream);
  // Records the start and end events of one launch (or group of launches) of `op`.
  void begin(step_op op);
  void end();
  // Call after the stream is synchronised: reads the events and stores the step's record.
  void end_step(int num_tokens, int num_decodes, int num_prefill_tokens);
  // Prints the table of the representative step (steps with the largest token count) to `out`.
  void report(std::FILE* out) const;

 private:
  struct record {
    int num_tokens = 0, num_decodes = 0, num_prefill_tokens = 0;
    std::array<double, num_ops> op_ms{};
    double gpu_span_ms = 0.0;      // first event to last event
    double host_forward_ms = 0.0;  // wall time of the forward call
    double host_between_ms = 0.0;  // wall time since the previous forward returned (engine, sampler, scheduler)
  };
  cudaEvent_t event(size_t index);

  bool enabled_;
  cudaStream_t stream_ = nullptr;
  std::vector<cudaEvent_t> events_;        // pool, reused every step
  std::vector<step_op> event_ops_;         // [pairs recorded this step]
  size_t num_events_ = 0;
  std::chrono::steady_clock::time_point forward_start_, previous_end_;
  bool has_previous_ = false;
  std::vector<record> records_;
};

}  // namespace nf::cuda
