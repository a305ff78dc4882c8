// A pipeline spec: how one layer's operations are split into nano-operations over token ranges of the step,
// with each nano-op's resource class, SM budget, stream and order. Data, read from JSON (docs/pipeline_spec.md);
// "sequential", "nano-batch only" and "overlapped" are three specs run by the same executors.
#pragma once

#include <filesystem>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/op_graph.h"

namespace nf {

// Which rows a fraction range is relative to: the whole step, its decode rows or its prefill rows.
enum class range_frame { step, decode, prefill };

// [begin, end) as fractions in [0, 1] of the frame's rows; resolved per step (see resolve_pipeline).
struct fraction_range {
  range_frame frame = range_frame::step;
  double begin = 0.0;
  double end = 1.0;
};

// SMs a nano-op may use: a count (> 0) wins over a fraction of the device's SMs.
struct sm_budget {
  int count = 0;
  double fraction = 1.0;
};

struct nano_op_spec {
  std::string name;  // unique; default "op@nano_batch", or the op's name when it has a single nano-op
  std::string op;    // an operation of the op graph
  fraction_range range;
  std::optional<resource_class> resource;  // default: the operation's own class
  sm_budget sm;
  std::string stream;  // one of pipeline_spec::streams
  int order = 0;       // position on its stream within a layer (lower runs first)
};

// An extra ordering edge: `after` waits for `before` (in the same layer, or in the next layer).
struct edge_spec {
  std::string before;
  std::string after;
  bool next_layer = false;
};

struct pipeline_spec {
  std::string name;
  std::string description;
  // true: nano-op dependencies follow from the op graph (see resolve_pipeline); false: only `edges` and the
  // stream order order nano-ops, and the validator checks that they suffice.
  bool derive_dependencies = true;
  // Steps with fewer decode rows than min_decode_rows, or fewer prefill rows than min_prefill_rows, run the
  // sequential spec instead (0: no limit). An overlap that hides decode attention behind GEMMs costs more than it
  // saves when there is little attention to hide, or little work beside it (a decode-only step).
  int min_decode_rows = 0;
  int min_prefill_rows = 0;
  std::vector<std::string> streams;
  std::vector<nano_op_spec> nano_ops;
  std::vector<edge_spec> edges;

  int find_nano_op(const std::string& name) const;
  int find_stream(const std::string& name) const;
};

// Parses the JSON form; throws nf::error naming the offending field. Does not validate the graph.
pipeline_spec parse_pipeline_spec(const nlohmann::json& json);
nlohmann::json to_json(const pipeline_spec& spec);
// Reads, parses and validates a spec file against the graph; every error is an nf::error naming the file.
pipeline_spec load_pipeline_spec(const std::filesystem::path& path, const op_graph& graph);
// One nano-op per operation over all rows, on one stream, in program order: the serial forward pass.
pipeline_spec sequential_spec(const op_graph& graph);
// The spec a step of `num_decode` decode and `num_prefill` prefill rows runs: `spec` itself, or `sequential` below
// spec.min_decode_rows or spec.min_prefill_rows.
const pipeline_spec& spec_for_step(const pipeline_spec& spec, const pipeline_spec& sequential, int num_decode,
                                   int num_prefill);

std::string_view to_string(range_frame frame);

}  // namespace nf
