// Range resolution for one step's rows (edge cases, uneven splits, row classes) and the derived dependencies.
#include <gtest/gtest.h>

#include "pipeline/resolved_pipeline.h"
#include "spec_helpers.h"

namespace nf {
namespace {

resolved_pipeline resolve(const std::string& spec_name, int num_decode, int num_prefill) {
  return resolve_pipeline(test::config_spec(spec_name), llama_op_graph(), {num_decode, num_prefill});
}

// name -> rows of every nano-op of one op.
std::map<std::string, row_range> rows_of(const resolved_pipeline& p, const std::string& op) {
  std::map<std::string, row_range> result;
  for (const nano_op& n : p.nano_ops)
    if (llama_op_graph().ops[n.op].name == op) result[n.name] = n.rows;
  return result;
}

bool has_edge(const resolved_pipeline& p, const std::string& from, const std::string& to, bool next_layer = false) {
  for (const pipeline_edge& e : p.edges)
    if (p.nano_ops[e.from].name == from && p.nano_ops[e.to].name == to && e.next_layer == next_layer) return true;
  return false;
}

using ranges = std::map<std::string, row_range>;

TEST(resolve, sequential_is_one_nano_op_per_op_over_its_rows) {
  const resolved_pipeline p = resolve("sequential", 3, 5);
  ASSERT_EQ(p.nano_ops.size(), 10u);
  EXPECT_EQ(rows_of(p, "qkv_gemm"), (ranges{{"qkv_gemm", {0, 8}}}));
  EXPECT_EQ(rows_of(p, "decode_attention"), (ranges{{"decode_attention", {0, 3}}}));
  EXPECT_EQ(rows_of(p, "prefill_attention"), (ranges{{"prefill_attention", {3, 8}}}));
  EXPECT_TRUE(check_resolved(p, llama_op_graph()).empty());
}

TEST(resolve, no_decode_tokens_drops_decode_attention) {
  const resolved_pipeline p = resolve("nanobatch-halves", 0, 5);
  EXPECT_TRUE(rows_of(p, "decode_attention").empty());
  // 5 / 2 = 2.5 rounds half up: the first nano-batch gets 3 rows.
  EXPECT_EQ(rows_of(p, "o_gemm"), (ranges{{"o_gemm@nb0", {0, 3}}, {"o_gemm@nb1", {3, 5}}}));
  EXPECT_EQ(rows_of(p, "prefill_attention"), (ranges{{"prefill_attention@nb0", {0, 3}}, {"prefill_attention@nb1", {3, 5}}}));
  EXPECT_TRUE(check_resolved(p, llama_op_graph()).empty());
}

TEST(resolve, no_prefill_tokens_drops_prefill_attention) {
  const resolved_pipeline p = resolve("overlap-halves", 3, 0);
  EXPECT_TRUE(rows_of(p, "prefill_attention").empty());
  EXPECT_EQ(rows_of(p, "decode_attention"), (ranges{{"decode_attention@nb0", {0, 2}}, {"decode_attention@nb1", {2, 3}}}));
  EXPECT_TRUE(check_resolved(p, llama_op_graph()).empty());
}

TEST(resolve, one_token_keeps_one_nano_batch) {
  for (auto [num_decode, num_prefill] : {std::pair{1, 0}, std::pair{0, 1}}) {
    const resolved_pipeline p = resolve("overlap-halves", num_decode, num_prefill);
    // floor(0.5 * 1 + 0.5) = 1: the one row goes to the first nano-batch; every nb1 nano-op is empty.
    EXPECT_EQ(p.nano_ops.size(), 9u);
    for (const nano_op& n : p.nano_ops) EXPECT_EQ(n.rows, (row_range{0, 1})) << n.name;
    EXPECT_TRUE(check_resolved(p, llama_op_graph()).empty());
  }
  EXPECT_TRUE(resolve("overlap-halves", 0, 0).nano_ops.empty());
}

TEST(resolve, uneven_budget_splits_by_row_class) {
  // 3 decode + 4 prefill = 7 rows: nb0 = [0, 4) (3.5 rounds up), nb1 = [4, 7).
  const resolved_pipeline p = resolve("overlap-halves", 3, 4);
  EXPECT_EQ(rows_of(p, "qkv_gemm"), (ranges{{"qkv_gemm@nb0", {0, 4}}, {"qkv_gemm@nb1", {4, 7}}}));
  EXPECT_EQ(rows_of(p, "decode_attention"), (ranges{{"decode_attention@nb0", {0, 3}}}));
  EXPECT_EQ(rows_of(p, "prefill_attention"),
            (ranges{{"prefill_attention@nb0", {3, 4}}, {"prefill_attention@nb1", {4, 7}}}));
  EXPECT_TRUE(check_resolved(p, llama_op_graph()).empty());
}

TEST(resolve, budgets_that_do_not_divide_keep_tiling) {
  const pipeline_spec spec = test::spec_from(R"({
    "name": "thirds", "nano_batches": [{"name": "a", "range": [0, 0.333]}, {"name": "b", "range": [0.333, 0.667]},
                                       {"name": "c", "range": [0.667, 1]}],
    "nano_ops": [)" + [] {
    std::string ops;
    for (const op_node& op : llama_op_graph().ops)
      for (const char* nb : {"a", "b", "c"})
        ops += std::string(ops.empty() ? "" : ",") + R"({"op": ")" + op.name + R"(", "nano_batch": ")" + nb + "\"}";
    return ops;
  }() + "]}");
  EXPECT_EQ(test::problems_of(spec), "");
  for (int n = 0; n <= 40; ++n)
    for (int d = 0; d <= n; d += 3) {
      const resolved_pipeline p = resolve_pipeline(spec, llama_op_graph(), {d, n - d});
      EXPECT_EQ(check_coverage(p, llama_op_graph()), std::vector<std::string>{}) << d << " + " << n - d;
    }
  const resolved_pipeline p = resolve_pipeline(spec, llama_op_graph(), {0, 10});
  EXPECT_EQ(rows_of(p, "o_gemm"), (ranges{{"o_gemm@a", {0, 3}}, {"o_gemm@b", {3, 7}}, {"o_gemm@c", {7, 10}}}));
}

TEST(resolve, decode_relative_ranges) {
  const pipeline_spec spec = test::spec_from(R"({"name": "d", "nano_ops": [
    {"op": "attn_norm"}, {"op": "qkv_gemm"}, {"op": "rope_kv_append"},
    {"op": "decode_attention", "name": "da0", "decode": [0, 0.25], "sm_count": 16},
    {"op": "decode_attention", "name": "da1", "decode": [0.25, 1]},
    {"op": "prefill_attention", "prefill": [0, 1]}, {"op": "o_gemm"}, {"op": "ffn_norm"}, {"op": "gate_up_gemm"},
    {"op": "activation"}, {"op": "down_gemm"}]})");
  EXPECT_EQ(test::problems_of(spec), "");
  const resolved_pipeline p = resolve_pipeline(spec, llama_op_graph(), {10, 6});
  EXPECT_EQ(rows_of(p, "decode_attention"), (ranges{{"da0", {0, 3}}, {"da1", {3, 10}}}));
  EXPECT_EQ(rows_of(p, "prefill_attention"), (ranges{{"prefill_attention", {10, 16}}}));
  EXPECT_EQ(p.nano_ops[p.find_nano_op("da0")].sm.count, 16);
  EXPECT_EQ(p.nano_ops[p.find_nano_op("da0")].resource, resource_class::memory);
}

TEST(resolve, dependencies_follow_intersecting_rows) {
  // 4 decode + 4 prefill: nb0 = decode rows, nb1 = prefill rows.
  resolved_pipeline p = resolve("overlap-halves", 4, 4);
  EXPECT_TRUE(has_edge(p, "rope_kv_append@nb0", "decode_attention@nb0"));
  EXPECT_TRUE(has_edge(p, "decode_attention@nb0", "o_gemm@nb0"));
  EXPECT_FALSE(has_edge(p, "decode_attention@nb0", "o_gemm@nb1"));  // rows do not intersect
  EXPECT_FALSE(has_edge(p, "qkv_gemm@nb0", "rope_kv_append@nb1"));
  EXPECT_TRUE(has_edge(p, "down_gemm@nb0", "attn_norm@nb0", true));  // into the next layer
  EXPECT_FALSE(has_edge(p, "down_gemm@nb0", "attn_norm@nb1", true));
  EXPECT_FALSE(has_edge(p, "rope_kv_append@nb0", "prefill_attention@nb1"));
  // 2 decode + 6 prefill: nb0 holds the first two prefill rows; the prefill attention of nb1 reads their KV.
  p = resolve("overlap-halves", 2, 6);
  EXPECT_TRUE(has_edge(p, "rope_kv_append@nb0", "prefill_attention@nb1"));
  EXPECT_TRUE(has_edge(p, "rope_kv_append@nb1", "prefill_attention@nb1"));
  EXPECT_FALSE(has_edge(p, "rope_kv_append@nb1", "prefill_attention@nb0"));
}

TEST(resolve, stream_order_and_unrolled_graph) {
  // 6 decode + 2 prefill: nb0 = [0, 4) is all decode, so prefill_attention@nb0 has no rows.
  const resolved_pipeline p = resolve("overlap-halves", 6, 2);
  const auto sequences = p.stream_sequences();
  ASSERT_EQ(sequences.size(), 2u);
  EXPECT_EQ(sequences[0].size(), 17u);
  ASSERT_EQ(sequences[1].size(), 2u);
  EXPECT_EQ(p.nano_ops[sequences[1][0]].name, "decode_attention@nb0");
  EXPECT_EQ(p.nano_ops[sequences[1][1]].name, "decode_attention@nb1");
  const unrolled_graph g = unroll(p, 3);
  EXPECT_EQ(g.num_nodes(), 3 * 19);
  for (uint64_t seed : {0, 1, 2, 3}) {
    const std::vector<int> order = topological_order(g, seed);
    ASSERT_EQ(order.size(), size_t(g.num_nodes()));
    std::vector<int> position(order.size());
    for (size_t i = 0; i < order.size(); ++i) position[order[i]] = static_cast<int>(i);
    for (int v = 0; v < g.num_nodes(); ++v)
      for (int w : g.successors[v]) EXPECT_LT(position[v], position[w]);
  }
}

}  // namespace
}  // namespace nf
