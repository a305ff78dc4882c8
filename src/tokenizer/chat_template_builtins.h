// Chat templates: the builtins over runtime values: operators, attribute and item access, slicing,
// iteration, filters, tests, string/dict methods and the global functions transformers provides.
// Errors are nf::error "chat template line N: ...".
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/chat_template_value.h"

namespace nf::chat {

using kwargs = std::vector<std::pair<std::string, value>>;

value get_attr(const value& target, const std::string& name, int line);
value get_item(const value& target, const value& key, int line);
value slice_value(const value& target, std::optional<int64_t> start, std::optional<int64_t> stop,
                  std::optional<int64_t> step, int line);
// Items a for loop visits: list elements, dict keys, string characters; undefined gives none.
std::vector<value> iterate(const value& v, int line);
// op: + - * / // % ** ~ == != < <= > >= in notin
value binary_op(const std::string& op, const value& a, const value& b, int line);
value apply_filter(const std::string& name, const value& operand, const std::vector<value>& args, const kwargs& kw, int line);
bool apply_test(const std::string& name, const value& operand, const std::vector<value>& args, int line);
value call_method(const value& target, const std::string& name, const std::vector<value>& args, const kwargs& kw, int line);
bool is_global_function(const std::string& name);
value call_global_function(const std::string& name, const std::vector<value>& args, const kwargs& kw, int line,
                           const chat_clock& clock);

}  // namespace nf::chat
