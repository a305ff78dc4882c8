// GPT-2's byte-to-code-point table: printable Latin-1 bytes map to themselves, the other 68 bytes to
// U+0100 onwards in byte order.
#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace nf {

byte_level_alphabet::byte_level_alphabet() {
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const char32_t cp = printable ? static_cast<char32_t>(b) : next++;
    utf8_append(byte_to_text_[b], cp);
    code_point_to_byte_[cp] = static_cast<unsigned char>(b);
  }
}

std::string byte_level_alphabet::encode(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) out += byte_to_text_[static_cast<unsigned char>(c)];
  return out;
}

std::string byte_level_alphabet::decode(std::string_view text) const {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t len = utf8_sequence_length(text, pos);
    if (len == 0) {
      out.push_back(text[pos++]);
      continue;
    }
    const auto it = code_point_to_byte_.find(utf8_decode(text, pos, len));
    if (it != code_point_to_byte_.end()) {
      out.push_back(static_cast<char>(it->second));
    } else {
      out.append(text.substr(pos, len));
    }
    pos += len;
  }
  return out;
}

}  // namespace nf
