// Helpers of the pipeline tests: specs from JSON text, and the problems the validator finds in them.
#pragma once

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "pipeline/pipeline_spec.h"
#include "pipeline/validator.h"
#include "test_paths.h"

namespace nf::test {

inline pipeline_spec spec_from(const std::string& text) { return parse_pipeline_spec(nlohmann::json::parse(text)); }

inline std::string problems_of(const pipeline_spec& spec) { return join_problems(validate_spec(spec, llama_op_graph())); }

inline pipeline_spec config_spec(const std::string& name) {
  return load_pipeline_spec(source_dir() / "configs/pipelines" / (name + ".json"), llama_op_graph());
}

// The nano-ops of every op but `skipped`, one each over the whole step, on one stream in program order,
// as JSON entries; tests append the entries under test.
inline nlohmann::json whole_ops_except(const std::vector<std::string>& skipped) {
  nlohmann::json ops = nlohmann::json::array();
  for (const op_node& op : llama_op_graph().ops) {
    if (std::find(skipped.begin(), skipped.end(), op.name) != skipped.end()) continue;
    ops.push_back({{"op", op.name}, {"order", 10 * llama_op_graph().find_op(op.name)}});
  }
  return ops;
}

}  // namespace nf::test
