// GPT-2's byte-level alphabet: every byte is shown as one printable code point, so byte-level BPE
// vocabularies ("Ġthe" for " the") are plain strings. Used by the ByteLevel pre-tokenizer and decoder.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <unordered_map>

namespace nf {

class byte_level_alphabet {
 public:
  byte_level_alphabet();

  // Each byte of bytes replaced by its code point, as UTF-8.
  std::string encode(std::string_view bytes) const;
  // The inverse; code points outside the alphabet are kept as their UTF-8 bytes.
  std::string decode(std::string_view text) const;

 private:
  std::array<std::string, 256> byte_to_text_;  // UTF-8 of each byte's code point
  std::unordered_map<char32_t, unsigned char> code_point_to_byte_;
};

}  // namespace nf
