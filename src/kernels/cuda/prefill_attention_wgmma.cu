// Paged prefill attention on Hopper warpgroup MMA (wgmma, sm_90a), head_dim 128: variant 3 of prefill_attention.
// A block of two warpgroups owns 128 packed rows of one (sequence, KV head) (query-major, then query head within
// the GQA group, as in the mma.sync variants), 64 rows per warpgroup. K and V tiles of 128 tokens are gathered from
// the paged cache with cp.async into a two-stage ring, in the 128-byte swizzled panel layout wgmma reads
// (wgmma.cuh); Q is loaded once per work item in the same layout. Per warpgroup and tile:
//   S[64, 128] = Q K^T (both operands from shared memory)      P = online-softmax(S) in registers
//   O[64, 128] += P V  (P from registers in the accumulator-derived A layout, V from shared memory, N-major)
// Work items are ordered heaviest first (last query tiles) and walked by a persistent grid.
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/prefill_attention_wgmma.h"
#include "kernels/cuda/wgmma.cuh"

namespace nf::kernels::detail {
namespace {

constexpr int kHeadDim = 128;
constexpr int kWarpgroups = 2;
constexpr int kThreads = 128 * kWarpgroups;
constexpr int kTileQ = 64 * kWarpgroups;                 // packed rows per work item
constexpr int kTileK = 128;                              // keys per K/V tile
constexpr int kChunksPerRow = kHeadDim * 2 / 16;         // 16-byte chunks per K, V or Q row
constexpr int kQBytes = kTileQ * kHeadDim * 2;           // Q tile [kTileQ, kHeadDim] bf16
constexpr int kKvTileBytes = kTileK * kHeadDim * 2;      // K or V tile [kTileK, kHeadDim] bf16
constexpr int kStageBytes = 2 * kKvTileBytes;            // K then V
constexpr int kStages = 2;
constexpr int kSmem = 1024 + kQBytes + kStages * kStageBytes;  // 1024: slack to align the panels
constexpr int kCopiesPerThread = kTileK * kChunksPerRow / kThreads;
constexpr int kPanelBytes = kTileK * 128;  // one 64-column panel of a K or V tile

struct wgmma_prefill_params {
  prefill_attention_args args;
  int max_q_tiles;
  float scale_log2;
};

// Gathers K and V of `tile` (kTileK tokens of the sequence) into one stage; rows past the context are zero-filled.
__device__ __forceinline__ void load_kv_tile(const prefill_attention_args& a, const int32_t* table, int kv_head,
                                             int context_len, int tile, uint32_t stage) {
  const int64_t head_stride = static_cast<int64_t>(a.block_size) * kHeadDim;
  const int chunk = threadIdx.x % kChunksPerRow;
#pragma unroll
  for (int j = 0; j < kCopiesPerThread; ++j) {
    const int row = threadIdx.x / kChunksPerRow + j * (kThreads / kChunksPerRow);
    const int token = tile * kTileK + row;
    const bool valid = token < context_len;
    const bf16* k = a.kv_cache;  // a valid address for the zero-filling copies
    if (valid) {
      const int block = table[token / a.block_size];
      k = a.kv_cache + static_cast<int64_t>(block) * 2 * a.num_kv_heads * head_stride + kv_head * head_stride +
          static_cast<int64_t>(token % a.block_size) * kHeadDim + chunk * 8;
    }
    const uint32_t offset = sw128_offset<kTileK>(row, chunk);
    cp_async_16(stage + offset, k, valid ? 16 : 0);
    cp_async_16(stage + kKvTileBytes + offset, valid ? k + a.num_kv_heads * head_stride : k, valid ? 16 : 0);
  }
}

__global__ void __launch_bounds__(kThreads, 1) prefill_attention_wgmma_kernel(const wgmma_prefill_params p) {
  const prefill_attention_args& a = p.args;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t q_smem = (smem_addr(smem_raw) + 1023u) & ~1023u;
  const uint32_t kv_smem = q_smem + kQBytes;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warpgroup = warp >> 2, warp_in_group = warp & 3;
  const int group_size = a.num_q_heads / a.num_kv_heads;
  const int64_t per_tile = static_cast<int64_t>(a.num_kv_heads) * a.num_seqs;
  const int64_t num_items = per_tile * p.max_q_tiles;
  const int col_pair = (lane & 3) * 2;
  const int group_row0 = warpgroup * 64;
  const int thread_row0 = group_row0 + warp_in_group * 16 + (lane >> 2);  // and thread_row0 + 8

  for (int64_t item = blockIdx.x; item < num_items; item += gridDim.x) {
    const int q_tile = p.max_q_tiles - 1 - static_cast<int>(item / per_tile);
    const int64_t rest = item % per_tile;
    const int kv_head = static_cast<int>(rest % a.num_kv_heads);
    const int seq = static_cast<int>(rest / a.num_kv_heads);
    const int num_rows = a.num_queries[seq] * group_size;  // packed rows: query-major, then head within the group
    const int tile_row0 = q_tile * kTileQ;
    if (tile_row0 >= num_rows) continue;
    const int context_len = a.context_lens[seq];
    const int query_start = a.query_starts[seq];
    const int position_base = context_len - a.num_queries[seq];  // position of query 0
    const int rows_here = min(kTileQ, num_rows - tile_row0);
    const int num_kv_tiles = (position_base + (tile_row0 + rows_here - 1) / group_size) / kTileK + 1;
    const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;

    for (int i = threadIdx.x; i < kTileQ * kChunksPerRow; i += kThreads) {
      const int row = i / kChunksPerRow, chunk = i % kChunksPerRow;
      const bool valid = row < rows_here;
      const int packed = tile_row0 + row;
      const bf16* src = valid ? a.q +
                                    (static_cast<int64_t>(query_start + packed / group_size) * a.num_q_heads +
                                     kv_head * group_size + packed % group_size) *
                                        kHeadDim +
                                    chunk * 8
                              : a.q;
      cp_async_16(q_smem + sw128_offset<kTileQ>(row, chunk), src, valid ? 16 : 0);
    }
    load_kv_tile(a, table, kv_head, context_len, 0, kv_smem);
    cp_async_commit();

    // This warpgroup's rows: it skips every tile if it has none, and tiles after its last row's position.
    const int group_rows = min(64, rows_here - group_row0);
    const int group_first_position = position_base + (tile_row0 + group_row0) / group_size;
    const int group_last_position = position_base + (tile_row0 + group_row0 + max(group_rows, 1) - 1) / group_size;
    int position[2];
    float m[2], l[2];
    float o[64];  // O[64, 128] accumulator: o[4 * j + e] is row thread_row0 + 8 * (e / 2), column 8 * j + col_pair + e % 2
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0.0f;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      position[r] = position_base + (tile_row0 + thread_row0 + 8 * r) / group_size;
      m[r] = -INFINITY;
      l[r] = 0.0f;
    }

    for (int tile = 0; tile < num_kv_tiles; ++tile) {
      cp_async_wait<0>();
      fence_proxy_async_shared();  // the copies (generic proxy) before wgmma's shared-memory reads (async proxy)
      __syncthreads();             // tile's data visible to all; both warpgroups are done with tile - 1's stage
      if (tile + 1 < num_kv_tiles)
        load_kv_tile(a, table, kv_head, context_len, tile + 1, kv_smem + ((tile + 1) % kStages) * kStageBytes);
      cp_async_commit();
      if (group_rows <= 0 || tile * kTileK > group_last_position) continue;

      const uint32_t k_tile = kv_smem + (tile % kStages) * kStageBytes;
      const uint32_t v_tile = k_tile + kKvTileBytes;
      float s[64];  // S[64, 128], laid out as o
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kHeadDim / 16; ++kk) {
        const uint64_t desc_q =
            sw128_descriptor(q_smem + (kk >> 2) * kTileQ * 128 + group_row0 * 128 + (kk & 3) * 32, 16, 1024);
        const uint64_t desc_k = sw128_descriptor(k_tile + (kk >> 2) * kPanelBytes + (kk & 3) * 32, 16, 1024);
        wgmma_m64n128k16_ss(s, desc_q, desc_k, kk > 0);
      }
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_register_fence(s);

      const bool needs_mask = tile * kTileK + kTileK - 1 > group_first_position;
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int j = 0; j < kTileK / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = tile * kTileK + 8 * j + col_pair + (e & 1);
          float& v = s[4 * j + e];
          v = (needs_mask && key > position[e >> 1]) ? -INFINITY : v * p.scale_log2;
          tile_max[e >> 1] = fmaxf(tile_max[e >> 1], v);
        }
      }
      float correction[2], m_use[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
        const float m_new = fmaxf(m[r], tile_max[r]);
        m_use[r] = m_new == -INFINITY ? 0.0f : m_new;  // a row with no key yet keeps zeros
        correction[r] = exp2f(m[r] - m_use[r]);
        m[r] = m_new;
        l[r] *= correction[r];
      }
#pragma unroll
      for (int i = 0; i < 64; ++i) o[i] *= correction[(i >> 1) & 1];
      uint32_t p_frag[kTileK / 16][4];  // P as the A operand of the k-steps over this tile's keys
#pragma unroll
      for (int j = 0; j < kTileK / 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[4 * j + e] = exp2f(s[4 * j + e] - m_use[e >> 1]);
          l[e >> 1] += s[4 * j + e];
        }
      }
#pragma unroll
      for (int kk = 0; kk < kTileK / 16; ++kk) {
        p_frag[kk][0] = pack_bf16x2(s[8 * kk + 0], s[8 * kk + 1]);
        p_frag[kk][1] = pack_bf16x2(s[8 * kk + 2], s[8 * kk + 3]);
        p_frag[kk][2] = pack_bf16x2(s[8 * kk + 4], s[8 * kk + 5]);
        p_frag[kk][3] = pack_bf16x2(s[8 * kk + 6], s[8 * kk + 7]);
      }
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kTileK / 16; ++kk) {
        const uint64_t desc_v = sw128_descriptor(v_tile + kk * 16 * 128, kPanelBytes, 1024);
        wgmma_m64n128k16_rs_nmajor(o, p_frag[kk], desc_v);
      }
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_register_fence(o);
    }
    cp_async_wait<0>();
    __syncthreads();  // the next item reuses the shared memory

#pragma unroll
    for (int r = 0; r < 2; ++r) {
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
      l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
      const int row = thread_row0 + 8 * r;
      if (row < rows_here) {
        const int packed = tile_row0 + row;
        const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        bf16* dst = a.out + (static_cast<int64_t>(query_start + packed / group_size) * a.num_q_heads +
                             kv_head * group_size + packed % group_size) *
                                kHeadDim;
#pragma unroll
        for (int j = 0; j < kHeadDim / 8; ++j)
          *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j + col_pair) =
              __floats2bfloat162_rn(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv);
      }
    }
  }
}

}  // namespace

bool prefill_attention_wgmma_supports(const prefill_attention_args& a) { return a.head_dim == kHeadDim; }

cudaError_t prefill_attention_wgmma(const prefill_attention_args& a, cudaStream_t stream) {
  if (!prefill_attention_wgmma_supports(a)) return cudaErrorInvalidValue;
  const int group_size = a.num_q_heads / a.num_kv_heads;
  const wgmma_prefill_params p{a, (a.max_num_queries * group_size + kTileQ - 1) / kTileQ,
                               a.scale * 1.4426950408889634f};
  const int64_t num_items = static_cast<int64_t>(p.max_q_tiles) * a.num_kv_heads * a.num_seqs;
  if (num_items == 0) return cudaSuccess;
  const int grid = grid_for_budget(a.num_sms, 1, num_items);
  cudaError_t err =
      cudaFuncSetAttribute(prefill_attention_wgmma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (err != cudaSuccess) return err;
  prefill_attention_wgmma_kernel<<<grid, kThreads, kSmem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace nf::kernels::detail
