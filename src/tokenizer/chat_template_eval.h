// Chat templates: the evaluator, walking the syntax tree over JSON values with Jinja's (Python's)
// semantics, and the builtin filters, tests, string/dict methods and global functions.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/chat_template_ast.h"
#include "tokenizer/chat_template_value.h"

namespace nf::chat {

std::string render_program(const std::vector<stmt_ptr>& program, const ojson& context, const chat_clock& clock);

}  // namespace nf::chat
