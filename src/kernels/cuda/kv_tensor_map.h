// Tensor maps over the paged KV cache for bulk tensor copies (TMA). The cache
// [num_blocks, 2, num_kv_heads, block_size, head_dim 128] is viewed as rows of 128 bf16 (256 bytes): row
// ((block * 2 + k_or_v) * num_kv_heads + kv_head) * block_size + token % block_size. Boxes are 64 columns wide
// (128 bytes) with 128-byte swizzling, the layout the attention kernels read from shared memory.
#pragma once

#include <cuda.h>  // CUtensorMap and its enums only: the encoder comes from the driver at run time
#include <cudaTypedefs.h>

namespace nf::kernels::detail {

// cuTensorMapEncodeTiled from the driver, looked up once; nullptr when the driver has none.
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder();

// 2D: [rows, 128], boxes of box_rows rows x 64 columns. 3D: [halves 2 (stride 128 B), rows (stride 256 B), 64],
// boxes of 2 x box_rows x 64: both column halves of box_rows rows in one copy, landing as two swizzled boxes one
// after the other. The number of blocks is not known here, so the row extent is the largest the coordinates can
// address; every copy stays inside blocks that the block tables name. false when the driver has no encoder or the
// cache is not 16-byte aligned.
bool encode_kv_rows_map(const void* kv_cache, int box_rows, bool box3d, CUtensorMap& map);
// Whether encode_kv_rows_map can succeed for this cache (an encoder, a 16-byte-aligned base).
bool kv_rows_map_possible(const void* kv_cache);

}  // namespace nf::kernels::detail
