// Incremental detokenizer.
#include "tokenizer/detokenizer.h"

#include "tokenizer/utf8.h"

namespace nf {

detokenizer::detokenizer(const tokenizer& tok, bool skip_special_tokens)
    : tok_(tok), skip_special_tokens_(skip_special_tokens), num_spaces_to_strip_(tok.num_leading_spaces_to_strip()) {}

std::string detokenizer::add(int32_t id) {
  const std::string_view bytes = tok_.token_bytes(id);
  if (skip_special_tokens_ && tok_.is_special(id)) return {};
  size_t start = 0;
  if (!emitted_any_) {
    while (num_spaces_to_strip_ > 0 && start < bytes.size() && bytes[start] == ' ') {
      ++start;
      --num_spaces_to_strip_;
    }
    if (start < bytes.size()) emitted_any_ = true;
  }
  pending_.append(bytes.substr(start));
  std::string text;
  const size_t consumed = utf8_repair(pending_, false, text);
  pending_.erase(0, consumed);
  return text;
}

std::string detokenizer::finish() {
  std::string text;
  utf8_repair(pending_, true, text);
  pending_.clear();
  return text;
}

}  // namespace nf
