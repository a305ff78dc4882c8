// A spec resolved for one step's rows: concrete nano-op row ranges and the dependency DAG between them,
// plus the unrolled (all layers) graph the executors walk. Everything here is host-only data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/op_graph.h"
#include "pipeline/pipeline_spec.h"

namespace nf {

struct row_range {
  int begin = 0;
  int end = 0;
  int size() const { return end - begin; }
  bool empty() const { return end <= begin; }
  bool intersects(const row_range& other) const {
    return !empty() && !other.empty() && begin < other.end && other.begin < end;
  }
  bool operator==(const row_range&) const = default;
};

// The step's dense batch: rows [0, num_decode) are decode tokens, [num_decode, num_decode + num_prefill)
// prefill tokens.
struct step_rows {
  int num_decode = 0;
  int num_prefill = 0;
  int num_tokens() const { return num_decode + num_prefill; }
  row_range rows_of(row_class rows) const;
  row_range rows_of(range_frame frame) const;
};

// A nano-op of one layer with its rows resolved (never empty: empty ones are dropped).
struct nano_op {
  std::string name;
  int op = 0;          // index into the op graph
  int spec_index = 0;  // index into pipeline_spec::nano_ops
  row_range rows;      // within the op's row class
  resource_class resource = resource_class::compute;
  sm_budget sm;
  int stream = 0;  // index into resolved_pipeline::streams
  int order = 0;
};

enum class edge_kind {
  data,    // derived from the op graph: a buffer hazard between intersecting rows
  extra,   // an explicit edge of the spec
  stream,  // consecutive nano-ops of one stream (the stream order itself)
};

// `to` (in the same layer as `from`, or the next) may start only after `from` finished.
struct pipeline_edge {
  int from = 0;  // nano-op index
  int to = 0;    // nano-op index
  bool next_layer = false;
  edge_kind kind = edge_kind::data;
};

struct resolved_pipeline {
  std::string name;
  step_rows rows;
  std::vector<std::string> streams;
  std::vector<nano_op> nano_ops;     // one layer's, in spec order
  std::vector<pipeline_edge> edges;  // data and extra edges; the stream edges come from stream_edges()

  int find_nano_op(const std::string& nano_op_name) const;
  // Nano-ops of each stream in their order: stream -> nano-op indices.
  std::vector<std::vector<int>> stream_sequences() const;
  // Consecutive nano-ops of a stream, within a layer and from a stream's last of one layer to its first of
  // the next: the order a stream imposes by itself.
  std::vector<pipeline_edge> stream_edges() const;
};

// Rounding: a fraction boundary b of a frame with C rows maps to row floor(b * C + 0.5) of the frame, so
// neighbouring ranges that share a boundary share the row and tile the frame for every C. A step-frame range
// is then intersected with the op's row class; a decode (prefill) range of a prefill-only (decode-only)
// op resolves to nothing. Empty nano-ops are dropped with their extra edges.
//
// Dependencies (when the spec derives them): nano-op b depends on nano-op a when op(b) depends on op(a)
// (they share a buffer one of them writes; a comes first in program order, or in the previous layer) and
// their footprints on that buffer intersect. With footprint::rows this is the rule "op B depends on op A
// and their token ranges intersect"; prefill attention reads the KV of its whole class prefix.
resolved_pipeline resolve_pipeline(const pipeline_spec& spec, const op_graph& graph, step_rows rows);

// The rows a nano-op's access to a buffer touches.
row_range footprint_rows(footprint kind, const row_range& rows, const row_range& class_rows);
// True when nano-op b (in the same layer as a, or the next) must wait for a on some buffer.
bool nano_ops_conflict(const op_graph& graph, const step_rows& rows, const nano_op& a, const nano_op& b,
                       bool next_layer, int* buffer = nullptr);

// The DAG of every nano-op of `num_layers` layers (node = layer * num_nano_ops + nano_op), with data,
// extra and stream edges.
struct unrolled_graph {
  int num_layers = 0;
  int num_nano_ops = 0;
  std::vector<std::vector<int>> successors;  // node -> nodes

  int num_nodes() const { return num_layers * num_nano_ops; }
  int node(int layer, int nano_op) const { return layer * num_nano_ops + nano_op; }
  int layer_of(int node) const { return node / num_nano_ops; }
  int nano_op_of(int node) const { return node % num_nano_ops; }
};

unrolled_graph unroll(const resolved_pipeline& pipeline, int num_layers);

// A topological order of the graph, or an empty vector when it has a cycle. Seed 0: among ready nodes the
// lowest node id first (layer by layer, spec order); another seed: a random ready node each time.
std::vector<int> topological_order(const unrolled_graph& graph, uint64_t seed = 0);

}  // namespace nf
