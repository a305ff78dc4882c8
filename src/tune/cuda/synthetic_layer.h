// One decoder layer of a Llama-family model on the device with made-up contents, for the operation profiler:
// random bf16 activations and weights (several weight copies, so that back-to-back launches find them in HBM as
// a real layer does, not in L2), a paged KV cache of scattered blocks, and the launch of any operation of the
// op graph over a given number of rows at a given SM budget, exactly as the CUDA backend launches it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "engine/cuda/device_memory.h"
#include "kernels/cuda/gemm.h"
#include "model/model_config.h"
#include "pipeline/op_graph.h"

namespace nf::cuda {

struct synthetic_layer_options {
  int max_rows = 2048;                        // the most rows any launch covers (the dense budget)
  std::vector<int> decode_contexts{1024};     // KV length of every decode sequence, one setting per index
  std::vector<int> prefill_row_counts{2048};  // the prefill row counts launches will ask for
  int prefill_chunk = 1024;                   // prefill rows are prompts of this many tokens (the last shorter)
  int block_size = 16;                        // tokens per KV block, a multiple of 16
  double kv_memory_fraction = 0.4;            // most of the free device memory the KV cache may take
  size_t kv_max_bytes = 0;                    // and at most this many bytes (0: no cap)
  uint64_t seed = 0;
};

class synthetic_layer {
 public:
  // Throws nf::error for shapes the tuned kernels do not take (head_dim other than 64 or 128, hidden or
  // intermediate size not a multiple of 8, a block size not a multiple of 16) and when memory runs out.
  synthetic_layer(const model_config& config, const synthetic_layer_options& options);

  // Enqueues operation `kind` over `num_rows` rows with grid budget `num_sms` (0: the whole device). Decode
  // attention: `num_rows` decode sequences of context decode_contexts[context_index]; prefill attention:
  // `num_rows` new tokens as fresh prompts of prefill_chunk tokens. `rotation` picks the weight copy. The
  // attention kernels of one launch never write what the other attention kernel reads, so a decode and a
  // prefill launch may run at once.
  void launch(op_kind kind, int num_rows, int num_sms, int context_index, int rotation, kernels::gemm_runner& gemm,
              cudaStream_t stream);

  // Distinct bytes of KV the decode launches stream (the KV cache wraps around past this).
  size_t kv_cache_bytes() const { return kv_cache_.bytes(); }
  // True when every decode sequence has its own blocks (no wrap-around).
  bool kv_blocks_distinct() const { return kv_blocks_distinct_; }

 private:
  struct prefill_metadata {
    int num_rows = 0, num_seqs = 0, max_queries = 0;
    size_t offset = 0;  // into prefill_metadata_: query_starts, num_queries, context_lens, each [num_seqs]
  };
  const __nv_bfloat16* weight(int index, int rotation) const;

  model_config config_;
  synthetic_layer_options options_;
  int num_kv_blocks_ = 0;
  int decode_max_blocks_ = 0;   // blocks per decode sequence at the longest context
  int prefill_max_blocks_ = 0;  // blocks per prompt
  bool kv_blocks_distinct_ = true;
  size_t weight_elements_[4] = {};  // qkv, o, gate_up, down
  int weight_copies_[4] = {};
  std::vector<prefill_metadata> prefill_;

  memory_block residual_, normed_, projected_;  // [max_rows, hidden] each
  memory_block qkv_;                            // [max_rows, qkv_size]
  memory_block q_;                              // [max_rows, num_q_heads, head_dim]
  memory_block attention_out_;                  // [max_rows, num_q_heads, head_dim] (prefill attention)
  memory_block decode_out_;                     // [max_rows, num_q_heads, head_dim] (decode attention)
  memory_block gate_up_;                        // [max_rows, 2 * intermediate]
  memory_block activated_;                      // [max_rows, intermediate]
  memory_block norm_weight_;                    // [hidden]
  memory_block bias_;                           // [max(qkv_size, 2 * intermediate, hidden)]
  memory_block weights_;                        // [pool]: copies of each GEMM weight [n, k] from offset 0
  memory_block inv_freq_;                       // [head_dim / 2] float
  memory_block positions_;                      // [max_rows] int32
  memory_block slots_;                          // [max_rows] int64
  memory_block kv_cache_;                       // [num_kv_blocks, 2, num_kv_heads, block_size, head_dim]
  memory_block decode_tables_;                  // [max_rows, decode_max_blocks] int32
  memory_block decode_lens_;                    // [num_contexts, max_rows] int32
  memory_block decode_workspace_;               // decode_attention_workspace_bytes(max_rows, ..., longest context)
  memory_block prefill_tables_;                 // [max prompts, prefill_max_blocks] int32
  memory_block prefill_metadata_;               // int32 arrays of every prefill row count
};

}  // namespace nf::cuda
