// Helpers shared by the kernel benchmarks: a fail-fast CUDA check, an owning device allocation, a hashed fill of
// bf16 buffers, and the median-of-launches timer.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#define NF_BENCH_CHECK(expr)                                                                   \
  do {                                                                                         \
    cudaError_t err_ = (expr);                                                                 \
    if (err_ != cudaSuccess) {                                                                 \
      std::fprintf(stderr, "%s failed: %s (%s:%d)\n", #expr, cudaGetErrorString(err_), __FILE__, __LINE__); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

namespace nf::bench {

using bf16 = __nv_bfloat16;

__global__ inline void fill_kernel(bf16* data, size_t count, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    data[i] = __float2bfloat16((static_cast<float>(h & 0xffff) / 65536.0f - 0.5f) * 2.0f * scale);
  }
}

struct device_memory {
  void* ptr = nullptr;
  explicit device_memory(size_t bytes) { NF_BENCH_CHECK(cudaMalloc(&ptr, bytes)); }
  ~device_memory() { cudaFree(ptr); }
  device_memory(const device_memory&) = delete;
  device_memory& operator=(const device_memory&) = delete;
  template <typename T>
  T* as() const { return static_cast<T*>(ptr); }
};

// Uniform values in [-scale, scale), a hash of the index and seed.
inline void fill(bf16* data, size_t count, uint32_t seed, float scale) {
  fill_kernel<<<1024, 256>>>(data, count, seed, scale);
  NF_BENCH_CHECK(cudaGetLastError());
}

// Median time of `iters` launches after 3 warm-ups, in milliseconds, on the legacy default stream.
inline double time_ms(const std::function<void()>& launch, int iters) {
  for (int i = 0; i < 3; ++i) launch();
  NF_BENCH_CHECK(cudaDeviceSynchronize());
  std::vector<cudaEvent_t> events(iters + 1);
  for (auto& e : events) NF_BENCH_CHECK(cudaEventCreate(&e));
  NF_BENCH_CHECK(cudaEventRecord(events[0]));
  for (int i = 0; i < iters; ++i) {
    launch();
    NF_BENCH_CHECK(cudaEventRecord(events[i + 1]));
  }
  NF_BENCH_CHECK(cudaEventSynchronize(events[iters]));
  NF_BENCH_CHECK(cudaGetLastError());
  std::vector<double> times(iters);
  for (int i = 0; i < iters; ++i) {
    float ms = 0.0f;
    NF_BENCH_CHECK(cudaEventElapsedTime(&ms, events[i], events[i + 1]));
    times[i] = ms;
  }
  for (auto& e : events) cudaEventDestroy(e);
  std::sort(times.begin(), times.end());
  return times[iters / 2];
}

inline int num_device_sms() {
  int device = 0, n = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device);
  return n;
}

}  // namespace nf::bench
