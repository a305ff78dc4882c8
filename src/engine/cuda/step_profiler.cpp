// Step profiling: an event pool, per-op sums, and the representative-step table.
#include "engine/cuda/step_profiler.h"

#include <algorithm>

#include "engine/cuda/device_memory.h"

namespace nf::cuda {

const char* step_op_name(step_op op) {
  switch (op) {
    case step_op::metadata_copy: return "metadata copy (H2D)";
    case step_op::embedding: return "embedding";
    case step_op::norms: return "rmsnorm / add_rmsnorm";
    case step_op::qkv_gemm: return "QKV GEMM";
    case step_op::rope_kv_append: return "rope_kv_append";
    case step_op::q_copy: return "Q copy (strided)";
    case step_op::decode_attention: return "decode attention";
    case step_op::prefill_attention: return "prefill attention";
    case step_op::o_gemm: return "O GEMM";
    case step_op::gate_up_gemm: return "gate_up GEMM";
    case step_op::activation: return "silu_and_mul";
    case step_op::down_gemm: return "down GEMM";
    case step_op::lm_head: return "final norm + LM head";
    case step_op::sampling: return "argmax / logits copy";
    case step_op::count: break;
  }
  return "?";
}

step_profiler::~step_profiler() {
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
}

cudaEvent_t step_profiler::event(size_t index) {
  while (events_.size() <= index) {
    cudaEvent_t e;
    NF_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
  }
  return events_[index];
}

void step_profiler::begin_step(cudaStream_t stream) {
  if (!enabled_) return;
  stream_ = stream;
  num_events_ = 0;
  event_ops_.clear();
  forward_start_ = std::chrono::steady_clock::now();
}

void step_profiler::begin(step_op op) {
  if (!enabled_) return;
  event_ops_.push_back(op);
  NF_CUDA_CHECK(cudaEventRecord(event(num_events_++), stream_));
}

void step_profiler::end() {
  if (!enabled_) return;
  NF_CUDA_CHECK(cudaEventRecord(event(num_events_++), stream_));
}

void step_profiler::end_step(int num_tokens, int num_decodes, int num_prefill_tokens) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  record r;
  r.num_tokens = num_tokens;
  r.num_decodes = num_decodes;
  r.num_prefill_tokens = num_prefill_tokens;
  for (size_t i = 0; i + 1 < num_events_; i += 2) {
    float ms = 0.0f;
    NF_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
    r.op_ms[static_cast<int>(event_ops_[i / 2])] += ms;
  }
  if (num_events_ >= 2) {
    float span = 0.0f;
    NF_CUDA_CHECK(cudaEventElapsedTime(&span, events_[0], events_[num_events_ - 1]));
    r.gpu_span_ms = span;
  }
  r.host_forward_ms = std::chrono::duration<double, std::milli>(now - forward_start_).count();
  r.host_between_ms = has_previous_ ? std::chrono::duration<double, std::milli>(forward_start_ - previous_end_).count() : 0.0;
  previous_end_ = now;
  has_previous_ = true;
  records_.push_back(r);
}

void step_profiler::report(std::FILE* out) const {
  if (!enabled_ || records_.empty()) return;
  // The representative shape: the largest token count seen, averaged over every step of that count.
  int max_tokens = 0;
  for (const record& r : records_) max_tokens = std::max(max_tokens, r.num_tokens);
  record mean;
  int count = 0;
  for (const record& r : records_) {
    if (r.num_tokens != max_tokens) continue;
    ++count;
    mean.num_decodes += r.num_decodes;
    mean.num_prefill_tokens += r.num_prefill_tokens;
    for (int i = 0; i < num_ops; ++i) mean.op_ms[i] += r.op_ms[i];
    mean.gpu_span_ms += r.gpu_span_ms;
    mean.host_forward_ms += r.host_forward_ms;
    mean.host_between_ms += r.host_between_ms;
  }
  const double n = count;
  double ops_total = 0.0;
  for (double& ms : mean.op_ms) ops_total += ms /= n;
  mean.gpu_span_ms /= n;
  mean.host_forward_ms /= n;
  mean.host_between_ms /= n;
  const double step_ms = mean.host_forward_ms + mean.host_between_ms;
  std::fprintf(out, "\n== CUDA backend step profile: %d of %zu steps had %d tokens (mean %.1f decodes, %.1f prefill tokens) ==\n",
               count, records_.size(), max_tokens, mean.num_decodes / n, mean.num_prefill_tokens / n);
  std::fprintf(out, "| operation | ms / step | share of step |\n| --- | --- | --- |\n");
  for (int i = 0; i < num_ops; ++i)
    std::fprintf(out, "| %s | %.3f | %.1f%% |\n", step_op_name(static_cast<step_op>(i)), mean.op_ms[i],
                 100.0 * mean.op_ms[i] / step_ms);
  std::fprintf(out, "| GPU idle between launches (span - ops) | %.3f | %.1f%% |\n", mean.gpu_span_ms - ops_total,
               100.0 * (mean.gpu_span_ms - ops_total) / step_ms);
  std::fprintf(out, "| host in forward outside the GPU span | %.3f | %.1f%% |\n", mean.host_forward_ms - mean.gpu_span_ms,
               100.0 * (mean.host_forward_ms - mean.gpu_span_ms) / step_ms);
  std::fprintf(out, "| host between forward calls (engine) | %.3f | %.1f%% |\n", mean.host_between_ms,
               100.0 * mean.host_between_ms / step_ms);
  std::fprintf(out, "| whole step (forward + between) | %.3f | 100%% |\n", step_ms);
}

}  // namespace nf::cuda
