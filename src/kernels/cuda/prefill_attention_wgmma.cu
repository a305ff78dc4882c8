// Paged prefill attention on Hopper warpgroup MMA (wgmma, sm_90a), head_dim 128: variants 3 to 10 of
// prefill_attention. A work item is 128 packed rows of one (sequence, KV head) (query-major, then query head within
// the GQA group, as in the mma.sync variants), 64 rows per consumer warpgroup. K and V tiles of 128 tokens are
// gathered from the paged cache with cp.async into a shared-memory ring, in the 128-byte swizzled panel layout
// wgmma reads (wgmma.cuh); each warpgroup's Q rows are loaded once per item in the same layout. Per warpgroup and
// tile:
//   S[64, 128] = Q K^T (both operands from shared memory)      P = online-softmax(S) in registers
//   O[64, 128] += P V  (P from registers in the accumulator-derived A layout, V from shared memory, N-major)
// Variant 3: two warpgroups both compute and load, in lockstep (a block barrier per tile, two stages).
// Variant 4: warp-specialised: a producer warpgroup (few registers) loads tiles into three stages guarded by
// full/empty mbarriers, and the two consumer warpgroups run free of each other, so one's softmax can overlap the
// other's MMAs. Variant 5: as 4, with the consumers taking turns to issue their MMAs (ping-pong).
// Variant 6: as 3, with each tile's copies issued under the Q K^T MMAs; variant 7: as 6, with three stages.
// Variant 8: as 7, with each warpgroup's softmax overlapping its own previous tile's P V MMAs. Variant 9: as 8,
// with the K/V tiles brought in by bulk tensor copies (TMA) on mbarriers. Variant 10: as 5, with 8's pipelining in
// the consumers (FlashAttention-3's schedule): a consumer's turn covers the issue of S_t and P_{t-1} V_{t-1}, so the
// other consumer's softmax runs while they execute.
// Work items are ordered heaviest first (last query tiles) and walked by a persistent grid.
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/kv_tensor_map.h"
#include "kernels/cuda/prefill_attention_wgmma.h"
#include "kernels/cuda/wgmma.cuh"

namespace nf::kernels::detail {
namespace {

constexpr int kHeadDim = 128;
constexpr int kTileQ = 128;                          // packed rows per work item, 64 per consumer warpgroup
constexpr int kTileK = 128;                          // keys per K/V tile
constexpr int kChunksPerRow = kHeadDim * 2 / 16;     // 16-byte chunks per K, V or Q row
constexpr int kQBytes = kTileQ * kHeadDim * 2;       // Q tile [kTileQ, kHeadDim] bf16
constexpr int kKvTileBytes = kTileK * kHeadDim * 2;  // K or V tile [kTileK, kHeadDim] bf16
constexpr int kStageBytes = 2 * kKvTileBytes;        // K then V
constexpr int kPanelBytes = kTileK * 128;            // one 64-column panel of a K or V tile

// Variants 3, 6, 7: two warpgroups, two or three stages.
constexpr int kLockstepThreads = 256;
constexpr int lockstep_smem(int stages) { return 1024 + kQBytes + stages * kStageBytes; }  // 1024: to align panels

// Variant 9: three stages and their mbarriers.
constexpr int kTmaSmem = lockstep_smem(3) + 3 * 8;

// Variant 4: a producer warpgroup and two consumer warpgroups, three stages, a full and an empty barrier per stage.
constexpr int kSpecialisedThreads = 384;
constexpr int kSpecialisedStages = 3;
constexpr int kSpecialisedSmem = 1024 + kQBytes + kSpecialisedStages * kStageBytes + 2 * kSpecialisedStages * 8;
constexpr int kProducerRegisters = 40;
constexpr int kConsumerRegisters = 232;

struct wgmma_prefill_params {
  prefill_attention_args args;
  int max_q_tiles;
  float scale_log2;
  int block_shift;  // log2 of the KV block size when it is a power of two, else -1
};

// One work item: 128 packed rows of one (sequence, KV head).
struct work_item {
  int kv_head, tile_row0, rows_here, context_len, query_start, position_base, num_kv_tiles;
  const int32_t* table;  // the sequence's block table
};

// Decodes item number `item`; false when the query tile is past the sequence's rows (nothing to do).
__device__ __forceinline__ bool decode_item(const wgmma_prefill_params& p, int64_t item, work_item& w) {
  const prefill_attention_args& a = p.args;
  const int group_size = a.num_q_heads / a.num_kv_heads;
  const int64_t per_tile = static_cast<int64_t>(a.num_kv_heads) * a.num_seqs;
  const int q_tile = p.max_q_tiles - 1 - static_cast<int>(item / per_tile);
  const int64_t rest = item % per_tile;
  const int seq = static_cast<int>(rest / a.num_kv_heads);
  const int num_queries = a.num_queries[seq];
  w.kv_head = static_cast<int>(rest % a.num_kv_heads);
  w.tile_row0 = q_tile * kTileQ;
  const int num_rows = num_queries * group_size;
  if (w.tile_row0 >= num_rows) return false;
  w.context_len = a.context_lens[seq];
  w.query_start = a.query_starts[seq];
  w.position_base = w.context_len - num_queries;  // position of query 0
  w.rows_here = min(kTileQ, num_rows - w.tile_row0);
  w.num_kv_tiles = (w.position_base + (w.tile_row0 + w.rows_here - 1) / group_size) / kTileK + 1;
  w.table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  return true;
}

// Gathers K and V of a tile that lies wholly inside the context (`first_token` = tile * kTileK) when the block size
// is a power of two of at least kStep = THREADS / kChunksPerRow tokens. This thread copies chunk thread %
// kChunksPerRow of rows thread / kChunksPerRow + kStep * j: row j's block-table entry is the same for every thread,
// its cache row is the per-thread base plus one wide multiply, and its swizzled shared-memory offset is the
// per-thread base plus kStep * j * 128 (kStep is a multiple of 8, so the swizzle pattern repeats). No bounds checks.
template <int THREADS>
__device__ __forceinline__ void load_full_kv_tile(const wgmma_prefill_params& p, const work_item& w, int first_token,
                                                  uint32_t stage, int thread) {
  constexpr int kStep = THREADS / kChunksPerRow;
  static_assert(kStep % 8 == 0, "rows kStep apart share the swizzle pattern");
  const prefill_attention_args& a = p.args;
  const int64_t head_stride = static_cast<int64_t>(a.block_size) * kHeadDim;
  const uint32_t block_stride = 2u * a.num_kv_heads * static_cast<uint32_t>(head_stride);  // elements per block
  const int row = thread / kChunksPerRow, chunk = thread % kChunksPerRow;
  const bf16* thread_base = a.kv_cache + w.kv_head * head_stride + row * kHeadDim + chunk * 8;
  const int64_t v_offset = a.num_kv_heads * head_stride;  // from a K row to its V row
  const uint32_t thread_stage = stage + sw128_offset<kTileK>(row, chunk);
#pragma unroll 4
  for (int j = 0; j < kTileK / kStep; ++j) {
    const int token = first_token + j * kStep;  // row 0 of this step; rows up to kStep - 1 later share its block
    const uint32_t block = static_cast<uint32_t>(w.table[token >> p.block_shift]);
    const bf16* k = thread_base + static_cast<uint64_t>(block) * block_stride + (token & (a.block_size - 1)) * kHeadDim;
    const uint32_t dst = thread_stage + j * kStep * 128;
    cp_async_16(dst, k, 16);
    cp_async_16(dst + kKvTileBytes, k + v_offset, 16);
  }
}

// Gathers K and V of `tile` (kTileK tokens of the sequence) into one stage with THREADS threads (`thread` is this
// one's index among them); rows past the context are zero-filled. Whole tiles with a power-of-two block size take
// load_full_kv_tile; this general path serves a sequence's last tile and other block sizes.
template <int THREADS>
__device__ __forceinline__ void load_kv_tile(const wgmma_prefill_params& p, const work_item& w, int tile,
                                             uint32_t stage, int thread) {
  const prefill_attention_args& a = p.args;
  if (p.block_shift >= 0 && a.block_size % (THREADS / kChunksPerRow) == 0 && (tile + 1) * kTileK <= w.context_len) {
    load_full_kv_tile<THREADS>(p, w, tile * kTileK, stage, thread);
    return;
  }
  const int64_t head_stride = static_cast<int64_t>(a.block_size) * kHeadDim;
  const int64_t block_stride = 2 * a.num_kv_heads * head_stride;  // elements per cache block (K and V)
  const bf16* head_base = a.kv_cache + w.kv_head * head_stride;
  const int chunk = thread % kChunksPerRow;
#pragma unroll 4
  for (int j = 0; j < kTileK * kChunksPerRow / THREADS; ++j) {
    const int row = thread / kChunksPerRow + j * (THREADS / kChunksPerRow);
    const int token = tile * kTileK + row;
    const bool valid = token < w.context_len;
    const bf16* k = a.kv_cache;  // a valid address for the zero-filling copies
    if (valid)
      k = head_base + w.table[token / a.block_size] * block_stride + (token % a.block_size) * kHeadDim + chunk * 8;
    const uint32_t offset = sw128_offset<kTileK>(row, chunk);
    cp_async_16(stage + offset, k, valid ? 16 : 0);
    cp_async_16(stage + kKvTileBytes + offset, valid ? k + a.num_kv_heads * head_stride : k, valid ? 16 : 0);
  }
}

// Copies packed rows [row_begin, row_begin + ROWS) of the item's queries into the Q tile with THREADS threads; rows
// past the item's rows are zero-filled.
template <int ROWS, int THREADS>
__device__ __forceinline__ void load_q_rows(const prefill_attention_args& a, const work_item& w, int row_begin,
                                            uint32_t q_smem, int thread) {
  const int group_size = a.num_q_heads / a.num_kv_heads;
  for (int i = thread; i < ROWS * kChunksPerRow; i += THREADS) {
    const int row = row_begin + i / kChunksPerRow, chunk = i % kChunksPerRow;
    const bool valid = row < w.rows_here;
    const int packed = w.tile_row0 + row;
    const bf16* src = valid ? a.q +
                                  (static_cast<int64_t>(w.query_start + packed / group_size) * a.num_q_heads +
                                   w.kv_head * group_size + packed % group_size) *
                                      kHeadDim +
                                  chunk * 8
                            : a.q;
    cp_async_16(q_smem + sw128_offset<kTileQ>(row, chunk), src, valid ? 16 : 0);
  }
}

// A consumer warpgroup's running state over one item: 64 rows; this thread holds rows row0 and row0 + 8.
struct row_state {
  float o[64];  // O[64, 128] accumulator: o[4 * j + e] is row row0 + 8 * (e / 2), column 8 * j + col_pair + e % 2
  float m[2], l[2];  // the rows' running max of the raw (unscaled) scores and running sum of probabilities
  int position[2];  // the rows' query positions (causal limit)
};

__device__ __forceinline__ void init_rows(row_state& r, const work_item& w, int row0, int group_size) {
#pragma unroll
  for (int i = 0; i < 64; ++i) r.o[i] = 0.0f;
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    r.position[e] = w.position_base + (w.tile_row0 + row0 + 8 * e) / group_size;
    r.m[e] = -INFINITY;
    r.l[e] = 0.0f;
  }
}

// Issues S[64, 128] = Q K^T for one warpgroup (8 k-steps, both operands in shared memory) as one wgmma group.
__device__ __forceinline__ void issue_qk(float (&s)[64], uint32_t q_rows, uint32_t k_tile) {
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk) {
    const uint64_t desc_q = sw128_descriptor(q_rows + (kk >> 2) * kTileQ * 128 + (kk & 3) * 32, 16, 1024);
    const uint64_t desc_k = sw128_descriptor(k_tile + (kk >> 2) * kPanelBytes + (kk & 3) * 32, 16, 1024);
    wgmma_m64n128k16_ss(s, desc_q, desc_k, kk > 0);
  }
  wgmma_commit();
}

// Issues O[64, 128] += P V for one warpgroup (8 k-steps over the tile's keys; V N-major in shared memory) as one
// wgmma group. p_frag must stay unchanged until the group completes.
__device__ __forceinline__ void issue_pv(float (&o)[64], const uint32_t (&p_frag)[kTileK / 16][4], uint32_t v_tile) {
#pragma unroll
  for (int kk = 0; kk < kTileK / 16; ++kk) {
    const uint64_t desc_v = sw128_descriptor(v_tile + kk * 16 * 128, kPanelBytes, 1024);
    wgmma_m64n128k16_rs_nmajor(o, p_frag[kk], desc_v);
  }
  wgmma_commit();
}

// Sets the scores of keys past each row's query position to -inf (tiles that reach past a row's position only).
__device__ __forceinline__ void apply_causal_mask(const row_state& r, float (&s)[64], int tile, int col_pair) {
#pragma unroll
  for (int j = 0; j < kTileK / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int key = tile * kTileK + 8 * j + col_pair + (e & 1);
      if (key > r.position[e >> 1]) s[4 * j + e] = -INFINITY;
    }
  }
}

// Online softmax of one tile's raw scores: masks (causal), updates the rows' running max (raw units) and sum,
// turns s into the unnormalised probabilities exp2(s * scale_log2 - max * scale_log2) (one fused multiply-add and
// one ex2 per score), and returns the factor by which O must be rescaled. Does not touch O. The max and the sum run
// as two independent chains per row, for instruction-level parallelism.
__device__ __forceinline__ void online_softmax(row_state& r, float (&s)[64], int tile, bool needs_mask,
                                               float scale_log2, int col_pair, float (&correction)[2]) {
  if (needs_mask) apply_causal_mask(r, s, tile, col_pair);
  float tile_max[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};  // [chain * 2 + row]
#pragma unroll
  for (int j = 0; j < kTileK / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float& chain = tile_max[(j & 1) * 2 + (e >> 1)];
      chain = fmaxf(chain, s[4 * j + e]);
    }
  }
  float m_scaled[2];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    float row_max = fmaxf(tile_max[e], tile_max[2 + e]);
    row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 1));
    row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 2));
    const float m_new = fmaxf(r.m[e], row_max);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a row with no key yet keeps zeros
    m_scaled[e] = m_use * scale_log2;
    correction[e] = fast_exp2((r.m[e] - m_use) * scale_log2);
    r.m[e] = m_new;
    r.l[e] *= correction[e];
  }
  float tile_sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // [chain * 2 + row]
#pragma unroll
  for (int j = 0; j < kTileK / 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      s[4 * j + e] = fast_exp2(fmaf(s[4 * j + e], scale_log2, -m_scaled[e >> 1]));
      tile_sum[(j & 1) * 2 + (e >> 1)] += s[4 * j + e];
    }
  }
  r.l[0] += tile_sum[0] + tile_sum[2];
  r.l[1] += tile_sum[1] + tile_sum[3];
}

__device__ __forceinline__ void rescale_o(row_state& r, const float (&correction)[2]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) r.o[i] *= correction[(i >> 1) & 1];
}

// P as the A operand of the k-steps over the tile's keys: the accumulator layout of two adjacent 8-key chunks is
// the A fragment of one 16-key step.
__device__ __forceinline__ void pack_p(const float (&s)[64], uint32_t (&p_frag)[kTileK / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < kTileK / 16; ++kk) {
    p_frag[kk][0] = pack_bf16x2(s[8 * kk + 0], s[8 * kk + 1]);
    p_frag[kk][1] = pack_bf16x2(s[8 * kk + 2], s[8 * kk + 3]);
    p_frag[kk][2] = pack_bf16x2(s[8 * kk + 4], s[8 * kk + 5]);
    p_frag[kk][3] = pack_bf16x2(s[8 * kk + 6], s[8 * kk + 7]);
  }
}

// Normalises and writes this thread's two rows (packed rows row0 and row0 + 8 of the item) that exist.
__device__ __forceinline__ void store_rows(const prefill_attention_args& a, const work_item& w, row_state& r,
                                           int row0, int col_pair) {
  const int group_size = a.num_q_heads / a.num_kv_heads;
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    r.l[e] += __shfl_xor_sync(0xffffffffu, r.l[e], 1);
    r.l[e] += __shfl_xor_sync(0xffffffffu, r.l[e], 2);
    const int row = row0 + 8 * e;
    if (row < w.rows_here) {
      const int packed = w.tile_row0 + row;
      const float inv = r.l[e] > 0.0f ? 1.0f / r.l[e] : 0.0f;
      bf16* dst = a.out + (static_cast<int64_t>(w.query_start + packed / group_size) * a.num_q_heads +
                           w.kv_head * group_size + packed % group_size) *
                              kHeadDim;
#pragma unroll
      for (int j = 0; j < kHeadDim / 8; ++j)
        *reinterpret_cast<__nv_bfloat162*>(dst + 8 * j + col_pair) =
            __floats2bfloat162_rn(r.o[4 * j + 2 * e] * inv, r.o[4 * j + 2 * e + 1] * inv);
    }
  }
}

// The tile range a consumer warpgroup computes: it has rows, and the tile starts at or before its last position.
struct group_rows {
  int row0, count, first_position, last_position;
};

__device__ __forceinline__ group_rows rows_of_group(const work_item& w, int group, int group_size) {
  group_rows g;
  g.row0 = group * 64;
  g.count = min(64, w.rows_here - g.row0);
  g.first_position = w.position_base + (w.tile_row0 + g.row0) / group_size;
  g.last_position = w.position_base + (w.tile_row0 + g.row0 + max(g.count, 1) - 1) / group_size;
  return g;
}

// The shared-memory window's first 1024-byte-aligned address (swizzled panels need it; the kernels allocate 1024
// bytes of slack).
__device__ __forceinline__ uint32_t aligned_smem_base(const unsigned char* smem_raw) {
  return (smem_addr(smem_raw) + 1023u) & ~1023u;
}

__device__ __forceinline__ int64_t num_work_items(const wgmma_prefill_params& p) {
  return static_cast<int64_t>(p.args.num_kv_heads) * p.args.num_seqs * p.max_q_tiles;
}

// A thread of a two-warpgroup block in which both warpgroups compute (variants 3, 6-9).
struct compute_thread {
  int group;     // its warpgroup: rows 64 * group to 64 * group + 63 of the item
  int col_pair;  // the first of the two accumulator columns it holds in each 8-column chunk
  int row0;      // the first of its two rows in the item (row0 and row0 + 8)
};

__device__ __forceinline__ compute_thread this_compute_thread() {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  return {warp >> 2, (lane & 3) * 2, (warp >> 2) * 64 + (warp & 3) * 16 + (lane >> 2)};
}

// S_t = Q K_t^T for one warpgroup, `under_mma` while it runs, the online softmax (O rescaled), and P_t packed into
// p_frag for the P V MMAs (add_pv); nothing is added to O yet.
template <typename UnderMma>
__device__ __forceinline__ void score_tile(row_state& r, uint32_t (&p_frag)[kTileK / 16][4], uint32_t q_rows,
                                           uint32_t k_tile, int tile, bool needs_mask, float scale_log2, int col_pair,
                                           UnderMma&& under_mma) {
  float s[64];  // S[64, 128], laid out as o
  wgmma_fence();
  issue_qk(s, q_rows, k_tile);
  under_mma();
  wgmma_wait<0>();
  wgmma_register_fence(s);
  float correction[2];
  online_softmax(r, s, tile, needs_mask, scale_log2, col_pair, correction);
  rescale_o(r, correction);
  pack_p(s, p_frag);
}

// O += P V for one warpgroup, P from score_tile and V at v_tile; returns after the MMAs completed.
__device__ __forceinline__ void add_pv(row_state& r, const uint32_t (&p_frag)[kTileK / 16][4], uint32_t v_tile) {
  wgmma_fence();
  issue_pv(r.o, p_frag, v_tile);
  wgmma_wait<0>();
  wgmma_register_fence(r.o);
}

// One K/V tile for one warpgroup: S = Q K^T, online softmax, O += P V; returns after the MMAs completed.
// `after_issue` runs once the Q K^T MMAs are issued, before waiting for them.
template <typename AfterIssue>
__device__ __forceinline__ void attend_tile(row_state& r, uint32_t q_rows, uint32_t k_tile, int tile,
                                            bool needs_mask, float scale_log2, int col_pair, AfterIssue&& after_issue) {
  uint32_t p_frag[kTileK / 16][4];  // P as the A operand of the k-steps over this tile's keys
  score_tile(r, p_frag, q_rows, k_tile, tile, needs_mask, scale_log2, col_pair, after_issue);
  add_pv(r, p_frag, k_tile + kKvTileBytes);
}

// A later K/V tile t of a pipelined warpgroup: issues S_t = Q K_t^T, then O += P_{t-1} V_{t-1} (V_{t-1} at
// previous_v_tile), runs `under_mma` while they run, waits for S_t only, computes the softmax while the P V MMAs
// run, then waits for them, rescales O and packs P_t. Straight-line code: wgmma issue and waits in one path, so
// the compiler does not serialise the MMAs.
template <typename UnderMma>
__device__ __forceinline__ void pipelined_tile(row_state& r, uint32_t (&p_frag)[kTileK / 16][4], uint32_t q_rows,
                                               uint32_t k_tile, uint32_t previous_v_tile, int tile, bool needs_mask,
                                               float scale_log2, int col_pair, UnderMma&& under_mma) {
  float s[64];  // S[64, 128], laid out as o
  wgmma_fence();
  issue_qk(s, q_rows, k_tile);
  issue_pv(r.o, p_frag, previous_v_tile);
  under_mma();
  wgmma_wait<1>();  // S_t done; the P V group issued after it may still run
  wgmma_register_fence(s);
  float correction[2];
  online_softmax(r, s, tile, needs_mask, scale_log2, col_pair, correction);
  wgmma_wait<0>();
  wgmma_register_fence(r.o);
  wgmma_register_fence(p_frag);  // P_{t-1} is overwritten only after its P V MMAs completed
  rescale_o(r, correction);
  pack_p(s, p_frag);
}

// One tile of a pipelined warpgroup (variants 8, 9, 10), whatever its state: computes it (score_tile for the first,
// pipelined_tile after) when the warpgroup has rows up to it, else runs `loads` and, right after its last computed
// tile, adds that tile's P V. `previous_v_tile` holds the V of the warpgroup's last computed tile (updated here).
template <typename Loads>
__device__ __forceinline__ void pipelined_step(row_state& r, uint32_t (&p_frag)[kTileK / 16][4], const group_rows& g,
                                               uint32_t q_smem, uint32_t k_tile, uint32_t& previous_v_tile, int tile,
                                               float scale_log2, int col_pair, Loads&& loads) {
  const bool computes = g.count > 0 && tile * kTileK <= g.last_position;
  if (computes) {
    const bool needs_mask = tile * kTileK + kTileK - 1 > g.first_position;
    if (tile == 0)
      score_tile(r, p_frag, q_smem + g.row0 * 128, k_tile, 0, needs_mask, scale_log2, col_pair, loads);
    else
      pipelined_tile(r, p_frag, q_smem + g.row0 * 128, k_tile, previous_v_tile, tile, needs_mask, scale_log2,
                     col_pair, loads);
    previous_v_tile = k_tile + kKvTileBytes;
  } else {
    loads();
    if (g.count > 0 && (tile - 1) * kTileK <= g.last_position) add_pv(r, p_frag, previous_v_tile);
  }
}

// Variants 3, 6, 7, 8: two warpgroups that both load (cp.async) and compute, in lockstep: one block barrier per
// tile. STAGES K/V stages. LOADS_UNDER_MMA: each tile's copies (and the block-table reads they wait for) are issued
// after the warpgroup's Q K^T MMAs, so they run under the MMAs instead of delaying their issue. PIPELINED (variant
// 8): each warpgroup's softmax of tile t overlaps its own P V MMAs of tile t - 1 (pipelined_step); tile t - 1's V
// must then survive until tile t's MMAs, so copies run one tile ahead, into tile t - 2's stage. Otherwise copies
// run STAGES - 1 tiles ahead, into tile t - 1's stage.
template <int STAGES, bool LOADS_UNDER_MMA, bool PIPELINED>
__global__ void __launch_bounds__(kLockstepThreads, 1) prefill_attention_lockstep_kernel(const wgmma_prefill_params p) {
  static_assert(STAGES == 2 || STAGES == 3, "two or three K/V stages");
  static_assert(!PIPELINED || (STAGES == 3 && LOADS_UNDER_MMA), "the pipelined step keeps three stages busy");
  constexpr int kAhead = PIPELINED ? 1 : STAGES - 1;  // tiles loaded ahead of the one computed
  const prefill_attention_args& a = p.args;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t q_smem = aligned_smem_base(smem_raw);
  const uint32_t kv_smem = q_smem + kQBytes;
  const compute_thread t = this_compute_thread();
  const int group_size = a.num_q_heads / a.num_kv_heads;
  const int64_t num_items = num_work_items(p);

  for (int64_t item = blockIdx.x; item < num_items; item += gridDim.x) {
    work_item w;
    if (!decode_item(p, item, w)) continue;
    load_q_rows<kTileQ, kLockstepThreads>(a, w, 0, q_smem, threadIdx.x);
    for (int tile = 0; tile < kAhead; ++tile) {  // copy group `tile` (Q joins group 0)
      if (tile < w.num_kv_tiles)
        load_kv_tile<kLockstepThreads>(p, w, tile, kv_smem + tile * kStageBytes, threadIdx.x);
      cp_async_commit();
    }
    const group_rows g = rows_of_group(w, t.group, group_size);
    row_state r;
    init_rows(r, w, t.row0, group_size);
    uint32_t p_frag[kTileK / 16][4];  // PIPELINED: P of the last computed tile, the A operand of its pending P V
    uint32_t previous_v_tile = 0;     // PIPELINED: shared-memory address of that tile's V
    for (int tile = 0; tile < w.num_kv_tiles; ++tile) {
      cp_async_wait<kAhead - 1>();  // tile's copies landed; later tiles' may still be in flight
      fence_proxy_async_shared();   // the copies (generic proxy) before wgmma's shared-memory reads (async proxy)
      __syncthreads();              // tile's data visible to all; both warpgroups are done with the stage refilled
      const int ahead = tile + kAhead;
      const auto issue_loads = [&] {
        if (ahead < w.num_kv_tiles)
          load_kv_tile<kLockstepThreads>(p, w, ahead, kv_smem + (ahead % STAGES) * kStageBytes, threadIdx.x);
        cp_async_commit();
      };
      const uint32_t k_tile = kv_smem + (tile % STAGES) * kStageBytes;
      if constexpr (PIPELINED) {
        pipelined_step(r, p_frag, g, q_smem, k_tile, previous_v_tile, tile, p.scale_log2, t.col_pair, issue_loads);
      } else {
        const bool computes = g.count > 0 && tile * kTileK <= g.last_position;
        if (!LOADS_UNDER_MMA || !computes) issue_loads();
        if (!computes) continue;
        attend_tile(r, q_smem + g.row0 * 128, k_tile, tile, tile * kTileK + kTileK - 1 > g.first_position,
                    p.scale_log2, t.col_pair, [&] {
                      if (LOADS_UNDER_MMA) issue_loads();
                    });
      }
    }
    if constexpr (PIPELINED) {
      if (g.count > 0 && (w.num_kv_tiles - 1) * kTileK <= g.last_position)
        add_pv(r, p_frag, previous_v_tile);
    }
    cp_async_wait<0>();
    __syncthreads();  // the next item reuses the shared memory
    store_rows(a, w, r, t.row0, t.col_pair);
  }
}

// Issues the bulk tensor copies of K and V of `tile` into `stage`, completing on `full_bar` (thread 0 issues them,
// one 16-row x 64-column box per 16-token chunk, column half and K or V), and zero-fills the chunks past the
// context (every thread; they would otherwise hold stale or never-written shared memory, and P = 0 times a NaN is
// NaN). The block size must be a multiple of 16.
__device__ __forceinline__ void load_kv_tile_tma(const prefill_attention_args& a, const CUtensorMap* map,
                                                 const work_item& w, int tile, uint32_t stage, uint32_t full_bar) {
  constexpr int kChunkTokens = 16;
  constexpr int kChunks = kTileK / kChunkTokens;
  constexpr int kBoxBytes = kChunkTokens * 128;  // 16 rows x 64 columns of bf16
  const int valid_chunks = min(kChunks, (w.context_len - tile * kTileK + kChunkTokens - 1) / kChunkTokens);
  if (valid_chunks < kChunks) {
    // Per invalid chunk: 2 (K, V) x 2 panels x 2 KiB, written as 16-byte stores.
    const int stores_per_chunk = 4 * kBoxBytes / 16;
    for (int i = threadIdx.x; i < (kChunks - valid_chunks) * stores_per_chunk; i += blockDim.x) {
      const int chunk = valid_chunks + i / stores_per_chunk, rest = i % stores_per_chunk;
      const int k_or_v = rest / (2 * kBoxBytes / 16), panel = (rest / (kBoxBytes / 16)) % 2;
      const uint32_t dst =
          stage + k_or_v * kKvTileBytes + panel * kPanelBytes + chunk * kBoxBytes + (rest % (kBoxBytes / 16)) * 16;
      asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(dst), "r"(0) : "memory");
    }
    fence_proxy_async_shared();  // the zeros (generic proxy) before wgmma's reads (async proxy)
  }
  if (threadIdx.x != 0) return;
  mbarrier_arrive_expect_tx(full_bar, valid_chunks * 4 * kBoxBytes);
  const int v_rows = a.num_kv_heads * a.block_size;  // from a K row to its V row
  for (int chunk = 0; chunk < valid_chunks; ++chunk) {
    const int token = tile * kTileK + chunk * kChunkTokens;
    const int block = w.table[token / a.block_size];
    const int row = (block * 2 * a.num_kv_heads + w.kv_head) * a.block_size + token % a.block_size;
#pragma unroll
    for (int panel = 0; panel < 2; ++panel) {
      const uint32_t dst = stage + panel * kPanelBytes + chunk * kBoxBytes;
      tma_load_2d(dst, map, 64 * panel, row, full_bar);
      tma_load_2d(dst + kKvTileBytes, map, 64 * panel, row + v_rows, full_bar);
    }
  }
}

// After a tile's copies landed: zeroes the V rows of the copied chunk that lie past the context (the chunk holding
// the context's end is copied whole; its later cache slots may hold anything, and P = 0 times a NaN is NaN; K
// there is masked to -inf and needs nothing). Every thread; ordered before wgmma by the caller's fence and barrier.
__device__ __forceinline__ void zero_v_rows_past_context(const work_item& w, int tile, uint32_t stage) {
  const int first = w.context_len - tile * kTileK;  // first row past the context
  const int last = min(kTileK, (first + 15) / 16 * 16);
  if (first <= 0 || first >= last) return;
  for (int i = threadIdx.x; i < (last - first) * 2 * 8; i += blockDim.x) {  // rows x panels x 16-byte chunks
    const int row = first + i / 16, panel = (i / 8) % 2, chunk = i % 8;
    const uint32_t dst = stage + kKvTileBytes + panel * kPanelBytes + row * 128 + chunk * 16;
    asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};\n" ::"r"(dst), "r"(0) : "memory");
  }
}

// Variant 9: variant 8 with the K/V tiles brought in by bulk tensor copies (one thread issues 32 per tile, each
// stage's copies complete on its mbarrier) instead of 32 cp.async per thread and the block-table reads of every
// thread. Q still comes by cp.async, once per item.
__global__ void __launch_bounds__(kLockstepThreads, 1)
    prefill_attention_tma_kernel(const __grid_constant__ CUtensorMap kv_map, const wgmma_prefill_params p) {
  constexpr int kStages = 3;
  const prefill_attention_args& a = p.args;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t q_smem = aligned_smem_base(smem_raw);
  const uint32_t kv_smem = q_smem + kQBytes;
  const uint32_t full_bars = kv_smem + kStages * kStageBytes;  // [stages] mbarriers: the stage's copies landed
  const compute_thread t = this_compute_thread();
  const int group = t.group, col_pair = t.col_pair, thread_row0 = t.row0;
  const int group_size = a.num_q_heads / a.num_kv_heads;
  const int64_t num_items = num_work_items(p);
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) mbarrier_init(full_bars + 8 * s, 1);
    fence_mbarrier_init();
  }
  __syncthreads();
  // Tiles loaded and consumed by this block so far, over all its items: stage n % stages, phase parity n / stages.
  int loaded = 0, consumed = 0;

  for (int64_t item = blockIdx.x; item < num_items; item += gridDim.x) {
    work_item w;
    if (!decode_item(p, item, w)) continue;
    load_q_rows<kTileQ, kLockstepThreads>(a, w, 0, q_smem, threadIdx.x);
    cp_async_commit();
    load_kv_tile_tma(a, &kv_map, w, 0, kv_smem + (loaded % kStages) * kStageBytes, full_bars + 8 * (loaded % kStages));
    ++loaded;
    const group_rows g = rows_of_group(w, group, group_size);
    row_state r;
    init_rows(r, w, thread_row0, group_size);
    uint32_t p_frag[kTileK / 16][4];  // P of the last computed tile: the A operand of its pending P V MMAs
    uint32_t previous_v_tile = 0;     // shared-memory address of that tile's V
    for (int tile = 0; tile < w.num_kv_tiles; ++tile) {
      const uint32_t stage = kv_smem + (consumed % kStages) * kStageBytes;
      mbarrier_wait(full_bars + 8 * (consumed % kStages), (consumed / kStages) & 1);
      ++consumed;
      zero_v_rows_past_context(w, tile, stage);
      cp_async_wait<0>();          // Q, on the item's first tile
      fence_proxy_async_shared();  // Q's copies and the zeros (generic proxy) before wgmma's reads (async proxy)
      __syncthreads();             // zeros and Q visible to all; both warpgroups are done with tile - 2's stage
      pipelined_step(r, p_frag, g, q_smem, stage, previous_v_tile, tile, p.scale_log2, col_pair, [&] {
        if (tile + 1 < w.num_kv_tiles) {
          load_kv_tile_tma(a, &kv_map, w, tile + 1, kv_smem + (loaded % kStages) * kStageBytes,
                           full_bars + 8 * (loaded % kStages));
          ++loaded;
        }
      });
    }
    if (g.count > 0 && (w.num_kv_tiles - 1) * kTileK <= g.last_position) add_pv(r, p_frag, previous_v_tile);
    __syncthreads();  // the next item reuses the shared memory
    store_rows(a, w, r, thread_row0, col_pair);
  }
}

// Variants 4, 5, 10. PINGPONG: the consumers take turns to issue their MMAs (named barriers 3 and 4), so that one's
// softmax runs while the other's MMAs do; the turn covers the Q K^T MMAs, and with PIPELINED (each consumer runs
// pipelined_step) the previous tile's P V MMAs as well.
template <bool PINGPONG, bool PIPELINED>
__global__ void __launch_bounds__(kSpecialisedThreads, 1)
    prefill_attention_specialised_kernel(const wgmma_prefill_params p) {
  static_assert(!PIPELINED || PINGPONG, "the pipelined consumers take turns");
  const prefill_attention_args& a = p.args;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t q_smem = aligned_smem_base(smem_raw);
  const uint32_t kv_smem = q_smem + kQBytes;
  const uint32_t full_bars = kv_smem + kSpecialisedStages * kStageBytes;  // [stages] mbarriers: tile landed
  const uint32_t empty_bars = full_bars + kSpecialisedStages * 8;         // [stages] mbarriers: tile consumed
  const int warpgroup = threadIdx.x / 128, thread_in_group = threadIdx.x % 128;
  const int group_size = a.num_q_heads / a.num_kv_heads;
  const int64_t num_items = num_work_items(p);
  if (threadIdx.x == 0) {
    for (int s = 0; s < kSpecialisedStages; ++s) {
      mbarrier_init(full_bars + 8 * s, 128);  // one cp.async arrival per producer thread
      mbarrier_init(empty_bars + 8 * s, 256);  // one arrival per consumer thread
    }
    fence_mbarrier_init();
  }
  __syncthreads();

  if (warpgroup == 0) {  // producer: every tile of every item, in the consumers' order
    warpgroup_release_registers<kProducerRegisters>();
    int use = 0;  // tiles loaded so far: stage use % stages, round use / stages
    for (int64_t item = blockIdx.x; item < num_items; item += gridDim.x) {
      work_item w;
      if (!decode_item(p, item, w)) continue;
      for (int tile = 0; tile < w.num_kv_tiles; ++tile, ++use) {
        const int stage = use % kSpecialisedStages;
        mbarrier_wait(empty_bars + 8 * stage, ((use / kSpecialisedStages) & 1) ^ 1);
        load_kv_tile<128>(p, w, tile, kv_smem + stage * kStageBytes, thread_in_group);
        cp_async_mbarrier_arrive(full_bars + 8 * stage);
      }
    }
    cp_async_wait<0>();
    return;
  }

  warpgroup_claim_registers<kConsumerRegisters>();
  const int group = warpgroup - 1;
  const int lane = threadIdx.x & 31, warp_in_group = thread_in_group >> 5;
  const int col_pair = (lane & 3) * 2;
  const int thread_row0 = group * 64 + warp_in_group * 16 + (lane >> 2);  // and thread_row0 + 8
  const int my_turn = 3 + group, other_turn = 3 + (1 - group);
  if (PINGPONG && group == 1) named_barrier_arrive(other_turn, 256);  // the first consumer goes first
  int use = 0;
  for (int64_t item = blockIdx.x; item < num_items; item += gridDim.x) {
    work_item w;
    if (!decode_item(p, item, w)) continue;
    const group_rows g = rows_of_group(w, group, group_size);
    if (g.count > 0) {
      load_q_rows<64, 128>(a, w, g.row0, q_smem, thread_in_group);
      cp_async_commit();
      cp_async_wait<0>();
      fence_proxy_async_shared();
      named_barrier_sync(1 + group, 128);  // the warpgroup's Q rows are in place
    }
    row_state r;
    init_rows(r, w, thread_row0, group_size);
    uint32_t p_frag[kTileK / 16][4];  // PIPELINED: P of the last computed tile, the A operand of its pending P V
    uint32_t previous_v_tile = 0;     // PIPELINED: shared-memory address of that tile's V
    int pending_stage = -1;           // PIPELINED: the stage holding that V, released once its P V completed
    for (int tile = 0; tile < w.num_kv_tiles; ++tile, ++use) {
      const int stage = use % kSpecialisedStages;
      mbarrier_wait(full_bars + 8 * stage, (use / kSpecialisedStages) & 1);
      fence_proxy_async_shared();  // the producer's copies (generic proxy) before wgmma's reads (async proxy)
      if (PINGPONG) named_barrier_sync(my_turn, 256);
      const auto pass_turn = [&] {
        if (PINGPONG) named_barrier_arrive(other_turn, 256);
      };
      const bool computes = g.count > 0 && tile * kTileK <= g.last_position;
      if constexpr (PIPELINED) {
        // The turn covers the issue of both S_t and P_{t-1} V_{t-1}, so the other warpgroup's softmax runs under
        // them. Tile t - 1's stage is free once its P V completed (inside pipelined_step).
        pipelined_step(r, p_frag, g, q_smem, kv_smem + stage * kStageBytes, previous_v_tile, tile, p.scale_log2,
                       col_pair, pass_turn);
        if (pending_stage >= 0) mbarrier_arrive(empty_bars + 8 * pending_stage);
        pending_stage = computes ? stage : -1;
        if (!computes) mbarrier_arrive(empty_bars + 8 * stage);
      } else {
        if (computes)
          attend_tile(r, q_smem + g.row0 * 128, kv_smem + stage * kStageBytes, tile,
                      tile * kTileK + kTileK - 1 > g.first_position, p.scale_log2, col_pair, pass_turn);
        else
          pass_turn();
        mbarrier_arrive(empty_bars + 8 * stage);
      }
    }
    if constexpr (PIPELINED) {
      if (pending_stage >= 0) {  // the item's last tile was computed: its P V is still to do
        add_pv(r, p_frag, previous_v_tile);
        mbarrier_arrive(empty_bars + 8 * pending_stage);
      }
    }
    if (g.count > 0) store_rows(a, w, r, thread_row0, col_pair);
  }
}

// Launches `kernel` on a persistent grid within the SM budget, with `leading` arguments before the parameters.
template <typename Kernel, typename... Leading>
cudaError_t launch(Kernel kernel, int threads, int smem, const prefill_attention_args& a, cudaStream_t stream,
                   const Leading&... leading) {
  const int group_size = a.num_q_heads / a.num_kv_heads;
  const bool power_of_two = a.block_size > 0 && (a.block_size & (a.block_size - 1)) == 0;
  const wgmma_prefill_params p{a, (a.max_num_queries * group_size + kTileQ - 1) / kTileQ,
                               a.scale * 1.4426950408889634f, power_of_two ? __builtin_ctz(a.block_size) : -1};
  const int64_t num_items = static_cast<int64_t>(p.max_q_tiles) * a.num_kv_heads * a.num_seqs;
  if (num_items == 0) return cudaSuccess;
  const int grid = grid_for_budget(a.num_sms, 1, num_items);
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess) return err;
  kernel<<<grid, threads, smem, stream>>>(leading..., p);
  return cudaGetLastError();
}

}  // namespace

bool prefill_attention_wgmma_supports(const prefill_attention_args& a) {
  return a.head_dim == kHeadDim && a.variant >= 3 && a.variant <= 10;
}

cudaError_t prefill_attention_wgmma(const prefill_attention_args& a, cudaStream_t stream) {
  if (!prefill_attention_wgmma_supports(a)) return cudaErrorInvalidValue;
  if (a.variant == 4)
    return launch(prefill_attention_specialised_kernel<false, false>, kSpecialisedThreads, kSpecialisedSmem, a,
                  stream);
  if (a.variant == 5)
    return launch(prefill_attention_specialised_kernel<true, false>, kSpecialisedThreads, kSpecialisedSmem, a, stream);
  if (a.variant == 10)
    return launch(prefill_attention_specialised_kernel<true, true>, kSpecialisedThreads, kSpecialisedSmem, a, stream);
  if (a.variant == 6)
    return launch(prefill_attention_lockstep_kernel<2, true, false>, kLockstepThreads, lockstep_smem(2), a, stream);
  if (a.variant == 7)
    return launch(prefill_attention_lockstep_kernel<3, true, false>, kLockstepThreads, lockstep_smem(3), a, stream);
  CUtensorMap kv_map;
  if (a.variant == 9 && a.block_size % 16 == 0 && encode_kv_rows_map(a.kv_cache, 16, false, kv_map))
    return launch(prefill_attention_tma_kernel, kLockstepThreads, kTmaSmem, a, stream, kv_map);
  if (a.variant == 8 || a.variant == 9)  // 9 without bulk copies (block size not a multiple of 16, no encoder)
    return launch(prefill_attention_lockstep_kernel<3, true, true>, kLockstepThreads, lockstep_smem(3), a, stream);
  return launch(prefill_attention_lockstep_kernel<2, false, false>, kLockstepThreads, lockstep_smem(2), a, stream);
}

}  // namespace nf::kernels::detail
