// The Llama-family op graph: the dependencies its buffers imply, within a layer and to the next layer.
#include <gtest/gtest.h>

#include "pipeline/op_graph.h"

namespace nf {
namespace {

bool depends(const std::string& to, const std::string& from, bool next_layer) {
  const op_graph& g = llama_op_graph();
  for (const op_dependency& d : g.dependencies())
    if (d.from == g.find_op(from) && d.to == g.find_op(to) && d.next_layer == next_layer) return true;
  return false;
}

TEST(op_graph, llama_has_the_dense_layer_ops_in_program_order) {
  const op_graph& g = llama_op_graph();
  EXPECT_EQ(g.op_names(),
            "attn_norm, qkv_gemm, rope_kv_append, decode_attention, prefill_attention, o_gemm, ffn_norm, "
            "gate_up_gemm, activation, down_gemm");
  EXPECT_EQ(g.ops[g.find_op("decode_attention")].rows, row_class::decode);
  EXPECT_EQ(g.ops[g.find_op("prefill_attention")].rows, row_class::prefill);
  EXPECT_EQ(g.ops[g.find_op("down_gemm")].resource, resource_class::compute);
  EXPECT_EQ(g.ops[g.find_op("decode_attention")].resource, resource_class::memory);
  EXPECT_EQ(g.find_op("lm_head"), -1);
}

TEST(op_graph, data_dependencies_follow_the_buffers) {
  EXPECT_TRUE(depends("qkv_gemm", "attn_norm", false));
  EXPECT_TRUE(depends("rope_kv_append", "qkv_gemm", false));
  EXPECT_TRUE(depends("decode_attention", "rope_kv_append", false));
  EXPECT_TRUE(depends("prefill_attention", "rope_kv_append", false));
  EXPECT_TRUE(depends("o_gemm", "decode_attention", false));
  EXPECT_TRUE(depends("o_gemm", "prefill_attention", false));
  EXPECT_TRUE(depends("ffn_norm", "o_gemm", false));
  EXPECT_TRUE(depends("down_gemm", "activation", false));
  // The two attentions share no row, but write the same buffer: ordered only through rows.
  EXPECT_FALSE(depends("o_gemm", "qkv_gemm", false));
  EXPECT_FALSE(depends("activation", "qkv_gemm", false));
}

TEST(op_graph, layer_to_layer_edges) {
  EXPECT_TRUE(depends("attn_norm", "down_gemm", true));  // the next layer's norm adds this layer's output
  EXPECT_TRUE(depends("attn_norm", "ffn_norm", true));   // the residual stream
  // Buffers reused by the next layer: it may overwrite them only after this layer read them.
  EXPECT_TRUE(depends("qkv_gemm", "rope_kv_append", true));
  EXPECT_TRUE(depends("rope_kv_append", "decode_attention", true));
  // Each layer has its own KV cache: no dependency between layers goes through it.
  const op_graph& g = llama_op_graph();
  for (const op_dependency& d : g.dependencies())
    if (d.next_layer) {
      EXPECT_NE(g.buffers[d.buffer].name, "kv_cache");
    }
}

}  // namespace
}  // namespace nf
