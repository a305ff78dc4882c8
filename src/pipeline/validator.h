// The pipeline validator: rejects a spec with an unknown operation, bad ranges, budgets or streams, a gap or
// overlap in an operation's row coverage, a cycle, or a missing dependency (two nano-ops touching the same
// rows of a buffer, one writing, with no path between them: a race). Every problem is one clear line.
#pragma once

#include <string>
#include <vector>

#include "pipeline/op_graph.h"
#include "pipeline/pipeline_spec.h"
#include "pipeline/resolved_pipeline.h"

namespace nf {

// Everything wrong with a spec, for any step: its fields, then (when they are sound) the resolved pipeline of
// a set of probe steps (no decode tokens, no prefill tokens, one token, counts that do not divide evenly,
// a full 2048-token budget). Empty when the spec is valid.
std::vector<std::string> validate_spec(const pipeline_spec& spec, const op_graph& graph);

// Every operation's nano-ops cover exactly the rows of its row class, without gap or overlap.
std::vector<std::string> check_coverage(const resolved_pipeline& pipeline, const op_graph& graph);
// A cycle through same-layer data, extra and stream edges, as "a -> b -> a"; empty when acyclic.
std::string find_cycle(const resolved_pipeline& pipeline);
// Every pair of nano-ops (over three unrolled layers) that touch intersecting rows of a buffer, one writing,
// with no path between them in the graph of data, extra and stream edges.
std::vector<std::string> find_races(const resolved_pipeline& pipeline, const op_graph& graph);
// Coverage, cycle and races together.
std::vector<std::string> check_resolved(const resolved_pipeline& pipeline, const op_graph& graph);

// "first; second; ..." for an error message.
std::string join_problems(const std::vector<std::string>& problems);

}  // namespace nf
