// Helpers of the pipeline tests: specs from JSON text, and the problems the validator finds in them.
#pragma once

#include <algorithm>
#include <filesystem>
#include <random>

#include <fmt/format.h>
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

// Every spec shipped under configs/pipelines (searched ones in tuned/ too; predictions skipped), as names for
// config_spec: "overlap", "tuned/llama3-8b-h200", ...; sorted.
inline std::vector<std::string> shipped_spec_names() {
  namespace fs = std::filesystem;
  const fs::path root = source_dir() / "configs/pipelines";
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::recursive_directory_iterator(root)) {
    const fs::path& path = entry.path();
    if (!entry.is_regular_file() || path.extension() != ".json" || path.stem().extension() == ".prediction") continue;
    names.push_back((fs::relative(path, root).parent_path() / path.stem()).generic_string());
  }
  std::sort(names.begin(), names.end());
  return names;
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

// A random valid spec: 1-3 streams, every op cut into 1-3 pieces (or split by decode/prefill frame), random
// streams, SM budgets and orders; drawn again until the validator accepts it.
inline pipeline_spec random_spec(std::mt19937_64& rng, int index) {
  auto uniform = [&rng](int n) { return static_cast<int>(rng() % n); };
  for (;;) {
    nlohmann::json doc;
    doc["name"] = fmt::format("random{}", index);
    const int num_streams = 1 + uniform(3);
    for (int s = 0; s < num_streams; ++s) doc["streams"].push_back(fmt::format("s{}", s));
    std::vector<std::pair<double, nlohmann::json>> keyed;
    for (size_t op = 0; op < llama_op_graph().ops.size(); ++op) {
      const op_node& node = llama_op_graph().ops[op];
      std::vector<std::pair<std::string, std::pair<double, double>>> pieces;  // frame, range
      std::string frame = "range";
      if (node.rows != row_class::all && uniform(2) == 0) frame = to_string(node.rows) == "decode" ? "decode" : "prefill";
      if (node.rows == row_class::all && uniform(4) == 0) {
        pieces = {{"decode", {0.0, 1.0}}, {"prefill", {0.0, 1.0}}};
      } else {
        std::vector<double> cuts{0.0, 1.0};
        for (int c = uniform(3); c > 0; --c) cuts.push_back((1 + uniform(19)) / 20.0);
        std::sort(cuts.begin(), cuts.end());
        cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
        for (size_t i = 0; i + 1 < cuts.size(); ++i) pieces.push_back({frame, {cuts[i], cuts[i + 1]}});
      }
      for (size_t i = 0; i < pieces.size(); ++i) {
        nlohmann::json entry = {{"op", node.name}, {"name", fmt::format("{}#{}", node.name, i)}};
        entry[pieces[i].first] = {pieces[i].second.first, pieces[i].second.second};
        entry["stream"] = fmt::format("s{}", uniform(num_streams));
        if (uniform(2) == 0) entry["sm_count"] = 1 + uniform(132);
        else entry["sm_fraction"] = (1 + uniform(10)) / 10.0;
        keyed.emplace_back(op + uniform(25) / 10.0 + i * 0.01, entry);
      }
    }
    std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < keyed.size(); ++i) {
      keyed[i].second["order"] = static_cast<int>(i);
      doc["nano_ops"].push_back(keyed[i].second);
    }
    pipeline_spec spec = parse_pipeline_spec(doc);
    if (validate_spec(spec, llama_op_graph()).empty()) return spec;
  }
}

}  // namespace nf::test
