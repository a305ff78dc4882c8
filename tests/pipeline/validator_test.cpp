// The validator and the spec loader: each defect class is caught with a clear message; the shipped specs pass.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <fstream>

#include "core/error.h"
#include "spec_helpers.h"

namespace nf {
namespace {

using nlohmann::json;
using test::problems_of;

pipeline_spec with_ops(const json& ops, const json& extra = json::object()) {
  json doc = {{"name", "test"}, {"streams", {"main", "side"}}, {"nano_ops", ops}};
  doc.update(extra);
  return parse_pipeline_spec(doc);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(validator, shipped_specs_are_valid) {
  const std::vector<std::string> names = test::shipped_spec_names();
  EXPECT_GE(names.size(), 10u);
  for (const std::string& name : names) {
    const pipeline_spec spec = test::config_spec(name);
    if (name.find('/') == std::string::npos) EXPECT_EQ(spec.name, name);
    EXPECT_EQ(problems_of(spec), "") << name;
  }
  EXPECT_EQ(problems_of(sequential_spec(llama_op_graph())), "");
}

TEST(validator, sequential_json_is_the_built_in_sequential_spec) {
  const pipeline_spec file = test::config_spec("sequential");
  const pipeline_spec built_in = sequential_spec(llama_op_graph());
  ASSERT_EQ(file.nano_ops.size(), built_in.nano_ops.size());
  for (size_t i = 0; i < file.nano_ops.size(); ++i) {
    EXPECT_EQ(file.nano_ops[i].op, built_in.nano_ops[i].op);
    EXPECT_EQ(file.nano_ops[i].range.begin, 0.0);
    EXPECT_EQ(file.nano_ops[i].range.end, 1.0);
    EXPECT_EQ(file.nano_ops[i].order, built_in.nano_ops[i].order);
  }
}

TEST(validator, json_round_trip_keeps_the_spec) {
  const pipeline_spec spec = test::config_spec("overlap-halves");
  const pipeline_spec again = parse_pipeline_spec(to_json(spec));
  EXPECT_EQ(to_json(again), to_json(spec));
  EXPECT_EQ(again.nano_ops[3].name, "prefill_attention@nb0");
  EXPECT_EQ(again.nano_ops[3].sm.fraction, 0.8);
}

TEST(validator, unknown_operation) {
  json ops = test::whole_ops_except({});
  ops.push_back({{"op", "qkv_proj"}, {"name", "mystery"}, {"order", 1000}});
  EXPECT_EQ(problems_of(with_ops(ops)),
            "nano-op \"mystery\": unknown operation \"qkv_proj\" (the llama graph has: attn_norm, qkv_gemm, "
            "rope_kv_append, decode_attention, prefill_attention, o_gemm, ffn_norm, gate_up_gemm, activation, down_gemm)");
}

TEST(validator, gap_in_coverage) {
  json ops = test::whole_ops_except({"o_gemm"});
  ops.push_back({{"op", "o_gemm"}, {"name", "o_first"}, {"range", {0.0, 0.5}}, {"order", 51}});
  ops.push_back({{"op", "o_gemm"}, {"name", "o_last"}, {"range", {0.6, 1.0}}, {"order", 52}});
  EXPECT_EQ(problems_of(with_ops(ops)), "operation \"o_gemm\": step fractions [0.5, 0.6) are covered by no nano-op (a gap)");
  // An op with no nano-op at all.
  EXPECT_EQ(problems_of(with_ops(test::whole_ops_except({"activation"}))), "operation \"activation\" has no nano-op");
}

TEST(validator, overlap_in_coverage) {
  json ops = test::whole_ops_except({"down_gemm"});
  ops.push_back({{"op", "down_gemm"}, {"name", "down_a"}, {"range", {0.0, 0.7}}, {"order", 91}});
  ops.push_back({{"op", "down_gemm"}, {"name", "down_b"}, {"range", {0.5, 1.0}}, {"order", 92}});
  EXPECT_EQ(problems_of(with_ops(ops)),
            "operation \"down_gemm\": step fractions [0.5, 0.7) are covered by both \"down_a\" and \"down_b\" (an overlap)");
}

TEST(validator, mixed_frames_are_checked_on_resolved_rows) {
  // Decode rows plus the second half of the step: prefill rows in the first half are missed, and decode rows
  // in the second half are covered twice, depending on the step.
  json ops = test::whole_ops_except({"qkv_gemm"});
  ops.push_back({{"op", "qkv_gemm"}, {"name", "qkv_decode"}, {"decode", {0.0, 1.0}}, {"order", 11}});
  ops.push_back({{"op", "qkv_gemm"}, {"name", "qkv_late"}, {"range", {0.5, 1.0}}, {"order", 12}});
  const std::string problems = problems_of(with_ops(ops));
  EXPECT_NE(problems.find("with 0 decode and 1 prefill tokens: operation \"qkv_gemm\": rows [0, 1) are covered by no "
                          "nano-op (a gap)"),
            std::string::npos)
      << problems;
  EXPECT_NE(problems.find("with 2048 decode and 0 prefill tokens: operation \"qkv_gemm\": rows [1024, 2048) are "
                          "covered by both \"qkv_decode\" and \"qkv_late\" (an overlap)"),
            std::string::npos)
      << problems;
  // Decode rows then prefill rows tile every step.
  ops = test::whole_ops_except({"qkv_gemm"});
  ops.push_back({{"op", "qkv_gemm"}, {"name", "qkv_decode"}, {"decode", {0.0, 1.0}}, {"order", 11}});
  ops.push_back({{"op", "qkv_gemm"}, {"name", "qkv_prefill"}, {"prefill", {0.0, 1.0}}, {"order", 12}});
  EXPECT_EQ(problems_of(with_ops(ops)), "");
}

TEST(validator, range_of_the_wrong_row_class) {
  json ops = test::whole_ops_except({"prefill_attention"});
  ops.push_back({{"op", "prefill_attention"}, {"decode", {0.0, 1.0}}, {"order", 41}});
  EXPECT_EQ(problems_of(with_ops(ops)),
            "nano-op \"prefill_attention\": a decode range never has rows of prefill_attention, which runs on "
            "prefill rows only");
}

TEST(validator, cycle_through_the_stream_order) {
  // o_gemm needs the attention, which needs qkv_gemm; putting o_gemm first on the stream closes a cycle.
  json ops = test::whole_ops_except({});
  for (json& op : ops)
    if (op["op"] == "o_gemm") op["order"] = -1;
  const std::string problems = problems_of(with_ops(ops));
  EXPECT_TRUE(problems.starts_with("cycle: \"attn_norm\" -> \"qkv_gemm\" -> \"rope_kv_append\" -> ")) << problems;
  EXPECT_NE(problems.find("\"o_gemm\" -> \"attn_norm\""), std::string::npos) << problems;
}

TEST(validator, cycle_through_an_explicit_edge) {
  json ops = test::whole_ops_except({});
  for (json& op : ops)
    if (op["op"] == "down_gemm") op["stream"] = "side";
  const json edges = json::array({{{"before", "down_gemm"}, {"after", "gate_up_gemm"}}});
  const std::string problems = problems_of(with_ops(ops, {{"edges", edges}}));
  EXPECT_TRUE(problems.starts_with("cycle: ")) << problems;
  EXPECT_NE(problems.find("\"down_gemm\" -> \"gate_up_gemm\""), std::string::npos) << problems;
}

TEST(validator, bad_budgets_and_streams) {
  json ops = test::whole_ops_except({"o_gemm", "activation", "down_gemm"});
  ops.push_back({{"op", "o_gemm"}, {"sm_fraction", 1.5}, {"order", 50}});
  ops.push_back({{"op", "activation"}, {"stream", "tensor_cores"}, {"order", 80}});
  ops.push_back({{"op", "down_gemm"}, {"order", 10}});
  EXPECT_EQ(problems_of(with_ops(ops)),
            "nano-op \"o_gemm\": SM fraction 1.5 must be in (0, 1]; nano-op \"activation\": stream \"tensor_cores\" is not "
            "declared in \"streams\"; nano-ops \"qkv_gemm\" and \"down_gemm\" share order 10 on stream \"main\"");
  pipeline_spec spec = with_ops(test::whole_ops_except({}));
  spec.nano_ops[0].sm.count = -3;
  EXPECT_EQ(problems_of(spec), "nano-op \"attn_norm\": SM count -3 must be at least 1");
  EXPECT_EQ(error_of([] { with_ops(json::array({{{"op", "o_gemm"}, {"sm_count", 0}}})); }),
            "nano_ops[0] (o_gemm): \"sm_count\" 0 must be at least 1");
  EXPECT_EQ(error_of([] { with_ops(json::array({{{"op", "o_gemm"}, {"sm_count", 8}, {"sm_fraction", 0.5}}})); }),
            "nano_ops[0] (o_gemm): give \"sm_count\" or \"sm_fraction\", not both");
}

TEST(validator, missing_dependency_in_an_explicit_spec) {
  // Explicit dependencies: two streams, and only some edges given. down_gemm on the side stream may run
  // before activation has written its input.
  json ops = test::whole_ops_except({});
  for (json& op : ops)
    if (op["op"] == "down_gemm") op["stream"] = "side";
  const json extra = {{"dependencies", "explicit"},
                      {"edges", json::array({{{"before", "down_gemm"}, {"after", "attn_norm"}, {"layer", "next"}}})}};
  const std::string problems = problems_of(with_ops(ops, extra));
  EXPECT_TRUE(problems.starts_with("with 0 decode and 1 prefill tokens: missing dependency: ")) << problems;
  EXPECT_NE(problems.find("missing dependency: \"activation\" (rows [0, 1), "
                                   "layer 0) and \"down_gemm\" (rows [0, 1), layer 0) touch the same rows of \"activated\", "
                                   "one writing, with no path from the first to the second (a race)"),
            std::string::npos)
      << problems;
  // The edge that was missing makes it valid.
  json edges = extra["edges"];
  edges.push_back({{"before", "activation"}, {"after", "down_gemm"}});
  edges.push_back({{"before", "down_gemm"}, {"after", "activation"}, {"layer", "next"}});
  EXPECT_EQ(problems_of(with_ops(ops, {{"dependencies", "explicit"}, {"edges", edges}})), "");
}

TEST(validator, min_decode_rows_round_trips_and_picks_the_spec_of_a_step) {
  json doc = to_json(test::config_spec("overlap-halves"));
  doc["min_decode_rows"] = 384;
  const pipeline_spec spec = parse_pipeline_spec(doc);
  EXPECT_EQ(spec.min_decode_rows, 384);
  EXPECT_EQ(to_json(parse_pipeline_spec(to_json(spec))), to_json(spec));
  const pipeline_spec sequential = sequential_spec(llama_op_graph());
  EXPECT_EQ(&spec_for_step(spec, sequential, 0, 100), &sequential);
  EXPECT_EQ(&spec_for_step(spec, sequential, 383, 100), &sequential);
  EXPECT_EQ(&spec_for_step(spec, sequential, 384, 100), &spec);
  EXPECT_EQ(&spec_for_step(spec, sequential, 384, 0), &spec);  // no prefill threshold
  const pipeline_spec always = test::config_spec("overlap-halves");
  EXPECT_EQ(always.min_decode_rows, 0);
  EXPECT_EQ(always.min_prefill_rows, 0);
  EXPECT_EQ(&spec_for_step(always, sequential, 0, 0), &always);
}

TEST(validator, min_prefill_rows_round_trips_and_keeps_decode_only_steps_sequential) {
  json doc = to_json(test::config_spec("overlap-halves"));
  doc["min_prefill_rows"] = 1;
  const pipeline_spec spec = parse_pipeline_spec(doc);
  EXPECT_EQ(spec.min_prefill_rows, 1);
  EXPECT_EQ(spec.min_decode_rows, 0);
  EXPECT_EQ(to_json(parse_pipeline_spec(to_json(spec))), to_json(spec));
  EXPECT_FALSE(to_json(test::config_spec("overlap-halves")).contains("min_prefill_rows"));
  const pipeline_spec sequential = sequential_spec(llama_op_graph());
  EXPECT_EQ(&spec_for_step(spec, sequential, 500, 0), &sequential);
  EXPECT_EQ(&spec_for_step(spec, sequential, 500, 1), &spec);
  EXPECT_EQ(&spec_for_step(spec, sequential, 0, 1), &spec);
  json both = doc;
  both["min_decode_rows"] = 64;
  both["min_prefill_rows"] = 256;
  const pipeline_spec strict = parse_pipeline_spec(both);
  EXPECT_EQ(&spec_for_step(strict, sequential, 64, 255), &sequential);
  EXPECT_EQ(&spec_for_step(strict, sequential, 63, 256), &sequential);
  EXPECT_EQ(&spec_for_step(strict, sequential, 64, 256), &strict);
}

TEST(validator, spec_parse_errors_name_the_field) {
  EXPECT_EQ(error_of([] { test::spec_from(R"({"nano_ops": []})"); }), "spec: missing \"name\"");
  EXPECT_EQ(error_of([] { test::spec_from(R"({"name": "x", "nano_ops": [{"op": "o_gemm", "nano_batch": "nb9"}]})"); }),
            "nano_ops[0]: unknown nano-batch \"nb9\"");
  EXPECT_EQ(error_of([] { test::spec_from(R"({"name": "x", "nano_ops": [{"op": "o_gemm", "range": [0.5, 0.2]}]})"); }),
            "nano_ops[0]: \"range\" [0.5, 0.2] must satisfy 0 <= begin <= end <= 1");
  EXPECT_EQ(error_of([] {
              test::spec_from(R"({"name": "x", "nano_ops": [{"op": "o_gemm", "range": [0, 0.5]}, {"op": "o_gemm", "range": [0.5, 1]}]})");
            }),
            "nano_ops[0]: \"o_gemm\" has several nano-ops; give this one a \"name\" or a \"nano_batch\"");
  EXPECT_EQ(error_of([] { test::spec_from(R"({"name": "x", "dependencies": "magic", "nano_ops": []})"); }),
            "spec: \"dependencies\" must be \"derived\" or \"explicit\", not \"magic\"");
  for (const std::string key : {"min_decode_rows", "min_prefill_rows"})
    for (const char* bad : {"-1", "1.5", "\"many\"", "4294967296"})
      EXPECT_EQ(error_of([&] {
                  test::spec_from(R"({"name": "x", ")" + key + R"(": )" + bad + R"(, "nano_ops": []})");
                }),
                "spec: \"" + key + "\" must be a non-negative integer")
          << key << " = " << bad;
}

TEST(validator, loader_errors_name_the_file) {
  const auto dir = std::filesystem::temp_directory_path() / "nanoflow_pipeline_test";
  std::filesystem::create_directories(dir);
  const auto missing = dir / "missing.json";
  EXPECT_EQ(error_of([&] { load_pipeline_spec(missing, llama_op_graph()); }),
            "pipeline spec " + missing.string() + ": cannot open the file");
  const auto bad_json = dir / "bad.json";
  std::ofstream(bad_json) << "{\"name\": \"x\", ";
  EXPECT_TRUE(error_of([&] { load_pipeline_spec(bad_json, llama_op_graph()); })
                  .starts_with("pipeline spec " + bad_json.string() + ": not valid JSON: "));
  const auto bad_field = dir / "bad_field.json";
  std::ofstream(bad_field) << R"({"name": "x", "nano_ops": {}})";
  EXPECT_EQ(error_of([&] { load_pipeline_spec(bad_field, llama_op_graph()); }),
            "pipeline spec " + bad_field.string() + ": spec: missing \"nano_ops\" array");
  const auto invalid = dir / "invalid.json";
  std::ofstream(invalid) << to_json(with_ops(test::whole_ops_except({"activation"}))).dump();
  EXPECT_EQ(error_of([&] { load_pipeline_spec(invalid, llama_op_graph()); }),
            "pipeline spec " + invalid.string() + ": operation \"activation\" has no nano-op");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace nf
