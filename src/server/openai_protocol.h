// OpenAI (and vLLM) request bodies parsed into native structs early: every field type-checked and range-checked,
// with an api_error (400) naming the field otherwise. Unknown fields are ignored, as OpenAI's server does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/sampling_params.h"

namespace nf {

// Fields /v1/completions and /v1/chat/completions share.
struct generation_options {
  sampling_params params;          // params.max_tokens is set once the prompt length is known
  std::optional<int> max_tokens;   // as asked; unset: the endpoint's default
  int n = 1;
  bool stream = false;
  bool include_usage = false;      // stream_options.include_usage
};

struct completion_body {
  std::string model;                       // empty: the served model
  std::optional<std::string> prompt_text;  // a string prompt ...
  std::vector<int32_t> prompt_token_ids;   // ... or a list of token ids
  generation_options options;              // logprobs: options.params.logprobs (-1: none)
};

struct chat_body {
  std::string model;
  nlohmann::json messages;                 // non-empty array of {role, content: string}; content parts joined
  bool add_generation_prompt = true;
  nlohmann::json chat_template_kwargs = nlohmann::json::object();
  generation_options options;
  bool logprobs = false;                   // options.params.logprobs is top_logprobs when set, else -1
};

// vLLM's /tokenize: either a prompt or chat messages.
struct tokenize_body {
  std::string model;
  std::optional<std::string> prompt;
  nlohmann::json messages;                 // null unless given
  bool add_special_tokens = true;
  bool add_generation_prompt = true;
};

struct detokenize_body {
  std::string model;
  std::vector<int32_t> tokens;
};

// Parses a request body: 400 for malformed JSON, invalid UTF-8 or a body that is not an object.
nlohmann::json parse_json_body(const std::string& body);

completion_body parse_completion_body(const nlohmann::json& body, int32_t vocab_size);
chat_body parse_chat_body(const nlohmann::json& body);
tokenize_body parse_tokenize_body(const nlohmann::json& body);
detokenize_body parse_detokenize_body(const nlohmann::json& body, int32_t vocab_size);

}  // namespace nf
