// Request parsing: JSON -> native structs, with OpenAI-style 400s naming the field.
#include "server/openai_protocol.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "server/api_error.h"

namespace nf {
namespace {

using json = nlohmann::json;

const char* json_type_name(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

// Typed access to the fields of one JSON object; absent and null fields read as unset.
class field_reader {
 public:
  explicit field_reader(const json& object) : object_(object) {}

  const json* find(const char* name) const {
    const auto it = object_.find(name);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  std::optional<bool> boolean(const char* name) const {
    const json* value = find(name);
    if (!value) return std::nullopt;
    if (!value->is_boolean()) wrong_type(name, "a boolean", *value);
    return value->get<bool>();
  }

  std::optional<double> number(const char* name, double min, double max) const {
    const json* value = find(name);
    if (!value) return std::nullopt;
    if (!value->is_number()) wrong_type(name, "a number", *value);
    const double x = value->get<double>();
    if (!(x >= min && x <= max) || !std::isfinite(x))
      bad_field(name, fmt::format("'{}' must be in [{}, {}], got {}", name, min, max, x));
    return x;
  }

  std::optional<int64_t> integer(const char* name, int64_t min, int64_t max) const {
    const json* value = find(name);
    if (!value) return std::nullopt;
    if (!value->is_number_integer()) wrong_type(name, "an integer", *value);
    if (value->is_number_unsigned() && value->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      bad_field(name, fmt::format("'{}' must be in [{}, {}]", name, min, max));
    const int64_t x = value->get<int64_t>();
    if (x < min || x > max) bad_field(name, fmt::format("'{}' must be in [{}, {}], got {}", name, min, max, x));
    return x;
  }

  std::optional<std::string> string(const char* name) const {
    const json* value = find(name);
    if (!value) return std::nullopt;
    if (!value->is_string()) wrong_type(name, "a string", *value);
    return value->get<std::string>();
  }

  [[noreturn]] static void wrong_type(const std::string& name, const char* expected, const json& value) {
    bad_field(name, fmt::format("'{}' must be {}, got {}", name, expected, json_type_name(value)));
  }

 private:
  const json& object_;
};

std::vector<int32_t> token_id_list(const json& value, const char* name, int32_t vocab_size) {
  if (!value.is_array()) field_reader::wrong_type(name, "a list of token ids", value);
  std::vector<int32_t> ids;
  ids.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    const json& item = value[i];
    const std::string item_name = fmt::format("{}[{}]", name, i);
    if (!item.is_number_integer()) field_reader::wrong_type(item_name, "a token id (integer)", item);
    const int64_t id = item.is_number_unsigned() && item.get<uint64_t>() > uint64_t(INT32_MAX) ? -1 : item.get<int64_t>();
    if (id < 0 || id >= vocab_size)
      bad_field(name, fmt::format("'{}' = {} is not a token id (vocabulary size {})", item_name, id, vocab_size));
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

std::string model_field(const field_reader& fields) { return fields.string("model").value_or(""); }

// Sampling fields and the options both generation endpoints share.
generation_options parse_generation_options(const field_reader& fields, bool chat) {
  generation_options options;
  sampling_params& p = options.params;
  p.temperature = static_cast<float>(fields.number("temperature", 0.0, 2.0).value_or(1.0));
  p.top_p = static_cast<float>(fields.number("top_p", 0.0, 1.0).value_or(1.0));
  if (!(p.top_p > 0.0f)) bad_field("top_p", "'top_p' must be in (0, 1]");
  p.top_k = static_cast<int>(fields.integer("top_k", -1, std::numeric_limits<int32_t>::max()).value_or(0));
  p.min_p = static_cast<float>(fields.number("min_p", 0.0, 1.0).value_or(0.0));
  p.repetition_penalty = static_cast<float>(fields.number("repetition_penalty", 0.0, 1e6).value_or(1.0));
  if (!(p.repetition_penalty > 0.0f)) bad_field("repetition_penalty", "'repetition_penalty' must be > 0");
  p.presence_penalty = static_cast<float>(fields.number("presence_penalty", -2.0, 2.0).value_or(0.0));
  p.frequency_penalty = static_cast<float>(fields.number("frequency_penalty", -2.0, 2.0).value_or(0.0));
  if (auto seed = fields.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    p.seed = static_cast<uint64_t>(*seed);
  p.ignore_eos = fields.boolean("ignore_eos").value_or(false);
  p.min_tokens = static_cast<int>(fields.integer("min_tokens", 0, std::numeric_limits<int32_t>::max()).value_or(0));
  if (const json* ids = fields.find("stop_token_ids"))
    p.stop_token_ids = token_id_list(*ids, "stop_token_ids", std::numeric_limits<int32_t>::max());
  if (const json* stop = fields.find("stop")) {
    if (stop->is_string()) {
      p.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& item : *stop) {
        if (!item.is_string()) field_reader::wrong_type("stop", "a string or a list of strings", *stop);
        p.stop.push_back(item.get<std::string>());
      }
    } else {
      field_reader::wrong_type("stop", "a string or a list of strings", *stop);
    }
    for (const auto& s : p.stop)
      if (s.empty()) bad_field("stop", "'stop' strings must not be empty");
  }
  const char* max_name = "max_tokens";
  std::optional<int64_t> max_tokens;
  if (chat && fields.find("max_completion_tokens")) {
    max_name = "max_completion_tokens";
    max_tokens = fields.integer(max_name, 1, std::numeric_limits<int32_t>::max());
  } else {
    max_tokens = fields.integer(max_name, 1, std::numeric_limits<int32_t>::max());
  }
  if (max_tokens) options.max_tokens = static_cast<int>(*max_tokens);
  if (options.max_tokens && p.min_tokens > *options.max_tokens)
    bad_field("min_tokens", fmt::format("'min_tokens' ({}) must not exceed '{}' ({})", p.min_tokens, max_name,
                                        *options.max_tokens));
  options.n = static_cast<int>(fields.integer("n", 1, 128).value_or(1));
  options.stream = fields.boolean("stream").value_or(false);
  if (const json* stream_options = fields.find("stream_options")) {
    if (!stream_options->is_object()) field_reader::wrong_type("stream_options", "an object", *stream_options);
    const json* usage = field_reader(*stream_options).find("include_usage");
    if (usage && !usage->is_boolean()) field_reader::wrong_type("stream_options.include_usage", "a boolean", *usage);
    options.include_usage = usage && usage->get<bool>();
  }
  if (const json* bias = fields.find("logit_bias"); bias && !bias->empty())
    bad_field("logit_bias", "'logit_bias' is not supported");
  if (fields.boolean("echo").value_or(false)) bad_field("echo", "'echo' is not supported");
  if (auto best_of = fields.integer("best_of", 1, 128); best_of && *best_of != options.n)
    bad_field("best_of", "'best_of' other than n is not supported");
  return options;
}

// Message content as one string: a string, or a list of {"type": "text", "text": ...} parts joined.
std::string message_content(const json& content, size_t index) {
  const std::string name = fmt::format("messages[{}].content", index);
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return "";
  if (!content.is_array()) field_reader::wrong_type(name, "a string or a list of content parts", content);
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      bad_field(name, fmt::format("'{}' parts must be {{\"type\": \"text\", \"text\": string}}", name));
    text += part["text"].get<std::string>();
  }
  return text;
}

json parse_messages(const json* messages) {
  if (!messages) bad_field("messages", "'messages' is required");
  if (!messages->is_array()) field_reader::wrong_type("messages", "a list of messages", *messages);
  if (messages->empty()) bad_field("messages", "'messages' must not be empty");
  json result = json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& message = (*messages)[i];
    const std::string name = fmt::format("messages[{}]", i);
    if (!message.is_object()) field_reader::wrong_type(name, "an object", message);
    const auto role = message.find("role");
    if (role == message.end() || !role->is_string())
      bad_field(name + ".role", fmt::format("'{}.role' must be a string", name));
    json normalized = message;
    normalized["content"] = message_content(message.contains("content") ? message["content"] : json(nullptr), i);
    result.push_back(std::move(normalized));
  }
  return result;
}

}  // namespace

json parse_json_body(const std::string& body) {
  json value;
  try {
    value = json::parse(body);
  } catch (const json::parse_error& e) {
    const std::string what = e.what();
    if (what.find("UTF-8") != std::string::npos || what.find("surrogate") != std::string::npos)
      throw api_error(400, "The request body has a string that is not valid UTF-8: " + what);
    throw api_error(400, "The request body is not valid JSON: " + what);
  }
  if (!value.is_object()) throw api_error(400, fmt::format("The request body must be a JSON object, got {}", json_type_name(value)));
  return value;
}

completion_body parse_completion_body(const json& body, int32_t vocab_size) {
  const field_reader fields(body);
  completion_body result;
  result.model = model_field(fields);
  const json* prompt = fields.find("prompt");
  if (!prompt) bad_field("prompt", "'prompt' is required");
  if (prompt->is_string()) {
    result.prompt_text = prompt->get<std::string>();
    if (result.prompt_text->empty()) bad_field("prompt", "'prompt' must not be empty");
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    result.prompt_text = (*prompt)[0].get<std::string>();
    if (result.prompt_text->empty()) bad_field("prompt", "'prompt' must not be empty");
  } else if (prompt->is_array() && (prompt->empty() || (*prompt)[0].is_number())) {
    result.prompt_token_ids = token_id_list(*prompt, "prompt", vocab_size);
    if (result.prompt_token_ids.empty()) bad_field("prompt", "'prompt' must not be empty");
  } else if (prompt->is_array()) {
    bad_field("prompt", "'prompt' as a batch of several prompts is not supported; send one request per prompt");
  } else {
    field_reader::wrong_type("prompt", "a string or a list of token ids", *prompt);
  }
  result.options = parse_generation_options(fields, false);
  result.options.params.logprobs = static_cast<int>(fields.integer("logprobs", 0, 20).value_or(-1));
  return result;
}

chat_body parse_chat_body(const json& body) {
  const field_reader fields(body);
  chat_body result;
  result.model = model_field(fields);
  result.messages = parse_messages(fields.find("messages"));
  result.add_generation_prompt = fields.boolean("add_generation_prompt").value_or(true);
  if (const json* kwargs = fields.find("chat_template_kwargs")) {
    if (!kwargs->is_object()) field_reader::wrong_type("chat_template_kwargs", "an object", *kwargs);
    result.chat_template_kwargs = *kwargs;
  }
  result.options = parse_generation_options(fields, true);
  result.logprobs = fields.boolean("logprobs").value_or(false);
  const auto top = fields.integer("top_logprobs", 0, 20);
  if (top && !result.logprobs) bad_field("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  result.options.params.logprobs = result.logprobs ? static_cast<int>(top.value_or(0)) : -1;
  return result;
}

tokenize_body parse_tokenize_body(const json& body) {
  const field_reader fields(body);
  tokenize_body result;
  result.model = model_field(fields);
  result.prompt = fields.string("prompt");
  if (fields.find("messages")) result.messages = parse_messages(fields.find("messages"));
  if (result.prompt.has_value() == !result.messages.is_null())
    bad_field("prompt", "give exactly one of 'prompt' and 'messages'");
  result.add_special_tokens = fields.boolean("add_special_tokens").value_or(result.messages.is_null());
  result.add_generation_prompt = fields.boolean("add_generation_prompt").value_or(true);
  return result;
}

detokenize_body parse_detokenize_body(const json& body, int32_t vocab_size) {
  const field_reader fields(body);
  detokenize_body result;
  result.model = model_field(fields);
  const json* tokens = fields.find("tokens");
  if (!tokens) bad_field("tokens", "'tokens' is required");
  result.tokens = token_id_list(*tokens, "tokens", vocab_size);
  return result;
}

}  // namespace nf
