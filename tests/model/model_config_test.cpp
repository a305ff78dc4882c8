// config.json parsing: both rope dialects, defaults, and clear errors for configs we cannot serve.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/model_config.h"
#include "model/rope.h"
#include "test_paths.h"

namespace nf {
namespace {

using json = nlohmann::json;

json llama_config() {
  return json{{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 64}, {"intermediate_size", 128},
              {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
              {"vocab_size", 100}, {"max_position_embeddings", 256}};
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const nf::error& e) {
    return e.what();
  }
  return "";
}

TEST(model_config, both_rope_dialects_read_the_same) {
  json v4 = llama_config();
  v4["rope_theta"] = 500000.0;
  v4["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                        {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  json v5 = llama_config();
  v5["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0},
                           {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                           {"original_max_position_embeddings", 8192}};
  const model_config a = parse_model_config(v4), b = parse_model_config(v5);
  EXPECT_EQ(a.rope.type, rope_config::scaling::llama3);
  EXPECT_EQ(b.rope.type, rope_config::scaling::llama3);
  EXPECT_EQ(a.rope.theta, 500000.0);
  EXPECT_EQ(b.rope.theta, 500000.0);
  EXPECT_EQ(rope_inverse_frequencies(a.rope, 128), rope_inverse_frequencies(b.rope, 128));
}

TEST(model_config, llama3_scaling_keeps_high_and_divides_low_frequencies) {
  rope_config rope{500000.0, rope_config::scaling::llama3, 8.0, 1.0, 4.0, 8192};
  rope_config plain{500000.0, rope_config::scaling::none};
  const auto scaled = rope_inverse_frequencies(rope, 128), base = rope_inverse_frequencies(plain, 128);
  EXPECT_EQ(scaled[0], base[0]);                        // wavelength 2*pi: far above the high-frequency bound
  EXPECT_FLOAT_EQ(scaled[63], base[63] / 8.0f);         // longest wavelength: below the low-frequency bound
}

TEST(model_config, defaults_when_fields_are_absent) {
  json config = llama_config();
  config.erase("num_key_value_heads");
  const model_config c = parse_model_config(config);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.rope.theta, 10000.0);
  EXPECT_FALSE(c.tie_word_embeddings);
}

TEST(model_config, qwen2_has_qkv_bias_and_mistral_caps_context_at_its_window) {
  json qwen = llama_config();
  qwen["architectures"] = {"Qwen2ForCausalLM"};
  EXPECT_TRUE(parse_model_config(qwen).qkv_bias);
  EXPECT_FALSE(parse_model_config(qwen).o_bias);
  json mistral = llama_config();
  mistral["architectures"] = {"MistralForCausalLM"};
  mistral["sliding_window"] = 128;
  EXPECT_EQ(parse_model_config(mistral).max_position_embeddings, 128);
}

TEST(model_config, parameter_count_of_llama3_8b) {
  json config = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 4096}, {"intermediate_size", 14336},
                 {"num_hidden_layers", 32}, {"num_attention_heads", 32}, {"num_key_value_heads", 8},
                 {"vocab_size", 128256}, {"max_position_embeddings", 8192}};
  EXPECT_EQ(parse_model_config(config).num_parameters(), 8030261248);  // the published 8.03B
}

TEST(model_config, unknown_architecture_is_named) {
  json config = llama_config();
  config["architectures"] = {"GPT2LMHeadModel"};
  EXPECT_NE(error_of([&] { parse_model_config(config); }).find("GPT2LMHeadModel"), std::string::npos);
}

TEST(model_config, missing_and_invalid_fields_are_named) {
  for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}) {
    json config = llama_config();
    config.erase(field);
    EXPECT_NE(error_of([&] { parse_model_config(config); }).find(field), std::string::npos) << field;
  }
  json config = llama_config();
  config["hidden_size"] = "big";
  EXPECT_NE(error_of([&] { parse_model_config(config); }).find("hidden_size"), std::string::npos);
  config = llama_config();
  config["num_key_value_heads"] = 3;
  EXPECT_NE(error_of([&] { parse_model_config(config); }).find("num_key_value_heads"), std::string::npos);
  config = llama_config();
  config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(error_of([&] { parse_model_config(config); }).find("yarn"), std::string::npos);
  config = llama_config();
  config["hidden_act"] = "gelu";
  EXPECT_NE(error_of([&] { parse_model_config(config); }).find("gelu"), std::string::npos);
}

TEST(model_config, reads_eos_ids_from_generation_config) {
  const model_config c = load_model_config(test::model_dir("llama3-gqa"));
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(c.rope.type, rope_config::scaling::llama3);
  EXPECT_EQ(c.head_dim, 16);
  const model_config mha = load_model_config(test::model_dir("llama2-mha"));
  EXPECT_EQ(mha.head_dim, 16);  // no head_dim on disk: hidden 64 / 4 heads
}

TEST(model_config, missing_directory_is_an_error) {
  EXPECT_NE(error_of([] { load_model_config("/nonexistent/model"); }).find("config.json"), std::string::npos);
}

}  // namespace
}  // namespace nf
