// Operation profiles: round trip through JSON and a file, interpolated lookup, and the rejection of bad or
// stale profiles with the right message.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/model_config.h"
#include "synthetic_profile.h"
#include "test_paths.h"

namespace nf {
namespace {

using json = nlohmann::json;

operation_profile llama_profile() { return test::synthetic_profile(llama_op_graph(), {}); }

std::string parse_error(const json& doc) {
  try {
    parse_operation_profile(doc, llama_op_graph());
  } catch (const error& e) {
    return e.what();
  }
  return "(accepted)";
}

std::string edited_error(const std::function<void(json&)>& edit) {
  json doc = to_json(llama_profile());
  edit(doc);
  return parse_error(doc);
}

TEST(operation_profile, round_trips_through_json_and_a_file) {
  const operation_profile profile = llama_profile();
  const json doc = to_json(profile);
  EXPECT_EQ(to_json(parse_operation_profile(doc, llama_op_graph())), doc);
  const auto path = std::filesystem::temp_directory_path() / "nanoflow_profile_round_trip.json";
  save_operation_profile(profile, path);
  const operation_profile loaded = load_operation_profile(path, llama_op_graph(), {});
  EXPECT_EQ(to_json(loaded), doc);
  std::filesystem::remove(path);
  EXPECT_EQ(doc["sm_budgets"], json({8, 16, 24, 32}));
  EXPECT_EQ(doc["token_counts"], json({128, 256, 384, 512}));
  EXPECT_EQ(doc["operations"]["decode_attention"]["time_us"].size(), 3u);  // per context length
  EXPECT_EQ(doc["operations"]["qkv_gemm"]["time_us"].size(), 4u);          // per token count
}

TEST(operation_profile, grids_include_the_budget_and_the_sm_count) {
  EXPECT_EQ(profile_sm_budgets(132).back(), 132);
  EXPECT_EQ(profile_sm_budgets(132).size(), 17u);
  EXPECT_EQ(profile_sm_budgets(132)[15], 128);
  EXPECT_EQ(profile_token_counts(2048).size(), 16u);
  EXPECT_EQ(profile_token_counts(200), (std::vector<int>{128, 200}));
}

TEST(operation_profile, lookup_interpolates_between_measured_counts) {
  const operation_profile p = llama_profile();
  const op_graph& g = llama_op_graph();
  const int qkv = g.find_op("qkv_gemm"), decode = g.find_op("decode_attention");
  const auto& t = p.timing_of("qkv_gemm")->time_us;  // [tokens][budgets], 4 budgets
  EXPECT_DOUBLE_EQ(p.time_us(g, qkv, 128, 16, 0), t[0 * 4 + 1]);
  EXPECT_DOUBLE_EQ(p.time_us(g, qkv, 192, 16, 0), 0.5 * (t[0 * 4 + 1] + t[1 * 4 + 1]));
  EXPECT_DOUBLE_EQ(p.time_us(g, qkv, 480, 32, 0), 0.75 * t[3 * 4 + 3] + 0.25 * t[2 * 4 + 3]);
  EXPECT_DOUBLE_EQ(p.time_us(g, qkv, 5, 32, 0), t[0 * 4 + 3]);  // below the first count: its time
  EXPECT_EQ(p.time_us(g, qkv, 0, 32, 0), 0.0);
  const auto& d = p.timing_of("decode_attention")->time_us;  // [contexts][tokens][budgets]
  const double at_256 = d[(0 * 4 + 1) * 4 + 3], at_1024 = d[(1 * 4 + 1) * 4 + 3];
  EXPECT_DOUBLE_EQ(p.time_us(g, decode, 256, 32, 256), at_256);
  EXPECT_DOUBLE_EQ(p.time_us(g, decode, 256, 32, 640), 0.5 * (at_256 + at_1024));
}

TEST(operation_profile, interference_prefers_an_exact_pair_over_wildcards) {
  operation_profile p = llama_profile();
  const op_graph& g = llama_op_graph();
  p.interference.push_back({"gate_up_gemm", "decode_attention", 24, 8, 3.0, 4.0});
  const auto exact = p.interference_at(g, g.find_op("gate_up_gemm"), g.find_op("decode_attention"), 24, 8);
  ASSERT_TRUE(exact.has_value());
  EXPECT_EQ(exact->compute_slowdown, 3.0);
  const auto wildcard = p.interference_at(g, g.find_op("o_gemm"), g.find_op("decode_attention"), 24, 8);
  ASSERT_TRUE(wildcard.has_value());
  EXPECT_DOUBLE_EQ(wildcard->compute_slowdown, 1.0 + 0.4 * 8 / 32);
  EXPECT_FALSE(p.interference_at(g, g.find_op("o_gemm"), g.find_op("decode_attention"), 32, 8).has_value());
}

TEST(operation_profile, the_interference_envelope_takes_the_worst_neighbouring_split) {
  operation_profile p = llama_profile();
  const op_graph& g = llama_op_graph();
  const int gate_up = g.find_op("gate_up_gemm"), decode = g.find_op("decode_attention");
  p.interference.push_back({"gate_up_gemm", "decode_attention", 24, 8, 1.2, 1.1});
  p.interference.push_back({"gate_up_gemm", "decode_attention", 16, 16, 1.05, 1.0});  // a lucky reading
  p.interference.push_back({"gate_up_gemm", "decode_attention", 8, 24, 1.5, 1.3});
  EXPECT_DOUBLE_EQ(p.interference_at(g, gate_up, decode, 16, 16)->compute_slowdown, 1.05);
  const auto middle = p.interference_envelope(g, gate_up, decode, 16, 16);
  ASSERT_TRUE(middle.has_value());
  EXPECT_DOUBLE_EQ(middle->compute_slowdown, 1.5);
  EXPECT_DOUBLE_EQ(middle->memory_slowdown, 1.3);
  const auto edge = p.interference_envelope(g, gate_up, decode, 24, 8);  // one neighbour only
  ASSERT_TRUE(edge.has_value());
  EXPECT_DOUBLE_EQ(edge->compute_slowdown, 1.2);
  EXPECT_DOUBLE_EQ(edge->memory_slowdown, 1.1);
  EXPECT_FALSE(p.interference_envelope(g, gate_up, decode, 32, 8).has_value());  // not measured
}

TEST(operation_profile, rejects_bad_profiles_with_clear_messages) {
  EXPECT_EQ(edited_error([](json& d) { d["operations"].erase("down_gemm"); }),
            "profile: operation \"down_gemm\" is missing from \"operations\"");
  EXPECT_EQ(edited_error([](json& d) { d["sm_budgets"] = {8, 16, 32}; }), "profile: SM budget 24 missing from \"sm_budgets\"");
  EXPECT_EQ(edited_error([](json& d) { d["token_counts"] = {128, 256, 512}; }),
            "profile: token count 384 missing from \"token_counts\"");
  EXPECT_EQ(edited_error([](json& d) { d["operations"]["o_gemm"]["time_us"][1][2] = 0.0; }),
            "profile: operation \"o_gemm\": time at 256 tokens and 24 SMs: must be a positive number, got 0.0");
  EXPECT_EQ(edited_error([](json& d) { d["operations"]["o_gemm"]["time_us"][1][2] = -3; }),
            "profile: operation \"o_gemm\": time at 256 tokens and 24 SMs: must be a positive number, got -3");
  EXPECT_EQ(edited_error([](json& d) { d["operations"]["o_gemm"]["time_us"][3].erase(0); }),
            "profile: operation \"o_gemm\": the row of 512 tokens must have 4 times, one per SM budget");
  EXPECT_EQ(edited_error([](json& d) { d["operations"]["decode_attention"]["time_us"].erase(0); }),
            "profile: operation \"decode_attention\": \"time_us\" must have 3 rows (one per decode context length)");
  EXPECT_EQ(edited_error([](json& d) { d["operations"]["fused_mlp"] = d["operations"]["o_gemm"]; }),
            "profile: unknown operation \"fused_mlp\" (the llama graph has: attn_norm, qkv_gemm, rope_kv_append, "
            "decode_attention, prefill_attention, o_gemm, ffn_norm, gate_up_gemm, activation, down_gemm)");
  EXPECT_EQ(edited_error([](json& d) { d["model"].erase("head_dim"); }), "profile: model: missing \"head_dim\"");
  EXPECT_EQ(edited_error([](json& d) { d.erase("gpu"); }), "profile: missing \"gpu\"");
  EXPECT_EQ(edited_error([](json& d) { d["interference"][0]["compute_sms"] = 12; }),
            "profile: interference[0]: 12 SMs is not a profiled SM budget");
  EXPECT_EQ(edited_error([](json& d) { d["interference"][0]["memory_sms"] = 32; }),
            "profile: interference[0]: the split 8 + 32 SMs exceeds the GPU's 32 SMs");
  EXPECT_EQ(edited_error([](json& d) { d["interference"][0]["compute_op"] = "decode_attention"; }),
            "profile: interference[0]: \"decode_attention\" is a memory operation");
  EXPECT_EQ(edited_error([](json& d) { d["interference"][1] = d["interference"][0]; }),
            "profile: interference[1]: * beside * at 8 + 8 SMs is given twice");
  EXPECT_EQ(edited_error([](json& d) { d["interference"] = json::array(); }),
            "profile: \"interference\" must be a non-empty array of measured SM splits");
  EXPECT_EQ(edited_error([](json& d) { d["decode_context_lengths"] = {1024, 512}; }),
            "profile: \"decode_context_lengths\" must increase");
}

TEST(operation_profile, a_stale_profile_is_rejected_when_loaded) {
  const model_config config = load_model_config(test::source_dir() / "configs/models/tiny-llama3");
  test::synthetic_options options;
  options.gpu = "NVIDIA H200";
  options.shape = shape_of(config);
  operation_profile profile = test::synthetic_profile(llama_op_graph(), options);
  const auto path = std::filesystem::temp_directory_path() / "nanoflow_profile_stale.json";
  save_operation_profile(profile, path);
  auto load_error = [&](const profile_expectation& expected) -> std::string {
    try {
      load_operation_profile(path, llama_op_graph(), expected);
    } catch (const error& e) {
      return e.what();
    }
    return "(accepted)";
  };
  EXPECT_EQ(load_error({"NVIDIA H200", &config}), "(accepted)");
  EXPECT_EQ(load_error({"NVIDIA H100 80GB HBM3", &config}),
            fmt::format("operation profile {}: profile: measured on \"NVIDIA H200\", not on this \"NVIDIA H100 80GB "
                        "HBM3\" (a stale profile: profile this GPU again)", path.string()));
  model_config other = config;
  other.num_layers = 32;
  EXPECT_EQ(load_error({"NVIDIA H200", &other}),
            fmt::format("operation profile {}: profile: model num_layers is 4, but the model config says 32 (a stale "
                        "profile: profile this model again)", path.string()));
  {
    std::ofstream(path) << "{\"gpu\": ";
  }
  EXPECT_NE(load_error({}).find("not valid JSON"), std::string::npos);
  std::filesystem::remove(path);
  EXPECT_EQ(load_error({}), fmt::format("operation profile {}: cannot open the file", path.string()));
}

// The profiles measured on the GPU machine and shipped in configs/profiles load here, with no GPU, against the model
// configs they were measured for, and each is refused for another model's shape.
TEST(operation_profile, shipped_profiles_load_without_a_gpu_for_their_models_only) {
  const std::filesystem::path root = test::source_dir() / "configs";
  const std::vector<std::string> models = {"llama3-8b", "llama2-7b", "mistral-7b", "qwen2-7b"};
  for (size_t i = 0; i < models.size(); ++i) {
    const std::filesystem::path path = root / "profiles" / (models[i] + "-h200.json");
    const model_config config = load_model_config(root / "models" / models[i]);
    const operation_profile profile = load_operation_profile(path, llama_op_graph(), {"NVIDIA H200", &config});
    EXPECT_EQ(profile.num_sms, 132) << path;
    EXPECT_FALSE(profile.interference.empty()) << path;
    const model_config other = load_model_config(root / "models" / models[(i + 1) % models.size()]);
    EXPECT_THROW(load_operation_profile(path, llama_op_graph(), {"NVIDIA H200", &other}), error) << path;
  }
}

}  // namespace
}  // namespace nf
