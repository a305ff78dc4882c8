// Chat templates: a Jinja2 interpreter (lexer, parser, evaluator over JSON values) for the
// `chat_template` of Hugging Face models, rendering with the settings transformers uses
// (trim_blocks, lstrip_blocks, loop controls, its own tojson, raise_exception, strftime_now).
#pragma once

#include <nlohmann/json.hpp>

#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace nf {

namespace chat {
struct stmt;
}

// Wall-clock time for strftime_now(); tests inject a fixed one.
using chat_clock = std::function<std::tm()>;
// The local time now.
std::tm chat_clock_local_now();

class chat_template {
 public:
  // Parses once; render() may then be called any number of times, from any number of threads.
  // Throws nf::error "chat template line N: ..." on a syntax error or an unsupported tag.
  static chat_template parse(std::string_view source);

  // Renders with `context` as the template's variables (objects keep their key order, as Python dicts
  // do). Undefined names are falsy and render empty. Throws nf::error: "chat template line N: ..." for
  // an unknown filter/test/method, a type error or calling a non-function; the exact message for
  // raise_exception(message).
  std::string render(const nlohmann::ordered_json& context) const;
  std::string render(const nlohmann::ordered_json& context, const chat_clock& clock) const;

 private:
  std::shared_ptr<const std::vector<std::unique_ptr<chat::stmt>>> program_;
};

// The template source of a model folder: chat_template.jinja if present, else tokenizer_config.json's
// `chat_template` (a string, or a list of {"name", "template"} where "default" is taken). nullopt when
// the folder has neither; nf::error when a file is malformed.
std::optional<std::string> load_chat_template_source(const std::filesystem::path& model_dir);

// The special-token strings of tokenizer_config.json (bos_token, eos_token, unk_token, pad_token, given
// as strings or as {"content": ...}), as the variables transformers passes to a chat template. An empty
// object when the folder has no tokenizer_config.json.
nlohmann::ordered_json load_chat_template_special_tokens(const std::filesystem::path& model_dir);

// Renders a conversation as transformers' apply_chat_template(tokenize=False) does: the variables are
// extra_context (bos_token, eos_token, tools, documents, template switches such as enable_thinking),
// then `messages` and `add_generation_prompt`. extra_context must be an object or null.
std::string apply_chat_template(const chat_template& tmpl, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const nlohmann::ordered_json& extra_context,
                                const chat_clock& clock = chat_clock_local_now);

}  // namespace nf
