// Chat templates: the runtime value of the evaluator. Data are immutable shared JSON (sub-values alias
// their parent, so reading messages[3].content copies nothing); namespaces are the one mutable object;
// callables are builtin functions and macros.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nf::chat {

using ojson = nlohmann::ordered_json;

struct stmt;
struct value;

struct namespace_object {
  std::vector<std::pair<std::string, std::shared_ptr<const value>>> attrs;  // in insertion order
  const value* find(const std::string& key) const;
  void set(const std::string& key, value v);
};

struct value {
  enum class kind { undefined, data, ns, callable };
  kind k = kind::undefined;
  std::shared_ptr<const ojson> data;      // kind::data
  std::shared_ptr<namespace_object> ns;   // kind::ns
  std::string fn_name;                    // kind::callable: builtin name or macro name
  const stmt* macro = nullptr;            // kind::callable: the macro, null for a builtin

  static value undefined() { return {}; }
  static value of(ojson j);
  // A part of `parent` (which must be data), sharing its storage.
  static value child(const value& parent, const ojson& part);
  static value builtin(std::string name);

  bool is_undefined() const { return k == kind::undefined; }
  bool is_data() const { return k == kind::data; }
  const ojson& j() const { return *data; }
  bool is_string() const { return is_data() && data->is_string(); }
  bool is_number() const { return is_data() && data->is_number(); }
  bool is_none() const { return is_data() && data->is_null(); }
};

bool truthy(const value& v);
// Python str(): strings as they are, True/False/None, lists and dicts as Python repr, undefined "".
std::string to_str(const value& v);
// Python repr() of data.
std::string to_repr(const ojson& j);
// Equality as Python ==: numbers by value, containers deeply, undefined only equals undefined.
bool equals(const value& a, const value& b);
// transformers' tojson: json.dumps(x, ensure_ascii=False, indent=indent), Python's separators.
std::string to_json_text(const value& v, int indent);
// Type name for error messages.
std::string type_name(const value& v);
// A namespace as a JSON object (for tojson and string output).
ojson to_ojson(const value& v);

}  // namespace nf::chat
