// UTF-8 helpers for the tokenizers: code point decoding, validation, and lossy repair that can run on a
// stream of bytes (holding back an incomplete tail) and gives the same text as a run on all bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nf {

// Length of the valid UTF-8 sequence starting at s[pos], or 0 when the bytes there are not one
// (or are cut off by the end of s).
size_t utf8_sequence_length(std::string_view s, size_t pos);

// True when all of s is valid UTF-8.
bool utf8_is_valid(std::string_view s);

// Appends code point cp (<= 0x10FFFF) to out as UTF-8.
void utf8_append(std::string& out, char32_t cp);

// Decodes the valid sequence at s[pos] of length len (from utf8_sequence_length).
char32_t utf8_decode(std::string_view s, size_t pos, size_t len);

// Appends bytes to out with every ill-formed subsequence (maximal subpart, as the Unicode standard
// recommends) replaced by U+FFFD. When final is false, a tail that could still become a valid sequence
// is left unconsumed. Returns the number of bytes consumed.
size_t utf8_repair(std::string_view bytes, bool final, std::string& out);

}  // namespace nf
