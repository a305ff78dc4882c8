// Kernel micro-benchmarks on one GPU. Measures its own ceilings first (device-to-device copy bandwidth,
// streaming-read bandwidth under SM budgets, cuBLASLt bf16 GEMM rate), then times each kernel at the
// Llama-3-8B shapes and reports the fraction of the matching ceiling. Prints a table and writes JSON;
// never passes or fails. Usage: bench_kernels [--json PATH] [--profile decode32|prefill [--variant N]]
// [--only decode|prefill] (--only: the ceilings and that kernel's sweep over pipelines, shapes and SM budgets
// only; --profile: one case for a profiler, prefill attention in variant N or the default).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "decode_batch.cuh"
#include "kernels/cuda/decode_attention.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/prefill_attention.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/silu_and_mul.h"

namespace {

using bf16 = __nv_bfloat16;

using nf::bench::device_memory;
using nf::bench::fill;
using nf::bench::num_device_sms;
using nf::bench::time_ms;

// Streaming read: 8 independent 16-byte loads per thread in flight, 2 blocks of 512 threads per SM.
__global__ void __launch_bounds__(512) read_kernel(const uint4* __restrict__ data, size_t count, uint32_t* sink) {
  uint32_t acc = 0;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  for (; i + 7 * stride < count; i += 8 * stride) {
    uint4 v[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = data[i + j * stride];
#pragma unroll
    for (int j = 0; j < 8; ++j) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
  }
  for (; i < count; i += stride) acc ^= data[i].x;
  if (acc == 0x12345678u) *sink = acc;
}

struct result {
  std::string name;
  std::string config;
  double ms;
  double value;      // achieved rate
  std::string unit;  // TB/s or TFLOP/s
  double ceiling;    // the measured ceiling it is compared with (0: none)
  std::string ceiling_name;
};

std::vector<result> results;

void report(const result& r) {
  results.push_back(r);
  std::printf("%-22s %-56s %9.4f ms %9.3f %-8s", r.name.c_str(), r.config.c_str(), r.ms, r.value, r.unit.c_str());
  if (r.ceiling > 0) std::printf(" %6.1f%% of %s", 100.0 * r.value / r.ceiling, r.ceiling_name.c_str());
  std::printf("\n");
  std::fflush(stdout);
}

// Decode attention at the Llama-3-8B shape: 32 query heads, 8 KV heads, head_dim 128, block 16.
void bench_decode(int num_seqs, int context_len, int num_sms, double copy_tbps, double read_tbps_at_budget,
                  int variant = 0, bool scattered = true) {
  nf::bench::decode_batch batch(std::vector<int32_t>(num_seqs, context_len), scattered);
  nf::kernels::decode_attention_args& a = batch.args;
  a.num_sms = num_sms;
  a.variant = variant;
  if (const cudaError_t err = nf::kernels::decode_attention(a, nullptr); err != cudaSuccess) {
    std::printf("decode_attention variant %d: %s, skipped\n", variant, cudaGetErrorString(err));
    return;
  }
  const double ms = time_ms([&] { NF_BENCH_CHECK(nf::kernels::decode_attention(a, nullptr)); }, 20);
  // Bytes that must move: every K and V element once, plus the queries and outputs.
  const double kv_bytes = batch.kv_bytes;
  const double bytes = kv_bytes + 2.0 * batch.q_elems * sizeof(bf16);
  char config[128];
  static const char* const variants[] = {"default",      "7x4",          "4x6",            "9x3",           "tma 7x2 2KiB",
                                         "tma 7x2 4KiB", "tma 7x2 4KiB L", "tma 4x3 4KiB L", "14x2",
                                         "tma 2x2 4KiB", "tma 3x2 4KiB", "tma 4x2 4KiB",   "tma 7x1 4KiB",  "tma 2x7 4KiB",
                                         "tma 3x4 4KiB"};
  static_assert(std::size(variants) == nf::kernels::num_decode_attention_variants,
                "every decode attention variant needs a label");
  std::snprintf(config, sizeof config, "%d x %d ctx, %s SMs, %.2f GB, pipe %s%s", num_seqs, context_len,
                num_sms > 0 ? std::to_string(num_sms).c_str() : "all", kv_bytes / 1e9, variants[variant],
                scattered ? "" : ", contiguous blocks");
  report({"decode_attention", config, ms, bytes / ms / 1e9, "TB/s", copy_tbps, "d2d copy"});
  if (num_sms > 0)
    report({"decode_attention", std::string(config) + " vs read", ms, bytes / ms / 1e9, "TB/s", read_tbps_at_budget,
            "stream read @budget"});
}

void bench_prefill(int num_tokens, int num_sms, double gemm_tflops, int variant = 0) {
  constexpr int num_q_heads = 32, num_kv_heads = 8, head_dim = 128, block_size = 16;
  const int num_blocks = (num_tokens + block_size - 1) / block_size;
  const size_t block_elems = 2ull * num_kv_heads * block_size * head_dim;
  device_memory cache((num_blocks + 1) * block_elems * sizeof(bf16));
  fill(cache.as<bf16>(), (num_blocks + 1) * block_elems, 11, 1.0f);
  std::vector<int32_t> table(num_blocks);
  std::iota(table.begin(), table.end(), 1);
  std::mt19937 rng(5);
  std::shuffle(table.begin(), table.end(), rng);
  device_memory d_table(table.size() * sizeof(int32_t));
  NF_BENCH_CHECK(cudaMemcpy(d_table.ptr, table.data(), table.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  const int32_t zero = 0;
  device_memory d_start(4), d_nq(4), d_len(4);
  NF_BENCH_CHECK(cudaMemcpy(d_start.ptr, &zero, 4, cudaMemcpyHostToDevice));
  NF_BENCH_CHECK(cudaMemcpy(d_nq.ptr, &num_tokens, 4, cudaMemcpyHostToDevice));
  NF_BENCH_CHECK(cudaMemcpy(d_len.ptr, &num_tokens, 4, cudaMemcpyHostToDevice));
  const size_t q_elems = static_cast<size_t>(num_tokens) * num_q_heads * head_dim;
  device_memory q(q_elems * sizeof(bf16)), out(q_elems * sizeof(bf16));
  fill(q.as<bf16>(), q_elems, 13, 1.0f);

  nf::kernels::prefill_attention_args a;
  a.q = q.as<bf16>();
  a.kv_cache = cache.as<bf16>();
  a.block_tables = d_table.as<int32_t>();
  a.query_starts = d_start.as<int32_t>();
  a.num_queries = d_nq.as<int32_t>();
  a.context_lens = d_len.as<int32_t>();
  a.out = out.as<bf16>();
  a.num_seqs = 1;
  a.num_q_heads = num_q_heads;
  a.num_kv_heads = num_kv_heads;
  a.head_dim = head_dim;
  a.block_size = block_size;
  a.max_blocks_per_seq = num_blocks;
  a.max_num_queries = num_tokens;
  a.scale = 0.08838834764831845f;
  a.num_sms = num_sms;
  a.variant = variant;
  const double ms = time_ms([&] { NF_BENCH_CHECK(nf::kernels::prefill_attention(a, nullptr)); }, 20);
  // Causal: query i attends to i + 1 keys; 2 FLOPs per multiply-add, in Q K^T and in P V.
  const double flops = 4.0 * head_dim * num_q_heads * (static_cast<double>(num_tokens) * (num_tokens + 1) / 2);
  char config[128];
  std::snprintf(config, sizeof config, "causal %d tokens, 32/8 heads, d128, %s SMs, variant %d (%d-row tiles%s)",
                num_tokens, num_sms > 0 ? std::to_string(num_sms).c_str() : "all", variant, variant == 1 ? 64 : 128,
                variant >= 3 ? ", wgmma" : "");
  report({"prefill_attention", config, ms, flops / ms / 1e9, "TFLOP/s", gemm_tflops, "cuBLASLt GEMM"});
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path, profile, only;
  int profile_variant = -1;  // --variant N: the prefill attention variant of --profile prefill (default: the default)
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) json_path = argv[++i];
    if (std::strcmp(argv[i], "--profile") == 0 && i + 1 < argc) profile = argv[++i];
    if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    if (std::strcmp(argv[i], "--variant") == 0 && i + 1 < argc) profile_variant = std::atoi(argv[++i]);
  }
  if (!only.empty() && only != "decode" && only != "prefill") {
    std::fprintf(stderr, "--only takes 'decode' or 'prefill', not '%s'\n", only.c_str());
    return 2;
  }
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess || device_count == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  NF_BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = num_device_sms();
  std::printf("device: %s, %d SMs, %.1f GB\n", prop.name, sms, prop.totalGlobalMem / 1e9);
  std::printf("%-22s %-56s %12s %9s\n", "kernel", "config", "time", "rate");
  // --profile decode32 | prefill: one case only, for a profiler (no ceilings).
  if (profile == "decode32") {
    bench_decode(256, 2048, 32, 0, 0);
    return 0;
  }
  if (profile == "prefill") {
    bench_prefill(4096, 0, 0, profile_variant >= 0 ? profile_variant : nf::kernels::prefill_attention_args{}.variant);
    return 0;
  }

  // Ceiling 1: device-to-device copy, counting bytes read and written.
  const size_t copy_bytes = 2ull << 30;
  double copy_tbps = 0.0;
  {
    device_memory src(copy_bytes), dst(copy_bytes);
    NF_BENCH_CHECK(cudaMemset(src.ptr, 1, copy_bytes));
    const double ms = time_ms([&] { NF_BENCH_CHECK(cudaMemcpyAsync(dst.ptr, src.ptr, copy_bytes, cudaMemcpyDeviceToDevice)); }, 20);
    copy_tbps = 2.0 * copy_bytes / ms / 1e9;
    report({"ceiling_copy", "cudaMemcpy d2d 2 GiB (read+write)", ms, copy_tbps, "TB/s", 0, ""});
  }
  // Ceiling 2: streaming read with the grid limited to a budget of SMs.
  double read_tbps_32 = 0.0, read_tbps_16 = 0.0, read_tbps_64 = 0.0, read_tbps_48 = 0.0, read_tbps_24 = 0.0;
  {
    device_memory src(copy_bytes), sink(4);
    NF_BENCH_CHECK(cudaMemset(src.ptr, 1, copy_bytes));
    for (int budget : {sms, 64, 48, 32, 24, 16}) {
      const double ms = time_ms([&] {
        read_kernel<<<2 * budget, 512>>>(src.as<uint4>(), copy_bytes / 16, sink.as<uint32_t>());
      }, 20);
      const double tbps = copy_bytes / ms / 1e9;
      if (budget == 32) read_tbps_32 = tbps;
      if (budget == 16) read_tbps_16 = tbps;
      if (budget == 64) read_tbps_64 = tbps;
      if (budget == 48) read_tbps_48 = tbps;
      if (budget == 24) read_tbps_24 = tbps;
      report({"ceiling_read", "stream read 2 GiB, " + std::to_string(budget) + " SMs", ms, tbps, "TB/s", copy_tbps,
              "d2d copy"});
    }
  }
  // Decode attention, every pipeline at the budgets an overlapped schedule gives it (0: all SMs).
  const auto decode_sweep = [&](const std::vector<int>& variants) {
    for (int variant : variants) {
      for (const auto& [num_seqs, context_len] : {std::pair{256, 2048}, std::pair{64, 8192}}) {
        bench_decode(num_seqs, context_len, 0, copy_tbps, 0, variant);
        bench_decode(num_seqs, context_len, 48, copy_tbps, read_tbps_48, variant);
        bench_decode(num_seqs, context_len, 32, copy_tbps, read_tbps_32, variant);
        bench_decode(num_seqs, context_len, 24, copy_tbps, read_tbps_24, variant);
      }
    }
  };
  if (only == "decode") {
    decode_sweep({8, 0, 4, 5, 7, 9, 10, 11, 12, 13, 14});
    for (int variant : {8, 5, 7}) {
      bench_decode(256, 2048, 16, copy_tbps, read_tbps_16, variant);
      bench_decode(256, 2048, 64, copy_tbps, read_tbps_64, variant);
      bench_decode(256, 2048, 96, copy_tbps, 0, variant);
    }
  }
  // Ceiling 3: cuBLASLt bf16 GEMM at the Llama-3-8B gate+up shape.
  double gemm_tflops = 0.0;
  if (only.empty() || only == "prefill") {
    const int m = 2048, n = 28672, k = 4096;
    device_memory x(size_t(m) * k * 2), w(size_t(n) * k * 2), y(size_t(m) * n * 2);
    fill(x.as<bf16>(), size_t(m) * k, 1, 1.0f);
    fill(w.as<bf16>(), size_t(n) * k, 2, 0.05f);
    nf::kernels::gemm_runner runner;
    NF_BENCH_CHECK(runner.init());
    for (int budget : {0, 100}) {
      const double ms = time_ms([&] {
        NF_BENCH_CHECK(runner.run(x.as<bf16>(), w.as<bf16>(), nullptr, y.as<bf16>(), m, n, k, budget, nullptr));
      }, 20);
      const double tflops = 2.0 * m * n * k / ms / 1e9;
      if (budget == 0) gemm_tflops = tflops;
      report({"gemm", "2048x28672x4096 bf16, SM target " + (budget ? std::to_string(budget) : std::string("none")), ms,
              tflops, "TFLOP/s", budget ? gemm_tflops : 0.0, budget ? "GEMM all SMs" : ""});
    }
  }

  if (only == "prefill")
    for (int variant = 0; variant < nf::kernels::num_prefill_attention_variants; ++variant) {
      bench_prefill(4096, 0, gemm_tflops, variant);
      bench_prefill(16384, 0, gemm_tflops, variant);
    }

  if (only.empty()) {
    decode_sweep({8, 0});
    bench_decode(256, 2048, 16, copy_tbps, read_tbps_16);
    bench_decode(256, 2048, 64, copy_tbps, read_tbps_64);
    for (int variant = 1; variant < 8; ++variant) {
      bench_decode(256, 2048, 0, copy_tbps, 0, variant);
      bench_decode(256, 2048, 32, copy_tbps, read_tbps_32, variant);
    }
    bench_decode(256, 2048, 32, copy_tbps, read_tbps_32, 0, false);
    bench_decode(256, 2048, 0, copy_tbps, 0, 0, false);
    bench_decode(256, 2048, 32, copy_tbps, read_tbps_32, 8, false);
    bench_prefill(4096, 0, gemm_tflops);
    bench_prefill(4096, 32, gemm_tflops);
    bench_prefill(4096, 0, gemm_tflops, 1);
    bench_prefill(4096, 0, gemm_tflops, 2);
    bench_prefill(16384, 0, gemm_tflops, 2);
    bench_prefill(16384, 0, gemm_tflops);

    // Row kernels at a 16k-token batch (bytes: every input read once, every output written once).
    {
      const int tokens = 16384, hidden = 4096, inter = 14336;
      device_memory x(size_t(tokens) * hidden * 2), res(size_t(tokens) * hidden * 2), o(size_t(tokens) * hidden * 2),
          wt(hidden * 2), gu(size_t(tokens) * 2 * inter * 2), act(size_t(tokens) * inter * 2);
      fill(x.as<bf16>(), size_t(tokens) * hidden, 3, 1.0f);
      fill(res.as<bf16>(), size_t(tokens) * hidden, 4, 1.0f);
      fill(wt.as<bf16>(), hidden, 5, 1.0f);
      fill(gu.as<bf16>(), size_t(tokens) * 2 * inter, 6, 1.0f);
      double ms = time_ms([&] {
        NF_BENCH_CHECK(nf::kernels::rmsnorm(x.as<bf16>(), wt.as<bf16>(), o.as<bf16>(), tokens, hidden, 1e-5f, 0, nullptr));
      }, 20);
      report({"rmsnorm", "16384 x 4096", ms, 2.0 * tokens * hidden * 2 / ms / 1e9, "TB/s", copy_tbps, "d2d copy"});
      ms = time_ms([&] {
        NF_BENCH_CHECK(nf::kernels::add_rmsnorm(res.as<bf16>(), x.as<bf16>(), wt.as<bf16>(), o.as<bf16>(), tokens, hidden,
                                            1e-5f, 0, nullptr));
      }, 20);
      report({"add_rmsnorm", "16384 x 4096", ms, 4.0 * tokens * hidden * 2 / ms / 1e9, "TB/s", copy_tbps, "d2d copy"});
      ms = time_ms([&] {
        NF_BENCH_CHECK(nf::kernels::silu_and_mul(gu.as<bf16>(), act.as<bf16>(), tokens, inter, 0, nullptr));
      }, 20);
      report({"silu_and_mul", "16384 x 14336", ms, 3.0 * tokens * inter * 2 / ms / 1e9, "TB/s", copy_tbps, "d2d copy"});
    }
  }

  if (!json_path.empty()) {
    nlohmann::json j;
    j["device"] = prop.name;
    j["num_sms"] = sms;
    for (const auto& r : results) {
      j["results"].push_back({{"name", r.name}, {"config", r.config}, {"ms", r.ms}, {"value", r.value},
                              {"unit", r.unit}, {"ceiling", r.ceiling}, {"ceiling_name", r.ceiling_name},
                              {"fraction", r.ceiling > 0 ? r.value / r.ceiling : 0.0}});
    }
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return 0;
}
