// Reader and encoder for Hugging Face tokenizer.json files.
#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/bpe_merge.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode_normalize.h"
#include "tokenizer/utf8.h"

namespace nf {

using json = nlohmann::json;

struct hf_tokenizer::added_token {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool single_word = false;
};

struct hf_tokenizer::normalizer_step {
  enum class kind { unicode, lowercase, prepend, replace, strip } type;
  unicode_form form = unicode_form::nfc;
  std::string text;     // prepend: the prefix; replace: the literal pattern
  std::string content;  // replace: the replacement
  bool strip_left = false;
  bool strip_right = false;
};

struct hf_tokenizer::pre_tokenizer_step {
  enum class kind { split, byte_level, metaspace, digits } type;
  std::unique_ptr<regex> pattern;  // split, byte_level with use_regex
  enum class behavior { isolated, removed, merged_with_previous, merged_with_next } split_behavior =
      behavior::isolated;
  bool add_prefix_space = false;   // byte_level
  std::string replacement;         // metaspace
  enum class prepend { always, first, never } prepend_scheme = prepend::always;
  bool split_words = true;         // metaspace
};

namespace {

constexpr std::string_view gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

const byte_level_alphabet& alphabet() {
  static const byte_level_alphabet table;
  return table;
}

std::string type_of(const json& j, std::string_view what) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) fail("tokenizer.json: {} has no type", what);
  return j["type"].get<std::string>();
}

bool flag(const json& j, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  return j[key].get<bool>();
}

std::string escape_regex(std::string_view literal) {
  std::string out;
  for (const char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// A {"String": ...} or {"Regex": ...} pattern as a PCRE2 pattern.
std::string pattern_of(const json& p) {
  if (p.contains("Regex")) return p["Regex"].get<std::string>();
  if (p.contains("String")) return escape_regex(p["String"].get<std::string>());
  fail("tokenizer.json: pattern is neither String nor Regex: {}", p.dump());
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

bool is_word_byte(std::string_view s, size_t pos) {
  const auto c = static_cast<unsigned char>(s[pos]);
  return c >= 0x80 || std::isalnum(c) || c == '_';
}

// "<0x0A>" -> 10, else -1.
int byte_token_value(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  int v = 0;
  for (const char c : piece.substr(3, 2)) {
    v *= 16;
    if (c >= '0' && c <= '9') v += c - '0';
    else if (c >= 'A' && c <= 'F') v += c - 'A' + 10;
    else if (c >= 'a' && c <= 'f') v += c - 'a' + 10;
    else return -1;
  }
  return v;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

std::unique_ptr<hf_tokenizer> hf_tokenizer::from_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open tokenizer file {}", path.string());
  json root;
  try {
    root = json::parse(in);
  } catch (const json::exception& e) {
    fail("{} is not valid JSON: {}", path.string(), e.what());
  }
  try {
    return std::make_unique<hf_tokenizer>(root);
  } catch (const json::exception& e) {
    fail("{}: unexpected content: {}", path.string(), e.what());
  } catch (const error& e) {
    fail("{}: {}", path.string(), e.what());
  }
}

hf_tokenizer::hf_tokenizer(const json& root) {
  if (!root.is_object() || !root.contains("model")) fail("no \"model\" section");
  load_model(root["model"]);
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) load_added_tokens(root["added_tokens"]);
  if (root.contains("normalizer") && !root["normalizer"].is_null()) load_normalizer(root["normalizer"]);
  if (root.contains("pre_tokenizer") && !root["pre_tokenizer"].is_null()) load_pre_tokenizer(root["pre_tokenizer"]);
  if (root.contains("post_processor") && !root["post_processor"].is_null()) {
    load_post_processor(root["post_processor"]);
  }
  token_bytes_ = pieces_;
  if (root.contains("decoder") && !root["decoder"].is_null()) load_decoder(root["decoder"]);
  for (const added_token& t : added_tokens_) token_bytes_[t.id] = t.content;
}

hf_tokenizer::~hf_tokenizer() = default;

void hf_tokenizer::load_model(const json& model) {
  const std::string type = model.contains("type") ? model["type"].get<std::string>() : "BPE";
  if (type != "BPE") fail("unsupported tokenizer model type '{}' (only BPE is supported)", type);
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && model[key].is_string() && !model[key].get<std::string>().empty()) {
      fail("BPE option {} is not supported", key);
    }
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail("BPE model has no vocab object");
  int32_t max_id = -1;
  for (const auto& [piece, id] : model["vocab"].items()) {
    const int32_t i = id.get<int32_t>();
    if (i < 0) fail("negative id for piece '{}'", piece);
    vocab_.emplace(piece, i);
    max_id = std::max(max_id, i);
  }
  pieces_.assign(max_id + 1, "");
  for (const auto& [piece, id] : vocab_) pieces_[id] = piece;
  ignore_merges_ = flag(model, "ignore_merges", false);
  byte_fallback_ = flag(model, "byte_fallback", false);
  fuse_unk_ = flag(model, "fuse_unk", false);
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    const auto it = vocab_.find(model["unk_token"].get<std::string>());
    if (it == vocab_.end()) fail("unk_token '{}' is not in the vocab", model["unk_token"].get<std::string>());
    unk_id_ = it->second;
  }
  byte_ids_.assign(256, -1);
  for (const auto& [piece, id] : vocab_) {
    const int b = byte_token_value(piece);
    if (b >= 0) byte_ids_[b] = id;
  }
  if (!model.contains("merges") || !model["merges"].is_array()) fail("BPE model has no merges array");
  int32_t rank = 0;
  for (const json& m : model["merges"]) {
    std::string left;
    std::string right;
    if (m.is_string()) {  // "a b"
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos) fail("merge '{}' has no space", s);
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2) {  // ["a", "b"]
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      fail("merge {} is neither \"a b\" nor [\"a\", \"b\"]", m.dump());
    }
    const auto a = vocab_.find(left);
    const auto b = vocab_.find(right);
    const auto merged = vocab_.find(left + right);
    if (a == vocab_.end() || b == vocab_.end() || merged == vocab_.end()) {
      fail("merge '{} {}' uses a piece that is not in the vocab", left, right);
    }
    merges_.try_emplace(pair_key(a->second, b->second), rank++, merged->second);
  }
}

void hf_tokenizer::load_added_tokens(const json& added) {
  for (const json& t : added) {
    added_token token;
    token.content = t.at("content").get<std::string>();
    token.id = t.at("id").get<int32_t>();
    if (token.id < 0 || token.content.empty()) fail("bad added token {}", t.dump());
    token.special = flag(t, "special", false);
    token.lstrip = flag(t, "lstrip", false);
    token.rstrip = flag(t, "rstrip", false);
    token.normalized = flag(t, "normalized", !token.special);
    token.single_word = flag(t, "single_word", false);
    if (token.id >= static_cast<int32_t>(pieces_.size())) pieces_.resize(token.id + 1);
    pieces_[token.id] = token.content;
    vocab_[token.content] = token.id;
    added_tokens_.push_back(std::move(token));
  }
  special_.assign(pieces_.size(), false);
  added_token_first_byte_.assign(256, false);
  for (const added_token& t : added_tokens_) {
    special_[t.id] = t.special;
    added_token_first_byte_[static_cast<unsigned char>(t.content[0])] = true;
  }
  // Longest first, so the first match at a position is the longest.
  std::stable_sort(added_tokens_.begin(), added_tokens_.end(),
                   [](const added_token& a, const added_token& b) { return a.content.size() > b.content.size(); });
}

void hf_tokenizer::load_normalizer(const json& n) {
  const std::string type = type_of(n, "normalizer");
  normalizer_step step{};
  if (type == "Sequence") {
    for (const json& child : n.at("normalizers")) load_normalizer(child);
    return;
  } else if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") {
    step.type = normalizer_step::kind::unicode;
    step.form = type == "NFC" ? unicode_form::nfc : type == "NFD" ? unicode_form::nfd
              : type == "NFKC" ? unicode_form::nfkc : unicode_form::nfkd;
  } else if (type == "Lowercase") {
    step.type = normalizer_step::kind::lowercase;
  } else if (type == "Prepend") {
    step.type = normalizer_step::kind::prepend;
    step.text = n.at("prepend").get<std::string>();
  } else if (type == "Replace") {
    step.type = normalizer_step::kind::replace;
    if (!n.at("pattern").contains("String")) fail("Replace normalizer supports String patterns only");
    step.text = n["pattern"]["String"].get<std::string>();
    step.content = n.at("content").get<std::string>();
  } else if (type == "Strip") {
    step.type = normalizer_step::kind::strip;
    step.strip_left = flag(n, "strip_left", true);
    step.strip_right = flag(n, "strip_right", true);
  } else {
    fail("unsupported normalizer type '{}'", type);
  }
  normalizers_.push_back(std::move(step));
}

void hf_tokenizer::load_pre_tokenizer(const json& p) {
  const std::string type = type_of(p, "pre_tokenizer");
  pre_tokenizer_step step{};
  if (type == "Sequence") {
    for (const json& child : p.at("pretokenizers")) load_pre_tokenizer(child);
    return;
  } else if (type == "Split") {
    step.type = pre_tokenizer_step::kind::split;
    step.pattern = std::make_unique<regex>(pattern_of(p.at("pattern")));
    if (flag(p, "invert", false)) fail("Split pre-tokenizer with invert is not supported");
    const std::string behavior = p.at("behavior").get<std::string>();
    using b = pre_tokenizer_step::behavior;
    if (behavior == "Isolated") step.split_behavior = b::isolated;
    else if (behavior == "Removed") step.split_behavior = b::removed;
    else if (behavior == "MergedWithPrevious") step.split_behavior = b::merged_with_previous;
    else if (behavior == "MergedWithNext") step.split_behavior = b::merged_with_next;
    else fail("unsupported Split behavior '{}'", behavior);
  } else if (type == "ByteLevel") {
    step.type = pre_tokenizer_step::kind::byte_level;
    step.add_prefix_space = flag(p, "add_prefix_space", true);
    if (flag(p, "use_regex", true)) step.pattern = std::make_unique<regex>(std::string(gpt2_pattern));
  } else if (type == "Metaspace") {
    step.type = pre_tokenizer_step::kind::metaspace;
    step.replacement = p.contains("replacement") ? p["replacement"].get<std::string>() : "\xE2\x96\x81";
    std::string scheme = p.contains("prepend_scheme") ? p["prepend_scheme"].get<std::string>()
                         : flag(p, "add_prefix_space", true) ? "always" : "never";
    using s = pre_tokenizer_step::prepend;
    step.prepend_scheme = scheme == "first" ? s::first : scheme == "never" ? s::never : s::always;
    step.split_words = flag(p, "split", true);
  } else if (type == "Digits") {
    step.type = pre_tokenizer_step::kind::digits;
    step.pattern = std::make_unique<regex>(flag(p, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
  } else {
    fail("unsupported pre_tokenizer type '{}'", type);
  }
  pre_tokenizers_.push_back(std::move(step));
}

void hf_tokenizer::load_post_processor(const json& p) {
  const std::string type = type_of(p, "post_processor");
  const auto id_of_token = [&](const std::string& token) {
    const auto it = vocab_.find(token);
    if (it == vocab_.end()) fail("post_processor token '{}' is not in the vocab", token);
    return it->second;
  };
  if (type == "Sequence") {
    for (const json& child : p.at("processors")) load_post_processor(child);
  } else if (type == "ByteLevel") {
    // Only adjusts offsets.
  } else if (type == "TemplateProcessing") {
    bool after_sequence = false;
    for (const json& item : p.at("single")) {
      if (item.contains("Sequence")) {
        after_sequence = true;
        continue;
      }
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      const json& special = p.at("special_tokens").at(name);
      for (const json& id : special.at("ids")) {
        (after_sequence ? affixes_.suffix : affixes_.prefix).push_back(id.get<int32_t>());
      }
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    affixes_.prefix.push_back(p.at("cls").at(1).get<int32_t>());
    affixes_.suffix.push_back(p.at("sep").at(1).get<int32_t>());
    (void)id_of_token;
  } else {
    fail("unsupported post_processor type '{}'", type);
  }
  for (const int32_t id : affixes_.prefix) {
    if (id < 0 || id >= static_cast<int32_t>(pieces_.size())) fail("post_processor id {} is out of range", id);
  }
  for (const int32_t id : affixes_.suffix) {
    if (id < 0 || id >= static_cast<int32_t>(pieces_.size())) fail("post_processor id {} is out of range", id);
  }
}

void hf_tokenizer::load_decoder(const json& d) {
  const std::string type = type_of(d, "decoder");
  if (type == "Sequence") {
    for (const json& child : d.at("decoders")) load_decoder(child);
  } else if (type == "ByteLevel") {
    for (std::string& bytes : token_bytes_) bytes = alphabet().decode(bytes);
  } else if (type == "Replace") {
    if (!d.at("pattern").contains("String")) fail("Replace decoder supports String patterns only");
    const std::string from = d["pattern"]["String"].get<std::string>();
    const std::string to = d.at("content").get<std::string>();
    for (std::string& bytes : token_bytes_) replace_all(bytes, from, to);
  } else if (type == "ByteFallback") {
    for (std::string& bytes : token_bytes_) {
      const int b = byte_token_value(bytes);
      if (b >= 0) bytes = std::string(1, static_cast<char>(b));
    }
  } else if (type == "Fuse") {
    // Joining the tokens is what decode does anyway.
  } else if (type == "Strip") {
    if (d.value("content", std::string(" ")) != " " || d.value("stop", 0) != 0) {
      fail("Strip decoder supports content ' ' at the start only");
    }
    num_leading_spaces_to_strip_ = d.value("start", 0);
  } else if (type == "Metaspace") {
    const std::string replacement = d.contains("replacement") ? d["replacement"].get<std::string>() : "\xE2\x96\x81";
    for (std::string& bytes : token_bytes_) replace_all(bytes, replacement, " ");
    const std::string scheme = d.contains("prepend_scheme") ? d["prepend_scheme"].get<std::string>()
                               : flag(d, "add_prefix_space", true) ? "always" : "never";
    num_leading_spaces_to_strip_ = scheme == "never" ? 0 : 1;
  } else {
    fail("unsupported decoder type '{}'", type);
  }
}

std::string_view hf_tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("token id {} is out of range (vocab size {})", id, vocab_size());
  return token_bytes_[id];
}

std::string_view hf_tokenizer::piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("token id {} is out of range (vocab size {})", id, vocab_size());
  return pieces_[id];
}

std::optional<int32_t> hf_tokenizer::id_of(std::string_view piece) const {
  const auto it = vocab_.find(std::string(piece));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

bool hf_tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < static_cast<int32_t>(special_.size()) && special_[id];
}

std::vector<hf_tokenizer::segment> hf_tokenizer::split_added_tokens(std::string_view text, bool normalized) const {
  std::vector<segment> out;
  size_t start = 0;  // start of the pending plain text
  size_t pos = 0;
  while (pos < text.size()) {
    if (added_tokens_.empty() || !added_token_first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    const added_token* match = nullptr;
    for (const added_token& t : added_tokens_) {
      if (t.normalized != normalized || text.compare(pos, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        const size_t end = pos + t.content.size();
        if ((pos > 0 && is_word_byte(text, pos - 1)) || (end < text.size() && is_word_byte(text, end))) continue;
      }
      match = &t;
      break;
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t begin = pos;
    size_t end = pos + match->content.size();
    if (match->lstrip) {
      while (begin > start && is_space(text[begin - 1])) --begin;
    }
    if (match->rstrip) {
      while (end < text.size() && is_space(text[end])) ++end;
    }
    if (begin > start) out.push_back({start, begin, -1});
    out.push_back({begin, end, match->id});
    start = pos = end;
  }
  if (start < text.size()) out.push_back({start, text.size(), -1});
  return out;
}

std::string hf_tokenizer::normalize(std::string_view text) const {
  std::string s(text);
  for (const normalizer_step& step : normalizers_) {
    switch (step.type) {
      case normalizer_step::kind::unicode:
        s = unicode_normalize(s, step.form);
        break;
      case normalizer_step::kind::lowercase:
        for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        break;
      case normalizer_step::kind::prepend:
        if (!s.empty()) s = step.text + s;
        break;
      case normalizer_step::kind::replace:
        replace_all(s, step.text, step.content);
        break;
      case normalizer_step::kind::strip: {
        size_t b = 0;
        size_t e = s.size();
        if (step.strip_left) while (b < e && is_space(s[b])) ++b;
        if (step.strip_right) while (e > b && is_space(s[e - 1])) --e;
        s = s.substr(b, e - b);
        break;
      }
    }
  }
  return s;
}

std::vector<std::string> hf_tokenizer::pre_tokenize(std::string text, bool first_segment) const {
  std::vector<std::string> words{std::move(text)};
  using b = pre_tokenizer_step::behavior;
  const auto split = [](const std::vector<std::string>& in, const regex& pattern, b behavior) {
    std::vector<std::string> out;
    for (const std::string& w : in) {
      size_t last = 0;
      std::string pending;  // merged_with_next: a match waiting for the text after it
      for (const auto& [begin, end] : pattern.find_all(w)) {
        std::string gap = w.substr(last, begin - last);
        std::string match = w.substr(begin, end - begin);
        last = end;
        switch (behavior) {
          case b::isolated:
            if (!gap.empty()) out.push_back(std::move(gap));
            out.push_back(std::move(match));
            break;
          case b::removed:
            if (!gap.empty()) out.push_back(std::move(gap));
            break;
          case b::merged_with_previous:
            out.push_back(gap + match);
            break;
          case b::merged_with_next:
            if (!gap.empty() || !pending.empty()) out.push_back(pending + gap);
            pending = std::move(match);
            break;
        }
      }
      std::string tail = w.substr(last);
      if (behavior == b::merged_with_next) tail = pending + tail;
      if (!tail.empty()) out.push_back(std::move(tail));
    }
    return out;
  };
  for (const pre_tokenizer_step& step : pre_tokenizers_) {
    switch (step.type) {
      case pre_tokenizer_step::kind::split:
        words = split(words, *step.pattern, step.split_behavior);
        break;
      case pre_tokenizer_step::kind::digits:
        words = split(words, *step.pattern, b::isolated);
        break;
      case pre_tokenizer_step::kind::byte_level: {
        if (step.add_prefix_space) {
          for (std::string& w : words) {
            if (!w.empty() && w[0] != ' ') w.insert(w.begin(), ' ');
          }
        }
        if (step.pattern) words = split(words, *step.pattern, b::isolated);
        for (std::string& w : words) w = alphabet().encode(w);
        break;
      }
      case pre_tokenizer_step::kind::metaspace: {
        for (std::string& w : words) replace_all(w, " ", step.replacement);
        const bool prepend = step.prepend_scheme == pre_tokenizer_step::prepend::always ||
                             (step.prepend_scheme == pre_tokenizer_step::prepend::first && first_segment);
        if (prepend && !words.empty() && words[0].rfind(step.replacement, 0) != 0) {
          words[0] = step.replacement + words[0];
        }
        if (step.split_words) {
          regex marker(escape_regex(step.replacement));
          words = split(words, marker, b::merged_with_next);
        }
        break;
      }
    }
  }
  return words;
}

void hf_tokenizer::encode_word(const std::string& word, std::vector<int32_t>& ids) const {
  if (ignore_merges_) {
    const auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    const auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> word_ids;
  encode_word_uncached(word, word_ids);
  ids.insert(ids.end(), word_ids.begin(), word_ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() > 100000) cache_.clear();
  cache_.emplace(word, std::move(word_ids));
}

void hf_tokenizer::encode_word_uncached(const std::string& word, std::vector<int32_t>& ids) const {
  std::vector<bpe_symbol> symbols;  // [num_symbols]
  size_t pos = 0;
  std::string ch;
  while (pos < word.size()) {
    size_t len = utf8_sequence_length(word, pos);
    if (len == 0) len = 1;
    ch.assign(word, pos, len);
    const auto it = vocab_.find(ch);
    if (it != vocab_.end()) {
      symbols.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(pos + len), it->second});
    } else if (byte_fallback_ &&
               std::all_of(ch.begin(), ch.end(), [&](char c) { return byte_ids_[static_cast<unsigned char>(c)] >= 0; })) {
      for (size_t i = 0; i < len; ++i) {
        symbols.push_back({static_cast<uint32_t>(pos + i), static_cast<uint32_t>(pos + i + 1),
                           byte_ids_[static_cast<unsigned char>(word[pos + i])]});
      }
    } else if (unk_id_ >= 0) {
      if (fuse_unk_ && !symbols.empty() && symbols.back().id == unk_id_) {
        symbols.back().end = static_cast<uint32_t>(pos + len);
      } else {
        symbols.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(pos + len), unk_id_});
      }
    }
    pos += len;
  }
  bpe_merge(symbols, [&](const bpe_symbol& a, const bpe_symbol& b) -> std::optional<bpe_candidate> {
    const auto it = merges_.find(pair_key(a.id, b.id));
    if (it == merges_.end()) return std::nullopt;
    return bpe_candidate{static_cast<double>(it->second.first), it->second.second};
  });
  for (const bpe_symbol& s : symbols) ids.push_back(s.id);
}

std::vector<int32_t> hf_tokenizer::encode_text(std::string_view text) const {
  std::vector<int32_t> ids;
  bool first_segment = true;
  for (const segment& raw : split_added_tokens(text, false)) {
    if (raw.id >= 0) {
      ids.push_back(raw.id);
      continue;
    }
    const std::string normalized = normalize(text.substr(raw.begin, raw.end - raw.begin));
    for (const segment& seg : split_added_tokens(normalized, true)) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
        continue;
      }
      for (const std::string& word : pre_tokenize(normalized.substr(seg.begin, seg.end - seg.begin), first_segment)) {
        encode_word(word, ids);
      }
      first_segment = false;
    }
  }
  return ids;
}

}  // namespace nf
