// Chat formatters: the plain one, and the model's Jinja template.
#include "server/chat_formatter.h"

#include <memory>

#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace nf {

chat_formatter plain_chat_formatter() {
  return [](const nlohmann::json& messages, bool add_generation_prompt, const nlohmann::json&) {
    std::string text;
    for (const auto& message : messages)
      text += message["role"].get<std::string>() + ": " + message["content"].get<std::string>() + "\n";
    if (add_generation_prompt) text += "assistant:";
    return text;
  };
}

chat_formatter model_chat_formatter(const std::filesystem::path& model_dir) {
  const std::optional<std::string> source = load_chat_template_source(model_dir);
  if (!source) return plain_chat_formatter();
  const nlohmann::ordered_json special_tokens = load_chat_template_special_tokens(model_dir);
  std::shared_ptr<const chat_template> parsed;
  std::string parse_error;
  try {
    parsed = std::make_shared<const chat_template>(chat_template::parse(*source));
  } catch (const nf::error& e) {
    parse_error = e.what();
  }
  return [parsed, parse_error, special_tokens](const nlohmann::json& messages, bool add_generation_prompt,
                                               const nlohmann::json& extra_context) -> std::string {
    if (!parsed) fail("the model's chat template is not supported: {}", parse_error);
    nlohmann::ordered_json context = special_tokens;
    for (const auto& [key, value] : extra_context.items()) context[key] = value;
    return apply_chat_template(*parsed, nlohmann::ordered_json(messages), add_generation_prompt, context);
  };
}

}  // namespace nf
