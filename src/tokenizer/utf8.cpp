// UTF-8 decoding, validation and repair.
#include "tokenizer/utf8.h"

namespace nf {
namespace {

// How many bytes of s from pos form a prefix of a valid sequence (the "maximal subpart"), and the
// full length the lead byte asks for. full == 0 when the lead byte is invalid.
struct utf8_prefix {
  size_t valid;
  size_t full;
};

utf8_prefix scan(std::string_view s, size_t pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  size_t full = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (b0 < 0x80) return {1, 1};
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    full = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    full = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    full = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {0, 0};
  }
  size_t n = 1;
  while (n < full && pos + n < s.size()) {
    const auto b = static_cast<unsigned char>(s[pos + n]);
    const unsigned char l = n == 1 ? lo : 0x80;
    const unsigned char h = n == 1 ? hi : 0xBF;
    if (b < l || b > h) break;
    ++n;
  }
  return {n, full};
}

}  // namespace

size_t utf8_sequence_length(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  const utf8_prefix p = scan(s, pos);
  return p.full != 0 && p.valid == p.full ? p.full : 0;
}

bool utf8_is_valid(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t len = utf8_sequence_length(s, pos);
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

char32_t utf8_decode(std::string_view s, size_t pos, size_t len) {
  const auto b = [&](size_t i) { return static_cast<char32_t>(static_cast<unsigned char>(s[pos + i])); };
  switch (len) {
    case 1: return b(0);
    case 2: return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3: return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default: return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

size_t utf8_repair(std::string_view bytes, bool final, std::string& out) {
  static constexpr std::string_view replacement = "\xEF\xBF\xBD";
  size_t pos = 0;
  while (pos < bytes.size()) {
    const utf8_prefix p = scan(bytes, pos);
    if (p.full != 0 && p.valid == p.full) {
      out.append(bytes.substr(pos, p.full));
      pos += p.full;
    } else if (p.full != 0 && pos + p.valid == bytes.size() && !final) {
      break;  // an incomplete sequence that later bytes may finish
    } else {
      out.append(replacement);
      pos += p.valid == 0 ? 1 : p.valid;
    }
  }
  return pos;
}

}  // namespace nf
