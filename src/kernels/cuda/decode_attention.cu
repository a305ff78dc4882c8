// Paged decode attention. Per warp and 16-token tile, with G <= 8 query heads of one KV head:
//   S^T[16 tokens, 8 heads] = K[16, D] * Q^T[D, 8]      (mma m16n8k16, K from shared memory by ldmatrix)
//   P^T = online-softmax(S^T) per head, transposed to the B layout with movmatrix
//   O^T[D, 8] += V^T[D, 16] * P^T[16, 8]                (V^T by ldmatrix.trans)
// Tensor cores keep the arithmetic far below the memory time. Each warp keeps STAGES tiles of K and V loading
// through cp.async, and its pipeline runs across the boundaries of its work items (persistent loop). On the
// whole GPU this reaches ~93% of the copy bandwidth; on a budget of 32 SMs the per-tile instruction count and
// latency chain of each warp, not the bytes in flight, limit it (docs/perf.md).
#include <algorithm>

#include "kernels/cuda/decode_attention.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/kv_tensor_map.h"

namespace nf::kernels {
namespace {

using namespace detail;

constexpr int tile_tokens = 16;
constexpr int min_chunk_tiles = 8;

// A tile of 16 tokens of one KV head: K or V rows of HEAD_DIM bf16 each.
template <int HEAD_DIM>
struct tile_layout {
  static constexpr int row_bytes = HEAD_DIM * 2;
  static constexpr int chunks_per_row = row_bytes / 16;
  static constexpr int tile_bytes = tile_tokens * row_bytes;  // K or V of one tile
  static constexpr int copies_per_lane = tile_tokens * chunks_per_row / 32;
};

// One block per SM; WARPS independent warps, each with a ring of STAGES tiles (K and V) in shared memory.
template <int HEAD_DIM, int WARPS, int STAGES>
struct decode_config : tile_layout<HEAD_DIM> {
  static constexpr int warps_per_block = WARPS;
  static constexpr int stages = STAGES;
  static constexpr int stage_bytes = 2 * tile_layout<HEAD_DIM>::tile_bytes;
  static constexpr int warp_smem = STAGES * stage_bytes;
  static constexpr int block_smem = WARPS * warp_smem;
};

struct decode_params {
  const bf16* q;
  const bf16* kv_cache;
  const int32_t* block_tables;
  const int32_t* context_lens;
  float* partial_out;  // [num_seqs, num_q_heads, max_chunks, head_dim]
  float* partial_ml;   // [num_seqs, num_q_heads, max_chunks, 2]: running max (log2 domain) and sum
  int num_seqs, num_q_heads, num_kv_heads, block_size, max_blocks_per_seq;
  int group_size, num_head_groups, chunk_tiles, max_chunks;
  int64_t num_items;
  float scale_log2;
  bool l2_evict_first;  // KV copies carry an evict-first L2 policy (bulk-copy variants)
};

// A position in a warp's stream of tiles: work item (sequence, KV head, head group, chunk) and tile.
struct cursor {
  int64_t item;
  int seq, kv_head, head_group, chunk, context_len;
  int tile, tile_begin, tile_end;
  int window_base;   // first tile whose physical block this warp's lanes hold (producer only)
  int window_block;  // this lane's entry: the block of tile window_base + lane
};

constexpr int no_window = -(1 << 30);

__device__ __forceinline__ void seek(cursor& c, int64_t item, int64_t stride, const decode_params& p) {
  for (; item < p.num_items; item += stride) {
    int64_t rest = item;
    const int chunk = static_cast<int>(rest % p.max_chunks);
    rest /= p.max_chunks;
    const int head_group = static_cast<int>(rest % p.num_head_groups);
    rest /= p.num_head_groups;
    const int kv_head = static_cast<int>(rest % p.num_kv_heads);
    const int seq = static_cast<int>(rest / p.num_kv_heads);
    const int context_len = p.context_lens[seq];
    const int num_tiles = (context_len + tile_tokens - 1) / tile_tokens;
    const int begin = chunk * p.chunk_tiles;
    if (begin < num_tiles) {
      c = {item,  seq,   kv_head, head_group, chunk, context_len, begin, begin, min(begin + p.chunk_tiles, num_tiles),
           no_window, 0};
      return;
    }
  }
  c.item = p.num_items;
}

__device__ __forceinline__ void advance(cursor& c, int64_t stride, const decode_params& p) {
  if (++c.tile >= c.tile_end) seek(c, c.item + stride, stride, p);
}

// The physical block of the producer's tile. The lanes fetch the block-table entries of 32 tiles at once, so the
// dependent table load stalls the warp once per 32 tiles instead of once per tile.
__device__ __forceinline__ int block_of_tile(cursor& c, int lane, const decode_params& p) {
  int offset = c.tile - c.window_base;
  if (offset >= 32 || offset < 0) {
    c.window_base = c.tile;
    offset = 0;
    const int tile = c.tile + lane;
    c.window_block = tile < c.tile_end ? p.block_tables[static_cast<int64_t>(c.seq) * p.max_blocks_per_seq +
                                                        tile * tile_tokens / p.block_size]
                                       : 0;
  }
  return __shfl_sync(0xffffffffu, c.window_block, offset);
}

template <int HEAD_DIM>
__device__ __forceinline__ void load_tile(cursor& c, uint32_t stage, int lane, const decode_params& p) {
  using cfg = tile_layout<HEAD_DIM>;
  const int token0 = c.tile * tile_tokens;
  const int block = block_of_tile(c, lane, p);
  const int64_t head_stride = static_cast<int64_t>(p.block_size) * HEAD_DIM;
  const bf16* k = p.kv_cache + static_cast<int64_t>(block) * 2 * p.num_kv_heads * head_stride +
                  c.kv_head * head_stride + static_cast<int64_t>(token0 % p.block_size) * HEAD_DIM;
  const bf16* v = k + p.num_kv_heads * head_stride;
#pragma unroll
  for (int j = 0; j < cfg::copies_per_lane; ++j) {
    const int i = lane + 32 * j;
    const int row = i / cfg::chunks_per_row, chunk = i % cfg::chunks_per_row;
    const int bytes = token0 + row < c.context_len ? 16 : 0;  // rows past the context are zero-filled
    const uint32_t offset = swizzled<cfg::row_bytes>(row, chunk);
    cp_async_16(stage + offset, k + row * HEAD_DIM + chunk * 8, bytes);
    cp_async_16(stage + cfg::tile_bytes + offset, v + row * HEAD_DIM + chunk * 8, bytes);
  }
}

template <typename cfg>
__global__ void __launch_bounds__(cfg::warps_per_block * 32, 1) decode_attention_kernel(decode_params p) {
  constexpr int HEAD_DIM = cfg::row_bytes / 2;
  constexpr int warps_per_block = cfg::warps_per_block;
  extern __shared__ __align__(128) unsigned char smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t warp_smem = smem_addr(smem) + warp * cfg::warp_smem;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * warps_per_block;

  cursor producer, consumer;
  seek(producer, static_cast<int64_t>(blockIdx.x) * warps_per_block + warp, stride, p);
  consumer = producer;
#pragma unroll
  for (int s = 0; s < cfg::stages - 1; ++s) {
    if (producer.item < p.num_items) {
      load_tile<HEAD_DIM>(producer, warp_smem + s * cfg::stage_bytes, lane, p);
      advance(producer, stride, p);
    }
    cp_async_commit();
  }

  uint32_t q_frag[HEAD_DIM / 16][2];   // B operand of S^T = K Q^T: Q^T[d, head]
  float o[HEAD_DIM / 16][4];           // O^T[d, head] accumulators in the C layout
  float m[2], l[2];                    // per head of this lane's two columns
  const int row_in_quad = lane >> 2, col_pair = (lane & 3) * 2;
  int stage = 0;
  while (consumer.item < p.num_items) {
    const int heads_here = min(8, p.group_size - consumer.head_group * 8);
    if (consumer.tile == consumer.tile_begin) {
      const int local_head = row_in_quad;
      const bool valid = local_head < heads_here;
      const int q_head = consumer.kv_head * p.group_size + consumer.head_group * 8 + local_head;
      const bf16* q_row = p.q + (static_cast<int64_t>(consumer.seq) * p.num_q_heads + q_head) * HEAD_DIM;
#pragma unroll
      for (int j = 0; j < HEAD_DIM / 16; ++j) {
        q_frag[j][0] = valid ? *reinterpret_cast<const uint32_t*>(q_row + 16 * j + col_pair) : 0u;
        q_frag[j][1] = valid ? *reinterpret_cast<const uint32_t*>(q_row + 16 * j + 8 + col_pair) : 0u;
      }
#pragma unroll
      for (int i = 0; i < HEAD_DIM / 16; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
      m[0] = m[1] = -INFINITY;
      l[0] = l[1] = 0.0f;
    }

    cp_async_wait<cfg::stages - 2>();
    __syncwarp();
    {
      const int next = (stage + cfg::stages - 1) % cfg::stages;
      if (producer.item < p.num_items) {
        load_tile<HEAD_DIM>(producer, warp_smem + next * cfg::stage_bytes, lane, p);
        advance(producer, stride, p);
      }
      cp_async_commit();
    }

    const uint32_t k_tile = warp_smem + stage * cfg::stage_bytes;
    const uint32_t v_tile = k_tile + cfg::tile_bytes;
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    {
      // Two independent accumulator chains halve the latency of the dependent mma sequence.
      float s_odd[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      const int mat = lane >> 3;
      const int row = (lane & 7) + (mat & 1) * 8;
#pragma unroll
      for (int j = 0; j < HEAD_DIM / 16; ++j) {
        uint32_t a[4];
        ldmatrix_x4(a, k_tile + swizzled<cfg::row_bytes>(row, 2 * j + (mat >> 1)));
        mma_bf16(j % 2 ? s_odd : s, a, q_frag[j][0], q_frag[j][1]);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) s[e] += s_odd[e];
    }
    // s[0], s[1]: token row_in_quad, heads col_pair, col_pair + 1; s[2], s[3]: token row_in_quad + 8.
    const int token = consumer.tile * tile_tokens + row_in_quad;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const bool masked = token + (e >> 1) * 8 >= consumer.context_len;
      s[e] = masked ? -INFINITY : s[e] * p.scale_log2;
    }
    float tile_max[2] = {fmaxf(s[0], s[2]), fmaxf(s[1], s[3])};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int offset = 4; offset < 32; offset <<= 1)
        tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], offset));
    }
    float correction[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float m_new = fmaxf(m[h], tile_max[h]);  // finite: every tile holds a valid token
      correction[h] = fast_exp2(m[h] - m_new);
      m[h] = m_new;
    }
    const float p0 = fast_exp2(s[0] - m[0]), p1 = fast_exp2(s[1] - m[1]);
    const float p2 = fast_exp2(s[2] - m[0]), p3 = fast_exp2(s[3] - m[1]);
    l[0] = l[0] * correction[0] + p0 + p2;
    l[1] = l[1] * correction[1] + p1 + p3;
    const uint32_t b0 = movmatrix_trans(pack_bf16x2(p0, p1));  // P^T[tokens 0-7, head row_in_quad]
    const uint32_t b1 = movmatrix_trans(pack_bf16x2(p2, p3));  // P^T[tokens 8-15, head row_in_quad]
    {
      const int mat = lane >> 3;
      const int row = (lane & 7) + (mat >> 1) * 8;
#pragma unroll
      for (int i = 0; i < HEAD_DIM / 16; ++i) {
        o[i][0] *= correction[0];
        o[i][1] *= correction[1];
        o[i][2] *= correction[0];
        o[i][3] *= correction[1];
        uint32_t a[4];
        ldmatrix_x4_trans(a, v_tile + swizzled<cfg::row_bytes>(row, 2 * i + (mat & 1)));
        mma_bf16(o[i], a, b0, b1);
      }
    }
    __syncwarp();

    if (consumer.tile + 1 == consumer.tile_end) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int offset = 4; offset < 32; offset <<= 1) l[h] += __shfl_xor_sync(0xffffffffu, l[h], offset);
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int local_head = col_pair + h;
        if (local_head < heads_here) {
          const int q_head = consumer.kv_head * p.group_size + consumer.head_group * 8 + local_head;
          const int64_t index =
              (static_cast<int64_t>(consumer.seq) * p.num_q_heads + q_head) * p.max_chunks + consumer.chunk;
          float* dst = p.partial_out + index * HEAD_DIM;
#pragma unroll
          for (int i = 0; i < HEAD_DIM / 16; ++i) {
            dst[16 * i + row_in_quad] = o[i][h];
            dst[16 * i + 8 + row_in_quad] = o[i][2 + h];
          }
          if (row_in_quad == 0) {
            p.partial_ml[2 * index] = m[h];
            p.partial_ml[2 * index + 1] = l[h];
          }
        }
      }
    }
    advance(consumer, stride, p);
    stage = (stage + 1) % cfg::stages;
  }
  cp_async_wait<0>();
}

// ---- Bulk-tensor-copy variant (head_dim 128). Per warp, a ring of STAGES stages, each holding the K and V of two
// consecutive tiles (32 tokens, 16 KiB) of one work item; one lane issues the 8 tensor copies of a stage (two boxes
// of 16 rows x 64 columns per K or V tile, 128-byte swizzled) and posts the byte count on the stage's mbarrier, the
// warp waits on its phase bit. The math takes both tiles per pass: four independent S chains, one softmax
// reduction and one rescale of O per 32 tokens.
// BOX3D: the tensor map has a third dimension for the two 128-byte halves of a row, so one copy brings a whole 4 KiB
// K or V tile (4 copies per stage) instead of two 2 KiB boxes (8 copies). ITEMS_PER_WARP: the work split's target.
template <int WARPS, int STAGES, bool BOX3D, int ITEMS_PER_WARP>
struct tma_config {
  static constexpr bool box3d = BOX3D;
  static constexpr int items_per_warp = ITEMS_PER_WARP;
  static constexpr int head_dim = 128;
  static constexpr int box_bytes = tile_tokens * 128;  // 16 rows x 64 bf16, rows 128-byte swizzled
  static constexpr int tile_bytes = 2 * box_bytes;     // K or V of one tile: columns 0-63, then 64-127
  static constexpr int stage_bytes = 4 * tile_bytes;   // [K tile 0, K tile 1, V tile 0, V tile 1]
  static constexpr int warps_per_block = WARPS;
  static constexpr int stages = STAGES;
  static constexpr int warp_smem = STAGES * stage_bytes;
  static constexpr int block_smem = WARPS * warp_smem + 1024;  // + alignment slack: swizzled boxes need 1024
};

// Physical blocks of the pair of tiles at the cursor (the second may lie past the item; then it is unused).
__device__ __forceinline__ int2 blocks_of_pair(cursor& c, int lane, const decode_params& p) {
  int offset = c.tile - c.window_base;
  if (offset >= 31 || offset < 0) {
    c.window_base = c.tile;
    offset = 0;
    const int tile = c.tile + lane;
    c.window_block = tile < c.tile_end ? p.block_tables[static_cast<int64_t>(c.seq) * p.max_blocks_per_seq +
                                                        tile * tile_tokens / p.block_size]
                                       : 0;
  }
  return make_int2(__shfl_sync(0xffffffffu, c.window_block, offset),
                   __shfl_sync(0xffffffffu, c.window_block, offset + 1));
}

// Issues the copies of the pair at the cursor into `stage` (lane 0), completing on `bar`, with L2 cache policy `policy`
// (0: the default). The cache is viewed as
// rows of head_dim: row ((block * 2 + k_or_v) * num_kv_heads + kv_head) * block_size + token % block_size.
template <typename cfg>
__device__ __forceinline__ void issue_pair(cursor& c, uint32_t stage, uint32_t bar, int lane, const decode_params& p,
                                           const CUtensorMap* map, uint64_t policy) {
  const int2 blocks = blocks_of_pair(c, lane, p);
  if (lane == 0) {
    const bool two = c.tile + 1 < c.tile_end;
    const int v_rows = p.num_kv_heads * p.block_size;  // from a K tile to its V tile
    mbarrier_arrive_expect_tx(bar, (two ? 4 : 2) * cfg::tile_bytes);
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      if (t == 0 || two) {
        const int block = t == 0 ? blocks.x : blocks.y;
        const int row = (block * 2 * p.num_kv_heads + c.kv_head) * p.block_size + ((c.tile + t) * tile_tokens) % p.block_size;
        const uint32_t k_dst = stage + t * cfg::tile_bytes, v_dst = k_dst + 2 * cfg::tile_bytes;
        if constexpr (cfg::box3d) {
          tma_load_3d(k_dst, map, 0, row, 0, bar, policy);
          tma_load_3d(v_dst, map, 0, row + v_rows, 0, bar, policy);
        } else {
          tma_load_2d(k_dst, map, 0, row, bar, policy);
          tma_load_2d(k_dst + cfg::box_bytes, map, 64, row, bar, policy);
          tma_load_2d(v_dst, map, 0, row + v_rows, bar, policy);
          tma_load_2d(v_dst + cfg::box_bytes, map, 64, row + v_rows, bar, policy);
        }
      }
    }
  }
}

__device__ __forceinline__ void advance_pair(cursor& c, int64_t stride, const decode_params& p) {
  if ((c.tile += 2) >= c.tile_end) seek(c, c.item + stride, stride, p);
}

template <typename cfg>
__global__ void __launch_bounds__(cfg::warps_per_block * 32, 1)
    decode_attention_tma_kernel(const __grid_constant__ CUtensorMap kv_map, decode_params p) {
  constexpr int HEAD_DIM = cfg::head_dim;
  constexpr int warps_per_block = cfg::warps_per_block;
  constexpr int stages = cfg::stages;
  extern __shared__ unsigned char smem[];
  __shared__ uint64_t barriers[warps_per_block * stages];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint32_t warp_smem = ((smem_addr(smem) + 1023u) & ~1023u) + warp * cfg::warp_smem;
  const uint32_t warp_bars = smem_addr(barriers) + warp * stages * 8;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * warps_per_block;
  if (lane == 0) {
#pragma unroll
    for (int s = 0; s < stages; ++s) mbarrier_init(warp_bars + 8 * s, 1);
    fence_mbarrier_init();
  }
  __syncwarp();

  const uint64_t policy = p.l2_evict_first ? l2_evict_first_policy() : 0;
  cursor producer, consumer;
  seek(producer, static_cast<int64_t>(blockIdx.x) * warps_per_block + warp, stride, p);
  consumer = producer;
#pragma unroll
  for (int s = 0; s < stages; ++s) {
    if (producer.item < p.num_items) {
      issue_pair<cfg>(producer, warp_smem + s * cfg::stage_bytes, warp_bars + 8 * s, lane, p, &kv_map, policy);
      advance_pair(producer, stride, p);
    }
  }

  uint32_t q_frag[HEAD_DIM / 16][2];  // B operand of S^T = K Q^T: Q^T[d, head]
  float o[HEAD_DIM / 16][4];          // O^T[d, head] accumulators in the C layout
  float m[2], l[2];                   // per head of this lane's two columns
  const int row_in_quad = lane >> 2, col_pair = (lane & 3) * 2;
  // Per-lane ldmatrix offsets inside a swizzled box: row * 128 + ((chunk ^ (row & 7)) << 4), where the chunk of
  // d-slice j is 2 * (j & 3) + one bit of the lane's matrix index, and the box is j >> 2.
  const int mat = lane >> 3;
  uint32_t k_off[4], v_off[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int k_row = (lane & 7) + (mat & 1) * 8, v_row = (lane & 7) + (mat >> 1) * 8;
    k_off[j] = k_row * 128 + (((2 * j + (mat >> 1)) ^ (lane & 7)) << 4);
    v_off[j] = v_row * 128 + (((2 * j + (mat & 1)) ^ (lane & 7)) << 4);
  }
  int stage = 0;
  uint32_t phase = 0;
  while (consumer.item < p.num_items) {
    const int heads_here = min(8, p.group_size - consumer.head_group * 8);
    if (consumer.tile == consumer.tile_begin) {
      const int local_head = row_in_quad;
      const bool valid = local_head < heads_here;
      const int q_head = consumer.kv_head * p.group_size + consumer.head_group * 8 + local_head;
      const bf16* q_row = p.q + (static_cast<int64_t>(consumer.seq) * p.num_q_heads + q_head) * HEAD_DIM;
#pragma unroll
      for (int j = 0; j < HEAD_DIM / 16; ++j) {
        q_frag[j][0] = valid ? *reinterpret_cast<const uint32_t*>(q_row + 16 * j + col_pair) : 0u;
        q_frag[j][1] = valid ? *reinterpret_cast<const uint32_t*>(q_row + 16 * j + 8 + col_pair) : 0u;
      }
#pragma unroll
      for (int i = 0; i < HEAD_DIM / 16; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
      m[0] = m[1] = -INFINITY;
      l[0] = l[1] = 0.0f;
    }

    const uint32_t stage_smem = warp_smem + stage * cfg::stage_bytes;
    mbarrier_wait(warp_bars + 8 * stage, phase);
    // Tokens of this pair inside the context; V rows past it (stale cache contents, possibly NaN, or a second tile
    // that was not loaded) are zeroed so that P = 0 cannot meet NaN in P V.
    const int num_valid = consumer.context_len - consumer.tile * tile_tokens;
    if (num_valid < 2 * tile_tokens) {
      const int4 zero = make_int4(0, 0, 0, 0);
      for (int i = lane + num_valid * 16; i < 2 * tile_tokens * 16; i += 32) {
        const int token = i >> 4, chunk = i & 15;
        const uint32_t addr = stage_smem + (2 + (token >> 4)) * cfg::tile_bytes + (chunk >> 3) * cfg::box_bytes +
                              (token & 15) * 128 + (chunk & 7) * 16;
        asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(zero.x), "r"(zero.y),
                     "r"(zero.z), "r"(zero.w)
                     : "memory");
      }
      fence_proxy_async_shared();  // these writes precede the next copy into this stage
      __syncwarp();
    }

    // S^T for both tiles: four independent accumulator chains (tile x even/odd d-slice).
    float s[2][4] = {}, s_odd[2][4] = {};
#pragma unroll
    for (int j = 0; j < HEAD_DIM / 16; ++j) {
#pragma unroll
      for (int t = 0; t < 2; ++t) {
        uint32_t a[4];
        ldmatrix_x4(a, stage_smem + t * cfg::tile_bytes + (j >> 2) * cfg::box_bytes + k_off[j & 3]);
        mma_bf16(j % 2 ? s_odd[t] : s[t], a, q_frag[j][0], q_frag[j][1]);
      }
    }
    // s[t][0], s[t][1]: token 16 t + row_in_quad, heads col_pair, col_pair + 1; s[t][2], s[t][3]: token + 8.
#pragma unroll
    for (int t = 0; t < 2; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const bool masked = t * tile_tokens + row_in_quad + (e >> 1) * 8 >= num_valid;
        s[t][e] = masked ? -INFINITY : (s[t][e] + s_odd[t][e]) * p.scale_log2;
      }
    }
    float pair_max[2] = {fmaxf(fmaxf(s[0][0], s[0][2]), fmaxf(s[1][0], s[1][2])),
                         fmaxf(fmaxf(s[0][1], s[0][3]), fmaxf(s[1][1], s[1][3]))};
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int offset = 4; offset < 32; offset <<= 1)
        pair_max[h] = fmaxf(pair_max[h], __shfl_xor_sync(0xffffffffu, pair_max[h], offset));
    }
    float correction[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float m_new = fmaxf(m[h], pair_max[h]);  // finite: the first tile holds a valid token
      correction[h] = fast_exp2(m[h] - m_new);
      m[h] = m_new;
    }
    uint32_t b[2][2];  // P^T of tile t: tokens 0-7 and 8-15, head row_in_quad
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      const float p0 = fast_exp2(s[t][0] - m[0]), p1 = fast_exp2(s[t][1] - m[1]);
      const float p2 = fast_exp2(s[t][2] - m[0]), p3 = fast_exp2(s[t][3] - m[1]);
      l[0] = (t == 0 ? l[0] * correction[0] : l[0]) + p0 + p2;
      l[1] = (t == 0 ? l[1] * correction[1] : l[1]) + p1 + p3;
      b[t][0] = movmatrix_trans(pack_bf16x2(p0, p1));
      b[t][1] = movmatrix_trans(pack_bf16x2(p2, p3));
    }
#pragma unroll
    for (int i = 0; i < HEAD_DIM / 16; ++i) {
      o[i][0] *= correction[0];
      o[i][1] *= correction[1];
      o[i][2] *= correction[0];
      o[i][3] *= correction[1];
#pragma unroll
      for (int t = 0; t < 2; ++t) {
        uint32_t a[4];
        ldmatrix_x4_trans(a, stage_smem + (2 + t) * cfg::tile_bytes + (i >> 2) * cfg::box_bytes + v_off[i & 3]);
        mma_bf16(o[i], a, b[t][0], b[t][1]);
      }
    }
    __syncwarp();  // every lane has read the stage: refill it

    if (consumer.tile + 2 >= consumer.tile_end) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int offset = 4; offset < 32; offset <<= 1) l[h] += __shfl_xor_sync(0xffffffffu, l[h], offset);
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int local_head = col_pair + h;
        if (local_head < heads_here) {
          const int q_head = consumer.kv_head * p.group_size + consumer.head_group * 8 + local_head;
          const int64_t index =
              (static_cast<int64_t>(consumer.seq) * p.num_q_heads + q_head) * p.max_chunks + consumer.chunk;
          float* dst = p.partial_out + index * HEAD_DIM;
#pragma unroll
          for (int i = 0; i < HEAD_DIM / 16; ++i) {
            dst[16 * i + row_in_quad] = o[i][h];
            dst[16 * i + 8 + row_in_quad] = o[i][2 + h];
          }
          if (row_in_quad == 0) {
            p.partial_ml[2 * index] = m[h];
            p.partial_ml[2 * index + 1] = l[h];
          }
        }
      }
    }
    if (producer.item < p.num_items) {
      issue_pair<cfg>(producer, stage_smem, warp_bars + 8 * stage, lane, p, &kv_map, policy);
      advance_pair(producer, stride, p);
    }
    advance_pair(consumer, stride, p);
    if (++stage == stages) {
      stage = 0;
      phase ^= 1u;
    }
  }
}

// One warp per (sequence, query head): out = sum_c 2^(m_c - M) O_c / sum_c 2^(m_c - M) l_c.
template <int HEAD_DIM>
__global__ void decode_merge_kernel(decode_params p, bf16* __restrict__ out) {
  constexpr int per_lane = HEAD_DIM / 32;
  const int lane = threadIdx.x & 31;
  const int64_t total = static_cast<int64_t>(p.num_seqs) * p.num_q_heads;
  for (int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5; row < total;
       row += (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5) {
    const int seq = static_cast<int>(row / p.num_q_heads);
    const int num_tiles = (p.context_lens[seq] + tile_tokens - 1) / tile_tokens;
    const int num_chunks = (num_tiles + p.chunk_tiles - 1) / p.chunk_tiles;
    const float* ml = p.partial_ml + row * p.max_chunks * 2;
    float max_all = -INFINITY;
    for (int c = 0; c < num_chunks; ++c) max_all = fmaxf(max_all, ml[2 * c]);
    float acc[per_lane] = {};
    float denominator = 0.0f;
    for (int c = 0; c < num_chunks; ++c) {
      const float w = fast_exp2(ml[2 * c] - max_all);
      denominator += w * ml[2 * c + 1];
      const float* src = p.partial_out + (row * p.max_chunks + c) * HEAD_DIM + lane * per_lane;
#pragma unroll
      for (int e = 0; e < per_lane; ++e) acc[e] += w * src[e];
    }
    const float inv = denominator > 0.0f ? 1.0f / denominator : 0.0f;
    bf16* dst = out + row * HEAD_DIM + lane * per_lane;
#pragma unroll
    for (int e = 0; e < per_lane; e += 2)
      *reinterpret_cast<__nv_bfloat162*>(dst + e) = __floats2bfloat162_rn(acc[e] * inv, acc[e + 1] * inv);
  }
}

int max_chunks_for(int max_context_len, int chunk_tiles) {
  const int tiles = (max_context_len + tile_tokens - 1) / tile_tokens;
  return std::max(1, (tiles + chunk_tiles - 1) / chunk_tiles);
}

// Work split and kernel parameters for a pipeline of `warps_per_block` warps per SM. Returns false when the workspace
// is too small. `even_chunks`: chunks hold an even number of tiles (the pair-wise variant).
bool make_params(const decode_attention_args& a, int head_dim, int warps_per_block, bool even_chunks, int num_sms,
                 int items_per_warp, decode_params& p) {
  const int group_size = a.num_q_heads / a.num_kv_heads;
  const int num_head_groups = (group_size + 7) / 8;
  const int max_tiles = std::max(1, (a.max_context_len + tile_tokens - 1) / tile_tokens);
  // Split the context so that every warp gets about items_per_warp work items (load balance) but no chunk is shorter
  // than min_chunk_tiles (the partial results stay small next to the KV bytes).
  const int64_t base_items = static_cast<int64_t>(a.num_seqs) * a.num_kv_heads * num_head_groups;
  const int64_t num_warps = static_cast<int64_t>(num_sms) * warps_per_block;
  int chunk_tiles = static_cast<int>(std::min<int64_t>(
      max_tiles, std::max<int64_t>(min_chunk_tiles, (max_tiles * base_items + num_warps * items_per_warp - 1) / (num_warps * items_per_warp))));
  if (even_chunks) chunk_tiles += chunk_tiles % 2;  // still >= min_chunk_tiles, so no more chunks than budgeted
  const int max_chunks = max_chunks_for(a.max_context_len, chunk_tiles);

  p = decode_params{};
  p.q = a.q;
  p.kv_cache = a.kv_cache;
  p.block_tables = a.block_tables;
  p.context_lens = a.context_lens;
  const int64_t rows = static_cast<int64_t>(a.num_seqs) * a.num_q_heads * max_chunks;
  p.partial_out = a.workspace;
  p.partial_ml = a.workspace + rows * head_dim;
  if (static_cast<size_t>(rows) * (head_dim + 2) * sizeof(float) > a.workspace_bytes) return false;
  p.num_seqs = a.num_seqs;
  p.num_q_heads = a.num_q_heads;
  p.num_kv_heads = a.num_kv_heads;
  p.block_size = a.block_size;
  p.max_blocks_per_seq = a.max_blocks_per_seq;
  p.group_size = group_size;
  p.num_head_groups = num_head_groups;
  p.chunk_tiles = chunk_tiles;
  p.max_chunks = max_chunks;
  p.num_items = base_items * max_chunks;
  p.scale_log2 = a.scale * 1.4426950408889634f;
  p.l2_evict_first = a.l2_policy == decode_l2_policy::evict_first ||
                     (a.l2_policy == decode_l2_policy::automatic && num_sms < device_sm_count());
  return true;
}

int budget_sms(const decode_attention_args& a) {
  return a.num_sms > 0 ? std::min(a.num_sms, device_sm_count()) : device_sm_count();
}

template <int HEAD_DIM>
cudaError_t launch_merge(const decode_attention_args& a, const decode_params& p, int num_sms, cudaStream_t stream) {
  const int64_t merge_rows = static_cast<int64_t>(a.num_seqs) * a.num_q_heads;
  const int merge_grid = grid_for_budget(num_sms, 8, (merge_rows + 7) / 8);
  decode_merge_kernel<HEAD_DIM><<<merge_grid, 256, 0, stream>>>(p, a.out);
  return cudaGetLastError();
}

template <typename cfg>
cudaError_t launch(const decode_attention_args& a, cudaStream_t stream) {
  constexpr int HEAD_DIM = cfg::row_bytes / 2;
  constexpr int warps_per_block = cfg::warps_per_block;
  const int num_sms = budget_sms(a);
  decode_params p;
  if (!make_params(a, HEAD_DIM, warps_per_block, false, num_sms, 32, p)) return cudaErrorInvalidValue;
  const int blocks_needed = static_cast<int>((p.num_items + warps_per_block - 1) / warps_per_block);
  const int grid = std::max(1, std::min(num_sms, blocks_needed));
  cudaError_t err = cudaFuncSetAttribute(decode_attention_kernel<cfg>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, cfg::block_smem);
  if (err != cudaSuccess) return err;
  decode_attention_kernel<cfg><<<grid, warps_per_block * 32, cfg::block_smem, stream>>>(p);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  return launch_merge<HEAD_DIM>(a, p, num_sms, stream);
}

// The cache as 2D or 3D rows with boxes of one 16-token tile (kv_tensor_map.h).
bool encode_kv_map(const decode_attention_args& a, bool box3d, CUtensorMap& map) {
  return encode_kv_rows_map(a.kv_cache, tile_tokens, box3d, map);
}

template <typename cfg>
cudaError_t launch_tma(const decode_attention_args& a, cudaStream_t stream) {
  constexpr int warps_per_block = cfg::warps_per_block;
  const int num_sms = budget_sms(a);
  CUtensorMap map;
  if (!encode_kv_map(a, cfg::box3d, map)) return cudaErrorInvalidValue;
  decode_params p;
  if (!make_params(a, cfg::head_dim, warps_per_block, true, num_sms, cfg::items_per_warp, p)) return cudaErrorInvalidValue;
  const int blocks_needed = static_cast<int>((p.num_items + warps_per_block - 1) / warps_per_block);
  const int grid = std::max(1, std::min(num_sms, blocks_needed));
  cudaError_t err = cudaFuncSetAttribute(decode_attention_tma_kernel<cfg>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, cfg::block_smem);
  if (err != cudaSuccess) return err;
  decode_attention_tma_kernel<cfg><<<grid, warps_per_block * 32, cfg::block_smem, stream>>>(map, p);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  return launch_merge<cfg::head_dim>(a, p, num_sms, stream);
}

}  // namespace

size_t decode_attention_workspace_bytes(int num_seqs, int num_q_heads, int head_dim, int max_context_len) {
  return static_cast<size_t>(num_seqs) * num_q_heads * max_chunks_for(max_context_len, min_chunk_tiles) *
         (head_dim + 2) * sizeof(float);
}

cudaError_t decode_attention(const decode_attention_args& a, cudaStream_t stream) {
  if (a.num_seqs < 0 || a.num_kv_heads <= 0 || a.num_q_heads <= 0 || a.num_q_heads % a.num_kv_heads != 0 ||
      a.block_size <= 0 || a.block_size % tile_tokens != 0 || a.max_context_len < 0 ||
      a.max_blocks_per_seq * a.block_size < a.max_context_len)
    return cudaErrorInvalidValue;
  if (a.num_seqs == 0) return cudaSuccess;
  switch (a.head_dim) {
    case 64: return launch<decode_config<64, 7, 8>>(a, stream);
    case 128: {
      int variant = a.variant;
      if (variant == 0) {
        // Measured (docs/perf.md): 4 warps x 3 stages leads on (nearly) the whole device; on 40-70% of it (the
        // overlap's budgets) 7 warps x 1 stage is faster alone and measured best beside the GEMMs;
        // below that 7 x 2.
        const bool tma = kv_rows_map_possible(a.kv_cache);
        const int budget = budget_sms(a), device = device_sm_count();
        variant = !tma ? 8 : 10 * budget >= 7 * device ? 7 : 10 * budget >= 4 * device ? 12 : 5;
      }
      switch (variant) {
        case 1: return launch<decode_config<128, 7, 4>>(a, stream);
        case 2: return launch<decode_config<128, 4, 6>>(a, stream);
        case 3: return launch<decode_config<128, 9, 3>>(a, stream);
        case 4: return launch_tma<tma_config<7, 2, false, 32>>(a, stream);
        case 5: return launch_tma<tma_config<7, 2, true, 32>>(a, stream);
        case 6: return launch_tma<tma_config<7, 2, true, 12>>(a, stream);
        case 7: return launch_tma<tma_config<4, 3, true, 12>>(a, stream);
        case 8: return launch<decode_config<128, 14, 2>>(a, stream);
        case 9: return launch_tma<tma_config<2, 2, true, 32>>(a, stream);
        case 10: return launch_tma<tma_config<3, 2, true, 32>>(a, stream);
        case 11: return launch_tma<tma_config<4, 2, true, 32>>(a, stream);
        case 12: return launch_tma<tma_config<7, 1, true, 32>>(a, stream);
        case 13: return launch_tma<tma_config<2, 7, true, 32>>(a, stream);
        case 14: return launch_tma<tma_config<3, 4, true, 32>>(a, stream);
        default: return cudaErrorInvalidValue;
      }
    }
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace nf::kernels
