// Resolving a spec for one step: fractions -> rows, derived and explicit dependencies, unrolling over layers.
#include "pipeline/resolved_pipeline.h"

#include <algorithm>
#include <cmath>
#include <queue>
#include <random>

#include "core/error.h"

namespace nf {

namespace {

int fraction_to_row(double fraction, int count) { return static_cast<int>(std::floor(fraction * count + 0.5)); }

row_range intersect(const row_range& a, const row_range& b) {
  row_range r{std::max(a.begin, b.begin), std::min(a.end, b.end)};
  if (r.end < r.begin) r.end = r.begin;
  return r;
}

}  // namespace

row_range step_rows::rows_of(row_class rows) const {
  switch (rows) {
    case row_class::all: return {0, num_tokens()};
    case row_class::decode: return {0, num_decode};
    case row_class::prefill: return {num_decode, num_tokens()};
  }
  return {};
}

row_range step_rows::rows_of(range_frame frame) const {
  switch (frame) {
    case range_frame::step: return {0, num_tokens()};
    case range_frame::decode: return {0, num_decode};
    case range_frame::prefill: return {num_decode, num_tokens()};
  }
  return {};
}

row_range footprint_rows(footprint kind, const row_range& rows, const row_range& class_rows) {
  if (kind == footprint::class_prefix) return {class_rows.begin, rows.end};
  return rows;
}

bool nano_ops_conflict(const op_graph& graph, const step_rows& rows, const nano_op& a, const nano_op& b,
                       bool next_layer, int* buffer) {
  const op_node& op_a = graph.ops[a.op];
  const op_node& op_b = graph.ops[b.op];
  for (const access_conflict& c : conflicts(op_a, op_b)) {
    if (next_layer && graph.buffers[c.buffer].per_layer) continue;
    const row_range fa = footprint_rows(c.first, a.rows, rows.rows_of(op_a.rows));
    const row_range fb = footprint_rows(c.second, b.rows, rows.rows_of(op_b.rows));
    if (fa.intersects(fb)) {
      if (buffer) *buffer = c.buffer;
      return true;
    }
  }
  return false;
}

int resolved_pipeline::find_nano_op(const std::string& nano_op_name) const {
  for (size_t i = 0; i < nano_ops.size(); ++i)
    if (nano_ops[i].name == nano_op_name) return static_cast<int>(i);
  return -1;
}

std::vector<std::vector<int>> resolved_pipeline::stream_sequences() const {
  std::vector<std::vector<int>> sequences(streams.size());
  for (size_t i = 0; i < nano_ops.size(); ++i) sequences[nano_ops[i].stream].push_back(static_cast<int>(i));
  for (std::vector<int>& sequence : sequences)
    std::stable_sort(sequence.begin(), sequence.end(),
                     [this](int a, int b) { return nano_ops[a].order < nano_ops[b].order; });
  return sequences;
}

std::vector<pipeline_edge> resolved_pipeline::stream_edges() const {
  std::vector<pipeline_edge> edges;
  for (const std::vector<int>& sequence : stream_sequences()) {
    if (sequence.empty()) continue;
    for (size_t i = 0; i + 1 < sequence.size(); ++i) edges.push_back({sequence[i], sequence[i + 1], false, edge_kind::stream});
    edges.push_back({sequence.back(), sequence.front(), true, edge_kind::stream});
  }
  return edges;
}

resolved_pipeline resolve_pipeline(const pipeline_spec& spec, const op_graph& graph, step_rows rows) {
  NF_CHECK(rows.num_decode >= 0 && rows.num_prefill >= 0, "negative row counts");
  resolved_pipeline result;
  result.name = spec.name;
  result.rows = rows;
  result.streams = spec.streams;
  for (size_t i = 0; i < spec.nano_ops.size(); ++i) {
    const nano_op_spec& s = spec.nano_ops[i];
    const int op = graph.find_op(s.op);
    if (op < 0) fail("nano-op \"{}\": unknown operation \"{}\"", s.name, s.op);
    const int stream = spec.find_stream(s.stream);
    if (stream < 0) fail("nano-op \"{}\": unknown stream \"{}\"", s.name, s.stream);
    const row_range frame = rows.rows_of(s.range.frame);
    const row_range range{frame.begin + fraction_to_row(s.range.begin, frame.size()),
                          frame.begin + fraction_to_row(s.range.end, frame.size())};
    const row_range resolved = intersect(range, rows.rows_of(graph.ops[op].rows));
    if (resolved.empty()) continue;
    result.nano_ops.push_back({s.name, op, static_cast<int>(i), resolved,
                               s.resource.value_or(graph.ops[op].resource), s.sm, stream, s.order});
  }

  const int count = static_cast<int>(result.nano_ops.size());
  if (spec.derive_dependencies) {
    for (int a = 0; a < count; ++a)
      for (int b = 0; b < count; ++b) {
        const nano_op& na = result.nano_ops[a];
        const nano_op& nb = result.nano_ops[b];
        if (na.op < nb.op && nano_ops_conflict(graph, rows, na, nb, false)) result.edges.push_back({a, b, false});
        if (nano_ops_conflict(graph, rows, na, nb, true)) result.edges.push_back({a, b, true});
      }
  }
  for (const edge_spec& e : spec.edges) {
    if (spec.find_nano_op(e.before) < 0) fail("edge: unknown nano-op \"{}\"", e.before);
    if (spec.find_nano_op(e.after) < 0) fail("edge: unknown nano-op \"{}\"", e.after);
    const int from = result.find_nano_op(e.before), to = result.find_nano_op(e.after);
    if (from >= 0 && to >= 0) result.edges.push_back({from, to, e.next_layer, edge_kind::extra});
  }
  return result;
}

unrolled_graph unroll(const resolved_pipeline& pipeline, int num_layers) {
  unrolled_graph g;
  g.num_layers = num_layers;
  g.num_nano_ops = static_cast<int>(pipeline.nano_ops.size());
  g.successors.resize(g.num_nodes());
  std::vector<pipeline_edge> edges = pipeline.edges;
  for (const pipeline_edge& e : pipeline.stream_edges()) edges.push_back(e);
  for (int layer = 0; layer < num_layers; ++layer)
    for (const pipeline_edge& e : edges) {
      const int to_layer = layer + (e.next_layer ? 1 : 0);
      if (to_layer < num_layers) g.successors[g.node(layer, e.from)].push_back(g.node(to_layer, e.to));
    }
  return g;
}

std::vector<int> topological_order(const unrolled_graph& graph, uint64_t seed) {
  const int n = graph.num_nodes();
  std::vector<int> indegree(n, 0);
  for (const std::vector<int>& next : graph.successors)
    for (int v : next) ++indegree[v];
  std::priority_queue<int, std::vector<int>, std::greater<>> lowest;
  std::vector<int> ready;
  std::mt19937_64 rng(seed);
  auto push = [&](int v) {
    if (seed == 0) lowest.push(v);
    else ready.push_back(v);
  };
  for (int v = 0; v < n; ++v)
    if (indegree[v] == 0) push(v);
  std::vector<int> order;
  order.reserve(n);
  while (!lowest.empty() || !ready.empty()) {
    int v;
    if (seed == 0) {
      v = lowest.top();
      lowest.pop();
    } else {
      const size_t pick = rng() % ready.size();
      v = ready[pick];
      ready[pick] = ready.back();
      ready.pop_back();
    }
    order.push_back(v);
    for (int w : graph.successors[v])
      if (--indegree[w] == 0) push(w);
  }
  if (static_cast<int>(order.size()) != n) return {};
  return order;
}

}  // namespace nf
