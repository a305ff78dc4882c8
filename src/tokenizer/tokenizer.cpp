// The format-independent parts of the tokenizer: special tokens around a sequence, decoding, and
// loading a model folder with its tokenizer_config.json and generation_config.json.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_tokenizer.h"
#include "tokenizer/utf8.h"

namespace nf {

using json = nlohmann::json;

std::vector<int32_t> tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (!utf8_is_valid(text)) fail("text to encode is not valid UTF-8");
  std::vector<int32_t> ids = encode_text(text);
  if (!add_special_tokens) return ids;
  special_affixes affixes = special_tokens_around_text();
  if (add_bos_ && bos_id_) {
    const bool has = !affixes.prefix.empty() && affixes.prefix.front() == *bos_id_;
    if (*add_bos_ && !has) affixes.prefix.insert(affixes.prefix.begin(), *bos_id_);
    if (!*add_bos_ && has) affixes.prefix.erase(affixes.prefix.begin());
  }
  if (add_eos_ && !eos_ids_.empty()) {
    const int32_t eos = eos_ids_.front();
    const bool has = !affixes.suffix.empty() && affixes.suffix.back() == eos;
    if (*add_eos_ && !has) affixes.suffix.push_back(eos);
    if (!*add_eos_ && has) affixes.suffix.pop_back();
  }
  ids.insert(ids.begin(), affixes.prefix.begin(), affixes.prefix.end());
  ids.insert(ids.end(), affixes.suffix.begin(), affixes.suffix.end());
  return ids;
}

std::string tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (const int32_t id : ids) {
    const std::string_view b = token_bytes(id);  // checks the range
    if (skip_special_tokens && is_special(id)) continue;
    bytes.append(b);
  }
  size_t start = 0;
  const int num_strip = num_leading_spaces_to_strip();
  while (static_cast<int>(start) < num_strip && start < bytes.size() && bytes[start] == ' ') ++start;
  std::string text;
  utf8_repair(std::string_view(bytes).substr(start), true, text);
  return text;
}

namespace {

std::optional<json> read_json_if_present(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open {}", path.string());
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail("{} is not valid JSON: {}", path.string(), e.what());
  }
}

// tokenizer_config.json writes special tokens as "<s>" or as {"content": "<s>", ...}.
std::optional<std::string> token_text(const json& config, const char* key) {
  if (!config.contains(key) || config[key].is_null()) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  fail("tokenizer_config.json: {} is neither a string nor an object with content", key);
}

int32_t token_id(const tokenizer& tok, const std::string& text, const char* what) {
  const std::optional<int32_t> id = tok.id_of(text);
  if (!id) fail("tokenizer_config.json: {} '{}' is not in the vocabulary", what, text);
  return *id;
}

std::vector<int32_t> ids_of(const json& v, const char* what, const tokenizer& tok) {
  std::vector<int32_t> ids;
  const auto add = [&](const json& x) {
    if (!x.is_number_integer()) fail("generation_config.json: {} must be an integer or a list of them", what);
    const auto id = x.get<int32_t>();
    if (id < 0 || id >= tok.vocab_size()) fail("generation_config.json: {} {} is out of range", what, id);
    ids.push_back(id);
  };
  if (v.is_array()) {
    for (const json& x : v) add(x);
  } else if (!v.is_null()) {
    add(v);
  }
  return ids;
}

}  // namespace

std::unique_ptr<tokenizer> load_tokenizer(const std::filesystem::path& model_dir) {
  if (!std::filesystem::is_directory(model_dir)) fail("model folder {} does not exist", model_dir.string());
  std::unique_ptr<tokenizer> tok;
  std::optional<int32_t> bos;
  std::vector<int32_t> eos;
  const std::filesystem::path json_path = model_dir / "tokenizer.json";
  const std::filesystem::path model_path = model_dir / "tokenizer.model";
  if (std::filesystem::exists(json_path)) {
    tok = hf_tokenizer::from_file(json_path);
  } else if (std::filesystem::exists(model_path)) {
    auto spm = sentencepiece_tokenizer::from_file(model_path);
    bos = spm->model_bos_id();
    if (spm->model_eos_id()) eos.push_back(*spm->model_eos_id());
    tok = std::move(spm);
  } else {
    fail("{} has neither tokenizer.json nor tokenizer.model", model_dir.string());
  }

  if (const std::optional<json> config = read_json_if_present(model_dir / "tokenizer_config.json")) {
    if (!config->is_object()) fail("tokenizer_config.json in {} is not a JSON object", model_dir.string());
    if (const auto text = token_text(*config, "bos_token")) bos = token_id(*tok, *text, "bos_token");
    if (const auto text = token_text(*config, "eos_token")) eos = {token_id(*tok, *text, "eos_token")};
    if (config->contains("add_bos_token") && (*config)["add_bos_token"].is_boolean()) {
      tok->set_add_bos((*config)["add_bos_token"].get<bool>());
    }
    if (config->contains("add_eos_token") && (*config)["add_eos_token"].is_boolean()) {
      tok->set_add_eos((*config)["add_eos_token"].get<bool>());
    }
  }
  if (const std::optional<json> gen = read_json_if_present(model_dir / "generation_config.json")) {
    if (!gen->is_object()) fail("generation_config.json in {} is not a JSON object", model_dir.string());
    if (gen->contains("bos_token_id") && !bos) {
      const std::vector<int32_t> ids = ids_of((*gen)["bos_token_id"], "bos_token_id", *tok);
      if (!ids.empty()) bos = ids.front();
    }
    if (gen->contains("eos_token_id")) {
      for (const int32_t id : ids_of((*gen)["eos_token_id"], "eos_token_id", *tok)) {
        if (std::find(eos.begin(), eos.end(), id) == eos.end()) eos.push_back(id);
      }
    }
  }
  tok->set_bos_id(bos);
  tok->set_eos_ids(std::move(eos));
  return tok;
}

}  // namespace nf
