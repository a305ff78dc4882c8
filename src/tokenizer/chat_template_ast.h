// Chat templates: the syntax tree the parser builds and the evaluator walks. Every node keeps the
// source line it started on, for error messages.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace nf::chat {

enum class expr_kind {
  literal,      // literal
  name,         // name
  list,         // args: items
  tuple,        // args: items
  dict,         // args: key0, value0, key1, value1, ...
  attr,         // args[0].name
  item,         // args[0][args[1]]
  slice,        // args[0][args[1]:args[2]:args[3]], absent parts are null
  call,         // args[0](args[1..], kwargs)
  filter,       // args[0] | name(args[1..], kwargs)
  test,         // args[0] is [not] name(args[1..])
  not_op,       // not args[0]
  neg,          // -args[0]
  pos,          // +args[0]
  binary,       // args[0] name args[1]: + - * / // % ** ~ == != < <= > >= in notin
  and_op,       // args[0] and args[1]
  or_op,        // args[0] or args[1]
  conditional,  // args[0] if args[1] else args[2] (args[2] may be null)
};

struct expr;
using expr_ptr = std::unique_ptr<expr>;

struct expr {
  expr_kind kind;
  int line = 0;
  nlohmann::ordered_json literal;
  std::string name;
  std::vector<expr_ptr> args;
  std::vector<std::pair<std::string, expr_ptr>> kwargs;
  bool negated = false;  // `is not`
};

enum class stmt_kind {
  text,       // text
  output,     // {{ value }}
  if_stmt,    // if value: body, else: else_body (elif nests an if_stmt in else_body)
  for_stmt,   // for targets in value [if condition]: body, else: else_body
  set,        // set targets = value, or set targets.attr = value (attr non-empty), or block set (body)
  macro,      // macro name(params, defaults): body
  call_block, // {% call %} is not supported; kept for the error message
  break_stmt,
  continue_stmt,
  block,      // a list of statements (generation, filter-less scope)
};

struct stmt;
using stmt_ptr = std::unique_ptr<stmt>;

struct stmt {
  stmt_kind kind;
  int line = 0;
  std::string text;
  std::string name;  // macro name
  std::string attr;  // set ns.attr
  std::vector<std::string> targets;
  expr_ptr value;
  expr_ptr condition;  // for ... if condition
  std::vector<std::string> params;
  std::vector<expr_ptr> defaults;  // parallel to params, null where none
  std::vector<stmt_ptr> body;
  std::vector<stmt_ptr> else_body;
};

}  // namespace nf::chat
