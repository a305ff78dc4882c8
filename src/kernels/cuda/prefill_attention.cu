// Paged prefill attention. A block of 8 (or 4) warps owns 128 (or 64) packed rows of one (sequence, KV head):
// the rows pair each query with each query head of the KV head's group (query-major), so every K and V tile
// brought into shared memory serves the whole GQA group. Each warp owns 16 rows (32, as two m-tiles, in variant 2).
// K and V tiles of 64 tokens are gathered from the paged cache with cp.async into a shared-memory ring of 3 stages
// (2 in variant 2; rows swizzled for conflict-free ldmatrix), then per warp and m-tile:
//   S[16, 64] = Q[16, D] K^T      P = online-softmax(S) (C layout reused as the A layout)      O += P V
// Work items are ordered heaviest first (last query tiles) and walked by a persistent grid.
#include <algorithm>

#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/prefill_attention.h"
#include "kernels/cuda/prefill_attention_wgmma.h"

namespace nf::kernels {
namespace {

using namespace detail;


// WARPS warps of 16 * M_TILES rows each: a query tile of 16 * WARPS * M_TILES packed rows. With one m-tile a warp
// keeps its Q fragments in registers; with two it reloads them from shared memory per k-step, and every K and V
// fragment it loads feeds both m-tiles (half the shared-memory reads per FLOP, twice the independent MMAs).
template <int HEAD_DIM, int WARPS, int M_TILES = 1, int STAGES = 3>
struct prefill_config {
  static_assert(M_TILES == 1 || M_TILES == 2, "one or two m-tiles per warp");
  static_assert(STAGES == 2 || STAGES == 3, "two or three K/V stages");
  static constexpr int head_dim = HEAD_DIM;
  static constexpr int warps_per_block = WARPS;
  static constexpr int m_tiles = M_TILES;
  static constexpr int tile_k = 64;  // keys per K/V tile
  static constexpr int warp_rows = 16 * M_TILES;
  static constexpr int tile_q = warp_rows * WARPS;
  static constexpr int blocks_per_sm = WARPS == 4 ? 2 : 1;
  static constexpr int row_bytes = HEAD_DIM * 2;
  static constexpr int chunks_per_row = row_bytes / 16;
  static constexpr int q_bytes = tile_q * row_bytes;
  static constexpr int kv_tile_bytes = tile_k * row_bytes;  // K or V
  static constexpr int stage_bytes = 2 * kv_tile_bytes;
  static constexpr int stages = STAGES;
  static constexpr int smem = q_bytes + stages * stage_bytes;
  static constexpr int copies_per_thread = tile_k * chunks_per_row / (warps_per_block * 32);
};

struct prefill_params {
  const bf16* q;
  const bf16* kv_cache;
  const int32_t* block_tables;
  const int32_t* query_starts;
  const int32_t* num_queries;
  const int32_t* context_lens;
  bf16* out;
  int num_seqs, num_q_heads, num_kv_heads, block_size, max_blocks_per_seq, max_q_tiles;
  float scale_log2;
};

// The physical block of each K/V row this thread copies for `tile` (-1: past the context). Fetched apart from
// the copies so the dependent table loads can be in flight while the previous tile is computed.
template <typename cfg>
__device__ __forceinline__ void fetch_row_blocks(const prefill_params& p, int seq, int context_len, int tile,
                                                 int (&blocks)[cfg::copies_per_thread]) {
  const int32_t* table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
#pragma unroll
  for (int j = 0; j < cfg::copies_per_thread; ++j) {
    const int row = (threadIdx.x + j * cfg::warps_per_block * 32) / cfg::chunks_per_row;
    const int token = tile * cfg::tile_k + row;
    blocks[j] = token < context_len ? table[token / p.block_size] : -1;
  }
}

template <typename cfg>
__device__ __forceinline__ void issue_kv_tile(const prefill_params& p, int kv_head, int tile,
                                              const int (&blocks)[cfg::copies_per_thread], uint32_t stage) {
  constexpr int HEAD_DIM = cfg::head_dim;
  const int64_t head_stride = static_cast<int64_t>(p.block_size) * HEAD_DIM;
#pragma unroll
  for (int j = 0; j < cfg::copies_per_thread; ++j) {
    const int i = threadIdx.x + j * cfg::warps_per_block * 32;
    const int row = i / cfg::chunks_per_row, chunk = i % cfg::chunks_per_row;
    const int token = tile * cfg::tile_k + row;
    const bool valid = blocks[j] >= 0;
    const bf16* k = p.kv_cache;  // a valid address for the zero-filling copies
    if (valid) {
      k = p.kv_cache + static_cast<int64_t>(blocks[j]) * 2 * p.num_kv_heads * head_stride + kv_head * head_stride +
          static_cast<int64_t>(token % p.block_size) * HEAD_DIM + chunk * 8;
    }
    const uint32_t offset = swizzled<cfg::row_bytes>(row, chunk);
    cp_async_16(stage + offset, k, valid ? 16 : 0);
    cp_async_16(stage + cfg::kv_tile_bytes + offset, valid ? k + p.num_kv_heads * head_stride : k, valid ? 16 : 0);
  }
}

template <typename cfg>
__device__ __forceinline__ void load_kv_tile(const prefill_params& p, int seq, int kv_head, int context_len, int tile,
                                             uint32_t stage) {
  int blocks[cfg::copies_per_thread];
  fetch_row_blocks<cfg>(p, seq, context_len, tile, blocks);
  issue_kv_tile<cfg>(p, kv_head, tile, blocks, stage);
}

template <typename cfg>
__global__ void __launch_bounds__(cfg::warps_per_block * 32, cfg::blocks_per_sm)
    prefill_attention_kernel(prefill_params p) {
  constexpr int HEAD_DIM = cfg::head_dim;
  constexpr int warps_per_block = cfg::warps_per_block;
  constexpr int tile_q = cfg::tile_q;
  constexpr int MT = cfg::m_tiles;
  extern __shared__ __align__(128) unsigned char smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t q_smem = smem_addr(smem);
  const uint32_t kv_smem = q_smem + cfg::q_bytes;
  const int group_size = p.num_q_heads / p.num_kv_heads;
  const int64_t per_tile = static_cast<int64_t>(p.num_kv_heads) * p.num_seqs;
  const int64_t num_items = per_tile * p.max_q_tiles;
  const int row_in_quad = lane >> 2, col_pair = (lane & 3) * 2;
  const int mat = lane >> 3;

  for (int64_t item = blockIdx.x; item < num_items; item += gridDim.x) {
    const int q_tile = p.max_q_tiles - 1 - static_cast<int>(item / per_tile);
    const int64_t rest = item % per_tile;
    const int kv_head = static_cast<int>(rest % p.num_kv_heads);
    const int seq = static_cast<int>(rest / p.num_kv_heads);
    const int num_queries = p.num_queries[seq];
    const int num_rows = num_queries * group_size;  // packed rows: query-major, then head within the group
    const int tile_row0 = q_tile * tile_q;
    if (tile_row0 >= num_rows) continue;
    const int context_len = p.context_lens[seq];
    const int query_start = p.query_starts[seq];
    const int position_base = context_len - num_queries;  // position of query 0
    const int rows_here = min(tile_q, num_rows - tile_row0);
    const int last_position = position_base + (tile_row0 + rows_here - 1) / group_size;
    const int num_kv_tiles = last_position / cfg::tile_k + 1;

    // Q rows (gathered: each packed row is one query of one head) and the first KV tile form copy group 0.
    for (int i = threadIdx.x; i < tile_q * cfg::chunks_per_row; i += warps_per_block * 32) {
      const int row = i / cfg::chunks_per_row, chunk = i % cfg::chunks_per_row;
      const bool valid = row < rows_here;
      const int packed = tile_row0 + row;
      const bf16* src = valid ? p.q +
                                    (static_cast<int64_t>(query_start + packed / group_size) * p.num_q_heads +
                                     kv_head * group_size + packed % group_size) *
                                        HEAD_DIM +
                                    chunk * 8
                              : p.q;
      cp_async_16(q_smem + swizzled<cfg::row_bytes>(row, chunk), src, valid ? 16 : 0);
    }
    load_kv_tile<cfg>(p, seq, kv_head, context_len, 0, kv_smem);
    cp_async_commit();
    int next_blocks[cfg::copies_per_thread];
    if constexpr (cfg::stages == 3) {
      if (num_kv_tiles > 1) load_kv_tile<cfg>(p, seq, kv_head, context_len, 1, kv_smem + cfg::stage_bytes);
      cp_async_commit();
    } else {
      if (num_kv_tiles > 1) fetch_row_blocks<cfg>(p, seq, context_len, 1, next_blocks);
    }

    uint32_t q_frag[MT == 1 ? HEAD_DIM / 16 : 1][4];  // one m-tile: the warp's Q, loaded once
    float o[MT][HEAD_DIM / 8][4];
    float m[MT][2], l[MT][2];
    int position[MT][2];
    const int warp_row0 = warp * cfg::warp_rows;
    const int warp_first_position = position_base + (tile_row0 + warp_row0) / group_size;
    const int warp_last_position = position_base + (tile_row0 + warp_row0 + cfg::warp_rows - 1) / group_size;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int i = 0; i < HEAD_DIM / 8; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        m[mt][r] = -INFINITY;
        l[mt][r] = 0.0f;
        position[mt][r] = position_base + (tile_row0 + warp_row0 + mt * 16 + row_in_quad + r * 8) / group_size;
      }
    }

    for (int tile = 0; tile < num_kv_tiles; ++tile) {
      bool prefetch = false;
      if constexpr (cfg::stages == 3) {
        cp_async_wait<1>();
        __syncthreads();  // tile's data visible to all; every warp is done with tile - 1's stage
        // Tile + 2 goes into tile - 1's stage: its table entries load now, its copies start after this tile's math.
        prefetch = tile + 2 < num_kv_tiles;
        if (prefetch) fetch_row_blocks<cfg>(p, seq, context_len, tile + 2, next_blocks);
      } else {
        cp_async_wait<0>();
        __syncthreads();  // tile's data visible to all; every warp is done with tile - 1's stage
        // Tile + 1 goes into tile - 1's stage now, so its copies run during this tile's math; the table entries
        // of tile + 2 load meanwhile.
        if (tile + 1 < num_kv_tiles)
          issue_kv_tile<cfg>(p, kv_head, tile + 1, next_blocks, kv_smem + ((tile + 1) % 2) * cfg::stage_bytes);
        cp_async_commit();
        if (tile + 2 < num_kv_tiles) fetch_row_blocks<cfg>(p, seq, context_len, tile + 2, next_blocks);
      }
      if constexpr (MT == 1) {
        if (tile == 0) {
          const int row = warp_row0 + (lane & 7) + (mat & 1) * 8;
#pragma unroll
          for (int j = 0; j < HEAD_DIM / 16; ++j)
            ldmatrix_x4(q_frag[j], q_smem + swizzled<cfg::row_bytes>(row, 2 * j + (mat >> 1)));
        }
      }
      // Warps whose rows all precede this tile skip it (causal).
      if (tile * cfg::tile_k <= warp_last_position) {
        const uint32_t k_tile = kv_smem + (tile % cfg::stages) * cfg::stage_bytes;
        const uint32_t v_tile = k_tile + cfg::kv_tile_bytes;
        float s[MT][cfg::tile_k / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int n = 0; n < cfg::tile_k / 8; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.0f;
#pragma unroll
        for (int j = 0; j < HEAD_DIM / 16; ++j) {
          uint32_t qf[MT][4];
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            if constexpr (MT == 1) {
#pragma unroll
              for (int e = 0; e < 4; ++e) qf[mt][e] = q_frag[j][e];
            } else {
              const int row = warp_row0 + mt * 16 + (lane & 7) + (mat & 1) * 8;
              ldmatrix_x4(qf[mt], q_smem + swizzled<cfg::row_bytes>(row, 2 * j + (mat >> 1)));
            }
          }
#pragma unroll
          for (int np = 0; np < cfg::tile_k / 16; ++np) {
            const int row = np * 16 + (lane & 7) + (mat >> 1) * 8;
            uint32_t b[4];
            ldmatrix_x4(b, k_tile + swizzled<cfg::row_bytes>(row, 2 * j + (mat & 1)));
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
              mma_bf16(s[mt][2 * np], qf[mt], b[0], b[1]);
              mma_bf16(s[mt][2 * np + 1], qf[mt], b[2], b[3]);
            }
          }
        }
        const bool needs_mask = tile * cfg::tile_k + cfg::tile_k - 1 > warp_first_position;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
          for (int n = 0; n < cfg::tile_k / 8; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int key = tile * cfg::tile_k + n * 8 + col_pair + (e & 1);
              s[mt][n][e] = (needs_mask && key > position[mt][e >> 1]) ? -INFINITY : s[mt][n][e] * p.scale_log2;
              tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[mt][n][e]);
            }
          }
          float correction[2], m_use[2];
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
            const float m_new = fmaxf(m[mt][r], tile_max[r]);
            m_use[r] = m_new == -INFINITY ? 0.0f : m_new;  // a row with no key yet keeps zeros
            correction[r] = fast_exp2(m[mt][r] - m_use[r]);
            m[mt][r] = m_new;
            l[mt][r] *= correction[r];
          }
#pragma unroll
          for (int i = 0; i < HEAD_DIM / 8; ++i) {
            o[mt][i][0] *= correction[0];
            o[mt][i][1] *= correction[0];
            o[mt][i][2] *= correction[1];
            o[mt][i][3] *= correction[1];
          }
#pragma unroll
          for (int n = 0; n < cfg::tile_k / 8; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              s[mt][n][e] = fast_exp2(s[mt][n][e] - m_use[e >> 1]);
              l[mt][e >> 1] += s[mt][n][e];
            }
          }
        }
#pragma unroll
        for (int kk = 0; kk < cfg::tile_k / 16; ++kk) {
          uint32_t a[MT][4];
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            a[mt][0] = pack_bf16x2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
            a[mt][1] = pack_bf16x2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
            a[mt][2] = pack_bf16x2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
            a[mt][3] = pack_bf16x2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
          }
          const int row = kk * 16 + (lane & 7) + (mat & 1) * 8;
#pragma unroll
          for (int dp = 0; dp < HEAD_DIM / 16; ++dp) {
            uint32_t b[4];
            ldmatrix_x4_trans(b, v_tile + swizzled<cfg::row_bytes>(row, 2 * dp + (mat >> 1)));
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
              mma_bf16(o[mt][2 * dp], a[mt], b[0], b[1]);
              mma_bf16(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
            }
          }
        }
      }
      if constexpr (cfg::stages == 3) {
        if (prefetch)
          issue_kv_tile<cfg>(p, kv_head, tile + 2, next_blocks, kv_smem + ((tile + 2) % cfg::stages) * cfg::stage_bytes);
        cp_async_commit();
      }
    }
    cp_async_wait<0>();
    __syncthreads();  // the next item reuses the shared memory

#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 1);
        l[mt][r] += __shfl_xor_sync(0xffffffffu, l[mt][r], 2);
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int row = warp_row0 + mt * 16 + row_in_quad + r * 8;
        if (row < rows_here) {
          const int packed = tile_row0 + row;
          const float inv = l[mt][r] > 0.0f ? 1.0f / l[mt][r] : 0.0f;
          bf16* dst = p.out + (static_cast<int64_t>(query_start + packed / group_size) * p.num_q_heads +
                               kv_head * group_size + packed % group_size) *
                                  HEAD_DIM;
#pragma unroll
          for (int i = 0; i < HEAD_DIM / 8; ++i)
            *reinterpret_cast<__nv_bfloat162*>(dst + i * 8 + col_pair) =
                __floats2bfloat162_rn(o[mt][i][2 * r] * inv, o[mt][i][2 * r + 1] * inv);
        }
      }
    }
  }
}

template <typename cfg>
cudaError_t launch(const prefill_attention_args& a, cudaStream_t stream) {
  constexpr int tile_q = cfg::tile_q;
  prefill_params p{a.q, a.kv_cache, a.block_tables, a.query_starts, a.num_queries, a.context_lens, a.out,
                   a.num_seqs, a.num_q_heads, a.num_kv_heads, a.block_size, a.max_blocks_per_seq,
                   (a.max_num_queries * (a.num_q_heads / a.num_kv_heads) + tile_q - 1) / tile_q, a.scale * 1.4426950408889634f};
  const int64_t num_items = static_cast<int64_t>(p.max_q_tiles) * a.num_kv_heads * a.num_seqs;
  if (num_items == 0) return cudaSuccess;
  const int grid = grid_for_budget(a.num_sms, cfg::blocks_per_sm, num_items);
  cudaError_t err =
      cudaFuncSetAttribute(prefill_attention_kernel<cfg>, cudaFuncAttributeMaxDynamicSharedMemorySize, cfg::smem);
  if (err != cudaSuccess) return err;
  prefill_attention_kernel<cfg><<<grid, cfg::warps_per_block * 32, cfg::smem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t prefill_attention(const prefill_attention_args& a, cudaStream_t stream) {
  if (a.num_seqs < 0 || a.num_kv_heads <= 0 || a.num_q_heads <= 0 || a.num_q_heads % a.num_kv_heads != 0 ||
      a.block_size <= 0 || a.max_num_queries < 0)
    return cudaErrorInvalidValue;
  if (a.num_seqs == 0 || a.max_num_queries == 0) return cudaSuccess;
  if (prefill_attention_wgmma_supports(a)) return prefill_attention_wgmma(a, stream);
  switch (a.head_dim) {
    case 64:
      switch (a.variant) {
        case 1: return launch<prefill_config<64, 4>>(a, stream);
        case 2: return launch<prefill_config<64, 4, 2, 2>>(a, stream);
        default: return launch<prefill_config<64, 8>>(a, stream);
      }
    case 128:
      switch (a.variant) {
        case 1: return launch<prefill_config<128, 4>>(a, stream);
        case 2: return launch<prefill_config<128, 4, 2, 2>>(a, stream);
        default: return launch<prefill_config<128, 8>>(a, stream);
      }
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace nf::kernels
