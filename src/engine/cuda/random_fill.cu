// Dummy weight generation on the device; the hash and the arithmetic follow model/weights.cpp exactly.
#include "engine/cuda/random_fill.h"

#include <algorithm>
#include <cmath>

namespace nf::cuda {
namespace {

__host__ __device__ uint64_t split_mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void uniform_kernel(__nv_bfloat16* __restrict__ out, size_t count, uint64_t key, float half_width) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const double unit = static_cast<double>(split_mix(key + i) >> 11) * 0x1.0p-53;
    out[i] = __float2bfloat16(static_cast<float>((2.0 * unit - 1.0) * half_width));
  }
}

__global__ void constant_kernel(__nv_bfloat16* __restrict__ out, size_t count, float value) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16(value);
}

int grid_for(size_t count) { return static_cast<int>(std::min<size_t>((count + 255) / 256, 132 * 16)); }

}  // namespace

cudaError_t fill_uniform(__nv_bfloat16* out, size_t count, uint64_t seed, uint64_t stream_id, float std,
                         cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const uint64_t key = split_mix(seed ^ split_mix(stream_id));
  uniform_kernel<<<grid_for(count), 256, 0, stream>>>(out, count, key, std * std::sqrt(3.0f));
  return cudaGetLastError();
}

cudaError_t fill_constant(__nv_bfloat16* out, size_t count, float value, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  constant_kernel<<<grid_for(count), 256, 0, stream>>>(out, count, value);
  return cudaGetLastError();
}

}  // namespace nf::cuda
