// Candidate splits, their nano-ops and the dependencies any step shape can give them.
#include "tune/search_problem.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <limits>

#include "core/error.h"

namespace nf {

namespace {

// a * r + b, with r = num_decode / num_tokens: a row boundary as a fraction of the step.
struct linear {
  double a = 0.0;
  double b = 0.0;
};

struct class_bounds {
  linear begin, end;
};

class_bounds bounds_of(row_class rows) {
  switch (rows) {
    case row_class::all: return {{0, 0}, {0, 1}};
    case row_class::decode: return {{0, 0}, {1, 0}};
    case row_class::prefill: return {{1, 0}, {0, 1}};
  }
  return {};
}

// Conditions "upper(r) > lower(r)" for every lower and upper: the intervals [max lowers, min uppers) intersect.
struct interval_set {
  std::vector<linear> lowers, uppers;
};

// The node's rows: its step fractions intersected with its row class.
interval_set rows_of_node(const op_graph& graph, const search_node& node) {
  const class_bounds c = bounds_of(graph.ops[node.op].rows);
  return {{{0, node.range.begin}, c.begin}, {{0, node.range.end}, c.end}};
}

interval_set footprint_of(const op_graph& graph, const search_node& node, footprint kind) {
  interval_set rows = rows_of_node(graph, node);
  if (kind == footprint::class_prefix) rows.lowers = {bounds_of(graph.ops[node.op].rows).begin};
  return rows;
}

// True when some r in [0, 1] satisfies upper(r) > lower(r) for every pair of every set.
bool satisfiable(const std::vector<interval_set>& sets) {
  double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
  for (const interval_set& s : sets)
    for (const linear& l : s.lowers)
      for (const linear& u : s.uppers) {
        const double c = u.a - l.a, d = u.b - l.b;  // c * r + d > 0
        if (std::abs(c) < 1e-15) {
          if (!(d > 1e-12)) return false;
        } else if (c > 0) {
          lo = std::max(lo, -d / c);
        } else {
          hi = std::min(hi, -d / c);
        }
      }
  return std::max(lo, 0.0) < std::min(hi, 1.0) - 1e-12;
}

int fraction_to_row(double fraction, int count) { return static_cast<int>(std::floor(fraction * count + 0.5)); }

std::vector<double> even_cuts(double begin, double end, int pieces) {
  std::vector<double> cuts;
  for (int i = 1; i < pieces; ++i) cuts.push_back(begin + (end - begin) * i / pieces);
  return cuts;
}

}  // namespace

int stream_of(resource_class resource) { return resource == resource_class::compute ? compute_stream : memory_stream; }

std::vector<std::vector<double>> candidate_cuts(int max_nano_batches, step_rows rows) {
  std::vector<std::vector<double>> result;
  auto add = [&](std::vector<double> inner) {
    std::vector<double> cuts{0.0};
    cuts.insert(cuts.end(), inner.begin(), inner.end());
    cuts.push_back(1.0);
    for (size_t i = 1; i < cuts.size(); ++i)
      if (!(cuts[i] > cuts[i - 1])) return;
    if (std::find(result.begin(), result.end(), cuts) == result.end()) result.push_back(cuts);
  };
  for (int k = 1; k <= max_nano_batches; ++k) add(even_cuts(0.0, 1.0, k));
  if (rows.num_decode > 0 && rows.num_prefill > 0) {
    const double r = static_cast<double>(rows.num_decode) / rows.num_tokens();
    for (int k = 2; k <= max_nano_batches; ++k) {
      const int decode_pieces = std::clamp(static_cast<int>(std::lround(k * r)), 1, k - 1);
      std::vector<double> inner = even_cuts(0.0, r, decode_pieces);
      inner.push_back(r);
      for (double c : even_cuts(r, 1.0, k - decode_pieces)) inner.push_back(c);
      add(inner);
    }
  }
  return result;
}

std::vector<precedence> possible_dependencies(const op_graph& graph, const std::vector<search_node>& nodes) {
  std::vector<precedence> edges;
  for (size_t a = 0; a < nodes.size(); ++a)
    for (size_t b = 0; b < nodes.size(); ++b) {
      const search_node& na = nodes[a];
      const search_node& nb = nodes[b];
      const interval_set own_a = rows_of_node(graph, na), own_b = rows_of_node(graph, nb);
      bool same = false, next = false;
      for (const access_conflict& c : conflicts(graph.ops[na.op], graph.ops[nb.op])) {
        interval_set both = footprint_of(graph, na, c.first);
        const interval_set footprint_b = footprint_of(graph, nb, c.second);
        both.lowers.insert(both.lowers.end(), footprint_b.lowers.begin(), footprint_b.lowers.end());
        both.uppers.insert(both.uppers.end(), footprint_b.uppers.begin(), footprint_b.uppers.end());
        const bool meets = satisfiable({own_a, own_b, both});
        if (!meets) continue;
        if (na.op < nb.op) same = true;
        if (!graph.buffers[c.buffer].per_layer) next = true;
      }
      if (same) edges.push_back({static_cast<int>(a), static_cast<int>(b), 0});
      if (next) edges.push_back({static_cast<int>(a), static_cast<int>(b), 1});
    }
  return edges;
}

schedule_problem make_schedule_problem(const op_graph& graph, const std::vector<double>& cuts, step_rows rows,
                                       const std::vector<std::string>& memory_stream_ops) {
  NF_CHECK(cuts.size() >= 2 && cuts.front() == 0.0 && cuts.back() == 1.0, "cuts must run from 0 to 1");
  for (const std::string& name : memory_stream_ops)
    if (graph.find_op(name) < 0) fail("tune: no operation \"{}\" to put on the memory stream", name);
  auto stream_of_op = [&](int op) {
    if (memory_stream_ops.empty()) return stream_of(graph.ops[op].resource);
    const bool named = std::find(memory_stream_ops.begin(), memory_stream_ops.end(), graph.ops[op].name) !=
                       memory_stream_ops.end();
    return named ? memory_stream : compute_stream;
  };
  schedule_problem problem;
  problem.cuts = cuts;
  problem.rows = rows;
  for (int k = 0; k + 1 < static_cast<int>(cuts.size()); ++k)
    for (size_t op = 0; op < graph.ops.size(); ++op) {
      search_node node;
      node.name = fmt::format("{}@nb{}", graph.ops[op].name, k);
      node.op = static_cast<int>(op);
      node.nano_batch = k;
      node.range = {range_frame::step, cuts[k], cuts[k + 1]};
      const row_range frame = rows.rows_of(range_frame::step);
      const row_range own = rows.rows_of(graph.ops[op].rows);
      const int begin = std::max(frame.begin + fraction_to_row(cuts[k], frame.size()), own.begin);
      const int end = std::min(frame.begin + fraction_to_row(cuts[k + 1], frame.size()), own.end);
      node.num_rows = std::max(0, end - begin);
      node.stream = stream_of_op(static_cast<int>(op));
      problem.nodes.push_back(node);
    }
  problem.edges = possible_dependencies(graph, problem.nodes);
  return problem;
}

pipeline_spec make_spec(const op_graph& graph, const schedule_problem& problem,
                        const std::vector<std::vector<int>>& stream_orders, const std::vector<int>& sm_counts,
                        const std::string& name, const std::string& description) {
  NF_CHECK(sm_counts.size() == problem.nodes.size(), "one SM count per node");
  pipeline_spec spec;
  spec.name = name;
  spec.description = description;
  spec.streams = {"compute", "memory"};
  std::vector<int> order(problem.nodes.size(), -1);
  for (const std::vector<int>& sequence : stream_orders)
    for (size_t i = 0; i < sequence.size(); ++i) order[sequence[i]] = static_cast<int>(i);
  for (size_t i = 0; i < problem.nodes.size(); ++i) {
    const search_node& node = problem.nodes[i];
    NF_CHECK(order[i] >= 0, "node {} has no place on its stream", node.name);
    nano_op_spec op;
    op.name = node.name;
    op.op = graph.ops[node.op].name;
    op.range = node.range;
    op.resource = graph.ops[node.op].resource;
    op.sm.count = sm_counts[i];
    op.stream = spec.streams[node.stream];
    op.order = order[i];
    spec.nano_ops.push_back(op);
  }
  return spec;
}

}  // namespace nf
