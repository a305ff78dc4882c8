// Helpers for the CUDA kernel tests: device detection, device buffers, bf16 rounding, NaN poisoning and the
// relative-error metric used against the float32 CPU reference.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace nf::test {

inline bool has_cuda_device() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

#define NF_SKIP_WITHOUT_GPU() \
  if (!::nf::test::has_cuda_device()) GTEST_SKIP() << "no CUDA device"

#define NF_CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << cudaGetErrorString(expr)

// Owns a device array of T; copies to and from host vectors.
template <typename T>
class device_buffer {
 public:
  explicit device_buffer(size_t count) : count_(count) {
    if (cudaMalloc(&data_, bytes() == 0 ? 1 : bytes()) != cudaSuccess) data_ = nullptr;
  }
  explicit device_buffer(const std::vector<T>& host) : device_buffer(host.size()) { upload(host); }
  ~device_buffer() { cudaFree(data_); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  T* get() const { return data_; }
  size_t bytes() const { return count_ * sizeof(T); }
  void upload(const std::vector<T>& host) { cudaMemcpy(data_, host.data(), bytes(), cudaMemcpyHostToDevice); }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    cudaMemcpy(host.data(), data_, bytes(), cudaMemcpyDeviceToHost);
    return host;
  }
  // Fills every byte with 0xFF: a NaN in bf16 and in fp32, so unwritten outputs are caught.
  void poison() { cudaMemset(data_, 0xFF, bytes()); }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
};

using bf16 = __nv_bfloat16;

// Random values in [-scale, scale], already rounded to bf16 so the reference sees exactly the device inputs.
inline std::vector<float> random_bf16_values(size_t count, std::mt19937& rng, float scale = 1.0f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> values(count);
  for (auto& v : values) v = __bfloat162float(__float2bfloat16(dist(rng)));
  return values;
}

inline std::vector<bf16> to_bf16(const std::vector<float>& values) {
  std::vector<bf16> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = __float2bfloat16(values[i]);
  return out;
}

inline std::vector<float> to_float(const std::vector<bf16>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = __bfloat162float(values[i]);
  return out;
}

inline size_t count_non_finite(const std::vector<float>& values) {
  size_t n = 0;
  for (float v : values) n += std::isfinite(v) ? 0 : 1;
  return n;
}

// ||out - ref|| / ||ref||; infinite when out holds a NaN or an infinity.
inline double relative_error(const std::vector<float>& out, const std::vector<float>& ref) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    diff += (static_cast<double>(out[i]) - ref[i]) * (static_cast<double>(out[i]) - ref[i]);
    norm += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(diff / (norm > 0.0 ? norm : 1.0));
}

constexpr double bf16_tolerance = 1e-2;

}  // namespace nf::test
