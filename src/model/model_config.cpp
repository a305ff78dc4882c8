// Parsing of Hugging Face config.json in both dialects: transformers 4 (rope_theta + rope_scaling) and
// transformers 5 (rope_parameters).
#include "model/model_config.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace nf {
namespace {

using json = nlohmann::json;

int required_int(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) fail("config.json: required field '{}' is missing", key);
  if (!it->is_number_integer()) fail("config.json: field '{}' must be an integer, got {}", key, it->dump());
  const int64_t value = it->get<int64_t>();
  if (value <= 0 || value > (int64_t{1} << 30)) fail("config.json: field '{}' must be positive, got {}", key, value);
  return static_cast<int>(value);
}

int optional_int(const json& config, const char* key, int fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  return required_int(config, key);
}

double optional_number(const json& config, const char* key, double fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_number()) fail("config.json: field '{}' must be a number, got {}", key, it->dump());
  return it->get<double>();
}

bool optional_bool(const json& config, const char* key, bool fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) fail("config.json: field '{}' must be true or false, got {}", key, it->dump());
  return it->get<bool>();
}

std::vector<int32_t> token_id_list(const json& value, const char* key) {
  std::vector<int32_t> ids;
  if (value.is_null()) return ids;
  if (value.is_number_integer()) return {value.get<int32_t>()};
  if (!value.is_array()) fail("{}: expected a token id or a list of them, got {}", key, value.dump());
  for (const auto& id : value) {
    if (!id.is_number_integer()) fail("{}: expected integer token ids, got {}", key, value.dump());
    ids.push_back(id.get<int32_t>());
  }
  return ids;
}

// Reads the rope section of either dialect into `rope`.
void parse_rope(const json& config, rope_config& rope) {
  const json* params = nullptr;
  json merged;
  if (auto it = config.find("rope_parameters"); it != config.end() && it->is_object()) {
    params = &*it;  // transformers 5: theta and scaling together
  } else {
    merged = json::object();
    if (auto scaling = config.find("rope_scaling"); scaling != config.end() && !scaling->is_null()) {
      if (!scaling->is_object()) fail("config.json: 'rope_scaling' must be an object, got {}", scaling->dump());
      merged = *scaling;
    }
    if (auto theta = config.find("rope_theta"); theta != config.end() && !theta->is_null()) merged["rope_theta"] = *theta;
    params = &merged;
  }
  rope.theta = optional_number(*params, "rope_theta", 10000.0);
  if (!(rope.theta > 1.0)) fail("config.json: rope_theta must be greater than 1, got {}", rope.theta);
  std::string type = "default";
  if (auto it = params->find("rope_type"); it != params->end() && it->is_string()) type = it->get<std::string>();
  else if (auto legacy = params->find("type"); legacy != params->end() && legacy->is_string()) type = legacy->get<std::string>();
  if (type == "default") {
    rope.type = rope_config::scaling::none;
  } else if (type == "linear") {
    rope.type = rope_config::scaling::linear;
    rope.factor = optional_number(*params, "factor", 1.0);
  } else if (type == "llama3") {
    rope.type = rope_config::scaling::llama3;
    rope.factor = optional_number(*params, "factor", 8.0);
    rope.low_freq_factor = optional_number(*params, "low_freq_factor", 1.0);
    rope.high_freq_factor = optional_number(*params, "high_freq_factor", 4.0);
    rope.original_max_position_embeddings = optional_int(*params, "original_max_position_embeddings", 8192);
    if (!(rope.high_freq_factor > rope.low_freq_factor))
      fail("config.json: llama3 rope scaling needs high_freq_factor > low_freq_factor");
  } else {
    fail("config.json: RoPE scaling type '{}' is not supported (supported: default, linear, llama3)", type);
  }
  if (!(rope.factor > 0.0)) fail("config.json: rope scaling factor must be positive, got {}", rope.factor);
}

}  // namespace

int64_t model_config::num_parameters() const {
  const int64_t per_layer = int64_t{hidden_size} * qkv_size() + (qkv_bias ? qkv_size() : 0) +
                            int64_t{q_size()} * hidden_size + (o_bias ? hidden_size : 0) +
                            3LL * hidden_size * intermediate_size +
                            (mlp_bias ? 2LL * intermediate_size + hidden_size : 0) + 2LL * hidden_size;
  const int64_t embeddings = int64_t{vocab_size} * hidden_size * (tie_word_embeddings ? 1 : 2);
  return per_layer * num_layers + embeddings + hidden_size;
}

double model_config::gemm_flops_per_token() const {
  const double per_layer = double(hidden_size) * qkv_size() + double(q_size()) * hidden_size +
                           3.0 * hidden_size * intermediate_size;
  return 2.0 * (per_layer * num_layers + double(vocab_size) * hidden_size);
}

model_config parse_model_config(const json& config) {
  if (!config.is_object()) fail("config.json: expected a JSON object");
  model_config result;
  std::string name;
  if (auto it = config.find("architectures"); it != config.end() && it->is_array() && !it->empty() && (*it)[0].is_string())
    name = (*it)[0].get<std::string>();
  else if (auto type = config.find("model_type"); type != config.end() && type->is_string())
    name = type->get<std::string>();
  else
    fail("config.json: required field 'architectures' is missing");
  if (name == "LlamaForCausalLM" || name == "llama") result.architecture = model_architecture::llama;
  else if (name == "MistralForCausalLM" || name == "mistral") result.architecture = model_architecture::mistral;
  else if (name == "Qwen2ForCausalLM" || name == "qwen2") result.architecture = model_architecture::qwen2;
  else fail("unsupported model architecture '{}' (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)", name);
  result.architecture_name = name;

  result.hidden_size = required_int(config, "hidden_size");
  result.intermediate_size = required_int(config, "intermediate_size");
  result.num_layers = required_int(config, "num_hidden_layers");
  result.num_q_heads = required_int(config, "num_attention_heads");
  result.vocab_size = required_int(config, "vocab_size");
  result.num_kv_heads = optional_int(config, "num_key_value_heads", result.num_q_heads);
  if (result.num_q_heads % result.num_kv_heads != 0)
    fail("config.json: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", result.num_q_heads,
         result.num_kv_heads);
  if (result.hidden_size % result.num_q_heads != 0 && config.value("head_dim", json()).is_null())
    fail("config.json: hidden_size ({}) is not a multiple of num_attention_heads ({}) and no head_dim is given",
         result.hidden_size, result.num_q_heads);
  result.head_dim = optional_int(config, "head_dim", result.hidden_size / result.num_q_heads);
  if (result.head_dim % 2 != 0) fail("config.json: head_dim must be even for RoPE, got {}", result.head_dim);
  result.max_position_embeddings = optional_int(config, "max_position_embeddings", 2048);
  result.rms_norm_eps = optional_number(config, "rms_norm_eps", 1e-6);
  if (!(result.rms_norm_eps > 0.0)) fail("config.json: rms_norm_eps must be positive");
  result.tie_word_embeddings = optional_bool(config, "tie_word_embeddings", false);
  if (auto act = config.find("hidden_act"); act != config.end() && act->is_string() && act->get<std::string>() != "silu")
    fail("config.json: hidden_act '{}' is not supported (only silu)", act->get<std::string>());
  parse_rope(config, result.rope);

  if (result.architecture == model_architecture::qwen2) {
    result.qkv_bias = true;
    if (optional_bool(config, "use_sliding_window", false)) {
      const int window = optional_int(config, "sliding_window", result.max_position_embeddings);
      result.max_position_embeddings = std::min(result.max_position_embeddings, window);
    }
  } else {
    const bool attention_bias = optional_bool(config, "attention_bias", false);
    result.qkv_bias = attention_bias;
    result.o_bias = attention_bias;
    result.mlp_bias = optional_bool(config, "mlp_bias", false);
  }
  if (result.architecture == model_architecture::mistral) {
    // Without sliding-window attention kernels, the context is capped at the window, where full attention is exact.
    const int window = optional_int(config, "sliding_window", result.max_position_embeddings);
    result.max_position_embeddings = std::min(result.max_position_embeddings, window);
  }
  if (auto dtype = config.find("torch_dtype"); dtype != config.end() && dtype->is_string()) result.stored_dtype = *dtype;
  if (auto dtype = config.find("dtype"); dtype != config.end() && dtype->is_string()) result.stored_dtype = *dtype;
  if (auto bos = config.find("bos_token_id"); bos != config.end() && bos->is_number_integer())
    result.bos_token_id = bos->get<int32_t>();
  if (auto eos = config.find("eos_token_id"); eos != config.end()) result.eos_token_ids = token_id_list(*eos, "eos_token_id");
  return result;
}

model_config load_model_config(const std::filesystem::path& dir) {
  const auto path = dir / "config.json";
  std::ifstream file(path);
  if (!file) fail("cannot open {}: is this a Hugging Face model directory?", path.string());
  json config = json::parse(file, nullptr, false);
  if (config.is_discarded()) fail("{} is not valid JSON", path.string());
  model_config result = parse_model_config(config);
  const auto generation_path = dir / "generation_config.json";
  if (std::ifstream generation_file(generation_path); generation_file) {
    json generation = json::parse(generation_file, nullptr, false);
    if (generation.is_discarded()) fail("{} is not valid JSON", generation_path.string());
    if (auto eos = generation.find("eos_token_id"); eos != generation.end() && !eos->is_null()) {
      for (int32_t id : token_id_list(*eos, "generation_config.json eos_token_id"))
        if (std::find(result.eos_token_ids.begin(), result.eos_token_ids.end(), id) == result.eos_token_ids.end())
          result.eos_token_ids.push_back(id);
    }
    if (!result.bos_token_id)
      if (auto bos = generation.find("bos_token_id"); bos != generation.end() && bos->is_number_integer())
        result.bos_token_id = bos->get<int32_t>();
  }
  for (int32_t id : result.eos_token_ids)
    if (id < 0 || id >= result.vocab_size) fail("eos_token_id {} is outside the vocabulary of {}", id, result.vocab_size);
  return result;
}

std::string describe(const model_config& c) {
  return fmt::format("{}: {} layers, hidden {}, intermediate {}, heads {}/{} (head_dim {}), vocab {}, context {}, {:.2f}B parameters",
                     c.architecture_name, c.num_layers, c.hidden_size, c.intermediate_size, c.num_q_heads, c.num_kv_heads,
                     c.head_dim, c.vocab_size, c.max_position_embeddings, c.num_parameters() / 1e9);
}

}  // namespace nf
