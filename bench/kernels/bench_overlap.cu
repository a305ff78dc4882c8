// Overlap probe: does decode attention beside a layer's GEMMs save time, at which SM split, and what does the
// evict-first L2 hint on the KV copies buy? The shape is one layer of a steady-state step of Llama-3-8B at fixed
// 1024/512 (2048 tokens: 683 decode rows at contexts 1024-2047, 1365 prefill rows):
//   sequential: the GEMMs of all rows (QKV, O, gate_up, down) on all SMs, then decode attention on all SMs;
//   overlapped: the prefill rows' GEMMs on stream A with an SM target beside decode attention on stream B with an SM
//               budget, then the decode rows' GEMMs on all SMs.
// Each measurement runs `--layers` such layers back to back (the median of 7 runs). Prints a table and JSON; never
// passes or fails. Usage: bench_overlap [--decode-seqs N] [--gemm-rows N] [--layers N] [--json PATH]
// [--hold SECONDS] (only phases of that length for a clock and power monitor, with their settled times per layer:
// GEMMs / attention / both, then the sequential and the best overlapped layer)
// The last table runs the pair on CUDA green contexts (a hard SM partition: the attention's SMs and the rest), to
// tell interference through shared SMs and the block scheduler from interference through the memory system.
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "decode_batch.cuh"
#include "kernels/cuda/decode_attention.h"
#include "kernels/cuda/gemm.h"

namespace {

using nf::bench::bf16;
using nf::bench::device_memory;
using nf::bench::fill;

constexpr int hidden = 4096, intermediate = 14336, qkv_width = 6144;

// One layer's weights and activations for up to `max_rows` rows.
struct layer_gemms {
  device_memory w_qkv{size_t(qkv_width) * hidden * 2};          // [6144, 4096]
  device_memory w_o{size_t(hidden) * hidden * 2};               // [4096, 4096]
  device_memory w_gate_up{size_t(2) * intermediate * hidden * 2};  // [28672, 4096]
  device_memory w_down{size_t(hidden) * intermediate * 2};      // [4096, 14336]
  device_memory x, qkv, gate_up, act, y;                        // [rows, 4096], [rows, 6144], [rows, 28672], [rows, 14336], [rows, 4096]
  explicit layer_gemms(int max_rows)
      : x(size_t(max_rows) * hidden * 2), qkv(size_t(max_rows) * qkv_width * 2),
        gate_up(size_t(max_rows) * 2 * intermediate * 2), act(size_t(max_rows) * intermediate * 2),
        y(size_t(max_rows) * hidden * 2) {
    fill(w_qkv.as<bf16>(), size_t(qkv_width) * hidden, 21, 0.02f);
    fill(w_o.as<bf16>(), size_t(hidden) * hidden, 22, 0.02f);
    fill(w_gate_up.as<bf16>(), size_t(2) * intermediate * hidden, 23, 0.02f);
    fill(w_down.as<bf16>(), size_t(hidden) * intermediate, 24, 0.02f);
    fill(x.as<bf16>(), size_t(max_rows) * hidden, 25, 1.0f);
    fill(act.as<bf16>(), size_t(max_rows) * intermediate, 26, 1.0f);
  }
  // QKV, O, gate_up and down of `rows` rows starting at row `first`, with an SM target (0: none).
  void enqueue(nf::kernels::gemm_runner& runner, int first, int rows, int num_sms, cudaStream_t stream) const {
    const auto at = [first](const device_memory& m, int width) { return m.as<bf16>() + size_t(first) * width; };
    NF_BENCH_CHECK(runner.run(at(x, hidden), w_qkv.as<bf16>(), nullptr, at(qkv, qkv_width), rows, qkv_width, hidden,
                              num_sms, stream));
    NF_BENCH_CHECK(runner.run(at(x, hidden), w_o.as<bf16>(), nullptr, at(y, hidden), rows, hidden, hidden, num_sms,
                              stream));
    NF_BENCH_CHECK(runner.run(at(x, hidden), w_gate_up.as<bf16>(), nullptr, at(gate_up, 2 * intermediate), rows,
                              2 * intermediate, hidden, num_sms, stream));
    NF_BENCH_CHECK(runner.run(at(act, intermediate), w_down.as<bf16>(), nullptr, at(y, hidden), rows, hidden,
                              intermediate, num_sms, stream));
  }
  static double flops(int rows) {
    return 2.0 * rows * hidden * (double(qkv_width) + hidden + 2.0 * intermediate + intermediate);
  }
};

// Contexts spread evenly over [min_context, 2 * min_context), as the running requests of fixed 1024/512.
std::vector<int32_t> spread_contexts(int num_seqs, int min_context) {
  std::vector<int32_t> contexts(num_seqs);  // [num_seqs]
  for (int i = 0; i < num_seqs; ++i) contexts[i] = min_context + static_cast<int>(int64_t(i) * min_context / num_seqs);
  return contexts;
}

void enqueue_decode(nf::bench::decode_batch& decode, int num_sms, bool evict_first, cudaStream_t stream) {
  decode.args.num_sms = num_sms;
  decode.args.l2_policy = evict_first ? nf::kernels::decode_l2_policy::evict_first : nf::kernels::decode_l2_policy::normal;
  NF_BENCH_CHECK(nf::kernels::decode_attention(decode.args, stream));
}

// Median over 7 runs (after 2 warm-ups) of the time from a fork on stream a to the join of streams a and b.
double time_fork_join(const std::function<void(cudaStream_t, cudaStream_t)>& enqueue, cudaStream_t a, cudaStream_t b) {
  cudaEvent_t start, stop, fork, joined;
  NF_BENCH_CHECK(cudaEventCreate(&start));
  NF_BENCH_CHECK(cudaEventCreate(&stop));
  NF_BENCH_CHECK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
  NF_BENCH_CHECK(cudaEventCreateWithFlags(&joined, cudaEventDisableTiming));
  std::vector<double> times;
  for (int run = 0; run < 9; ++run) {
    NF_BENCH_CHECK(cudaEventRecord(start, a));
    NF_BENCH_CHECK(cudaEventRecord(fork, a));
    NF_BENCH_CHECK(cudaStreamWaitEvent(b, fork));
    enqueue(a, b);
    NF_BENCH_CHECK(cudaEventRecord(joined, b));
    NF_BENCH_CHECK(cudaStreamWaitEvent(a, joined));
    NF_BENCH_CHECK(cudaEventRecord(stop, a));
    NF_BENCH_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    NF_BENCH_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (run >= 2) times.push_back(ms);
  }
  for (cudaEvent_t e : {start, stop, fork, joined}) cudaEventDestroy(e);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Two streams on a hard split of the device's SMs (green contexts): `attention` on `attention_sms` SMs, `rest` on the
// others. Fails (ok = false, with the driver's message) where the driver or device does not support it.
struct green_partition {
  CUgreenCtx attention_ctx = nullptr, rest_ctx = nullptr;
  CUstream attention = nullptr, rest = nullptr;
  int attention_sms = 0, rest_sms = 0;
  bool ok = false;
  std::string error;

  green_partition(int requested_sms, int priority) {
    const auto check = [this](CUresult r, const char* what) {
      if (r == CUDA_SUCCESS) return true;
      const char* message = nullptr;
      cuGetErrorString(r, &message);
      error = std::string(what) + ": " + (message ? message : "unknown error");
      return false;
    };
    CUdevice device;
    CUdevResource all, groups[1], remaining;
    CUdevResourceDesc attention_desc, rest_desc;
    unsigned int num_groups = 1;
    if (!check(cuInit(0), "cuInit") || !check(cuDeviceGet(&device, 0), "cuDeviceGet") ||
        !check(cuDeviceGetDevResource(device, &all, CU_DEV_RESOURCE_TYPE_SM), "cuDeviceGetDevResource") ||
        !check(cuDevSmResourceSplitByCount(groups, &num_groups, &all, &remaining, 0, requested_sms),
               "cuDevSmResourceSplitByCount") ||
        !check(cuDevResourceGenerateDesc(&attention_desc, groups, 1), "cuDevResourceGenerateDesc") ||
        !check(cuDevResourceGenerateDesc(&rest_desc, &remaining, 1), "cuDevResourceGenerateDesc") ||
        !check(cuGreenCtxCreate(&attention_ctx, attention_desc, device, CU_GREEN_CTX_DEFAULT_STREAM), "cuGreenCtxCreate") ||
        !check(cuGreenCtxCreate(&rest_ctx, rest_desc, device, CU_GREEN_CTX_DEFAULT_STREAM), "cuGreenCtxCreate") ||
        !check(cuGreenCtxStreamCreate(&attention, attention_ctx, CU_STREAM_NON_BLOCKING, priority), "cuGreenCtxStreamCreate") ||
        !check(cuGreenCtxStreamCreate(&rest, rest_ctx, CU_STREAM_NON_BLOCKING, 0), "cuGreenCtxStreamCreate"))
      return;
    attention_sms = static_cast<int>(groups[0].sm.smCount);
    rest_sms = static_cast<int>(remaining.sm.smCount);
    ok = true;
  }
  ~green_partition() {
    if (attention) cuStreamDestroy(attention);
    if (rest) cuStreamDestroy(rest);
    if (attention_ctx) cuGreenCtxDestroy(attention_ctx);
    if (rest_ctx) cuGreenCtxDestroy(rest_ctx);
  }
  green_partition(const green_partition&) = delete;
  green_partition& operator=(const green_partition&) = delete;
};

}  // namespace

int main(int argc, char** argv) {
  int decode_seqs = 683, gemm_rows = 2048, layers = 8, min_context = 1024;
  double hold_seconds = 0.0;  // > 0: only the phases for a clock and power monitor
  std::string json_path;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--decode-seqs") == 0) decode_seqs = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--gemm-rows") == 0) gemm_rows = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--layers") == 0) layers = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--min-context") == 0) min_context = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--json") == 0) json_path = argv[++i];
    else if (std::strcmp(argv[i], "--hold") == 0) hold_seconds = std::atof(argv[++i]);
  }
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  if (decode_seqs <= 0 || decode_seqs >= gemm_rows || layers <= 0 || min_context <= 0) {
    std::fprintf(stderr, "need 0 < --decode-seqs < --gemm-rows, --layers > 0, --min-context > 0\n");
    return 2;
  }
  cudaDeviceProp prop{};
  NF_BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = nf::bench::num_device_sms();
  const int prefill_rows = gemm_rows - decode_seqs;
  layer_gemms gemms(gemm_rows);
  nf::bench::decode_batch decode(spread_contexts(decode_seqs, min_context), true);
  int low = 0, high = 0;
  NF_BENCH_CHECK(cudaDeviceGetStreamPriorityRange(&low, &high));
  cudaStream_t a, b;
  NF_BENCH_CHECK(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking));
  NF_BENCH_CHECK(cudaStreamCreateWithPriority(&b, cudaStreamNonBlocking, high));
  nf::kernels::gemm_runner runner_a;
  NF_BENCH_CHECK(runner_a.init());
  std::printf("device: %s, %d SMs; %d layers of: GEMMs of %d rows (%d prefill + %d decode), decode attention over "
              "%d sequences at contexts %d-%d (%.2f GB of KV per layer)\n",
              prop.name, sms, layers, gemm_rows, prefill_rows, decode_seqs, decode_seqs, min_context,
              decode.args.max_context_len, decode.kv_bytes / 1e9);

  if (hold_seconds > 0.0) {
    // Phases of `hold_seconds` each for an outside monitor (nvidia-smi), with each phase's wall-clock start and its
    // sustained time per layer (after the clock has settled under the power limit): the prefill rows' GEMMs alone
    // on all SMs, decode attention alone on 56 SMs, both together; then the sequential layer (all rows' GEMMs, then
    // the attention on all SMs) and the best overlapped layer of the probe (attention on 56 SMs with the 7 x 1
    // pipeline beside the prefill rows' GEMMs at SM target 76, then the decode rows' GEMMs).
    const auto hold = [&](const char* name, const std::function<void(cudaStream_t, cudaStream_t)>& layer) {
      const auto start = std::chrono::system_clock::now();
      std::printf("phase %s starts at %.3f s since the epoch\n", name,
                  std::chrono::duration<double>(start.time_since_epoch()).count());
      std::fflush(stdout);
      std::vector<double> per_layer_ms;
      while (std::chrono::duration<double>(std::chrono::system_clock::now() - start).count() < hold_seconds)
        per_layer_ms.push_back(time_fork_join([&](cudaStream_t sa, cudaStream_t sb) {
          for (int l = 0; l < layers; ++l) layer(sa, sb);
        }, a, b) / layers);
      // The second half of the phase: the clock has settled.
      std::vector<double> settled(per_layer_ms.begin() + per_layer_ms.size() / 2, per_layer_ms.end());
      std::sort(settled.begin(), settled.end());
      std::printf("phase %s: %zu rounds, settled median %.3f ms per layer\n", name, per_layer_ms.size(),
                  settled.empty() ? 0.0 : settled[settled.size() / 2]);
      std::fflush(stdout);
    };
    const int best_sms = std::min(56, sms - 8), best_variant = 12;
    hold("gemms", [&](cudaStream_t sa, cudaStream_t) { gemms.enqueue(runner_a, 0, prefill_rows, 0, sa); });
    hold("attention", [&](cudaStream_t, cudaStream_t sb) { enqueue_decode(decode, best_sms, true, sb); });
    hold("both", [&](cudaStream_t sa, cudaStream_t sb) {
      enqueue_decode(decode, best_sms, true, sb);
      gemms.enqueue(runner_a, 0, prefill_rows, 0, sa);
    });
    hold("sequential-layer", [&](cudaStream_t sa, cudaStream_t) {
      gemms.enqueue(runner_a, 0, gemm_rows, 0, sa);
      enqueue_decode(decode, 0, false, sa);
    });
    // As the engine orders it: a layer's attention waits for the previous layer's decode rows, and the decode rows'
    // GEMMs wait for the attention.
    cudaEvent_t attention_done, decode_rows_done;
    NF_BENCH_CHECK(cudaEventCreateWithFlags(&attention_done, cudaEventDisableTiming));
    NF_BENCH_CHECK(cudaEventCreateWithFlags(&decode_rows_done, cudaEventDisableTiming));
    NF_BENCH_CHECK(cudaEventRecord(decode_rows_done, a));
    hold("overlapped-layer", [&](cudaStream_t sa, cudaStream_t sb) {
      NF_BENCH_CHECK(cudaStreamWaitEvent(sb, decode_rows_done));
      decode.args.variant = best_variant;
      enqueue_decode(decode, best_sms, true, sb);
      decode.args.variant = 0;
      NF_BENCH_CHECK(cudaEventRecord(attention_done, sb));
      gemms.enqueue(runner_a, 0, prefill_rows, sms - best_sms, sa);
      NF_BENCH_CHECK(cudaStreamWaitEvent(sa, attention_done));
      gemms.enqueue(runner_a, prefill_rows, decode_seqs, 0, sa);
      NF_BENCH_CHECK(cudaEventRecord(decode_rows_done, sa));
    });
    cudaEventDestroy(attention_done);
    cudaEventDestroy(decode_rows_done);
    return 0;
  }

  nlohmann::json j;
  j["device"] = prop.name;
  j["num_sms"] = sms;
  j["layers"] = layers;
  j["gemm_rows"] = gemm_rows;
  j["decode_seqs"] = decode_seqs;
  j["kv_bytes_per_layer"] = decode.kv_bytes;
  const auto per_layer = [&](double ms) { return ms / layers; };
  const auto gemms_alone = [&](int first, int rows, int num_sms) {
    return per_layer(time_fork_join([&](cudaStream_t s, cudaStream_t) {
      for (int l = 0; l < layers; ++l) gemms.enqueue(runner_a, first, rows, num_sms, s);
    }, a, b));
  };
  const auto attention_alone = [&](int num_sms, bool evict_first) {
    return per_layer(time_fork_join([&](cudaStream_t, cudaStream_t s) {
      for (int l = 0; l < layers; ++l) enqueue_decode(decode, num_sms, evict_first, s);
    }, a, b));
  };

  const double gemm_all = gemms_alone(0, gemm_rows, 0);
  const double gemm_decode_rows = gemms_alone(prefill_rows, decode_seqs, 0);
  const double attention_all = attention_alone(0, true);
  const double attention_all_no_hint = attention_alone(0, false);
  const double sequential = gemm_all + attention_all;
  std::printf("ceilings per layer: GEMMs of %d rows on all SMs %.3f ms (%.0f TFLOP/s); decode attention on all SMs "
              "%.3f ms (%.2f TB/s; %.3f ms without the L2 hint); sequential %.3f ms\n",
              gemm_rows, gemm_all, layer_gemms::flops(gemm_rows) / gemm_all / 1e9, attention_all,
              decode.kv_bytes / attention_all / 1e9, attention_all_no_hint, sequential);
  std::printf("GEMMs of the %d decode rows alone on all SMs: %.3f ms\n", decode_seqs, gemm_decode_rows);
  j["gemm_all_ms"] = gemm_all;
  j["gemm_decode_rows_ms"] = gemm_decode_rows;
  j["attention_all_ms"] = attention_all;
  j["attention_all_no_hint_ms"] = attention_all_no_hint;
  j["sequential_ms"] = sequential;

  std::printf("\n| attention SMs | GEMM SM target | L2 hint | GEMMs alone at target | attention alone | both together | "
              "GEMM slowdown beside | + decode rows' GEMMs | overlapped layer | vs sequential |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int attention_sms : {16, 24, 32, 40, 48, 56, 64}) {
    if (attention_sms >= sms) continue;
    for (int target : {sms - attention_sms, 0}) {
      const double gemm_prefill = gemms_alone(0, prefill_rows, target);
      for (bool evict_first : {true, false}) {
        if (target == 0 && !evict_first) continue;
        const double attention = attention_alone(attention_sms, evict_first);
        // Measure the side whose work is longer as the whole span: both streams hold `layers` layers.
        const double both = per_layer(time_fork_join([&](cudaStream_t sa, cudaStream_t sb) {
          for (int l = 0; l < layers; ++l) enqueue_decode(decode, attention_sms, evict_first, sb);
          for (int l = 0; l < layers; ++l) gemms.enqueue(runner_a, 0, prefill_rows, target, sa);
        }, a, b));
        const double overlapped = both + gemm_decode_rows;
        std::printf("| %d | %s | %s | %.3f ms | %.3f ms | %.3f ms | %.2fx | %.3f ms | %.3f ms | %.3fx |\n", attention_sms,
                    target ? std::to_string(target).c_str() : "none", evict_first ? "evict-first" : "none", gemm_prefill,
                    attention, both, both / gemm_prefill, gemm_decode_rows, overlapped, sequential / overlapped);
        std::fflush(stdout);
        j["splits"].push_back({{"attention_sms", attention_sms}, {"gemm_sm_target", target},
                               {"l2_evict_first", evict_first}, {"gemm_alone_ms", gemm_prefill},
                               {"attention_alone_ms", attention}, {"both_ms", both},
                               {"overlapped_layer_ms", overlapped}, {"gain_vs_sequential", sequential / overlapped}});
      }
    }
  }

  // Launch order and attention pipeline at the splits that pay most: does the GEMM keep its SMs when it starts
  // first, and which decode pipeline suffers least beside it? (variant 0: the default for the budget; 9-12: shallow
  // pipelines that keep fewer bytes in flight, so the attention asks the memory system for less than all of it.)
  std::printf("\n| attention SMs | GEMM SM target | first launched | attention pipeline | attention alone | both together "
              "| overlapped layer | vs sequential |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (int attention_sms : {40, 48, 56, 64, 80, 96}) {
    if (attention_sms >= sms) continue;
    for (int target : {sms - attention_sms, 0}) {
      for (int variant : {0, 5, 7, 8, 9, 10, 11, 12}) {
        decode.args.variant = variant;
        const double attention = attention_alone(attention_sms, true);
        for (bool gemm_first : {false, true}) {
          if (gemm_first && variant >= 9) continue;
          const double both = per_layer(time_fork_join([&](cudaStream_t sa, cudaStream_t sb) {
            if (gemm_first) gemms.enqueue(runner_a, 0, prefill_rows, target, sa);
            for (int l = 0; l < layers; ++l) enqueue_decode(decode, attention_sms, true, sb);
            for (int l = gemm_first ? 1 : 0; l < layers; ++l) gemms.enqueue(runner_a, 0, prefill_rows, target, sa);
          }, a, b));
          const double overlapped = both + gemm_decode_rows;
          std::printf("| %d | %s | %s | %d | %.3f ms | %.3f ms | %.3f ms | %.3fx |\n", attention_sms,
                      target ? std::to_string(target).c_str() : "none", gemm_first ? "GEMM" : "attention", variant,
                      attention, both, overlapped, sequential / overlapped);
          std::fflush(stdout);
          j["orders"].push_back({{"attention_sms", attention_sms}, {"gemm_sm_target", target},
                                 {"gemm_first", gemm_first}, {"variant", variant}, {"attention_alone_ms", attention},
                                 {"both_ms", both}, {"overlapped_layer_ms", overlapped},
                                 {"gain_vs_sequential", sequential / overlapped}});
        }
      }
    }
  }
  decode.args.variant = 0;
  if (!json_path.empty()) std::ofstream(json_path) << j.dump(2) << "\n";

  // The same pair on a hard partition: the attention's kernels can only run on its green context's SMs and the
  // GEMMs' only on the others, so neither waits for the other's blocks to leave an SM.
  std::printf("\n| green partition (attention + rest SMs) | attention pipeline | GEMMs alone on rest | attention alone | "
              "both together | overlapped layer | vs sequential |\n| --- | --- | --- | --- | --- | --- | --- |\n");
  for (int attention_sms : {48, 56, 64, 72}) {
    green_partition green(attention_sms, high);
    if (!green.ok) {
      std::printf("green contexts unavailable: %s\n", green.error.c_str());
      j["green_error"] = green.error;
      break;
    }
    const auto sa = reinterpret_cast<cudaStream_t>(green.rest);
    const auto sb = reinterpret_cast<cudaStream_t>(green.attention);
    const double gemm_rest = per_layer(time_fork_join([&](cudaStream_t s, cudaStream_t) {
      for (int l = 0; l < layers; ++l) gemms.enqueue(runner_a, 0, prefill_rows, green.rest_sms, s);
    }, sa, sb));
    for (int variant : {0, 8, 10, 11}) {
      decode.args.variant = variant;
      const double attention = per_layer(time_fork_join([&](cudaStream_t, cudaStream_t s) {
        for (int l = 0; l < layers; ++l) enqueue_decode(decode, green.attention_sms, true, s);
      }, sa, sb));
      const double both = per_layer(time_fork_join([&](cudaStream_t ga, cudaStream_t gb) {
        for (int l = 0; l < layers; ++l) enqueue_decode(decode, green.attention_sms, true, gb);
        for (int l = 0; l < layers; ++l) gemms.enqueue(runner_a, 0, prefill_rows, green.rest_sms, ga);
      }, sa, sb));
      const double overlapped = both + gemm_decode_rows;
      std::printf("| %d + %d | %d | %.3f ms | %.3f ms | %.3f ms | %.3f ms | %.3fx |\n", green.attention_sms,
                  green.rest_sms, variant, gemm_rest, attention, both, overlapped, sequential / overlapped);
      std::fflush(stdout);
      j["green"].push_back({{"attention_sms", green.attention_sms}, {"rest_sms", green.rest_sms}, {"variant", variant},
                            {"gemm_alone_ms", gemm_rest}, {"attention_alone_ms", attention}, {"both_ms", both},
                            {"overlapped_layer_ms", overlapped}, {"gain_vs_sequential", sequential / overlapped}});
    }
    decode.args.variant = 0;
    NF_BENCH_CHECK(cudaDeviceSynchronize());
  }
  if (!json_path.empty()) std::ofstream(json_path) << j.dump(2) << "\n";
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
  return 0;
}
