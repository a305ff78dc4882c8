// The plain chat formatter.
#include "server/chat_formatter.h"

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

}  // namespace nf
