// The operation profiler: per-op timing tables from captured launch sequences, then interference from pairs of
// sequences on two streams. See op_profiler.h.
#include "tune/cuda/op_profiler.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <tuple>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "engine/cuda/device_memory.h"
#include "kernels/cuda/gemm.h"
#include "tune/cuda/launch_sequence.h"
#include "tune/cuda/synthetic_layer.h"

namespace nf {

namespace {

using cuda::launch_sequence;

class stream_handle {
 public:
  explicit stream_handle(bool high_priority) {
    int least = 0, greatest = 0;
    NF_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    NF_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, high_priority ? greatest : least));
  }
  ~stream_handle() { cudaStreamDestroy(stream_); }
  stream_handle(const stream_handle&) = delete;
  stream_handle& operator=(const stream_handle&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

double median(std::vector<double> values) {
  std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
  return values[values.size() / 2];
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void check_options(const op_profiler_options& o) {
  if (o.dense_budget <= 0) fail("the dense token budget must be positive, got {}", o.dense_budget);
  if (o.sm_budget_stride <= 0) fail("the SM budget stride must be positive, got {}", o.sm_budget_stride);
  if (o.num_replays <= 0) fail("the number of replays must be positive, got {}", o.num_replays);
  if (!(o.replay_target_us > 0.0) || !(o.overlap_target_us > 0.0)) fail("timing targets must be positive");
  if (o.decode_context_lengths.empty()) fail("profiling needs at least one decode context length");
  for (size_t i = 0; i < o.decode_context_lengths.size(); ++i) {
    const double c = o.decode_context_lengths[i];
    if (!(c >= 1.0) || c != std::floor(c) || c > double(1 << 24))
      fail("decode context lengths must be whole numbers of tokens, got {}", c);
    if (i > 0 && c <= o.decode_context_lengths[i - 1]) fail("decode context lengths must increase");
  }
}

// One layer's share of the KV cache the engine would allocate on this device (the default
// --gpu-memory-utilization of 0.9, less the bf16 weights): decode attention then streams a region of the size it
// streams in the engine (several GiB; far past the L2), and no larger.
size_t engine_layer_kv_bytes(const model_config& config) {
  size_t free_bytes = 0, total_bytes = 0;
  NF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const double weights = 2.0 * double(config.num_parameters());
  const double kv = 0.9 * double(total_bytes) - weights;
  return kv > 0.0 ? static_cast<size_t>(kv / std::max(1, config.num_layers)) : size_t{1} << 30;
}

class profiler {
 public:
  profiler(const model_config& config, const op_profiler_options& options, int num_sms)
      : config_(config), options_(options), num_sms_(num_sms), compute_stream_(false), memory_stream_(true) {
    profile_.num_sms = num_sms;
    profile_.shape = shape_of(config);
    profile_.dense_budget = options.dense_budget;
    profile_.token_counts = profile_token_counts(options.dense_budget);
    profile_.sm_budgets = profile_sm_budgets(num_sms);
    profile_.decode_context_lengths = options.decode_context_lengths;
    cuda::synthetic_layer_options layer;
    layer.max_rows = options.dense_budget;
    layer.decode_contexts.assign(options.decode_context_lengths.begin(), options.decode_context_lengths.end());
    layer.prefill_row_counts = profile_.token_counts;
    layer.prefill_chunk = options.prefill_chunk;
    layer.block_size = options.block_size;
    layer.kv_memory_fraction = options.kv_memory_fraction;
    layer.kv_max_bytes = engine_layer_kv_bytes(config);
    layer.seed = options.seed;
    layer_ = std::make_unique<cuda::synthetic_layer>(config, layer);
    NF_CUDA_CHECK(compute_gemm_.init());
    NF_CUDA_CHECK(memory_gemm_.init());
    const int num_budgets = static_cast<int>(profile_.sm_budgets.size());
    for (int b = 0; b < num_budgets; ++b)
      if (b % options.sm_budget_stride == 0 || b == num_budgets - 1) measured_budgets_.push_back(b);
  }

  operation_profile run(const std::string& gpu) {
    profile_.gpu = gpu;
    const auto start = std::chrono::steady_clock::now();
    say("profiling {} ({} SMs) for {}: {} token counts x {} SM budgets ({} measured), decode contexts [{}]; "
        "KV cache {:.2f} GiB{}",
        gpu, num_sms_, describe(config_), profile_.token_counts.size(), profile_.sm_budgets.size(),
        measured_budgets_.size(), fmt::join(profile_.decode_context_lengths, ", "),
        layer_->kv_cache_bytes() / double(1 << 30),
        layer_->kv_blocks_distinct() ? "" : " (too small for distinct blocks: decode sequences share blocks)");
    warm_up();
    for (const op_node& op : llama_op_graph().ops) profile_.ops.push_back(time_table(op));
    measure_interference();
    say("profiled in {:.1f} s", seconds_since(start));
    // What is written must load: the same checks `nanoflow tune search` applies.
    return parse_operation_profile(to_json(profile_), llama_op_graph());
  }

 private:
  template <typename... Args>
  void say(fmt::format_string<Args...> format, Args&&... args) {
    if (!options_.progress) return;
    std::fprintf(options_.progress, "%s\n", fmt::format(format, std::forward<Args>(args)...).c_str());
    std::fflush(options_.progress);
  }

  int sms_argument(int budget) const { return budget >= num_sms_ ? 0 : budget; }

  cuda::launch_fn launcher(op_kind kind, int rows, int budget, int context, kernels::gemm_runner& gemm) {
    const int sms = sms_argument(budget);
    return [this, kind, rows, sms, context, &gemm](int index, cudaStream_t stream) {
      layer_->launch(kind, rows, sms, context, index, gemm, stream);
    };
  }

  void note_capture(const launch_sequence& sequence) {
    if (sequence.captured() || warned_uncaptured_) return;
    warned_uncaptured_ = true;
    say("warning: a launch sequence could not be captured into a CUDA graph; its times include launch overhead");
  }

  // Time of one launch in microseconds: a warm-up launch, one timed launch to size the graph, then the median
  // replay of a graph of launches about replay_target_us long.
  double time_per_launch_us(op_kind kind, int rows, int budget, int context) {
    const cuda::launch_fn launch = launcher(kind, rows, budget, context, compute_gemm_);
    cudaStream_t stream = compute_stream_.get();
    const cuda::event_pool events(2);
    launch(0, stream);
    NF_CUDA_CHECK(cudaEventRecord(events[0], stream));
    launch(1, stream);
    NF_CUDA_CHECK(cudaEventRecord(events[1], stream));
    NF_CUDA_CHECK(cudaEventSynchronize(events[1]));
    const double single = std::max(cuda::elapsed_us(events[0], events[1]), 0.5);
    const int n = static_cast<int>(std::clamp(std::ceil(options_.replay_target_us / single), 1.0, 256.0));
    const launch_sequence sequence(stream, n, launch);
    note_capture(sequence);
    return std::max(cuda::time_sequence_us(sequence, stream, options_.num_replays) / n, 1e-3);
  }

  // Runs the largest GEMM for about 200 ms so the clocks have ramped up before anything is timed.
  void warm_up() {
    const int rows = profile_.token_counts.back();
    const double t = time_per_launch_us(op_kind::gate_up_gemm, rows, num_sms_, 0);
    const int n = static_cast<int>(std::clamp(2e5 / t, 1.0, 4096.0));
    for (int i = 0; i < n; ++i) layer_->launch(op_kind::gate_up_gemm, rows, 0, 0, i, compute_gemm_, compute_stream_.get());
    NF_CUDA_CHECK(cudaStreamSynchronize(compute_stream_.get()));
  }

  op_timing time_table(const op_node& op) {
    const auto start = std::chrono::steady_clock::now();
    const size_t num_counts = profile_.token_counts.size(), num_budgets = profile_.sm_budgets.size();
    const bool by_context = op.kind == op_kind::decode_attention;
    const size_t num_contexts = by_context ? profile_.decode_context_lengths.size() : 1;
    op_timing timing{op.name, by_context, std::vector<double>(num_contexts * num_counts * num_budgets, 0.0)};
    // The two norms launch the same kernel (add_rmsnorm) on the same shapes: measured once.
    if (op.kind == op_kind::ffn_norm)
      if (const op_timing* same = profile_.timing_of("attn_norm")) {
        timing.time_us = same->time_us;
        say("profile: {:<18} same kernel as attn_norm (add_rmsnorm): times copied", op.name);
        return timing;
      }
    for (size_t c = 0; c < num_contexts; ++c)
      for (size_t t = 0; t < num_counts; ++t) {
        double* row = &timing.time_us[(c * num_counts + t) * num_budgets];
        for (int b : measured_budgets_)
          row[b] = time_per_launch_us(op.kind, profile_.token_counts[t], profile_.sm_budgets[b], static_cast<int>(c));
        interpolate_budgets(row);
      }
    const double whole = timing.time_us[((num_contexts - 1) * num_counts + num_counts - 1) * num_budgets + num_budgets - 1];
    say("profile: {:<18} {} x {} cells{} in {:.1f} s; {} rows on {} SMs: {:.1f} us", op.name, num_counts,
        measured_budgets_.size(), by_context ? fmt::format(" x {} contexts", num_contexts) : std::string(),
        seconds_since(start), profile_.token_counts.back(), num_sms_, whole);
    return timing;
  }

  // Fills the unmeasured budgets of one row, linearly in 1 / budget between the measured neighbours.
  void interpolate_budgets(double* row) const {
    for (size_t i = 0; i + 1 < measured_budgets_.size(); ++i) {
      const int lo = measured_budgets_[i], hi = measured_budgets_[i + 1];
      const double x_lo = 1.0 / profile_.sm_budgets[lo], x_hi = 1.0 / profile_.sm_budgets[hi];
      for (int b = lo + 1; b < hi; ++b) {
        const double w = (1.0 / profile_.sm_budgets[b] - x_lo) / (x_hi - x_lo);
        row[b] = row[lo] + w * (row[hi] - row[lo]);
      }
    }
  }

  // The (compute, memory) SM splits to measure: each memory budget m below the GPU's SMs with the largest
  // profiled compute budget that fits beside it.
  std::vector<std::pair<int, int>> interference_splits() const {
    std::vector<std::pair<int, int>> splits;
    auto add = [&](int m) {
      if (profile_.budget_index(m) < 0 || m >= num_sms_) return;
      int c = 0;
      for (int b : profile_.sm_budgets)
        if (b + m <= num_sms_) c = std::max(c, b);
      if (c > 0 && std::find(splits.begin(), splits.end(), std::pair{c, m}) == splits.end()) splits.emplace_back(c, m);
    };
    for (int m : options_.interference_memory_sms) add(m);
    if (splits.empty()) add(profile_.sm_budgets.front());
    if (splits.empty())
      fail("a GPU of {} SMs has no split of two profiled SM budgets ({} SMs each at least) to measure interference on",
           num_sms_, profile_.sm_budgets.front());
    return splits;
  }

  // The profiled token count nearest to `rows`.
  int nearest_count(double rows) const {
    int best = profile_.token_counts.front();
    for (int n : profile_.token_counts)
      if (std::abs(n - rows) < std::abs(best - rows)) best = n;
    return best;
  }

  double cached_alone_us(op_kind kind, int rows, int budget, int context) {
    const auto key = std::tuple{static_cast<int>(kind), rows, budget, context};
    if (auto it = alone_.find(key); it != alone_.end()) return it->second;
    return alone_[key] = time_per_launch_us(kind, rows, budget, context);
  }

  void measure_interference() {
    const op_graph& graph = llama_op_graph();
    struct side {
      std::string name;  // in the profile: an operation or "*"
      op_kind kind;
    };
    std::vector<side> compute_ops;
    if (options_.interference_per_compute_op) {
      for (const op_node& op : graph.ops)
        if (op.resource == resource_class::compute) compute_ops.push_back({op.name, op.kind});
    } else {
      compute_ops.push_back({"*", op_kind::gate_up_gemm});
    }
    const std::vector<side> memory_ops{{"decode_attention", op_kind::decode_attention}, {"*", op_kind::activation}};
    const std::vector<std::pair<int, int>> splits = interference_splits();
    // A representative step: compute and memory operations over half the dense budget, decode attention at the
    // middle context length.
    const int rows = nearest_count(profile_.dense_budget / 2.0);
    const int context = static_cast<int>(profile_.decode_context_lengths.size() / 2);
    say("interference: {} rows, decode context {}, splits (compute + memory SMs): {}", rows,
        profile_.decode_context_lengths[context],
        fmt::join([&] {
          std::vector<std::string> names;
          for (auto [c, m] : splits) names.push_back(fmt::format("{}+{}", c, m));
          return names;
        }(), " "));
    for (const side& compute : compute_ops)
      for (const side& memory : memory_ops) {
        const auto start = std::chrono::steady_clock::now();
        std::string line;
        for (auto [c, m] : splits) {
          const auto [compute_slowdown, memory_slowdown] = measure_pair(compute.kind, memory.kind, rows, c, m, context);
          profile_.interference.push_back({compute.name, memory.name, c, m, compute_slowdown, memory_slowdown});
          line += fmt::format(" {}+{}: {:.2f}/{:.2f}", c, m, compute_slowdown, memory_slowdown);
        }
        say("interference: {:<18} beside {:<18} slowdowns (compute/memory){} in {:.1f} s",
            compute.name == "*" ? std::string("* (gate_up_gemm)") : compute.name,
            memory.name == "*" ? std::string("* (activation)") : memory.name, line, seconds_since(start));
      }
  }

  // Each side's time beside the other at split (c, m), relative to its time alone at its own budget (at least 1).
  std::pair<double, double> measure_pair(op_kind compute, op_kind memory, int rows, int c, int m, int context) {
    const double compute_one = cached_alone_us(compute, rows, c, 0);
    const double memory_one = cached_alone_us(memory, rows, m, context);
    // Both loops about equally long (at least one launch of the longer kernel), so that each side spends most
    // of its run beside the other.
    const double target = std::max({options_.overlap_target_us, compute_one, memory_one});
    const auto launches = [&](double one) {
      return static_cast<int>(std::clamp(std::round(target / one), 1.0, 4096.0));
    };
    const launch_sequence compute_run(compute_stream_.get(), launches(compute_one),
                                      launcher(compute, rows, c, 0, compute_gemm_));
    const launch_sequence memory_run(memory_stream_.get(), launches(memory_one),
                                     launcher(memory, rows, m, context, memory_gemm_));
    note_capture(compute_run);
    note_capture(memory_run);
    const double compute_alone = cuda::time_sequence_us(compute_run, compute_stream_.get(), options_.num_replays);
    const double memory_alone = cuda::time_sequence_us(memory_run, memory_stream_.get(), options_.num_replays);
    cuda::run_concurrently(compute_run, compute_stream_.get(), memory_run, memory_stream_.get());  // warm-up
    std::vector<double> compute_slowdowns, memory_slowdowns;  // [num_replays] each
    for (int r = 0; r < options_.num_replays; ++r) {
      const cuda::concurrent_run run =
          cuda::run_concurrently(compute_run, compute_stream_.get(), memory_run, memory_stream_.get());
      const double overlap =
          std::max(0.0, std::min(run.a_end_us, run.b_end_us) - std::max(run.a_start_us, run.b_start_us));
      compute_slowdowns.push_back(cuda::slowdown_of(compute_alone, run.a_start_us, run.a_end_us, overlap));
      memory_slowdowns.push_back(cuda::slowdown_of(memory_alone, run.b_start_us, run.b_end_us, overlap));
    }
    // Below 1 is measurement noise: sharing the GPU does not make an operation faster than alone.
    return {std::max(1.0, median(compute_slowdowns)), std::max(1.0, median(memory_slowdowns))};
  }

  const model_config& config_;
  const op_profiler_options& options_;
  int num_sms_ = 0;
  stream_handle compute_stream_;  // timing tables and the compute side of interference
  stream_handle memory_stream_;   // the memory side, at the high priority the executor gives memory lanes
  kernels::gemm_runner compute_gemm_, memory_gemm_;
  std::unique_ptr<cuda::synthetic_layer> layer_;
  operation_profile profile_;
  std::vector<int> measured_budgets_;  // indices into profile_.sm_budgets
  std::map<std::tuple<int, int, int, int>, double> alone_;
  bool warned_uncaptured_ = false;
};

}  // namespace

std::string current_gpu_name() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return "";
  }
  int device = 0;
  cudaDeviceProp properties{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&properties, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  return properties.name;
}

operation_profile profile_operations(const model_config& config, const op_profiler_options& options) {
  check_options(options);
  const std::string gpu = current_gpu_name();
  if (gpu.empty()) fail("profiling needs a CUDA device; none was found");
  int device = 0, num_sms = 0;
  NF_CUDA_CHECK(cudaGetDevice(&device));
  NF_CUDA_CHECK(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device));
  profiler p(config, options, num_sms);
  return p.run(gpu);
}

}  // namespace nf
