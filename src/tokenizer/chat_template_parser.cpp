// Chat templates: the Jinja parser (see chat_template_parser.h). Operator precedence follows Jinja's
// own parser: conditional < or < and < not < comparison < + - < ~ < * / // % < ** < unary, with
// filters, tests, calls, attributes and subscripts binding tightest.
#include "tokenizer/chat_template_parser.h"

#include <initializer_list>
#include <string_view>

#include "core/error.h"

namespace nf::chat {
namespace {

class parser {
 public:
  explicit parser(const std::vector<token>& tokens) : toks_(tokens) {}

  std::vector<stmt_ptr> run() {
    std::vector<stmt_ptr> body = parse_body({});
    if (peek().kind != token_kind::eof) fail("chat template line {}: unexpected tag", peek().line);
    return body;
  }

 private:
  const token& peek(size_t ahead = 0) const {
    size_t i = std::min(pos_ + ahead, toks_.size() - 1);
    return toks_[i];
  }
  const token& next() {
    const token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool is_op(std::string_view op, size_t ahead = 0) const {
    return peek(ahead).kind == token_kind::op && peek(ahead).value == op;
  }
  bool is_name(std::string_view n, size_t ahead = 0) const {
    return peek(ahead).kind == token_kind::name && peek(ahead).value == n;
  }
  [[noreturn]] void unexpected(std::string_view wanted) const {
    const token& t = peek();
    std::string got = t.kind == token_kind::eof ? "end of template"
                      : t.kind == token_kind::block_close ? "'%}'"
                      : t.kind == token_kind::expr_close ? "'}}'"
                      : "'" + t.value + "'";
    fail("chat template line {}: expected {}, got {}", t.line, wanted, got);
  }
  void expect_op(std::string_view op) {
    if (!is_op(op)) unexpected("'" + std::string(op) + "'");
    next();
  }
  std::string expect_name() {
    if (peek().kind != token_kind::name) unexpected("a name");
    return next().value;
  }
  void expect_block_close() {
    if (peek().kind != token_kind::block_close) unexpected("'%}'");
    next();
  }

  // Statements until a `{% <one of end_tags> %}` (not consumed; the tag name is left at peek(1)).
  std::vector<stmt_ptr> parse_body(std::initializer_list<std::string_view> end_tags) {
    std::vector<stmt_ptr> out;
    while (true) {
      const token& t = peek();
      if (t.kind == token_kind::eof) {
        if (end_tags.size() != 0) {
          fail("chat template line {}: missing '{{% {} %}}' before the end of the template", t.line, *end_tags.begin());
        }
        return out;
      }
      if (t.kind == token_kind::text) {
        auto s = std::make_unique<stmt>();
        s->kind = stmt_kind::text;
        s->line = t.line;
        s->text = t.value;
        out.push_back(std::move(s));
        next();
      } else if (t.kind == token_kind::expr_open) {
        next();
        auto s = std::make_unique<stmt>();
        s->kind = stmt_kind::output;
        s->line = t.line;
        s->value = parse_expr();
        if (peek().kind != token_kind::expr_close) unexpected("'}}'");
        next();
        out.push_back(std::move(s));
      } else if (t.kind == token_kind::block_open) {
        const token& tag = peek(1);
        if (tag.kind != token_kind::name) fail("chat template line {}: expected a tag name", tag.line);
        for (std::string_view end : end_tags) {
          if (tag.value == end) return out;
        }
        next();
        out.push_back(parse_statement());
      } else {
        fail("chat template line {}: unexpected token", t.line);
      }
    }
  }

  // Consumes `{% name %}`.
  void expect_end_tag(std::string_view name) {
    if (peek().kind != token_kind::block_open || !is_name(name, 1)) unexpected("'{% " + std::string(name) + " %}'");
    next();
    next();
    expect_block_close();
  }

  stmt_ptr parse_statement() {
    const token& tag = next();
    auto s = std::make_unique<stmt>();
    s->line = tag.line;
    const std::string& n = tag.value;
    if (n == "if") {
      parse_if_rest(*s);
    } else if (n == "for") {
      s->kind = stmt_kind::for_stmt;
      s->targets.push_back(expect_name());
      while (is_op(",")) {
        next();
        s->targets.push_back(expect_name());
      }
      if (!is_name("in")) unexpected("'in'");
      next();
      s->value = parse_or_test();  // no conditional here: `if` filters the loop
      if (is_name("if")) {
        next();
        s->condition = parse_expr();
      }
      if (is_name("recursive")) fail("chat template line {}: recursive for loops are not supported", tag.line);
      expect_block_close();
      s->body = parse_body({"endfor", "else"});
      if (is_name("else", 1)) {
        next();
        next();
        expect_block_close();
        s->else_body = parse_body({"endfor"});
      }
      expect_end_tag("endfor");
    } else if (n == "set") {
      s->kind = stmt_kind::set;
      s->targets.push_back(expect_name());
      if (is_op(".")) {
        next();
        s->attr = expect_name();
      } else {
        while (is_op(",")) {
          next();
          s->targets.push_back(expect_name());
        }
      }
      if (is_op("=")) {
        next();
        s->value = parse_tuple_or_expr();
        expect_block_close();
      } else {
        if (s->targets.size() != 1 || !s->attr.empty()) unexpected("'='");
        expect_block_close();
        s->body = parse_body({"endset"});
        expect_end_tag("endset");
      }
    } else if (n == "macro") {
      s->kind = stmt_kind::macro;
      s->name = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        s->params.push_back(expect_name());
        if (is_op("=")) {
          next();
          s->defaults.push_back(parse_expr());
        } else {
          s->defaults.push_back(nullptr);
        }
        if (!is_op(",")) break;
        next();
      }
      expect_op(")");
      expect_block_close();
      s->body = parse_body({"endmacro"});
      expect_end_tag("endmacro");
    } else if (n == "break" || n == "continue") {
      s->kind = n == "break" ? stmt_kind::break_stmt : stmt_kind::continue_stmt;
      expect_block_close();
    } else if (n == "generation") {
      // transformers' marker for assistant tokens: renders its body unchanged.
      s->kind = stmt_kind::block;
      expect_block_close();
      s->body = parse_body({"endgeneration"});
      expect_end_tag("endgeneration");
    } else {
      fail("chat template line {}: unsupported tag '{}'", tag.line, n);
    }
    return s;
  }

  // After `if` / `elif`: condition, body, then elif/else/endif.
  void parse_if_rest(stmt& s) {
    s.kind = stmt_kind::if_stmt;
    s.value = parse_expr();
    expect_block_close();
    s.body = parse_body({"endif", "elif", "else"});
    if (is_name("elif", 1)) {
      next();
      const token& t = next();
      auto nested = std::make_unique<stmt>();
      nested->line = t.line;
      parse_if_rest(*nested);  // consumes up to and including endif
      s.else_body.push_back(std::move(nested));
      return;
    }
    if (is_name("else", 1)) {
      next();
      next();
      expect_block_close();
      s.else_body = parse_body({"endif"});
    }
    expect_end_tag("endif");
  }

  expr_ptr make(expr_kind kind, int line) {
    auto e = std::make_unique<expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // `a, b` without brackets (set targets' values): a tuple.
  expr_ptr parse_tuple_or_expr() {
    int line = peek().line;
    expr_ptr first = parse_expr();
    if (!is_op(",")) return first;
    auto t = make(expr_kind::tuple, line);
    t->args.push_back(std::move(first));
    while (is_op(",")) {
      next();
      t->args.push_back(parse_expr());
    }
    return t;
  }

  expr_ptr parse_expr() {
    int line = peek().line;
    expr_ptr value = parse_or_test();
    while (is_name("if")) {
      next();
      auto c = make(expr_kind::conditional, line);
      c->args.push_back(std::move(value));
      c->args.push_back(parse_or_test());
      if (is_name("else")) {
        next();
        c->args.push_back(parse_expr());
      } else {
        c->args.push_back(nullptr);
      }
      value = std::move(c);
    }
    return value;
  }

  expr_ptr parse_or_test() {
    expr_ptr left = parse_and();
    while (is_name("or")) {
      int line = next().line;
      auto e = make(expr_kind::or_op, line);
      e->args.push_back(std::move(left));
      e->args.push_back(parse_and());
      left = std::move(e);
    }
    return left;
  }

  expr_ptr parse_and() {
    expr_ptr left = parse_not();
    while (is_name("and")) {
      int line = next().line;
      auto e = make(expr_kind::and_op, line);
      e->args.push_back(std::move(left));
      e->args.push_back(parse_not());
      left = std::move(e);
    }
    return left;
  }

  expr_ptr parse_not() {
    if (is_name("not")) {
      int line = next().line;
      auto e = make(expr_kind::not_op, line);
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  expr_ptr binary(std::string op, expr_ptr left, expr_ptr right, int line) {
    auto e = make(expr_kind::binary, line);
    e->name = std::move(op);
    e->args.push_back(std::move(left));
    e->args.push_back(std::move(right));
    return e;
  }

  expr_ptr parse_compare() {
    expr_ptr left = parse_math1();
    // Chains (a < b < c) are rare in templates; they evaluate left to right as nested comparisons.
    while (true) {
      int line = peek().line;
      std::string op;
      if (peek().kind == token_kind::op &&
          (peek().value == "==" || peek().value == "!=" || peek().value == "<" || peek().value == "<=" ||
           peek().value == ">" || peek().value == ">=")) {
        op = next().value;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "notin";
      } else {
        return left;
      }
      left = binary(op, std::move(left), parse_math1(), line);
    }
  }

  expr_ptr parse_math1() {
    expr_ptr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const token& t = next();
      left = binary(t.value, std::move(left), parse_concat(), t.line);
    }
    return left;
  }

  expr_ptr parse_concat() {
    expr_ptr left = parse_math2();
    while (is_op("~")) {
      const token& t = next();
      left = binary("~", std::move(left), parse_math2(), t.line);
    }
    return left;
  }

  expr_ptr parse_math2() {
    expr_ptr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const token& t = next();
      left = binary(t.value, std::move(left), parse_pow(), t.line);
    }
    return left;
  }

  expr_ptr parse_pow() {
    expr_ptr left = parse_unary(true);
    while (is_op("**")) {
      const token& t = next();
      left = binary("**", std::move(left), parse_unary(true), t.line);
    }
    return left;
  }

  expr_ptr parse_unary(bool with_filter) {
    expr_ptr node;
    if (is_op("-") || is_op("+")) {
      const token& t = next();
      node = make(t.value == "-" ? expr_kind::neg : expr_kind::pos, t.line);
      node->args.push_back(parse_unary(false));
    } else {
      node = parse_postfix(parse_primary());
    }
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  expr_ptr parse_primary() {
    const token& t = peek();
    switch (t.kind) {
      case token_kind::name: {
        next();
        auto e = make(expr_kind::literal, t.line);
        if (t.value == "true" || t.value == "True") e->literal = true;
        else if (t.value == "false" || t.value == "False") e->literal = false;
        else if (t.value == "none" || t.value == "None") e->literal = nullptr;
        else {
          e->kind = expr_kind::name;
          e->name = t.value;
        }
        return e;
      }
      case token_kind::string: {
        auto e = make(expr_kind::literal, t.line);
        std::string s;
        while (peek().kind == token_kind::string) s += next().value;  // adjacent strings concatenate
        e->literal = std::move(s);
        return e;
      }
      case token_kind::integer: {
        next();
        auto e = make(expr_kind::literal, t.line);
        try {
          e->literal = std::stoll(t.value);
        } catch (const std::exception&) {
          fail("chat template line {}: integer literal {} out of range", t.line, t.value);
        }
        return e;
      }
      case token_kind::floating: {
        next();
        auto e = make(expr_kind::literal, t.line);
        e->literal = std::stod(t.value);
        return e;
      }
      case token_kind::op:
        if (t.value == "(") {
          next();
          if (is_op(")")) {
            next();
            return make(expr_kind::tuple, t.line);
          }
          expr_ptr inner = parse_expr();
          if (is_op(",")) {
            auto tup = make(expr_kind::tuple, t.line);
            tup->args.push_back(std::move(inner));
            while (is_op(",")) {
              next();
              if (is_op(")")) break;
              tup->args.push_back(parse_expr());
            }
            inner = std::move(tup);
          }
          expect_op(")");
          return inner;
        }
        if (t.value == "[") {
          next();
          auto e = make(expr_kind::list, t.line);
          while (!is_op("]")) {
            e->args.push_back(parse_expr());
            if (!is_op(",")) break;
            next();
          }
          expect_op("]");
          return e;
        }
        if (t.value == "{") {
          next();
          auto e = make(expr_kind::dict, t.line);
          while (!is_op("}")) {
            e->args.push_back(parse_expr());
            expect_op(":");
            e->args.push_back(parse_expr());
            if (!is_op(",")) break;
            next();
          }
          expect_op("}");
          return e;
        }
        break;
      default:
        break;
    }
    unexpected("an expression");
  }

  expr_ptr parse_postfix(expr_ptr node) {
    while (true) {
      if (is_op(".")) {
        int line = next().line;
        auto e = make(expr_kind::attr, line);
        if (peek().kind == token_kind::integer) {
          e->kind = expr_kind::item;
          e->args.push_back(std::move(node));
          auto idx = make(expr_kind::literal, line);
          idx->literal = std::stoll(next().value);
          e->args.push_back(std::move(idx));
        } else {
          e->args.push_back(std::move(node));
          e->name = expect_name();
        }
        node = std::move(e);
      } else if (is_op("[")) {
        int line = next().line;
        node = parse_subscript(std::move(node), line);
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  expr_ptr parse_subscript(expr_ptr target, int line) {
    expr_ptr parts[3];
    int num_colons = 0;
    for (int i = 0; i < 3; ++i) {
      if (!is_op(":") && !is_op("]")) parts[i] = parse_expr();
      if (i < 2 && is_op(":")) {
        next();
        ++num_colons;
      } else {
        break;
      }
    }
    expect_op("]");
    if (num_colons == 0) {
      if (!parts[0]) fail("chat template line {}: empty subscript", line);
      auto e = make(expr_kind::item, line);
      e->args.push_back(std::move(target));
      e->args.push_back(std::move(parts[0]));
      return e;
    }
    auto e = make(expr_kind::slice, line);
    e->args.push_back(std::move(target));
    for (auto& p : parts) e->args.push_back(std::move(p));
    return e;
  }

  // Arguments in parentheses: positional then name=value.
  void parse_args(expr& e) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().kind == token_kind::name && is_op("=", 1)) {
        std::string key = next().value;
        next();
        e.kwargs.emplace_back(std::move(key), parse_expr());
      } else {
        if (!e.kwargs.empty()) fail("chat template line {}: positional argument after keyword argument", peek().line);
        e.args.push_back(parse_expr());
      }
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
  }

  expr_ptr parse_call(expr_ptr callee) {
    auto e = make(expr_kind::call, callee->line);
    e->args.push_back(std::move(callee));
    parse_args(*e);
    return e;
  }

  expr_ptr parse_filter_expr(expr_ptr node) {
    while (true) {
      if (is_op("|")) {
        int line = next().line;
        auto e = make(expr_kind::filter, line);
        e->name = expect_name();
        e->args.push_back(std::move(node));
        if (is_op("(")) parse_args(*e);
        node = std::move(e);
      } else if (is_name("is")) {
        int line = next().line;
        auto e = make(expr_kind::test, line);
        if (is_name("not")) {
          next();
          e->negated = true;
        }
        e->name = expect_name();
        e->args.push_back(std::move(node));
        if (is_op("(")) {
          parse_args(*e);
        } else if (starts_test_argument()) {
          e->args.push_back(parse_postfix(parse_primary()));
        }
        node = std::move(e);
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  // `x is equalto 3`, `x is sameas none`: a test may take one argument without parentheses.
  bool starts_test_argument() const {
    const token& t = peek();
    if (t.kind == token_kind::string || t.kind == token_kind::integer || t.kind == token_kind::floating) return true;
    if (t.kind == token_kind::name) {
      return t.value != "else" && t.value != "or" && t.value != "and" && t.value != "if" && t.value != "is" &&
             t.value != "in" && t.value != "not";
    }
    return t.kind == token_kind::op && (t.value == "[" || t.value == "{");
  }

  const std::vector<token>& toks_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<stmt_ptr> parse_template(const std::vector<token>& tokens) { return parser(tokens).run(); }

}  // namespace nf::chat
