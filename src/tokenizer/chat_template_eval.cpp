// Chat templates: the evaluator (see chat_template_eval.h). Scoping follows Jinja: each for-loop
// iteration and each macro call has its own scope, `if` has none, and only namespaces carry values out.
#include "tokenizer/chat_template_eval.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "tokenizer/chat_template_builtins.h"
#include "tokenizer/chat_template_value.h"

namespace nf::chat {
namespace {

enum class flow { normal, break_loop, continue_loop };

using frame = std::vector<std::pair<std::string, value>>;

class evaluator {
 public:
  evaluator(const ojson& context, const chat_clock& clock)
      : context_(std::shared_ptr<const ojson>(&context, [](const ojson*) {})), clock_(clock) {
    if (!context.is_object() && !context.is_null()) fail("chat template: the context must be a JSON object");
    context_value_.k = value::kind::data;
    context_value_.data = context_;
    frames_.emplace_back();
  }

  std::string run(const std::vector<stmt_ptr>& program) {
    std::string out;
    if (exec(program, out) != flow::normal) fail("chat template: break or continue outside a loop");
    return out;
  }

 private:
  flow exec(const std::vector<stmt_ptr>& body, std::string& out) {
    for (const stmt_ptr& s : body) {
      flow f = exec_one(*s, out);
      if (f != flow::normal) return f;
    }
    return flow::normal;
  }

  flow exec_one(const stmt& s, std::string& out) {
    switch (s.kind) {
      case stmt_kind::text: out += s.text; return flow::normal;
      case stmt_kind::output: out += to_str(eval(*s.value)); return flow::normal;
      case stmt_kind::if_stmt: return exec(truthy(eval(*s.value)) ? s.body : s.else_body, out);
      case stmt_kind::for_stmt: exec_for(s, out); return flow::normal;
      case stmt_kind::set: exec_set(s); return flow::normal;
      case stmt_kind::macro: {
        value m = value::builtin(s.name);
        m.macro = &s;
        assign(s.name, std::move(m));
        return flow::normal;
      }
      case stmt_kind::break_stmt: return flow::break_loop;
      case stmt_kind::continue_stmt: return flow::continue_loop;
      case stmt_kind::block: return exec(s.body, out);
      case stmt_kind::call_block: fail("chat template line {}: call blocks are not supported", s.line);
    }
    return flow::normal;
  }

  void assign(const std::string& name, value v) {
    frame& f = frames_.back();
    for (auto& [k, old] : f) {
      if (k == name) {
        old = std::move(v);
        return;
      }
    }
    f.emplace_back(name, std::move(v));
  }

  value lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      for (const auto& [k, v] : *it) {
        if (k == name) return v;
      }
    }
    if (context_->is_object()) {
      auto found = context_->find(name);
      if (found != context_->end()) return value::child(context_value_, *found);
    }
    if (is_global_function(name)) return value::builtin(name);
    return value::undefined();
  }

  void unpack(const std::vector<std::string>& targets, const value& v, int line) {
    if (targets.size() == 1) {
      assign(targets[0], v);
      return;
    }
    if (!v.is_data() || !v.j().is_array() || v.j().size() != targets.size()) {
      fail("chat template line {}: cannot unpack {} into {} names", line, type_name(v), targets.size());
    }
    for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], value::child(v, v.j()[i]));
  }

  void exec_set(const stmt& s) {
    value v;
    if (s.value) {
      v = eval(*s.value);
    } else {
      std::string body;
      exec(s.body, body);
      v = value::of(std::move(body));
    }
    if (!s.attr.empty()) {
      value target = lookup(s.targets[0]);
      if (target.k != value::kind::ns) {
        fail("chat template line {}: cannot assign attribute '{}' of {} '{}' (only a namespace)", s.line, s.attr,
             type_name(target), s.targets[0]);
      }
      target.ns->set(s.attr, std::move(v));
      return;
    }
    unpack(s.targets, v, s.line);
  }

  void exec_for(const stmt& s, std::string& out) {
    value seq = eval(*s.value);
    std::vector<value> items = iterate(seq, s.line);
    if (s.condition) {
      // `for x in xs if cond`: filtered before the loop, so loop.index counts kept items.
      std::vector<value> kept;
      for (value& item : items) {
        frames_.emplace_back();
        unpack(s.targets, item, s.line);
        bool keep = truthy(eval(*s.condition));
        frames_.pop_back();
        if (keep) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      exec(s.else_body, out);
      return;
    }
    size_t n = items.size();
    for (size_t i = 0; i < n; ++i) {
      auto loop = std::make_shared<namespace_object>();
      auto num = [](size_t x) { return value::of(static_cast<int64_t>(x)); };
      loop->set("index", num(i + 1));
      loop->set("index0", num(i));
      loop->set("revindex", num(n - i));
      loop->set("revindex0", num(n - i - 1));
      loop->set("first", value::of(i == 0));
      loop->set("last", value::of(i + 1 == n));
      loop->set("length", num(n));
      loop->set("previtem", i > 0 ? items[i - 1] : value::undefined());
      loop->set("nextitem", i + 1 < n ? items[i + 1] : value::undefined());
      value loop_value;
      loop_value.k = value::kind::ns;
      loop_value.ns = std::move(loop);
      frames_.emplace_back();
      assign("loop", std::move(loop_value));
      unpack(s.targets, items[i], s.line);
      flow f = exec(s.body, out);
      frames_.pop_back();
      if (f == flow::break_loop) break;
    }
  }

  value eval(const expr& e) {
    switch (e.kind) {
      case expr_kind::literal: return value::of(e.literal);
      case expr_kind::name: return lookup(e.name);
      case expr_kind::list:
      case expr_kind::tuple: {
        ojson arr = ojson::array();
        for (const expr_ptr& a : e.args) arr.push_back(to_ojson(eval(*a)));
        return value::of(std::move(arr));
      }
      case expr_kind::dict: {
        ojson obj = ojson::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          value key = eval(*e.args[i]);
          if (!key.is_string()) fail("chat template line {}: dict keys must be strings", e.line);
          obj[key.j().get<std::string>()] = to_ojson(eval(*e.args[i + 1]));
        }
        return value::of(std::move(obj));
      }
      case expr_kind::attr: return get_attr(eval(*e.args[0]), e.name, e.line);
      case expr_kind::item: return get_item(eval(*e.args[0]), eval(*e.args[1]), e.line);
      case expr_kind::slice: {
        value target = eval(*e.args[0]);
        std::optional<int64_t> parts[3];
        for (int i = 0; i < 3; ++i) {
          if (!e.args[i + 1]) continue;
          value p = eval(*e.args[i + 1]);
          if (p.is_none()) continue;
          if (!p.is_data() || !p.j().is_number_integer()) fail("chat template line {}: slice indices must be integers", e.line);
          parts[i] = p.j().get<int64_t>();
        }
        return slice_value(target, parts[0], parts[1], parts[2], e.line);
      }
      case expr_kind::call: return eval_call(e);
      case expr_kind::filter: {
        value operand = eval(*e.args[0]);
        std::vector<value> args;
        for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
        kwargs kw;
        for (const auto& [k, a] : e.kwargs) kw.emplace_back(k, eval(*a));
        return apply_filter(e.name, operand, args, kw, e.line);
      }
      case expr_kind::test: {
        if (e.name == "defined" || e.name == "undefined") {
          bool defined = !eval(*e.args[0]).is_undefined();
          return value::of((e.name == "defined" ? defined : !defined) != e.negated);
        }
        value operand = eval(*e.args[0]);
        std::vector<value> args;
        for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
        return value::of(apply_test(e.name, operand, args, e.line) != e.negated);
      }
      case expr_kind::not_op: return value::of(!truthy(eval(*e.args[0])));
      case expr_kind::neg:
      case expr_kind::pos: {
        value v = eval(*e.args[0]);
        if (!v.is_number()) fail("chat template line {}: bad operand type for unary {}: {}", e.line, e.kind == expr_kind::neg ? '-' : '+', type_name(v));
        if (e.kind == expr_kind::pos) return v;
        if (v.j().is_number_float()) return value::of(-v.j().get<double>());
        return value::of(-v.j().get<int64_t>());
      }
      case expr_kind::and_op: {
        value left = eval(*e.args[0]);
        return truthy(left) ? eval(*e.args[1]) : left;
      }
      case expr_kind::or_op: {
        value left = eval(*e.args[0]);
        return truthy(left) ? left : eval(*e.args[1]);
      }
      case expr_kind::conditional: {
        if (truthy(eval(*e.args[1]))) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2]) : value::undefined();
      }
      case expr_kind::binary: return binary_op(e.name, eval(*e.args[0]), eval(*e.args[1]), e.line);
    }
    return value::undefined();
  }

  value eval_call(const expr& e) {
    const expr& callee = *e.args[0];
    std::vector<value> args;
    for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
    kwargs kw;
    for (const auto& [k, a] : e.kwargs) kw.emplace_back(k, eval(*a));
    if (callee.kind == expr_kind::attr) {
      value target = eval(*callee.args[0]);
      if (target.is_data() && (target.j().is_string() || target.j().is_object() || target.j().is_array())) {
        if (!(target.j().is_object() && target.j().contains(callee.name))) {
          return call_method(target, callee.name, args, kw, e.line);
        }
      }
      return call_value(get_attr(target, callee.name, e.line), args, kw, e.line, callee.name);
    }
    std::string what = callee.kind == expr_kind::name ? callee.name : "expression";
    return call_value(eval(callee), args, kw, e.line, what);
  }

  value call_value(const value& fn, const std::vector<value>& args, const kwargs& kw, int line, const std::string& what) {
    if (fn.k != value::kind::callable) {
      if (fn.is_undefined()) fail("chat template line {}: '{}' is undefined and cannot be called", line, what);
      fail("chat template line {}: '{}' is a {}, not a function", line, what, type_name(fn));
    }
    if (!fn.macro) return call_global_function(fn.fn_name, args, kw, line, clock_);
    const stmt& m = *fn.macro;
    if (args.size() > m.params.size()) fail("chat template line {}: macro '{}' takes {} arguments", line, m.name, m.params.size());
    std::vector<frame> saved;
    saved.swap(frames_);
    frames_.push_back(saved.front());  // macros see the template's top-level names
    frames_.emplace_back();
    for (size_t i = 0; i < m.params.size(); ++i) {
      value v;
      if (i < args.size()) {
        v = args[i];
      } else if (auto it = std::find_if(kw.begin(), kw.end(), [&](const auto& p) { return p.first == m.params[i]; }); it != kw.end()) {
        v = it->second;
      } else if (m.defaults[i]) {
        v = eval(*m.defaults[i]);
      }
      assign(m.params[i], std::move(v));
    }
    std::string out;
    exec(m.body, out);
    frames_.swap(saved);
    return value::of(std::move(out));
  }

  std::shared_ptr<const ojson> context_;
  value context_value_;
  const chat_clock& clock_;
  std::vector<frame> frames_;
};

}  // namespace

std::string render_program(const std::vector<stmt_ptr>& program, const ojson& context, const chat_clock& clock) {
  return evaluator(context, clock).run(program);
}

}  // namespace nf::chat
