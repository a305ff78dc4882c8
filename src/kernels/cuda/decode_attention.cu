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
      correction[h] = exp2f(m[h] - m_new);
      m[h] = m_new;
    }
    const float p0 = exp2f(s[0] - m[0]), p1 = exp2f(s[1] - m[1]);
    const float p2 = exp2f(s[2] - m[0]), p3 = exp2f(s[3] - m[1]);
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
      const float w = exp2f(ml[2 * c] - max_all);
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

template <typename cfg>
cudaError_t launch(const decode_attention_args& a, cudaStream_t stream) {
  constexpr int HEAD_DIM = cfg::row_bytes / 2;
  constexpr int warps_per_block = cfg::warps_per_block;
  const int num_sms = a.num_sms > 0 ? std::min(a.num_sms, device_sm_count()) : device_sm_count();
  const int group_size = a.num_q_heads / a.num_kv_heads;
  const int num_head_groups = (group_size + 7) / 8;
  const int max_tiles = std::max(1, (a.max_context_len + tile_tokens - 1) / tile_tokens);
  // Split the context so that every warp gets about 32 work items (load balance) but no chunk is shorter than
  // min_chunk_tiles (the partial results stay small next to the KV bytes).
  const int64_t base_items = static_cast<int64_t>(a.num_seqs) * a.num_kv_heads * num_head_groups;
  const int64_t num_warps = static_cast<int64_t>(num_sms) * warps_per_block;
  int chunk_tiles = static_cast<int>(std::min<int64_t>(
      max_tiles, std::max<int64_t>(min_chunk_tiles, (max_tiles * base_items + num_warps * 32 - 1) / (num_warps * 32))));
  const int max_chunks = max_chunks_for(a.max_context_len, chunk_tiles);

  decode_params p{};
  p.q = a.q;
  p.kv_cache = a.kv_cache;
  p.block_tables = a.block_tables;
  p.context_lens = a.context_lens;
  const int64_t rows = static_cast<int64_t>(a.num_seqs) * a.num_q_heads * max_chunks;
  p.partial_out = a.workspace;
  p.partial_ml = a.workspace + rows * HEAD_DIM;
  if (static_cast<size_t>(rows) * (HEAD_DIM + 2) * sizeof(float) > a.workspace_bytes) return cudaErrorInvalidValue;
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

  const int blocks_needed = static_cast<int>((p.num_items + warps_per_block - 1) / warps_per_block);
  const int grid = std::max(1, std::min(num_sms, blocks_needed));
  cudaError_t err = cudaFuncSetAttribute(decode_attention_kernel<cfg>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, cfg::block_smem);
  if (err != cudaSuccess) return err;
  decode_attention_kernel<cfg><<<grid, warps_per_block * 32, cfg::block_smem, stream>>>(p);
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  const int64_t merge_rows = static_cast<int64_t>(a.num_seqs) * a.num_q_heads;
  const int merge_grid = grid_for_budget(num_sms, 8, (merge_rows + 7) / 8);
  decode_merge_kernel<HEAD_DIM><<<merge_grid, 256, 0, stream>>>(p, a.out);
  return cudaGetLastError();
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
    case 128:
      switch (a.variant) {
        case 1: return launch<decode_config<128, 7, 4>>(a, stream);
        case 2: return launch<decode_config<128, 4, 6>>(a, stream);
        case 3: return launch<decode_config<128, 9, 3>>(a, stream);
        default: return launch<decode_config<128, 14, 2>>(a, stream);
      }
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace nf::kernels
