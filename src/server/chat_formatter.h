// How the chat endpoint turns messages into prompt text. The model's Jinja chat template plugs in here;
// plain_chat_formatter() serves models without one, and tests.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace nf {

// messages: the request's messages (content already a string); add_generation_prompt: end with the
// assistant's turn header; extra_context: the request's chat_template_kwargs (an object).
// Returns the prompt text; it is tokenized without adding special tokens (the template writes BOS itself).
// Throws nf::error for messages the template rejects (answered with 400).
using chat_formatter = std::function<std::string(const nlohmann::json& messages, bool add_generation_prompt,
                                                 const nlohmann::json& extra_context)>;

// "role: content\n" per message, then "assistant:" when add_generation_prompt.
chat_formatter plain_chat_formatter();

// The model's own Jinja chat template (chat_template.jinja, else tokenizer_config.json), with its special
// tokens (bos_token, eos_token, ...) in the context; plain_chat_formatter() when the model has none. A
// template that cannot be parsed makes every chat request fail with its message (a 400), not the server.
chat_formatter model_chat_formatter(const std::filesystem::path& model_dir);

}  // namespace nf
