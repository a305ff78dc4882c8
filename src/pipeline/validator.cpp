// Validation of pipeline specs: field checks, fraction coverage, then probe steps resolved and checked for
// row coverage, cycles and races.
#include "pipeline/validator.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>

#include "core/error.h"

namespace nf {

namespace {

// Row shapes every spec must resolve correctly for: edge cases and budgets that do not divide evenly.
constexpr step_rows probe_steps[] = {{0, 1},  {1, 0},  {1, 1},   {2, 3},   {3, 2},     {0, 7},   {7, 0},
                                     {5, 11}, {13, 4}, {64, 64}, {100, 1948}, {2048, 0}, {0, 2048}, {1, 2047}};

constexpr int race_check_layers = 3;

std::string rows_text(const row_range& r) { return fmt::format("[{}, {})", r.begin, r.end); }

bool frame_fits(range_frame frame, row_class rows) {
  if (frame == range_frame::decode) return rows != row_class::prefill;
  if (frame == range_frame::prefill) return rows != row_class::decode;
  return true;
}

void check_fields(const pipeline_spec& spec, const op_graph& graph, std::vector<std::string>& problems) {
  if (spec.streams.empty()) problems.push_back("no stream declared");
  for (size_t i = 0; i < spec.streams.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (spec.streams[i] == spec.streams[j]) problems.push_back(fmt::format("stream \"{}\" declared twice", spec.streams[i]));
  std::set<std::string> names;
  std::map<std::pair<std::string, int>, std::string> stream_slots;
  for (const nano_op_spec& op : spec.nano_ops) {
    const std::string who = fmt::format("nano-op \"{}\"", op.name);
    if (op.name.empty()) problems.push_back(fmt::format("a nano-op of \"{}\" has no name", op.op));
    else if (!names.insert(op.name).second) problems.push_back(who + ": name used twice");
    const int index = graph.find_op(op.op);
    if (index < 0) {
      problems.push_back(fmt::format("{}: unknown operation \"{}\" (the {} graph has: {})", who, op.op, graph.family,
                                     graph.op_names()));
    } else if (!frame_fits(op.range.frame, graph.ops[index].rows)) {
      problems.push_back(fmt::format("{}: a {} range never has rows of {}, which runs on {} rows only", who,
                                     to_string(op.range.frame), op.op, to_string(graph.ops[index].rows)));
    }
    if (!(op.range.begin >= 0.0 && op.range.begin <= op.range.end && op.range.end <= 1.0))
      problems.push_back(fmt::format("{}: range [{}, {}] must satisfy 0 <= begin <= end <= 1", who, op.range.begin,
                                     op.range.end));
    if (op.sm.count < 0) problems.push_back(fmt::format("{}: SM count {} must be at least 1", who, op.sm.count));
    if (op.sm.count == 0 && !(op.sm.fraction > 0.0 && op.sm.fraction <= 1.0))
      problems.push_back(fmt::format("{}: SM fraction {} must be in (0, 1]", who, op.sm.fraction));
    if (spec.find_stream(op.stream) < 0) {
      problems.push_back(fmt::format("{}: stream \"{}\" is not declared in \"streams\"", who, op.stream));
    } else {
      auto [it, inserted] = stream_slots.emplace(std::pair{op.stream, op.order}, op.name);
      if (!inserted)
        problems.push_back(fmt::format("nano-ops \"{}\" and \"{}\" share order {} on stream \"{}\"", it->second, op.name,
                                       op.order, op.stream));
    }
  }
  for (const edge_spec& e : spec.edges) {
    for (const std::string& end : {e.before, e.after})
      if (spec.find_nano_op(end) < 0) problems.push_back(fmt::format("edge {} -> {}: unknown nano-op \"{}\"", e.before, e.after, end));
  }
}

// When all of an op's nano-ops use one frame, their fractions must tile [0, 1] exactly: rounding could hide a
// thin gap or overlap at the probe sizes, never at every size.
void check_fractions(const pipeline_spec& spec, const op_graph& graph, std::vector<std::string>& problems) {
  for (const op_node& node : graph.ops) {
    std::vector<const nano_op_spec*> ops;
    for (const nano_op_spec& op : spec.nano_ops)
      if (op.op == node.name && op.range.end > op.range.begin) ops.push_back(&op);
    if (ops.empty()) {
      problems.push_back(fmt::format("operation \"{}\" has no nano-op", node.name));
      continue;
    }
    const bool one_frame = std::all_of(ops.begin(), ops.end(), [&](auto* op) { return op->range.frame == ops[0]->range.frame; });
    if (!one_frame) continue;
    std::sort(ops.begin(), ops.end(), [](auto* a, auto* b) { return a->range.begin < b->range.begin; });
    double covered = 0.0;
    const nano_op_spec* previous = nullptr;
    for (const nano_op_spec* op : ops) {
      if (op->range.begin > covered)
        problems.push_back(fmt::format("operation \"{}\": {} fractions [{}, {}) are covered by no nano-op (a gap)",
                                       node.name, to_string(op->range.frame), covered, op->range.begin));
      else if (op->range.begin < covered)
        problems.push_back(fmt::format("operation \"{}\": {} fractions [{}, {}) are covered by both \"{}\" and \"{}\" (an overlap)",
                                       node.name, to_string(op->range.frame), op->range.begin,
                                       std::min(covered, op->range.end), previous->name, op->name));
      covered = std::max(covered, op->range.end);
      previous = op;
    }
    if (covered < 1.0)
      problems.push_back(fmt::format("operation \"{}\": {} fractions [{}, 1) are covered by no nano-op (a gap)", node.name,
                                     to_string(ops[0]->range.frame), covered));
  }
}

// Reachability over a DAG: reach[v] has bit w when a path v -> w exists (or v == w).
std::vector<std::vector<uint64_t>> reachability(const unrolled_graph& graph, const std::vector<int>& order) {
  const int n = graph.num_nodes();
  const size_t words = (n + 63) / 64;
  std::vector<std::vector<uint64_t>> reach(n, std::vector<uint64_t>(words, 0));
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const int v = *it;
    reach[v][v / 64] |= uint64_t{1} << (v % 64);
    for (int w : graph.successors[v])
      for (size_t k = 0; k < words; ++k) reach[v][k] |= reach[w][k];
  }
  return reach;
}

}  // namespace

std::vector<std::string> check_coverage(const resolved_pipeline& pipeline, const op_graph& graph) {
  std::vector<std::string> problems;
  for (size_t op = 0; op < graph.ops.size(); ++op) {
    std::vector<const nano_op*> ops;
    for (const nano_op& n : pipeline.nano_ops)
      if (n.op == static_cast<int>(op)) ops.push_back(&n);
    std::sort(ops.begin(), ops.end(), [](auto* a, auto* b) { return a->rows.begin < b->rows.begin; });
    const row_range want = pipeline.rows.rows_of(graph.ops[op].rows);
    int covered = want.begin;
    const nano_op* previous = nullptr;
    for (const nano_op* n : ops) {
      if (n->rows.begin > covered)
        problems.push_back(fmt::format("operation \"{}\": rows {} are covered by no nano-op (a gap)", graph.ops[op].name,
                                       rows_text({covered, n->rows.begin})));
      else if (n->rows.begin < covered)
        problems.push_back(fmt::format("operation \"{}\": rows {} are covered by both \"{}\" and \"{}\" (an overlap)",
                                       graph.ops[op].name, rows_text({n->rows.begin, std::min(covered, n->rows.end)}),
                                       previous->name, n->name));
      covered = std::max(covered, n->rows.end);
      previous = n;
    }
    if (covered < want.end)
      problems.push_back(fmt::format("operation \"{}\": rows {} are covered by no nano-op (a gap)", graph.ops[op].name,
                                     rows_text({covered, want.end})));
  }
  return problems;
}

std::string find_cycle(const resolved_pipeline& pipeline) {
  const int n = static_cast<int>(pipeline.nano_ops.size());
  std::vector<std::vector<int>> next(n);
  std::vector<pipeline_edge> edges = pipeline.edges;
  for (const pipeline_edge& e : pipeline.stream_edges()) edges.push_back(e);
  for (const pipeline_edge& e : edges)
    if (!e.next_layer) next[e.from].push_back(e.to);
  std::vector<int> state(n, 0), parent(n, -1);  // 0 new, 1 on the stack, 2 done
  std::string found;
  auto visit = [&](auto&& self, int v) -> bool {
    state[v] = 1;
    for (int w : next[v]) {
      if (state[w] == 1) {
        std::vector<int> path{w};
        for (int u = v; u != w; u = parent[u]) path.push_back(u);
        std::reverse(path.begin() + 1, path.end());
        for (int u : path) found += "\"" + pipeline.nano_ops[u].name + "\" -> ";
        found += "\"" + pipeline.nano_ops[w].name + "\"";
        return true;
      }
      if (state[w] == 0) {
        parent[w] = v;
        if (self(self, w)) return true;
      }
    }
    state[v] = 2;
    return false;
  };
  for (int v = 0; v < n; ++v)
    if (state[v] == 0 && visit(visit, v)) break;
  return found;
}

// Races as (the pair of nano-ops and layer distance, message): the key identifies a race across step sizes.
static std::vector<std::pair<std::string, std::string>> keyed_races(const resolved_pipeline& pipeline, const op_graph& graph) {
  std::vector<std::pair<std::string, std::string>> problems;
  const unrolled_graph unrolled = unroll(pipeline, race_check_layers);
  const std::vector<int> order = topological_order(unrolled);
  NF_CHECK(!order.empty(), "find_races needs an acyclic pipeline");
  const auto reach = reachability(unrolled, order);
  std::set<std::pair<int, int>> reported;
  for (int u = 0; u < unrolled.num_nodes(); ++u)
    for (int v = 0; v < unrolled.num_nodes(); ++v) {
      const int lu = unrolled.layer_of(u), lv = unrolled.layer_of(v);
      const nano_op& a = pipeline.nano_ops[unrolled.nano_op_of(u)];
      const nano_op& b = pipeline.nano_ops[unrolled.nano_op_of(v)];
      // a must come first: in an earlier layer, or earlier in program order within the layer.
      if (lu > lv || (lu == lv && a.op >= b.op)) continue;
      int buffer = 0;
      if (!nano_ops_conflict(graph, pipeline.rows, a, b, lu != lv, &buffer)) continue;
      if (reach[u][v / 64] >> (v % 64) & 1) continue;
      if (!reported.emplace(unrolled.nano_op_of(u), unrolled.nano_op_of(v)).second) continue;
      problems.emplace_back(fmt::format("{}|{}|{}", a.name, b.name, lv - lu), fmt::format(
          "missing dependency: \"{}\" (rows {}, layer {}) and \"{}\" (rows {}, layer {}) touch the same rows of "
          "\"{}\", one writing, with no path from the first to the second (a race)",
          a.name, rows_text(a.rows), lu, b.name, rows_text(b.rows), lv, graph.buffers[buffer].name));
    }
  return problems;
}

std::vector<std::string> find_races(const resolved_pipeline& pipeline, const op_graph& graph) {
  std::vector<std::string> problems;
  for (auto& [key, message] : keyed_races(pipeline, graph)) problems.push_back(std::move(message));
  return problems;
}

std::vector<std::string> check_resolved(const resolved_pipeline& pipeline, const op_graph& graph) {
  std::vector<std::string> problems = check_coverage(pipeline, graph);
  const std::string cycle = find_cycle(pipeline);
  if (!cycle.empty()) {
    problems.push_back("cycle: " + cycle);
    return problems;
  }
  for (std::string& race : find_races(pipeline, graph)) problems.push_back(std::move(race));
  return problems;
}

std::vector<std::string> validate_spec(const pipeline_spec& spec, const op_graph& graph) {
  std::vector<std::string> problems;
  check_fields(spec, graph, problems);
  if (!problems.empty()) return problems;
  check_fractions(spec, graph, problems);
  if (!problems.empty()) return problems;
  std::set<std::string> seen;
  auto report = [&](const std::string& key, const std::string& line) {
    if (seen.insert(key).second) problems.push_back(line);
  };
  for (const step_rows& rows : probe_steps) {
    const resolved_pipeline pipeline = resolve_pipeline(spec, graph, rows);
    const std::string step = fmt::format("with {} decode and {} prefill tokens: ", rows.num_decode, rows.num_prefill);
    for (const std::string& problem : check_coverage(pipeline, graph)) report(step + problem, step + problem);
    // A cycle or a race shows at many sizes: each is reported once, at the first size that shows it.
    const std::string cycle = find_cycle(pipeline);
    if (!cycle.empty()) {
      report("cycle: " + cycle, "cycle: " + cycle);
    } else {
      for (const auto& [key, message] : keyed_races(pipeline, graph)) report(key, step + message);
    }
    if (problems.size() > 20) break;
  }
  return problems;
}

std::string join_problems(const std::vector<std::string>& problems) {
  std::string text;
  for (const std::string& p : problems) text += (text.empty() ? "" : "; ") + p;
  return text;
}

}  // namespace nf
