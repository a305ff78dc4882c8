// Per-operation timing of the CUDA backend's steps (profiling mode only): CUDA events around every launch on
// whichever stream it runs, read back after the step's final synchronisation, plus the host time inside and
// between forward calls. The report averages the steps of the largest token count, so it describes one
// representative step: time per operation, each stream's busy time, and the timeline of one layer per stream; then
// it shows where the whole run's time went, by groups of steps (full steps by their number of decodes, partial steps
// with prefill, decode-only steps).
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
  // Marks the step's start on the main stream.
  void begin_step(cudaStream_t main_stream);
  // Brackets one launch (or group of launches) of `op` on `stream` (lane index `lane`); `label` and `layer`
  // name a nano-op for the timeline (layer -1: outside the layers).
  void begin(step_op op, cudaStream_t stream, int lane = 0, const std::string* label = nullptr, int layer = -1);
  void end();
  // Call after the main stream is synchronised: reads the events and stores the step's record.
  void end_step(int num_tokens, int num_decodes, int num_prefill_tokens);
  // Prints the representative step (steps with the largest token count) to `out`.
  void report(std::FILE* out) const;

 private:
  struct launch {
    step_op op;
    cudaStream_t stream;
    int lane;
    const std::string* label;
    int layer;
  };
  struct timed_launch {
    std::string label;
    int lane = 0;
    int layer = -1;
    double start_ms = 0.0, end_ms = 0.0;  // from the step's start event
  };
  struct record {
    int num_tokens = 0, num_decodes = 0, num_prefill_tokens = 0;
    std::array<double, num_ops> op_ms{};
    std::vector<double> lane_busy_ms;  // [num_lanes]: sum of the launches' times on each stream
    double gpu_span_ms = 0.0;          // step start to the last end
    double host_forward_ms = 0.0;      // wall time of the forward call
    double host_between_ms = 0.0;      // wall time since the previous forward returned (engine, sampler, scheduler)
  };
  cudaEvent_t event(size_t index);
  void report_step_groups(std::FILE* out, int max_tokens) const;

  bool enabled_;
  std::vector<cudaEvent_t> events_;  // pool, reused every step: [0] the step start, then (start, end) pairs
  std::vector<launch> launches_;     // [pairs recorded this step]
  size_t num_events_ = 0;
  std::chrono::steady_clock::time_point forward_start_, previous_end_;
  bool has_previous_ = false;
  std::vector<record> records_;
  std::vector<timed_launch> timeline_;  // of the latest step with the largest token count
  int timeline_tokens_ = 0;
};

}  // namespace nf::cuda
