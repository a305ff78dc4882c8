// Chat templates: runtime values and their Python-compatible string forms (see chat_template_value.h).
#include "tokenizer/chat_template_value.h"

#include <fmt/format.h>

#include <cmath>

namespace nf::chat {

const value* namespace_object::find(const std::string& key) const {
  for (const auto& [k, v] : attrs) {
    if (k == key) return v.get();
  }
  return nullptr;
}

void namespace_object::set(const std::string& key, value v) {
  auto shared = std::make_shared<const value>(std::move(v));
  for (auto& [k, old] : attrs) {
    if (k == key) {
      old = std::move(shared);
      return;
    }
  }
  attrs.emplace_back(key, std::move(shared));
}

value value::of(ojson j) {
  value v;
  v.k = kind::data;
  v.data = std::make_shared<const ojson>(std::move(j));
  return v;
}

value value::child(const value& parent, const ojson& part) {
  value v;
  v.k = kind::data;
  v.data = std::shared_ptr<const ojson>(parent.data, &part);
  return v;
}

value value::builtin(std::string name) {
  value v;
  v.k = kind::callable;
  v.fn_name = std::move(name);
  return v;
}

bool truthy(const value& v) {
  switch (v.k) {
    case value::kind::undefined: return false;
    case value::kind::ns:
    case value::kind::callable: return true;
    case value::kind::data: break;
  }
  const ojson& j = v.j();
  switch (j.type()) {
    case ojson::value_t::null: return false;
    case ojson::value_t::boolean: return j.get<bool>();
    case ojson::value_t::number_integer: return j.get<int64_t>() != 0;
    case ojson::value_t::number_unsigned: return j.get<uint64_t>() != 0;
    case ojson::value_t::number_float: return j.get<double>() != 0.0;
    case ojson::value_t::string: return !j.get_ref<const std::string&>().empty();
    case ojson::value_t::array:
    case ojson::value_t::object: return !j.empty();
    default: return false;
  }
}

namespace {

std::string float_str(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", d);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

void repr_string(std::string& out, const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos;
  bool has_double = s.find('"') != std::string::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  out += quote;
  for (unsigned char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c == static_cast<unsigned char>(quote)) {
          out += '\\';
          out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\x{:02x}", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += quote;
}

void repr_into(std::string& out, const ojson& j) {
  switch (j.type()) {
    case ojson::value_t::null: out += "None"; break;
    case ojson::value_t::boolean: out += j.get<bool>() ? "True" : "False"; break;
    case ojson::value_t::number_integer: out += std::to_string(j.get<int64_t>()); break;
    case ojson::value_t::number_unsigned: out += std::to_string(j.get<uint64_t>()); break;
    case ojson::value_t::number_float: out += float_str(j.get<double>()); break;
    case ojson::value_t::string: repr_string(out, j.get_ref<const std::string&>()); break;
    case ojson::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& e : j) {
        if (!first) out += ", ";
        first = false;
        repr_into(out, e);
      }
      out += ']';
      break;
    }
    case ojson::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : j.items()) {
        if (!first) out += ", ";
        first = false;
        repr_string(out, k);
        out += ": ";
        repr_into(out, e);
      }
      out += '}';
      break;
    }
    default: out += "?";
  }
}

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += static_cast<char>(c);
    }
  }
  out += '"';
}

void json_into(std::string& out, const ojson& j, int indent, int depth) {
  switch (j.type()) {
    case ojson::value_t::null: out += "null"; return;
    case ojson::value_t::boolean: out += j.get<bool>() ? "true" : "false"; return;
    case ojson::value_t::number_integer: out += std::to_string(j.get<int64_t>()); return;
    case ojson::value_t::number_unsigned: out += std::to_string(j.get<uint64_t>()); return;
    case ojson::value_t::number_float: {
      double d = j.get<double>();
      out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : float_str(d);
      return;
    }
    case ojson::value_t::string: json_string(out, j.get_ref<const std::string&>()); return;
    case ojson::value_t::array:
    case ojson::value_t::object: break;
    default: out += "null"; return;
  }
  bool is_array = j.is_array();
  out += is_array ? '[' : '{';
  if (j.empty()) {
    out += is_array ? ']' : '}';
    return;
  }
  std::string pad_inner = indent > 0 ? "\n" + std::string(static_cast<size_t>(indent * (depth + 1)), ' ') : "";
  std::string pad_outer = indent > 0 ? "\n" + std::string(static_cast<size_t>(indent * depth), ' ') : "";
  const char* item_sep = indent > 0 ? "," : ", ";
  bool first = true;
  if (is_array) {
    for (const auto& e : j) {
      if (!first) out += item_sep;
      first = false;
      out += pad_inner;
      json_into(out, e, indent, depth + 1);
    }
  } else {
    for (const auto& [k, e] : j.items()) {
      if (!first) out += item_sep;
      first = false;
      out += pad_inner;
      json_string(out, k);
      out += ": ";
      json_into(out, e, indent, depth + 1);
    }
  }
  out += pad_outer;
  out += is_array ? ']' : '}';
}

}  // namespace

ojson to_ojson(const value& v) {
  switch (v.k) {
    case value::kind::undefined: return nullptr;
    case value::kind::data: return v.j();
    case value::kind::callable: return nullptr;
    case value::kind::ns: {
      ojson o = ojson::object();
      for (const auto& [k, e] : v.ns->attrs) o[k] = to_ojson(*e);
      return o;
    }
  }
  return nullptr;
}

std::string to_repr(const ojson& j) {
  std::string out;
  repr_into(out, j);
  return out;
}

std::string to_str(const value& v) {
  switch (v.k) {
    case value::kind::undefined: return "";
    case value::kind::callable: return "<function " + v.fn_name + ">";
    case value::kind::ns: return "<Namespace " + to_repr(to_ojson(v)) + ">";
    case value::kind::data: break;
  }
  if (v.j().is_string()) return v.j().get<std::string>();
  return to_repr(v.j());
}

bool equals(const value& a, const value& b) {
  if (a.is_undefined() || b.is_undefined()) return a.is_undefined() && b.is_undefined();
  if (a.k == value::kind::ns || b.k == value::kind::ns) return a.ns == b.ns;
  if (a.k == value::kind::callable || b.k == value::kind::callable) {
    return a.k == b.k && a.fn_name == b.fn_name && a.macro == b.macro;
  }
  const ojson& x = a.j();
  const ojson& y = b.j();
  if (x.is_boolean() && y.is_number()) return (x.get<bool>() ? 1.0 : 0.0) == y.get<double>();
  if (y.is_boolean() && x.is_number()) return (y.get<bool>() ? 1.0 : 0.0) == x.get<double>();
  return x == y;
}

std::string to_json_text(const value& v, int indent) {
  std::string out;
  if (v.k == value::kind::ns) {
    json_into(out, to_ojson(v), indent, 0);
  } else if (v.is_data()) {
    json_into(out, v.j(), indent, 0);
  } else {
    out = "null";
  }
  return out;
}

std::string type_name(const value& v) {
  switch (v.k) {
    case value::kind::undefined: return "undefined";
    case value::kind::ns: return "namespace";
    case value::kind::callable: return "function";
    case value::kind::data: break;
  }
  switch (v.j().type()) {
    case ojson::value_t::null: return "none";
    case ojson::value_t::boolean: return "boolean";
    case ojson::value_t::number_integer:
    case ojson::value_t::number_unsigned: return "integer";
    case ojson::value_t::number_float: return "float";
    case ojson::value_t::string: return "string";
    case ojson::value_t::array: return "list";
    case ojson::value_t::object: return "dict";
    default: return "value";
  }
}

}  // namespace nf::chat
