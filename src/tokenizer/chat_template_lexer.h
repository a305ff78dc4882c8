// Chat templates: the Jinja lexer. Splits template source into text and tag tokens, applying the
// whitespace rules transformers renders with (trim_blocks, lstrip_blocks, `-` markers, one trailing
// newline dropped), and tokenizes the expressions inside tags.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace nf::chat {

enum class token_kind {
  text,         // literal template text (already whitespace-adjusted)
  expr_open,    // {{
  expr_close,   // }}
  block_open,   // {%
  block_close,  // %}
  name,
  string,       // value holds the unescaped string
  integer,
  floating,
  op,           // punctuation and operators: ( ) [ ] { } , . : | ~ + - * / // % ** = == != < <= > >=
  eof,
};

struct token {
  token_kind kind;
  std::string value;
  int line;
};

// Throws nf::error with the line number on an unterminated tag, comment, string or raw block.
std::vector<token> tokenize(std::string_view source);

}  // namespace nf::chat
