// Chat templates: the Jinja parser, tokens to a syntax tree.
#pragma once

#include <vector>

#include "tokenizer/chat_template_ast.h"
#include "tokenizer/chat_template_lexer.h"

namespace nf::chat {

// Throws nf::error "chat template line N: ..." on a syntax error or an unknown tag.
std::vector<stmt_ptr> parse_template(const std::vector<token>& tokens);

}  // namespace nf::chat
