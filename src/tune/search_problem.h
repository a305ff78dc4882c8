// The scheduling problem of one candidate split: the nano-ops (every operation over each nano-batch's step
// fractions), their streams (compute-class operations on one, memory- and network-class on the other), their
// rows at the workload, and every dependency between them that any step shape can produce.
#pragma once

#include <string>
#include <vector>

#include "pipeline/op_graph.h"
#include "pipeline/pipeline_spec.h"
#include "pipeline/resolved_pipeline.h"

namespace nf {

inline constexpr int compute_stream = 0;
inline constexpr int memory_stream = 1;
inline constexpr int num_search_streams = 2;

struct search_node {
  std::string name;  // "op@nbK"
  int op = 0;        // index into the op graph
  int nano_batch = 0;
  fraction_range range;  // step fractions [cuts[k], cuts[k + 1]]
  int num_rows = 0;      // rows at the workload after intersecting with the op's row class; 0: empty there
  int stream = compute_stream;
};

// `to` (in the same layer as `from`, or `layer_offset` = 1: the next) may start only after `from` finished.
struct precedence {
  int from = 0;
  int to = 0;
  int layer_offset = 0;
  bool operator==(const precedence&) const = default;
};

struct schedule_problem {
  std::vector<double> cuts;  // [num_nano_batches + 1] step fractions, 0 first, 1 last
  step_rows rows;            // the workload's rows
  std::vector<search_node> nodes;
  // Every data dependency some step shape produces (see possible_dependencies); the same-layer ones form a DAG.
  std::vector<precedence> edges;

  int num_nano_batches() const { return static_cast<int>(cuts.size()) - 1; }
};

// The stream a resource class runs on: "only operations bound by different resources may overlap".
int stream_of(resource_class resource);

// Candidate nano-batch boundaries for 1..max_nano_batches nano-batches at this workload: equal token splits,
// and (with both decode and prefill rows) splits with a boundary where the decode rows end, the larger side
// split evenly. Each is [0, c1, ..., 1] with strictly increasing cuts; duplicates are removed.
std::vector<std::vector<double>> candidate_cuts(int max_nano_batches, step_rows rows);

// The nano-ops of `cuts` with their rows at `rows` (rounded as resolve_pipeline rounds) and streams, and
// their possible dependencies. `memory_stream_ops` names the operations that go on the memory stream; empty:
// every memory- and network-class operation (stream_of). Operations not named stay on the compute stream
// beside the GEMMs, whatever their class.
schedule_problem make_schedule_problem(const op_graph& graph, const std::vector<double>& cuts, step_rows rows,
                                       const std::vector<std::string>& memory_stream_ops = {});

// Nano-op b depends on nano-op a at some step when their operations conflict on a buffer and the footprints
// intersect. Rows are monotone roundings of real boundaries that are linear in r = num_decode / num_tokens, so
// a dependency that exists at some step exists for the real intervals at its r: this returns every pair whose
// real footprints intersect for some r in [0, 1], a superset of the dependencies of every step. A stream order
// consistent with these never makes a cycle, whatever the step.
std::vector<precedence> possible_dependencies(const op_graph& graph, const std::vector<search_node>& nodes);

// The nano-ops of the problem as a spec (names, step ranges, streams "compute" and "memory", resources) with
// the given orders per stream and SM budgets per node.
pipeline_spec make_spec(const op_graph& graph, const schedule_problem& problem,
                        const std::vector<std::vector<int>>& stream_orders, const std::vector<int>& sm_counts,
                        const std::string& name, const std::string& description);

}  // namespace nf
