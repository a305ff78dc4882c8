// JSON <-> pipeline_spec, and loading a spec file. The format is documented in docs/pipeline_spec.md.
#include "pipeline/pipeline_spec.h"

#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "pipeline/validator.h"

namespace nf {

namespace {

using json = nlohmann::json;

const json& member(const json& object, const char* key, const std::string& where) {
  if (!object.contains(key)) fail("{}: missing \"{}\"", where, key);
  return object.at(key);
}

std::string string_field(const json& object, const char* key, const std::string& where) {
  const json& value = member(object, key, where);
  if (!value.is_string()) fail("{}: \"{}\" must be a string", where, key);
  return value.get<std::string>();
}

// A range given by one of the keys "range" (fractions of the step), "decode" or "prefill".
std::optional<fraction_range> parse_range(const json& object, const std::string& where) {
  std::optional<fraction_range> result;
  for (auto [key, frame] : {std::pair{"range", range_frame::step}, std::pair{"decode", range_frame::decode},
                            std::pair{"prefill", range_frame::prefill}}) {
    if (!object.contains(key)) continue;
    if (result) fail("{}: give only one of \"range\", \"decode\" and \"prefill\"", where);
    const json& value = object.at(key);
    if (!value.is_array() || value.size() != 2 || !value[0].is_number() || !value[1].is_number())
      fail("{}: \"{}\" must be [begin, end] with fractions in [0, 1]", where, key);
    fraction_range range{frame, value[0].get<double>(), value[1].get<double>()};
    if (!(range.begin >= 0.0 && range.begin <= range.end && range.end <= 1.0))
      fail("{}: \"{}\" [{}, {}] must satisfy 0 <= begin <= end <= 1", where, key, range.begin, range.end);
    result = range;
  }
  return result;
}

resource_class parse_resource(const std::string& text, const std::string& where) {
  if (text == "compute") return resource_class::compute;
  if (text == "memory") return resource_class::memory;
  if (text == "network") return resource_class::network;
  fail("{}: unknown resource class \"{}\" (compute, memory, network)", where, text);
}

json range_to_json(const fraction_range& range) { return json::array({range.begin, range.end}); }

}  // namespace

int pipeline_spec::find_nano_op(const std::string& op_name) const {
  for (size_t i = 0; i < nano_ops.size(); ++i)
    if (nano_ops[i].name == op_name) return static_cast<int>(i);
  return -1;
}

int pipeline_spec::find_stream(const std::string& stream) const {
  for (size_t i = 0; i < streams.size(); ++i)
    if (streams[i] == stream) return static_cast<int>(i);
  return -1;
}

pipeline_spec parse_pipeline_spec(const json& doc) {
  if (!doc.is_object()) fail("the spec must be a JSON object");
  pipeline_spec spec;
  spec.name = string_field(doc, "name", "spec");
  if (doc.contains("description")) spec.description = string_field(doc, "description", "spec");
  if (doc.contains("dependencies")) {
    const std::string mode = string_field(doc, "dependencies", "spec");
    if (mode != "derived" && mode != "explicit")
      fail("spec: \"dependencies\" must be \"derived\" or \"explicit\", not \"{}\"", mode);
    spec.derive_dependencies = mode == "derived";
  }
  for (auto [key, field] : {std::pair{"min_decode_rows", &spec.min_decode_rows},
                             std::pair{"min_prefill_rows", &spec.min_prefill_rows}}) {
    if (!doc.contains(key)) continue;
    if (!doc[key].is_number_integer() || doc[key].get<long long>() < 0 ||
        doc[key].get<long long>() > std::numeric_limits<int>::max())
      fail("spec: \"{}\" must be a non-negative integer", key);
    *field = doc[key].get<int>();
  }
  if (doc.contains("streams")) {
    if (!doc["streams"].is_array()) fail("spec: \"streams\" must be an array of names");
    for (const json& s : doc["streams"]) {
      if (!s.is_string()) fail("spec: \"streams\" must be an array of names");
      spec.streams.push_back(s.get<std::string>());
    }
  } else {
    spec.streams = {"main"};
  }

  std::map<std::string, fraction_range> nano_batches;
  if (doc.contains("nano_batches")) {
    if (!doc["nano_batches"].is_array()) fail("spec: \"nano_batches\" must be an array");
    for (size_t i = 0; i < doc["nano_batches"].size(); ++i) {
      const json& nb = doc["nano_batches"][i];
      const std::string where = fmt::format("nano_batches[{}]", i);
      if (!nb.is_object()) fail("{}: must be an object", where);
      const std::string name = string_field(nb, "name", where);
      const std::optional<fraction_range> range = parse_range(nb, where);
      if (!range) fail("{}: give its rows as \"range\", \"decode\" or \"prefill\"", where);
      if (!nano_batches.emplace(name, *range).second) fail("{}: nano-batch \"{}\" is defined twice", where, name);
    }
  }

  if (!doc.contains("nano_ops") || !doc["nano_ops"].is_array()) fail("spec: missing \"nano_ops\" array");
  std::map<std::string, int> nano_ops_per_op;
  for (const json& entry : doc["nano_ops"])
    if (entry.is_object() && entry.contains("op") && entry["op"].is_string()) ++nano_ops_per_op[entry["op"]];
  for (size_t i = 0; i < doc["nano_ops"].size(); ++i) {
    const json& entry = doc["nano_ops"][i];
    std::string where = fmt::format("nano_ops[{}]", i);
    if (!entry.is_object()) fail("{}: must be an object", where);
    nano_op_spec op;
    op.op = string_field(entry, "op", where);
    std::string nano_batch;
    if (entry.contains("nano_batch")) {
      nano_batch = string_field(entry, "nano_batch", where);
      auto it = nano_batches.find(nano_batch);
      if (it == nano_batches.end()) fail("{}: unknown nano-batch \"{}\"", where, nano_batch);
      op.range = it->second;
    }
    if (std::optional<fraction_range> own = parse_range(entry, where)) {
      if (!nano_batch.empty()) fail("{}: give either \"nano_batch\" or a range, not both", where);
      op.range = *own;
    }
    if (entry.contains("name")) op.name = string_field(entry, "name", where);
    else if (!nano_batch.empty()) op.name = op.op + "@" + nano_batch;
    else if (nano_ops_per_op[op.op] == 1) op.name = op.op;
    else fail("{}: \"{}\" has several nano-ops; give this one a \"name\" or a \"nano_batch\"", where, op.op);
    where += " (" + op.name + ")";
    if (entry.contains("resource")) op.resource = parse_resource(string_field(entry, "resource", where), where);
    if (entry.contains("sm_count") && entry.contains("sm_fraction"))
      fail("{}: give \"sm_count\" or \"sm_fraction\", not both", where);
    if (entry.contains("sm_count")) {
      if (!entry["sm_count"].is_number_integer()) fail("{}: \"sm_count\" must be an integer", where);
      op.sm.count = entry["sm_count"].get<int>();
      if (op.sm.count < 1) fail("{}: \"sm_count\" {} must be at least 1", where, op.sm.count);
    }
    if (entry.contains("sm_fraction")) {
      if (!entry["sm_fraction"].is_number()) fail("{}: \"sm_fraction\" must be a number", where);
      op.sm.fraction = entry["sm_fraction"].get<double>();
    }
    op.stream = entry.contains("stream") ? string_field(entry, "stream", where) : spec.streams.front();
    if (entry.contains("order")) {
      if (!entry["order"].is_number_integer()) fail("{}: \"order\" must be an integer", where);
      op.order = entry["order"].get<int>();
    } else {
      op.order = static_cast<int>(i);
    }
    spec.nano_ops.push_back(op);
  }

  if (doc.contains("edges")) {
    if (!doc["edges"].is_array()) fail("spec: \"edges\" must be an array");
    for (size_t i = 0; i < doc["edges"].size(); ++i) {
      const json& entry = doc["edges"][i];
      const std::string where = fmt::format("edges[{}]", i);
      if (!entry.is_object()) fail("{}: must be an object", where);
      edge_spec edge{string_field(entry, "before", where), string_field(entry, "after", where), false};
      if (entry.contains("layer")) {
        const std::string layer = string_field(entry, "layer", where);
        if (layer != "same" && layer != "next") fail("{}: \"layer\" must be \"same\" or \"next\"", where);
        edge.next_layer = layer == "next";
      }
      spec.edges.push_back(edge);
    }
  }
  return spec;
}

json to_json(const pipeline_spec& spec) {
  json doc;
  doc["name"] = spec.name;
  if (!spec.description.empty()) doc["description"] = spec.description;
  doc["dependencies"] = spec.derive_dependencies ? "derived" : "explicit";
  if (spec.min_decode_rows > 0) doc["min_decode_rows"] = spec.min_decode_rows;
  if (spec.min_prefill_rows > 0) doc["min_prefill_rows"] = spec.min_prefill_rows;
  doc["streams"] = spec.streams;
  json ops = json::array();
  for (const nano_op_spec& op : spec.nano_ops) {
    json entry;
    entry["name"] = op.name;
    entry["op"] = op.op;
    entry[op.range.frame == range_frame::step ? "range" : std::string(to_string(op.range.frame))] =
        range_to_json(op.range);
    if (op.resource) entry["resource"] = to_string(*op.resource);
    if (op.sm.count > 0) entry["sm_count"] = op.sm.count;
    else entry["sm_fraction"] = op.sm.fraction;
    entry["stream"] = op.stream;
    entry["order"] = op.order;
    ops.push_back(entry);
  }
  doc["nano_ops"] = ops;
  json edges = json::array();
  for (const edge_spec& edge : spec.edges)
    edges.push_back({{"before", edge.before}, {"after", edge.after}, {"layer", edge.next_layer ? "next" : "same"}});
  doc["edges"] = edges;
  return doc;
}

pipeline_spec load_pipeline_spec(const std::filesystem::path& path, const op_graph& graph) {
  std::ifstream file(path);
  if (!file) fail("pipeline spec {}: cannot open the file", path.string());
  json doc;
  try {
    doc = json::parse(file);
  } catch (const json::exception& e) {
    fail("pipeline spec {}: not valid JSON: {}", path.string(), e.what());
  }
  pipeline_spec spec;
  try {
    spec = parse_pipeline_spec(doc);
  } catch (const error& e) {
    fail("pipeline spec {}: {}", path.string(), e.what());
  }
  const std::vector<std::string> problems = validate_spec(spec, graph);
  if (!problems.empty()) fail("pipeline spec {}: {}", path.string(), join_problems(problems));
  return spec;
}

pipeline_spec sequential_spec(const op_graph& graph) {
  pipeline_spec spec;
  spec.name = "sequential";
  spec.description = "one nano-op per operation over all rows, on one stream, in program order";
  spec.streams = {"main"};
  for (size_t i = 0; i < graph.ops.size(); ++i) {
    nano_op_spec op;
    op.name = op.op = graph.ops[i].name;
    op.stream = "main";
    op.order = static_cast<int>(i);
    spec.nano_ops.push_back(op);
  }
  return spec;
}

const pipeline_spec& spec_for_step(const pipeline_spec& spec, const pipeline_spec& sequential, int num_decode,
                                   int num_prefill) {
  return num_decode < spec.min_decode_rows || num_prefill < spec.min_prefill_rows ? sequential : spec;
}

std::string_view to_string(range_frame frame) {
  switch (frame) {
    case range_frame::step: return "step";
    case range_frame::decode: return "decode";
    case range_frame::prefill: return "prefill";
  }
  return "?";
}

}  // namespace nf
