// Step profiling: an event pool, per-op sums, per-stream busy time, and the representative-step report.
#include "engine/cuda/step_profiler.h"

#include <algorithm>
#include <map>
#include <string>

#include "engine/cuda/device_memory.h"

namespace nf::cuda {

const char* step_op_name(step_op op) {
  switch (op) {
    case step_op::metadata_copy: return "metadata copy (H2D)";
    case step_op::embedding: return "embedding";
    case step_op::norms: return "rmsnorm / add_rmsnorm";
    case step_op::qkv_gemm: return "QKV GEMM";
    case step_op::rope_kv_append: return "rope_kv_append (+ packed Q)";
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

void step_profiler::begin_step(cudaStream_t main_stream) {
  if (!enabled_) return;
  num_events_ = 0;
  launches_.clear();
  forward_start_ = std::chrono::steady_clock::now();
  NF_CUDA_CHECK(cudaEventRecord(event(num_events_++), main_stream));
}

void step_profiler::begin(step_op op, cudaStream_t stream, int lane, const std::string* label, int layer) {
  if (!enabled_) return;
  launches_.push_back({op, stream, lane, label, layer});
  NF_CUDA_CHECK(cudaEventRecord(event(num_events_++), stream));
}

void step_profiler::end() {
  if (!enabled_) return;
  NF_CUDA_CHECK(cudaEventRecord(event(num_events_++), launches_.back().stream));
}

void step_profiler::end_step(int num_tokens, int num_decodes, int num_prefill_tokens) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  record r;
  r.num_tokens = num_tokens;
  r.num_decodes = num_decodes;
  r.num_prefill_tokens = num_prefill_tokens;
  std::vector<timed_launch> timeline;
  for (size_t i = 0; i < launches_.size(); ++i) {
    const launch& l = launches_[i];
    float start = 0.0f, end = 0.0f;
    NF_CUDA_CHECK(cudaEventElapsedTime(&start, events_[0], events_[1 + 2 * i]));
    NF_CUDA_CHECK(cudaEventElapsedTime(&end, events_[0], events_[2 + 2 * i]));
    r.op_ms[static_cast<int>(l.op)] += end - start;
    if (static_cast<int>(r.lane_busy_ms.size()) <= l.lane) r.lane_busy_ms.resize(l.lane + 1, 0.0);
    r.lane_busy_ms[l.lane] += end - start;
    r.gpu_span_ms = std::max(r.gpu_span_ms, double(end));
    timeline.push_back({l.label ? *l.label : step_op_name(l.op), l.lane, l.layer, start, end});
  }
  r.host_forward_ms = std::chrono::duration<double, std::milli>(now - forward_start_).count();
  r.host_between_ms = has_previous_ ? std::chrono::duration<double, std::milli>(forward_start_ - previous_end_).count() : 0.0;
  previous_end_ = now;
  has_previous_ = true;
  if (num_tokens >= timeline_tokens_) {
    timeline_tokens_ = num_tokens;
    timeline_ = std::move(timeline);
  }
  records_.push_back(std::move(r));
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
    if (mean.lane_busy_ms.size() < r.lane_busy_ms.size()) mean.lane_busy_ms.resize(r.lane_busy_ms.size(), 0.0);
    for (size_t i = 0; i < r.lane_busy_ms.size(); ++i) mean.lane_busy_ms[i] += r.lane_busy_ms[i];
    mean.gpu_span_ms += r.gpu_span_ms;
    mean.host_forward_ms += r.host_forward_ms;
    mean.host_between_ms += r.host_between_ms;
  }
  const double n = count;
  for (double& ms : mean.op_ms) ms /= n;
  for (double& ms : mean.lane_busy_ms) ms /= n;
  mean.gpu_span_ms /= n;
  mean.host_forward_ms /= n;
  mean.host_between_ms /= n;
  const double step_ms = mean.host_forward_ms + mean.host_between_ms;
  std::fprintf(out, "\n== CUDA backend step profile: %d of %zu steps had %d tokens (mean %.1f decodes, %.1f prefill tokens) ==\n",
               count, records_.size(), max_tokens, mean.num_decodes / n, mean.num_prefill_tokens / n);
  std::fprintf(out, "| operation | ms / step (summed over streams) | share of step |\n| --- | --- | --- |\n");
  for (int i = 0; i < num_ops; ++i)
    std::fprintf(out, "| %s | %.3f | %.1f%% |\n", step_op_name(static_cast<step_op>(i)), mean.op_ms[i],
                 100.0 * mean.op_ms[i] / step_ms);
  for (size_t i = 0; i < mean.lane_busy_ms.size(); ++i)
    std::fprintf(out, "| stream %zu busy | %.3f | %.1f%% of the GPU span |\n", i, mean.lane_busy_ms[i],
                 100.0 * mean.lane_busy_ms[i] / mean.gpu_span_ms);
  std::fprintf(out, "| GPU span (step start to last launch end) | %.3f | %.1f%% |\n", mean.gpu_span_ms,
               100.0 * mean.gpu_span_ms / step_ms);
  std::fprintf(out, "| host in forward outside the GPU span | %.3f | %.1f%% |\n", mean.host_forward_ms - mean.gpu_span_ms,
               100.0 * (mean.host_forward_ms - mean.gpu_span_ms) / step_ms);
  std::fprintf(out, "| host between forward calls (engine) | %.3f | %.1f%% |\n", mean.host_between_ms,
               100.0 * mean.host_between_ms / step_ms);
  std::fprintf(out, "| whole step (forward + between) | %.3f | 100%% |\n", step_ms);

  report_step_groups(out, max_tokens);

  // One middle layer of the latest largest step, per stream, relative to that layer's first launch.
  int max_layer = -1;
  for (const timed_launch& t : timeline_) max_layer = std::max(max_layer, t.layer);
  if (max_layer < 0) return;
  const int layer = max_layer / 2;
  double origin = 1e300;
  for (const timed_launch& t : timeline_)
    if (t.layer == layer) origin = std::min(origin, t.start_ms);
  std::fprintf(out, "\n== timeline of layer %d of one %d-token step (ms from the layer's first launch) ==\n", layer,
               timeline_tokens_);
  std::fprintf(out, "| stream | nano-op | start | end | duration |\n| --- | --- | --- | --- | --- |\n");
  std::vector<const timed_launch*> rows;
  for (const timed_launch& t : timeline_)
    if (t.layer == layer) rows.push_back(&t);
  std::stable_sort(rows.begin(), rows.end(), [](const timed_launch* a, const timed_launch* b) {
    return a->lane != b->lane ? a->lane < b->lane : a->start_ms < b->start_ms;
  });
  for (const timed_launch* t : rows)
    std::fprintf(out, "| %d | %s | %.3f | %.3f | %.3f |\n", t->lane, t->label.c_str(), t->start_ms - origin,
                 t->end_ms - origin, t->end_ms - t->start_ms);
}

void step_profiler::report_step_groups(std::FILE* out, int max_tokens) const {
  // Keys in print order: full steps by 128s of decodes (0, 1, ...), then partial steps with prefill, then
  // decode-only steps.
  constexpr int decode_bucket = 128;
  constexpr int partial_key = 1 << 20, decode_only_key = partial_key + 1;
  struct group {
    int steps = 0;
    double decodes = 0.0, prefill_tokens = 0.0, step_ms = 0.0, decode_attention_ms = 0.0, gemm_ms = 0.0;
  };
  std::map<int, group> groups;
  double total_ms = 0.0;
  for (const record& r : records_) {
    const int key = r.num_tokens == max_tokens     ? r.num_decodes / decode_bucket
                    : r.num_prefill_tokens > 0 ? partial_key
                                               : decode_only_key;
    group& g = groups[key];
    const double step_ms = r.host_forward_ms + r.host_between_ms;
    ++g.steps;
    g.decodes += r.num_decodes;
    g.prefill_tokens += r.num_prefill_tokens;
    g.step_ms += step_ms;
    g.decode_attention_ms += r.op_ms[static_cast<int>(step_op::decode_attention)];
    for (step_op op : {step_op::qkv_gemm, step_op::o_gemm, step_op::gate_up_gemm, step_op::down_gemm})
      g.gemm_ms += r.op_ms[static_cast<int>(op)];
    total_ms += step_ms;
  }
  std::fprintf(out, "\n== where the run's time went: steps by kind (ms are means per step; decode attention and GEMMs "
                    "summed over streams) ==\n");
  std::fprintf(out, "| steps | count | decodes | prefill tokens | step ms | decode attention ms | GEMM ms | share of "
                    "time |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (const auto& [key, g] : groups) {
    const std::string name = key == partial_key     ? "partial, with prefill"
                             : key == decode_only_key ? "decode only"
                                                      : "full, " + std::to_string(key * decode_bucket) + "-" +
                                                            std::to_string((key + 1) * decode_bucket - 1) + " decodes";
    const double n = g.steps;
    std::fprintf(out, "| %s | %d | %.1f | %.1f | %.3f | %.3f | %.3f | %.1f%% |\n", name.c_str(), g.steps,
                 g.decodes / n, g.prefill_tokens / n, g.step_ms / n, g.decode_attention_ms / n, g.gemm_ms / n,
                 100.0 * g.step_ms / total_ms);
  }
}

}  // namespace nf::cuda
