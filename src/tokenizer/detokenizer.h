// Incremental detokenizer for streaming: feed generated ids one at a time, get text deltas back.
// Never emits a broken UTF-8 sequence (an emoji split over byte tokens is held until complete), drops
// the SentencePiece leading space like decode(), and the concatenation of all deltas plus finish()
// equals tokenizer::decode() of all ids.
#pragma once

#include <cstdint>
#include <string>

#include "tokenizer/tokenizer.h"

namespace nf {

class detokenizer {
 public:
  // tok must outlive the detokenizer.
  detokenizer(const tokenizer& tok, bool skip_special_tokens);

  // The new text that id completes (often empty while a multi-byte character is incomplete).
  std::string add(int32_t id);
  // Flushes held-back bytes (as U+FFFD: they can no longer become a character). Call once at the end.
  std::string finish();

 private:
  const tokenizer& tok_;
  bool skip_special_tokens_;
  int num_spaces_to_strip_;
  bool emitted_any_ = false;  // any byte past the leading-space rule
  std::string pending_;       // bytes of an incomplete UTF-8 sequence
};

}  // namespace nf
