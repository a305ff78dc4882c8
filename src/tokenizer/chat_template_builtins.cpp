// Chat templates: builtins (see chat_template_builtins.h). Behaviour follows Python and Jinja 3 as
// transformers configures it; strings are indexed and sliced by code point.
#include "tokenizer/chat_template_builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "core/error.h"

namespace nf::chat {
namespace {

// Byte offsets of each code point start, plus the end.
std::vector<size_t> code_point_offsets(const std::string& s) {
  std::vector<size_t> offs;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) offs.push_back(i);
  }
  offs.push_back(s.size());
  return offs;
}

bool is_py_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || (c >= 0x1c && c <= 0x1f); }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
char to_upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c; }
char to_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

std::string upper(std::string s) {
  for (char& c : s) c = to_upper(c);
  return s;
}
std::string lower(std::string s) {
  for (char& c : s) c = to_lower(c);
  return s;
}
std::string title(const std::string& s) {
  std::string out = s;
  bool prev_letter = false;
  for (char& c : out) {
    bool letter = is_alpha(c) || (static_cast<unsigned char>(c) >= 0x80);
    if (is_alpha(c)) c = prev_letter ? to_lower(c) : to_upper(c);
    prev_letter = letter;
  }
  return out;
}
std::string capitalize(const std::string& s) {
  std::string out = lower(s);
  if (!out.empty()) out[0] = to_upper(out[0]);
  return out;
}

// Python str.strip family; chars empty means whitespace.
std::string strip(const std::string& s, const std::optional<std::string>& chars, bool left, bool right) {
  auto drop = [&](char c) { return chars ? chars->find(c) != std::string::npos : is_py_space(c); };
  size_t b = 0, e = s.size();
  if (left) while (b < e && drop(s[b])) ++b;
  if (right) while (e > b && drop(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {
    // Python inserts `to` between every character (and at both ends).
    std::vector<size_t> offs = code_point_offsets(s);
    int64_t done = 0;
    for (size_t i = 0; i + 1 < offs.size(); ++i) {
      if (count < 0 || done < count) { out += to; ++done; }
      out += s.substr(offs[i], offs[i + 1] - offs[i]);
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t f = s.find(from, pos);
    if (f == std::string::npos) break;
    out += s.substr(pos, f - pos);
    out += to;
    pos = f + from.size();
    ++done;
  }
  out += s.substr(pos);
  return out;
}

std::vector<std::string> split(const std::string& s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (!sep) {
    size_t i = 0;
    while (true) {
      while (i < s.size() && is_py_space(s[i])) ++i;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        out.push_back(strip(s.substr(i), std::nullopt, false, true));
        break;
      }
      size_t j = i;
      while (j < s.size() && !is_py_space(s[j])) ++j;
      out.push_back(s.substr(i, j - i));
      i = j;
    }
    return out;
  }
  if (sep->empty()) fail("chat template: split() separator is empty");
  size_t pos = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    size_t f = s.find(*sep, pos);
    if (f == std::string::npos) break;
    out.push_back(s.substr(pos, f - pos));
    pos = f + sep->size();
  }
  out.push_back(s.substr(pos));
  return out;
}

const value* find_kw(const kwargs& kw, const std::string& name) {
  for (const auto& [k, v] : kw) {
    if (k == name) return &v;
  }
  return nullptr;
}

// Positional argument i, else keyword `name`, else null.
const value* arg(const std::vector<value>& args, const kwargs& kw, size_t i, const std::string& name) {
  if (i < args.size()) return &args[i];
  return find_kw(kw, name);
}

std::string need_string(const value* v, const char* what, int line) {
  if (!v || !v->is_string()) fail("chat template line {}: {} needs a string argument", line, what);
  return v->j().get<std::string>();
}

std::optional<std::string> opt_string(const value* v, const char* what, int line) {
  if (!v || v->is_none() || v->is_undefined()) return std::nullopt;
  return need_string(v, what, line);
}

int64_t need_int(const value* v, const char* what, int line) {
  if (!v || !v->is_data() || !v->j().is_number_integer()) fail("chat template line {}: {} needs an integer argument", line, what);
  return v->j().get<int64_t>();
}

double num(const value& v) { return v.j().is_boolean() ? (v.j().get<bool>() ? 1.0 : 0.0) : v.j().get<double>(); }
bool is_int(const value& v) { return v.is_data() && (v.j().is_number_integer() || v.j().is_boolean()); }
int64_t int_of(const value& v) { return v.j().is_boolean() ? (v.j().get<bool>() ? 1 : 0) : v.j().get<int64_t>(); }
bool is_numeric(const value& v) { return v.is_data() && (v.j().is_number() || v.j().is_boolean()); }

[[noreturn]] void bad_operands(const std::string& op, const value& a, const value& b, int line) {
  fail("chat template line {}: unsupported operand types for {}: {} and {}", line, op, type_name(a), type_name(b));
}

value to_list(const value& v, int line) {
  ojson arr = ojson::array();
  for (const value& item : iterate(v, line)) arr.push_back(to_ojson(item));
  return value::of(std::move(arr));
}

// Python ordering for sort/min/max: numbers by value, strings bytewise.
bool less_than(const value& a, const value& b, int line) {
  if (is_numeric(a) && is_numeric(b)) return num(a) < num(b);
  if (a.is_string() && b.is_string()) return a.j().get_ref<const std::string&>() < b.j().get_ref<const std::string&>();
  bad_operands("<", a, b, line);
}

value attribute_path(const value& item, const std::string& path, int line) {
  value v = item;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t dot = path.find('.', pos);
    std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (v.is_undefined()) return v;
    if (!part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      v = get_item(v, value::of(std::stoll(part)), line);
    } else {
      v = get_attr(v, part, line);
    }
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return v;
}

}  // namespace

value get_attr(const value& target, const std::string& name, int line) {
  if (target.is_undefined()) fail("chat template line {}: cannot read attribute '{}' of an undefined value", line, name);
  if (target.k == value::kind::ns) {
    const value* v = target.ns->find(name);
    return v ? *v : value::undefined();
  }
  if (target.is_data() && target.j().is_object()) {
    auto it = target.j().find(name);
    if (it != target.j().end()) return value::child(target, *it);
  }
  return value::undefined();
}

value get_item(const value& target, const value& key, int line) {
  if (target.is_undefined()) fail("chat template line {}: cannot index an undefined value", line);
  if (target.k == value::kind::ns) {
    if (!key.is_string()) return value::undefined();
    return get_attr(target, key.j().get<std::string>(), line);
  }
  if (!target.is_data()) return value::undefined();
  const ojson& t = target.j();
  if (t.is_object()) {
    if (!key.is_string()) return value::undefined();
    auto it = t.find(key.j().get_ref<const std::string&>());
    return it == t.end() ? value::undefined() : value::child(target, *it);
  }
  if (t.is_array() || t.is_string()) {
    if (!is_int(key)) {
      if (key.is_string()) return value::undefined();
      fail("chat template line {}: {} indices must be integers, not {}", line, type_name(target), type_name(key));
    }
    int64_t i = int_of(key);
    if (t.is_array()) {
      int64_t n = static_cast<int64_t>(t.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return value::undefined();
      return value::child(target, t[static_cast<size_t>(i)]);
    }
    const std::string& s = t.get_ref<const std::string&>();
    std::vector<size_t> offs = code_point_offsets(s);
    int64_t n = static_cast<int64_t>(offs.size()) - 1;
    if (i < 0) i += n;
    if (i < 0 || i >= n) return value::undefined();
    return value::of(s.substr(offs[static_cast<size_t>(i)], offs[static_cast<size_t>(i) + 1] - offs[static_cast<size_t>(i)]));
  }
  return value::undefined();
}

value slice_value(const value& target, std::optional<int64_t> start, std::optional<int64_t> stop,
                  std::optional<int64_t> step, int line) {
  if (!target.is_data() || !(target.j().is_array() || target.j().is_string())) {
    fail("chat template line {}: cannot slice {}", line, type_name(target));
  }
  const ojson& t = target.j();
  std::vector<size_t> offs;
  int64_t n;
  if (t.is_string()) {
    offs = code_point_offsets(t.get_ref<const std::string&>());
    n = static_cast<int64_t>(offs.size()) - 1;
  } else {
    n = static_cast<int64_t>(t.size());
  }
  int64_t st = step.value_or(1);
  if (st == 0) fail("chat template line {}: slice step cannot be zero", line);
  // Python's slice.indices().
  auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) x += n;
    if (st > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  int64_t b = clamp(start, st > 0 ? 0 : n - 1);
  int64_t e = clamp(stop, st > 0 ? n : -1);
  std::vector<int64_t> idx;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) idx.push_back(i);
  if (t.is_string()) {
    const std::string& s = t.get_ref<const std::string&>();
    std::string out;
    if (st == 1) return value::of(b < e ? s.substr(offs[b], offs[e] - offs[b]) : std::string());
    for (int64_t i : idx) out += s.substr(offs[i], offs[i + 1] - offs[i]);
    return value::of(std::move(out));
  }
  ojson arr = ojson::array();
  for (int64_t i : idx) arr.push_back(t[static_cast<size_t>(i)]);
  return value::of(std::move(arr));
}

std::vector<value> iterate(const value& v, int line) {
  std::vector<value> out;
  if (v.is_undefined()) return out;
  if (v.k == value::kind::ns) fail("chat template line {}: a namespace is not iterable", line);
  if (!v.is_data()) fail("chat template line {}: {} is not iterable", line, type_name(v));
  const ojson& j = v.j();
  if (j.is_array()) {
    out.reserve(j.size());
    for (const auto& e : j) out.push_back(value::child(v, e));
  } else if (j.is_object()) {
    for (const auto& [k, e] : j.items()) out.push_back(value::of(k));
  } else if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    std::vector<size_t> offs = code_point_offsets(s);
    for (size_t i = 0; i + 1 < offs.size(); ++i) out.push_back(value::of(s.substr(offs[i], offs[i + 1] - offs[i])));
  } else {
    fail("chat template line {}: {} is not iterable", line, type_name(v));
  }
  return out;
}

value binary_op(const std::string& op, const value& a, const value& b, int line) {
  if (op == "~") return value::of(to_str(a) + to_str(b));
  if (op == "==") return value::of(equals(a, b));
  if (op == "!=") return value::of(!equals(a, b));
  if (op == "in" || op == "notin") {
    bool found = false;
    if (b.is_undefined()) {
      found = false;
    } else if (b.k == value::kind::ns) {
      found = a.is_string() && b.ns->find(a.j().get<std::string>()) != nullptr;
    } else if (b.is_string()) {
      if (!a.is_string()) fail("chat template line {}: 'in <string>' needs a string on the left, not {}", line, type_name(a));
      found = b.j().get_ref<const std::string&>().find(a.j().get_ref<const std::string&>()) != std::string::npos;
    } else if (b.is_data() && b.j().is_object()) {
      found = a.is_string() && b.j().contains(a.j().get_ref<const std::string&>());
    } else if (b.is_data() && b.j().is_array()) {
      for (const auto& e : b.j()) {
        if (equals(a, value::child(b, e))) {
          found = true;
          break;
        }
      }
    } else {
      fail("chat template line {}: {} is not a container for 'in'", line, type_name(b));
    }
    return value::of(op == "in" ? found : !found);
  }
  if (op == "<" || op == "<=" || op == ">" || op == ">=") {
    bool lt = less_than(a, b, line), gt = less_than(b, a, line);
    if (op == "<") return value::of(lt);
    if (op == ">") return value::of(gt);
    if (op == "<=") return value::of(!gt);
    return value::of(!lt);
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) return value::of(a.j().get<std::string>() + b.j().get_ref<const std::string&>());
    if (a.is_data() && b.is_data() && a.j().is_array() && b.j().is_array()) {
      ojson arr = a.j();
      for (const auto& e : b.j()) arr.push_back(e);
      return value::of(std::move(arr));
    }
  }
  if (op == "*" && ((a.is_string() && is_int(b)) || (is_int(a) && b.is_string()))) {
    const value& s = a.is_string() ? a : b;
    int64_t n = int_of(a.is_string() ? b : a);
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += s.j().get_ref<const std::string&>();
    return value::of(std::move(out));
  }
  if (!is_numeric(a) || !is_numeric(b)) bad_operands(op, a, b, line);
  bool ints = is_int(a) && is_int(b);
  if (op == "+") return ints ? value::of(int_of(a) + int_of(b)) : value::of(num(a) + num(b));
  if (op == "-") return ints ? value::of(int_of(a) - int_of(b)) : value::of(num(a) - num(b));
  if (op == "*") return ints ? value::of(int_of(a) * int_of(b)) : value::of(num(a) * num(b));
  if (op == "/") {
    if (num(b) == 0) fail("chat template line {}: division by zero", line);
    return value::of(num(a) / num(b));
  }
  if (op == "//" || op == "%") {
    if (num(b) == 0) fail("chat template line {}: division by zero", line);
    if (ints) {
      int64_t x = int_of(a), y = int_of(b);
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {
        q -= 1;
        r += y;
      }
      return value::of(op == "//" ? q : r);
    }
    double q = std::floor(num(a) / num(b));
    return value::of(op == "//" ? q : num(a) - q * num(b));
  }
  if (op == "**") {
    if (ints && int_of(b) >= 0) {
      int64_t r = 1;
      for (int64_t i = 0; i < int_of(b); ++i) r *= int_of(a);
      return value::of(r);
    }
    return value::of(std::pow(num(a), num(b)));
  }
  fail("chat template line {}: unsupported operator '{}'", line, op);
}

bool apply_test(const std::string& name, const value& v, const std::vector<value>& args, int line) {
  auto other = [&]() -> const value& {
    if (args.empty()) fail("chat template line {}: test '{}' needs an argument", line, name);
    return args[0];
  };
  const bool data = v.is_data();
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return data && (v.j().is_number() || v.j().is_boolean());
  if (name == "integer") return data && v.j().is_number_integer();
  if (name == "float") return data && v.j().is_number_float();
  if (name == "boolean") return data && v.j().is_boolean();
  if (name == "true") return data && v.j().is_boolean() && v.j().get<bool>();
  if (name == "false") return data && v.j().is_boolean() && !v.j().get<bool>();
  if (name == "mapping") return data && v.j().is_object();
  if (name == "iterable") return v.is_undefined() || (data && (v.j().is_array() || v.j().is_object() || v.j().is_string()));
  if (name == "sequence") return data && (v.j().is_array() || v.j().is_object() || v.j().is_string());
  if (name == "callable") return v.k == value::kind::callable;
  if (name == "lower") return v.is_string() && lower(v.j().get<std::string>()) == v.j().get<std::string>();
  if (name == "upper") return v.is_string() && upper(v.j().get<std::string>()) == v.j().get<std::string>();
  if (name == "odd" || name == "even") {
    if (!is_int(v)) fail("chat template line {}: test '{}' needs an integer", line, name);
    return (((int_of(v) % 2) + 2) % 2 == 1) == (name == "odd");
  }
  if (name == "divisibleby") {
    if (!is_int(v) || !is_int(other()) || int_of(other()) == 0) fail("chat template line {}: bad divisibleby", line);
    return int_of(v) % int_of(other()) == 0;
  }
  if (name == "equalto" || name == "eq" || name == "==") return equals(v, other());
  if (name == "ne" || name == "!=") return !equals(v, other());
  if (name == "sameas") return equals(v, other()) && (v.is_none() || (data && v.j().is_boolean()));
  if (name == "lt" || name == "lessthan" || name == "<") return binary_op("<", v, other(), line).j().get<bool>();
  if (name == "le" || name == "<=") return binary_op("<=", v, other(), line).j().get<bool>();
  if (name == "gt" || name == "greaterthan" || name == ">") return binary_op(">", v, other(), line).j().get<bool>();
  if (name == "ge" || name == ">=") return binary_op(">=", v, other(), line).j().get<bool>();
  if (name == "in") return binary_op("in", v, other(), line).j().get<bool>();
  fail("chat template line {}: unknown test '{}'", line, name);
}

value apply_filter(const std::string& name, const value& v, const std::vector<value>& args, const kwargs& kw, int line) {
  auto need_str_operand = [&]() -> std::string {
    if (v.is_string()) return v.j().get<std::string>();
    return to_str(v);
  };
  if (name == "safe" || name == "e" || name == "escape" || name == "forceescape") {
    if (name == "safe") return v;
    std::string s = need_str_operand(), out;
    for (char c : s) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
      }
    }
    return value::of(std::move(out));
  }
  if (name == "trim") return value::of(strip(need_str_operand(), opt_string(arg(args, kw, 0, "chars"), "trim", line), true, true));
  if (name == "upper") return value::of(upper(need_str_operand()));
  if (name == "lower") return value::of(lower(need_str_operand()));
  if (name == "title") return value::of(title(need_str_operand()));
  if (name == "capitalize") return value::of(capitalize(need_str_operand()));
  if (name == "string") return v.is_string() ? v : value::of(to_str(v));
  if (name == "length" || name == "count") {
    if (v.is_undefined()) return value::of(int64_t{0});
    if (v.k == value::kind::ns) return value::of(static_cast<int64_t>(v.ns->attrs.size()));
    if (v.is_string()) return value::of(static_cast<int64_t>(code_point_offsets(v.j().get<std::string>()).size() - 1));
    if (v.is_data() && (v.j().is_array() || v.j().is_object())) return value::of(static_cast<int64_t>(v.j().size()));
    fail("chat template line {}: {} has no length", line, type_name(v));
  }
  if (name == "tojson") {
    const value* indent = arg(args, kw, 0, "indent");
    int n = 0;
    if (indent && !indent->is_none()) n = static_cast<int>(need_int(indent, "tojson indent", line));
    return value::of(to_json_text(v, n));
  }
  if (name == "int") {
    int64_t dflt = 0;
    if (const value* d = arg(args, kw, 0, "default")) dflt = need_int(d, "int default", line);
    if (is_int(v)) return value::of(int_of(v));
    if (v.is_number()) return value::of(static_cast<int64_t>(v.j().get<double>()));
    if (v.is_string()) {
      std::string s = strip(v.j().get<std::string>(), std::nullopt, true, true);
      try {
        size_t used = 0;
        int64_t x = std::stoll(s, &used, 10);
        if (used == s.size()) return value::of(x);
        double d = std::stod(s, &used);
        if (used == s.size()) return value::of(static_cast<int64_t>(d));
      } catch (const std::exception&) {
      }
    }
    return value::of(dflt);
  }
  if (name == "float") {
    if (is_numeric(v)) return value::of(num(v));
    if (v.is_string()) {
      try {
        return value::of(std::stod(v.j().get<std::string>()));
      } catch (const std::exception&) {
      }
    }
    return value::of(0.0);
  }
  if (name == "abs") {
    if (!v.is_number()) fail("chat template line {}: abs needs a number", line);
    return v.j().is_number_float() ? value::of(std::fabs(v.j().get<double>())) : value::of(std::abs(v.j().get<int64_t>()));
  }
  if (name == "default" || name == "d") {
    const value* dflt = arg(args, kw, 0, "default_value");
    const value* boolean = arg(args, kw, 1, "boolean");
    bool use = v.is_undefined() || (boolean && truthy(*boolean) && !truthy(v));
    if (!use) return v;
    return dflt ? *dflt : value::of(std::string());
  }
  if (name == "items") {
    if (v.is_undefined()) return value::of(ojson::array());
    if (v.k == value::kind::ns || !(v.is_data() && v.j().is_object())) fail("chat template line {}: items needs a dict, not {}", line, type_name(v));
    return call_method(v, "items", {}, {}, line);
  }
  if (name == "list") return to_list(v, line);
  if (name == "first" || name == "last") {
    std::vector<value> items = iterate(v, line);
    if (items.empty()) return value::undefined();
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    if (v.is_string()) {
      std::vector<value> chars = iterate(v, line);
      std::string out;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) out += it->j().get<std::string>();
      return value::of(std::move(out));
    }
    std::vector<value> items = iterate(v, line);
    ojson arr = ojson::array();
    for (auto it = items.rbegin(); it != items.rend(); ++it) arr.push_back(to_ojson(*it));
    return value::of(std::move(arr));
  }
  if (name == "join") {
    std::string sep;
    if (const value* s = arg(args, kw, 0, "d")) sep = need_string(s, "join", line);
    const value* attribute = arg(args, kw, 1, "attribute");
    std::string out;
    bool first = true;
    for (const value& item : iterate(v, line)) {
      if (!first) out += sep;
      first = false;
      out += to_str(attribute ? attribute_path(item, to_str(*attribute), line) : item);
    }
    return value::of(std::move(out));
  }
  if (name == "replace") {
    int64_t count = -1;
    if (const value* c = arg(args, kw, 2, "count"); c && !c->is_none()) count = need_int(c, "replace count", line);
    return value::of(replace_all(need_str_operand(), need_string(arg(args, kw, 0, "old"), "replace", line),
                                 need_string(arg(args, kw, 1, "new"), "replace", line), count));
  }
  if (name == "map") {
    ojson arr = ojson::array();
    const value* attribute = find_kw(kw, "attribute");
    if (!attribute && args.empty()) fail("chat template line {}: map needs a filter name or attribute=", line);
    std::vector<value> rest(args.size() > 1 ? args.begin() + 1 : args.end(), args.end());
    for (const value& item : iterate(v, line)) {
      value mapped;
      if (attribute) {
        mapped = attribute_path(item, to_str(*attribute), line);
        if (mapped.is_undefined()) {
          if (const value* d = find_kw(kw, "default")) mapped = *d;
        }
      } else {
        mapped = apply_filter(need_string(&args[0], "map", line), item, rest, {}, line);
      }
      arr.push_back(to_ojson(mapped));
    }
    return value::of(std::move(arr));
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    bool by_attr = name == "selectattr" || name == "rejectattr";
    bool keep_if = name == "select" || name == "selectattr";
    size_t first_test_arg = by_attr ? 1 : 0;
    std::string attr_name = by_attr ? need_string(args.empty() ? nullptr : &args[0], name.c_str(), line) : "";
    std::optional<std::string> test_name;
    if (args.size() > first_test_arg) test_name = need_string(&args[first_test_arg], name.c_str(), line);
    std::vector<value> test_args(args.size() > first_test_arg + 1 ? args.begin() + static_cast<std::ptrdiff_t>(first_test_arg) + 1 : args.end(), args.end());
    ojson arr = ojson::array();
    for (const value& item : iterate(v, line)) {
      value subject = by_attr ? attribute_path(item, attr_name, line) : item;
      bool ok = test_name ? apply_test(*test_name, subject, test_args, line) : truthy(subject);
      if (ok == keep_if) arr.push_back(to_ojson(item));
    }
    return value::of(std::move(arr));
  }
  if (name == "unique") {
    ojson arr = ojson::array();
    std::vector<value> seen;
    for (const value& item : iterate(v, line)) {
      if (std::none_of(seen.begin(), seen.end(), [&](const value& s) { return equals(s, item); })) {
        seen.push_back(item);
        arr.push_back(to_ojson(item));
      }
    }
    return value::of(std::move(arr));
  }
  if (name == "sort" || name == "min" || name == "max") {
    std::vector<value> items = iterate(v, line);
    const value* attribute = find_kw(kw, "attribute");
    auto key = [&](const value& x) { return attribute ? attribute_path(x, to_str(*attribute), line) : x; };
    auto cmp = [&](const value& x, const value& y) { return less_than(key(x), key(y), line); };
    if (name == "min" || name == "max") {
      if (items.empty()) return value::undefined();
      return name == "min" ? *std::min_element(items.begin(), items.end(), cmp) : *std::max_element(items.begin(), items.end(), cmp);
    }
    std::stable_sort(items.begin(), items.end(), cmp);
    const value* reverse = arg(args, kw, 0, "reverse");
    if (reverse && truthy(*reverse)) std::reverse(items.begin(), items.end());
    ojson arr = ojson::array();
    for (const value& x : items) arr.push_back(to_ojson(x));
    return value::of(std::move(arr));
  }
  if (name == "sum") {
    value total = value::of(int64_t{0});
    for (const value& item : iterate(v, line)) total = binary_op("+", total, item, line);
    return total;
  }
  if (name == "indent") {
    const value* w = arg(args, kw, 0, "width");
    std::string pad = w && w->is_string() ? w->j().get<std::string>() : std::string(static_cast<size_t>(w ? need_int(w, "indent", line) : 4), ' ');
    const value* first = arg(args, kw, 1, "first");
    const value* blank = arg(args, kw, 2, "blank");
    std::vector<std::string> lines = split(need_str_operand(), std::string("\n"), -1);
    std::string out;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += '\n';
      bool indent_it = (i > 0 || (first && truthy(*first))) && (!lines[i].empty() || (blank && truthy(*blank)));
      if (indent_it) out += pad;
      out += lines[i];
    }
    return value::of(std::move(out));
  }
  if (name == "dictsort") {
    if (!(v.is_data() && v.j().is_object())) fail("chat template line {}: dictsort needs a dict", line);
    std::vector<std::pair<std::string, const ojson*>> entries;
    for (const auto& [k, e] : v.j().items()) entries.emplace_back(k, &e);
    std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return lower(a.first) < lower(b.first); });
    ojson arr = ojson::array();
    for (const auto& [k, e] : entries) arr.push_back(ojson::array({k, *e}));
    return value::of(std::move(arr));
  }
  fail("chat template line {}: unknown filter '{}'", line, name);
}

value call_method(const value& target, const std::string& name, const std::vector<value>& args, const kwargs& kw, int line) {
  const ojson& t = target.j();
  if (t.is_string()) {
    const std::string& s = t.get_ref<const std::string&>();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      std::optional<std::string> chars = opt_string(arg(args, kw, 0, "chars"), name.c_str(), line);
      return value::of(strip(s, chars, name != "rstrip", name != "lstrip"));
    }
    if (name == "startswith" || name == "endswith") {
      const value* p = arg(args, kw, 0, "prefix");
      std::vector<std::string> options;
      if (p && p->is_data() && p->j().is_array()) {
        for (const auto& e : p->j()) {
          if (!e.is_string()) fail("chat template line {}: {} needs strings", line, name);
          options.push_back(e.get<std::string>());
        }
      } else {
        options.push_back(need_string(p, name.c_str(), line));
      }
      for (const std::string& o : options) {
        if (name == "startswith" ? s.starts_with(o) : s.ends_with(o)) return value::of(true);
      }
      return value::of(false);
    }
    if (name == "split" || name == "rsplit") {
      std::optional<std::string> sep = opt_string(arg(args, kw, 0, "sep"), "split", line);
      int64_t maxsplit = -1;
      if (const value* m = arg(args, kw, 1, "maxsplit")) maxsplit = need_int(m, "split maxsplit", line);
      if (name == "rsplit" && maxsplit >= 0) fail("chat template line {}: rsplit with maxsplit is not supported", line);
      ojson arr = ojson::array();
      for (std::string& part : split(s, sep, maxsplit)) arr.push_back(std::move(part));
      return value::of(std::move(arr));
    }
    if (name == "upper") return value::of(upper(s));
    if (name == "lower") return value::of(lower(s));
    if (name == "title") return value::of(title(s));
    if (name == "capitalize") return value::of(capitalize(s));
    if (name == "replace") {
      int64_t count = -1;
      if (const value* c = arg(args, kw, 2, "count")) count = need_int(c, "replace count", line);
      return value::of(replace_all(s, need_string(arg(args, kw, 0, "old"), "replace", line),
                                   need_string(arg(args, kw, 1, "new"), "replace", line), count));
    }
    if (name == "find") {
      size_t f = s.find(need_string(arg(args, kw, 0, "sub"), "find", line));
      if (f == std::string::npos) return value::of(int64_t{-1});
      return value::of(static_cast<int64_t>(code_point_offsets(s.substr(0, f)).size() - 1));
    }
    if (name == "count") {
      std::string sub = need_string(arg(args, kw, 0, "sub"), "count", line);
      if (sub.empty()) return value::of(static_cast<int64_t>(code_point_offsets(s).size()));
      int64_t n = 0;
      for (size_t f = s.find(sub); f != std::string::npos; f = s.find(sub, f + sub.size())) ++n;
      return value::of(n);
    }
    if (name == "join") {
      std::string out;
      bool first = true;
      for (const value& item : iterate(args.empty() ? value::undefined() : args[0], line)) {
        if (!item.is_string()) fail("chat template line {}: join needs strings, not {}", line, type_name(item));
        if (!first) out += s;
        first = false;
        out += item.j().get<std::string>();
      }
      return value::of(std::move(out));
    }
    if (name == "isdigit" || name == "isalpha" || name == "isspace") {
      if (s.empty()) return value::of(false);
      for (char c : s) {
        bool ok = name == "isdigit" ? (c >= '0' && c <= '9') : name == "isalpha" ? is_alpha(c) : is_py_space(c);
        if (!ok) return value::of(false);
      }
      return value::of(true);
    }
  } else if (t.is_object()) {
    if (name == "items") {
      ojson arr = ojson::array();
      for (const auto& [k, e] : t.items()) arr.push_back(ojson::array({k, e}));
      return value::of(std::move(arr));
    }
    if (name == "keys") {
      ojson arr = ojson::array();
      for (const auto& [k, e] : t.items()) arr.push_back(k);
      return value::of(std::move(arr));
    }
    if (name == "values") {
      ojson arr = ojson::array();
      for (const auto& [k, e] : t.items()) arr.push_back(e);
      return value::of(std::move(arr));
    }
    if (name == "get") {
      value key = args.empty() ? value::undefined() : args[0];
      value found = key.is_string() ? get_item(target, key, line) : value::undefined();
      if (!found.is_undefined()) return found;
      const value* d = arg(args, kw, 1, "default");
      return d ? *d : value::of(nullptr);
    }
  }
  fail("chat template line {}: unsupported method '{}' of {}", line, name, type_name(target));
}

bool is_global_function(const std::string& name) {
  return name == "raise_exception" || name == "namespace" || name == "range" || name == "strftime_now" || name == "dict";
}

value call_global_function(const std::string& name, const std::vector<value>& args, const kwargs& kw, int line,
                           const chat_clock& clock) {
  if (name == "raise_exception") {
    throw error(args.empty() ? std::string("raise_exception() called") : to_str(args[0]));
  }
  if (name == "namespace" || name == "dict") {
    auto ns = std::make_shared<namespace_object>();
    for (const value& a : args) {
      if (!(a.is_data() && a.j().is_object())) fail("chat template line {}: {}() takes a dict or name=value arguments", line, name);
      for (const auto& [k, e] : a.j().items()) ns->set(k, value::child(a, e));
    }
    for (const auto& [k, v] : kw) ns->set(k, v);
    if (name == "dict") return value::of(to_ojson(value{value::kind::ns, nullptr, ns, "", nullptr}));
    value out;
    out.k = value::kind::ns;
    out.ns = std::move(ns);
    return out;
  }
  if (name == "range") {
    if (args.empty() || args.size() > 3) fail("chat template line {}: range() takes 1 to 3 integers", line);
    int64_t start = 0, stop, step = 1;
    if (args.size() == 1) {
      stop = need_int(&args[0], "range", line);
    } else {
      start = need_int(&args[0], "range", line);
      stop = need_int(&args[1], "range", line);
      if (args.size() == 3) step = need_int(&args[2], "range", line);
    }
    if (step == 0) fail("chat template line {}: range() step cannot be zero", line);
    ojson arr = ojson::array();
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      arr.push_back(i);
      if (arr.size() > 1000000) fail("chat template line {}: range() too long", line);
    }
    return value::of(std::move(arr));
  }
  if (name == "strftime_now") {
    std::string fmt = need_string(arg(args, kw, 0, "format"), "strftime_now", line);
    std::tm now = clock();
    char buf[256];
    size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &now);
    return value::of(std::string(buf, n));
  }
  fail("chat template line {}: unknown function '{}'", line, name);
}

}  // namespace nf::chat
