// The stream schedule a device executor follows: its enqueue order is topological, and stream order plus its
// cross-stream waits imply every dependency of the unrolled graph, for the shipped specs and random valid
// ones over several step shapes; the check itself fails when one needed wait is removed.
#include <gtest/gtest.h>

#include <random>

#include "pipeline/stream_schedule.h"
#include "spec_helpers.h"

namespace nf {
namespace {

// Happens-before of the schedule: a node follows the previous node enqueued on its stream, and the nodes it
// waits for. Returns the first dependency of the unrolled graph it does not imply, or "" when all hold.
std::string first_unordered_dependency(const stream_schedule& s) {
  const unrolled_graph graph = unroll(s.pipeline, s.num_layers);
  const int n = graph.num_nodes();
  std::vector<std::vector<int>> before(n);  // node -> nodes that directly happen before it
  std::vector<int> last_on_stream(s.num_streams, -1);
  for (int node : s.order) {
    int& last = last_on_stream[s.stream_of[node]];
    if (last >= 0) before[node].push_back(last);
    last = node;
    for (int w : s.waits[node]) {
      if (!s.records_event[w]) return "a wait on a node that records no event";
      before[node].push_back(w);
    }
  }
  for (int from = 0; from < n; ++from)
    for (int to : graph.successors[from]) {
      std::vector<char> seen(n, 0);
      std::vector<int> stack{to};
      bool found = false;
      while (!stack.empty() && !found) {
        const int v = stack.back();
        stack.pop_back();
        for (int u : before[v]) {
          if (u == from) found = true;
          if (!seen[u]) {
            seen[u] = 1;
            stack.push_back(u);
          }
        }
      }
      if (!found)
        return fmt::format("{} (layer {}) -> {} (layer {})", s.nano_op_of(from).name, s.layer_of(from), s.nano_op_of(to).name,
                           s.layer_of(to));
    }
  return "";
}

const std::vector<step_rows> shapes = {{0, 37}, {19, 0}, {5, 60}, {128, 512}, {1, 1}};

TEST(stream_schedule, shipped_specs_keep_every_dependency) {
  for (const std::string& name : test::shipped_spec_names())
    for (const step_rows& rows : shapes) {
      const stream_schedule s = make_stream_schedule(resolve_pipeline(test::config_spec(name), llama_op_graph(), rows), 4);
      EXPECT_EQ(first_unordered_dependency(s), "") << name << " " << rows.num_decode << "+" << rows.num_prefill;
      EXPECT_EQ(s.order.size(), size_t(4) * s.num_nano_ops());
    }
}

TEST(stream_schedule, overlap_spec_waits_only_across_streams_and_sparsely) {
  const stream_schedule s =
      make_stream_schedule(resolve_pipeline(test::config_spec("overlap"), llama_op_graph(), {128, 512}), 8);
  size_t num_waits = 0, num_cross_edges = 0;
  for (size_t v = 0; v < s.waits.size(); ++v) {
    num_waits += s.waits[v].size();
    for (int w : s.waits[v]) EXPECT_NE(s.stream_of[w], s.stream_of[v]);
  }
  const unrolled_graph graph = unroll(s.pipeline, 8);
  for (int v = 0; v < graph.num_nodes(); ++v)
    for (int w : graph.successors[v]) num_cross_edges += s.stream_of[v] != s.stream_of[w] ? 1 : 0;
  EXPECT_GT(num_waits, 0u);
  EXPECT_LT(num_waits, num_cross_edges);
}

TEST(stream_schedule, random_specs_keep_every_dependency) {
  std::mt19937_64 rng(77);
  for (int i = 0; i < 24; ++i) {
    const pipeline_spec spec = test::random_spec(rng, i);
    const step_rows rows = shapes[i % shapes.size()];
    const stream_schedule s = make_stream_schedule(resolve_pipeline(spec, llama_op_graph(), rows), 3);
    EXPECT_EQ(first_unordered_dependency(s), "") << to_json(spec).dump();
  }
}

TEST(stream_schedule, dropping_a_wait_is_caught_by_the_check) {
  stream_schedule s = make_stream_schedule(resolve_pipeline(test::config_spec("overlap"), llama_op_graph(), {64, 64}), 2);
  const auto with_wait = std::find_if(s.waits.begin(), s.waits.end(), [](const auto& w) { return !w.empty(); });
  ASSERT_NE(with_wait, s.waits.end());
  with_wait->pop_back();
  EXPECT_NE(first_unordered_dependency(s), "");
}

}  // namespace
}  // namespace nf
