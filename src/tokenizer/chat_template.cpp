// Chat templates: the public API (see chat_template.h): parse once, render many times, and find a
// model folder's template.
#include "tokenizer/chat_template.h"

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/chat_template_eval.h"
#include "tokenizer/chat_template_parser.h"

namespace nf {

std::tm chat_clock_local_now() {
  std::time_t t = std::time(nullptr);
  std::tm out{};
  localtime_r(&t, &out);
  return out;
}

chat_template chat_template::parse(std::string_view source) {
  chat_template t;
  t.program_ = std::make_shared<const std::vector<chat::stmt_ptr>>(chat::parse_template(chat::tokenize(source)));
  return t;
}

std::string chat_template::render(const nlohmann::ordered_json& context) const {
  return render(context, chat_clock_local_now);
}

std::string chat_template::render(const nlohmann::ordered_json& context, const chat_clock& clock) const {
  NF_CHECK(program_ != nullptr, "chat_template used before parse()");
  return chat::render_program(*program_, context, clock);
}

namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read {}", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::ordered_json read_tokenizer_config(const std::filesystem::path& model_dir) {
  std::filesystem::path path = model_dir / "tokenizer_config.json";
  if (!std::filesystem::exists(path)) return nullptr;
  try {
    return nlohmann::ordered_json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed JSON: {}", path.string(), e.what());
  }
}

}  // namespace

std::optional<std::string> load_chat_template_source(const std::filesystem::path& model_dir) {
  std::filesystem::path jinja = model_dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja)) return read_file(jinja);
  nlohmann::ordered_json config = read_tokenizer_config(model_dir);
  if (!config.is_object() || !config.contains("chat_template") || config["chat_template"].is_null()) return std::nullopt;
  const auto& ct = config["chat_template"];
  if (ct.is_string()) return ct.get<std::string>();
  if (ct.is_array()) {
    for (const auto& entry : ct) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") && entry["template"].is_string()) {
        return entry["template"].get<std::string>();
      }
    }
    fail("{}: chat_template is a list without a \"default\" entry", (model_dir / "tokenizer_config.json").string());
  }
  fail("{}: chat_template must be a string or a list of {{\"name\", \"template\"}}", (model_dir / "tokenizer_config.json").string());
}

nlohmann::ordered_json load_chat_template_special_tokens(const std::filesystem::path& model_dir) {
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  nlohmann::ordered_json config = read_tokenizer_config(model_dir);
  if (!config.is_object()) return out;
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) {
    if (!config.contains(key)) continue;
    const auto& t = config[key];
    if (t.is_string()) out[key] = t;
    else if (t.is_object() && t.contains("content") && t["content"].is_string()) out[key] = t["content"];
  }
  return out;
}

std::string apply_chat_template(const chat_template& tmpl, const nlohmann::ordered_json& messages,
                                bool add_generation_prompt, const nlohmann::ordered_json& extra_context,
                                const chat_clock& clock) {
  if (!messages.is_array()) fail("chat messages must be a JSON array");
  if (!extra_context.is_null() && !extra_context.is_object()) fail("chat template context must be a JSON object");
  nlohmann::ordered_json context = extra_context.is_object() ? extra_context : nlohmann::ordered_json::object();
  context["messages"] = messages;
  context["add_generation_prompt"] = add_generation_prompt;
  return tmpl.render(context, clock);
}

}  // namespace nf
