// Tensor maps over the paged KV cache (kv_tensor_map.h).
#include "kernels/cuda/kv_tensor_map.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace nf::kernels::detail {

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encoder = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult status{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &status) !=
            cudaSuccess ||
        status != cudaDriverEntryPointSuccess)
      fn = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encoder;
}

bool kv_rows_map_possible(const void* kv_cache) {
  return tensor_map_encoder() != nullptr && reinterpret_cast<uintptr_t>(kv_cache) % 16 == 0;
}

bool encode_kv_rows_map(const void* kv_cache, int box_rows, bool box3d, CUtensorMap& map) {
  if (!kv_rows_map_possible(kv_cache)) return false;
  const auto encode = tensor_map_encoder();
  const cuuint64_t dims[3] = {64, static_cast<cuuint64_t>(INT32_MAX), 2};
  const cuuint64_t strides[2] = {128 * sizeof(__nv_bfloat16), 64 * sizeof(__nv_bfloat16)};
  const cuuint32_t box[3] = {64, static_cast<cuuint32_t>(box_rows), 2};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const cuuint64_t dims_2d[2] = {128, static_cast<cuuint64_t>(INT32_MAX)};
  return encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, box3d ? 3 : 2, const_cast<void*>(kv_cache),
                box3d ? dims : dims_2d, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace nf::kernels::detail
