// Operation profiles: JSON parsing with full validation, writing, lookup with linear interpolation.
#include "tune/operation_profile.h"

#include <algorithm>
#include <map>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace nf {

namespace {

using json = nlohmann::json;

const json& member(const json& object, const char* key, const std::string& where) {
  if (!object.is_object() || !object.contains(key)) fail("{}: missing \"{}\"", where, key);
  return object.at(key);
}

int positive_int(const json& object, const char* key, const std::string& where) {
  const json& value = member(object, key, where);
  if (!value.is_number_integer() || value.get<int64_t>() <= 0 || value.get<int64_t>() > (int64_t{1} << 30))
    fail("{}: \"{}\" must be a positive integer, got {}", where, key, value.dump());
  return value.get<int>();
}

std::string string_field(const json& object, const char* key, const std::string& where) {
  const json& value = member(object, key, where);
  if (!value.is_string() || value.get<std::string>().empty()) fail("{}: \"{}\" must be a non-empty string", where, key);
  return value.get<std::string>();
}

double positive_number(const json& value, const std::string& where) {
  if (!value.is_number() || !(value.get<double>() > 0.0) || !std::isfinite(value.get<double>()))
    fail("{}: must be a positive number, got {}", where, value.dump());
  return value.get<double>();
}

std::vector<int> int_list(const json& object, const char* key, const std::string& where) {
  const json& value = member(object, key, where);
  if (!value.is_array()) fail("{}: \"{}\" must be an array of integers", where, key);
  std::vector<int> result;
  for (const json& v : value) {
    if (!v.is_number_integer()) fail("{}: \"{}\" must be an array of integers", where, key);
    result.push_back(v.get<int>());
  }
  return result;
}

// The list must equal `want`: names the first value missing or unexpected.
void check_grid(const std::vector<int>& got, const std::vector<int>& want, const char* key, const char* what) {
  for (int w : want)
    if (std::find(got.begin(), got.end(), w) == got.end()) fail("profile: {} {} missing from \"{}\"", what, w, key);
  if (got != want)
    fail("profile: \"{}\" must be exactly [{}]", key, fmt::join(want, ", "));
}

const char* shape_keys[] = {"hidden", "intermediate", "num_q_heads", "num_kv_heads", "head_dim", "num_layers", "vocab"};

std::vector<int> shape_values(const profile_shape& s) {
  return {s.hidden, s.intermediate, s.num_q_heads, s.num_kv_heads, s.head_dim, s.num_layers, s.vocab};
}

// Linear interpolation of y over increasing x; clamped to the first point below it, extrapolated past the last.
double interpolate(const std::vector<double>& xs, const std::vector<double>& ys, double x) {
  if (xs.size() == 1 || x <= xs.front()) return ys.front();
  size_t hi = 1;
  while (hi + 1 < xs.size() && xs[hi] < x) ++hi;
  const double w = (x - xs[hi - 1]) / (xs[hi] - xs[hi - 1]);
  return ys[hi - 1] + w * (ys[hi] - ys[hi - 1]);
}

}  // namespace

profile_shape shape_of(const model_config& c) {
  return {c.hidden_size, c.intermediate_size, c.num_q_heads, c.num_kv_heads, c.head_dim, c.num_layers, c.vocab_size};
}

std::vector<int> profile_token_counts(int dense_budget) {
  std::vector<int> counts;
  for (int n = profile_token_step; n <= dense_budget; n += profile_token_step) counts.push_back(n);
  if (counts.empty() || counts.back() != dense_budget) counts.push_back(dense_budget);
  return counts;
}

std::vector<int> profile_sm_budgets(int num_sms) {
  std::vector<int> budgets;
  for (int n = profile_sm_step; n <= num_sms; n += profile_sm_step) budgets.push_back(n);
  if (budgets.empty() || budgets.back() != num_sms) budgets.push_back(num_sms);
  return budgets;
}

int operation_profile::budget_index(int sm_budget) const {
  auto it = std::find(sm_budgets.begin(), sm_budgets.end(), sm_budget);
  return it == sm_budgets.end() ? -1 : static_cast<int>(it - sm_budgets.begin());
}

const op_timing* operation_profile::timing_of(const std::string& op) const {
  for (const op_timing& t : ops)
    if (t.op == op) return &t;
  return nullptr;
}

double operation_profile::time_us(const op_graph& graph, int op, int num_rows, int sm_budget, double mean_context) const {
  if (num_rows <= 0) return 0.0;
  const op_timing* timing = timing_of(graph.ops.at(op).name);
  NF_CHECK(timing != nullptr, "profile has no timing of {}", graph.ops.at(op).name);
  const int b = budget_index(sm_budget);
  NF_CHECK(b >= 0, "SM budget {} is not profiled", sm_budget);
  const size_t num_counts = token_counts.size(), num_budgets = sm_budgets.size();
  const std::vector<double> xs(token_counts.begin(), token_counts.end());
  auto at_context = [&](size_t c) {
    std::vector<double> ys(num_counts);
    for (size_t t = 0; t < num_counts; ++t) ys[t] = timing->time_us[(c * num_counts + t) * num_budgets + b];
    return interpolate(xs, ys, num_rows);
  };
  if (!timing->by_context) return at_context(0);
  const size_t num_contexts = decode_context_lengths.size();
  std::vector<double> per_context(num_contexts);
  for (size_t c = 0; c < num_contexts; ++c) per_context[c] = at_context(c);
  return std::max(interpolate(decode_context_lengths, per_context, mean_context), 1e-3);
}

namespace {

// Whether a measurement applies to compute op `c` beside memory op `m` (by name or through "*").
bool applies_to(const interference_point& p, const std::string& c, const std::string& m) {
  return (p.compute_op == c || p.compute_op == "*") && (p.memory_op == m || p.memory_op == "*");
}

}  // namespace

std::optional<interference_factors> operation_profile::interference_at(const op_graph& graph, int compute_op,
                                                                       int memory_op, int compute_sms,
                                                                       int memory_sms) const {
  const std::string& c = graph.ops.at(compute_op).name;
  const std::string& m = graph.ops.at(memory_op).name;
  const interference_point* best = nullptr;
  int best_rank = 4;
  for (const interference_point& p : interference) {
    if (p.compute_sms != compute_sms || p.memory_sms != memory_sms || !applies_to(p, c, m)) continue;
    const int rank = (p.compute_op == "*" ? 2 : 0) + (p.memory_op == "*" ? 1 : 0);
    if (rank < best_rank) best = &p, best_rank = rank;
  }
  if (!best) return std::nullopt;
  return interference_factors{best->compute_slowdown, best->memory_slowdown};
}

std::optional<interference_factors> operation_profile::interference_envelope(const op_graph& graph, int compute_op,
                                                                             int memory_op, int compute_sms,
                                                                             int memory_sms) const {
  std::optional<interference_factors> worst = interference_at(graph, compute_op, memory_op, compute_sms, memory_sms);
  if (!worst) return worst;
  // The measured splits of this pair by memory budget, each at the largest compute budget measured beside it.
  const std::string& c = graph.ops.at(compute_op).name;
  const std::string& m = graph.ops.at(memory_op).name;
  std::map<int, int> compute_of_memory;  // memory SMs -> compute SMs
  for (const interference_point& p : interference)
    if (applies_to(p, c, m)) {
      int& sms = compute_of_memory[p.memory_sms];
      sms = std::max(sms, p.compute_sms);
    }
  const auto here = compute_of_memory.find(memory_sms);
  if (here == compute_of_memory.end()) return worst;
  std::vector<std::map<int, int>::const_iterator> neighbours;
  if (here != compute_of_memory.begin()) neighbours.push_back(std::prev(here));
  if (std::next(here) != compute_of_memory.end()) neighbours.push_back(std::next(here));
  for (const auto& n : neighbours) {
    const auto f = interference_at(graph, compute_op, memory_op, n->second, n->first);
    worst->compute_slowdown = std::max(worst->compute_slowdown, f->compute_slowdown);
    worst->memory_slowdown = std::max(worst->memory_slowdown, f->memory_slowdown);
  }
  return worst;
}

operation_profile parse_operation_profile(const json& doc, const op_graph& graph) {
  if (!doc.is_object()) fail("profile: must be a JSON object");
  operation_profile p;
  p.gpu = string_field(doc, "gpu", "profile");
  p.num_sms = positive_int(doc, "num_sms", "profile");
  const json& model = member(doc, "model", "profile");
  std::vector<int*> fields{&p.shape.hidden,   &p.shape.intermediate, &p.shape.num_q_heads, &p.shape.num_kv_heads,
                           &p.shape.head_dim, &p.shape.num_layers,   &p.shape.vocab};
  for (size_t i = 0; i < fields.size(); ++i) *fields[i] = positive_int(model, shape_keys[i], "profile: model");
  p.dense_budget = positive_int(doc, "dense_budget", "profile");
  p.token_counts = int_list(doc, "token_counts", "profile");
  check_grid(p.token_counts, profile_token_counts(p.dense_budget), "token_counts", "token count");
  p.sm_budgets = int_list(doc, "sm_budgets", "profile");
  check_grid(p.sm_budgets, profile_sm_budgets(p.num_sms), "sm_budgets", "SM budget");

  const json& contexts = member(doc, "decode_context_lengths", "profile");
  if (!contexts.is_array() || contexts.empty()) fail("profile: \"decode_context_lengths\" must be a non-empty array");
  for (size_t i = 0; i < contexts.size(); ++i) {
    p.decode_context_lengths.push_back(positive_number(contexts[i], fmt::format("profile: decode_context_lengths[{}]", i)));
    if (i > 0 && p.decode_context_lengths[i] <= p.decode_context_lengths[i - 1])
      fail("profile: \"decode_context_lengths\" must increase");
  }

  const json& ops = member(doc, "operations", "profile");
  if (!ops.is_object()) fail("profile: \"operations\" must be an object keyed by operation name");
  for (const auto& [name, entry] : ops.items())
    if (graph.find_op(name) < 0)
      fail("profile: unknown operation \"{}\" (the {} graph has: {})", name, graph.family, graph.op_names());
  for (const op_node& node : graph.ops) {
    if (!ops.contains(node.name)) fail("profile: operation \"{}\" is missing from \"operations\"", node.name);
    const std::string where = fmt::format("profile: operation \"{}\"", node.name);
    const json& table = member(ops.at(node.name), "time_us", where);
    const bool per_context = node.kind == op_kind::decode_attention;
    // Decode attention: [context][tokens][budgets]; others: [tokens][budgets].
    const size_t num_contexts = per_context ? p.decode_context_lengths.size() : 1;
    if (!table.is_array() || table.size() != (per_context ? num_contexts : p.token_counts.size()))
      fail("{}: \"time_us\" must have {} rows ({})", where, per_context ? num_contexts : p.token_counts.size(),
           per_context ? "one per decode context length" : "one per token count");
    op_timing timing{node.name, per_context, {}};
    for (size_t c = 0; c < num_contexts; ++c) {
      const json& by_tokens = per_context ? table[c] : table;
      if (!by_tokens.is_array() || by_tokens.size() != p.token_counts.size())
        fail("{}: context {} must have {} rows, one per token count", where, c, p.token_counts.size());
      for (size_t t = 0; t < p.token_counts.size(); ++t) {
        const json& row = by_tokens[t];
        if (!row.is_array() || row.size() != p.sm_budgets.size())
          fail("{}: the row of {} tokens must have {} times, one per SM budget", where, p.token_counts[t],
               p.sm_budgets.size());
        for (size_t b = 0; b < row.size(); ++b)
          timing.time_us.push_back(positive_number(
              row[b], fmt::format("{}: time at {} tokens and {} SMs", where, p.token_counts[t], p.sm_budgets[b])));
      }
    }
    p.ops.push_back(std::move(timing));
  }

  const json& interference = member(doc, "interference", "profile");
  if (!interference.is_array() || interference.empty())
    fail("profile: \"interference\" must be a non-empty array of measured SM splits");
  std::set<std::tuple<std::string, std::string, int, int>> seen;
  for (size_t i = 0; i < interference.size(); ++i) {
    const json& e = interference[i];
    const std::string where = fmt::format("profile: interference[{}]", i);
    interference_point point;
    point.compute_op = string_field(e, "compute_op", where);
    point.memory_op = string_field(e, "memory_op", where);
    for (auto [op, want] : {std::pair{&point.compute_op, resource_class::compute}, std::pair{&point.memory_op, resource_class::memory}}) {
      if (*op == "*") continue;
      const int index = graph.find_op(*op);
      if (index < 0) fail("{}: unknown operation \"{}\"", where, *op);
      const resource_class got = graph.ops[index].resource;
      if (want == resource_class::compute ? got != resource_class::compute : got == resource_class::compute)
        fail("{}: \"{}\" is a {} operation", where, *op, to_string(got));
    }
    point.compute_sms = positive_int(e, "compute_sms", where);
    point.memory_sms = positive_int(e, "memory_sms", where);
    for (int sms : {point.compute_sms, point.memory_sms})
      if (p.budget_index(sms) < 0) fail("{}: {} SMs is not a profiled SM budget", where, sms);
    if (point.compute_sms + point.memory_sms > p.num_sms)
      fail("{}: the split {} + {} SMs exceeds the GPU's {} SMs", where, point.compute_sms, point.memory_sms, p.num_sms);
    point.compute_slowdown = positive_number(member(e, "compute_slowdown", where), where + ": compute_slowdown");
    point.memory_slowdown = positive_number(member(e, "memory_slowdown", where), where + ": memory_slowdown");
    if (!seen.emplace(point.compute_op, point.memory_op, point.compute_sms, point.memory_sms).second)
      fail("{}: {} beside {} at {} + {} SMs is given twice", where, point.compute_op, point.memory_op,
           point.compute_sms, point.memory_sms);
    p.interference.push_back(point);
  }
  return p;
}

json to_json(const operation_profile& p) {
  json doc;
  doc["gpu"] = p.gpu;
  doc["num_sms"] = p.num_sms;
  const std::vector<int> values = shape_values(p.shape);
  for (size_t i = 0; i < values.size(); ++i) doc["model"][shape_keys[i]] = values[i];
  doc["dense_budget"] = p.dense_budget;
  doc["token_counts"] = p.token_counts;
  doc["sm_budgets"] = p.sm_budgets;
  doc["decode_context_lengths"] = p.decode_context_lengths;
  const size_t num_counts = p.token_counts.size(), num_budgets = p.sm_budgets.size();
  json ops = json::object();
  for (const op_timing& t : p.ops) {
    const size_t num_contexts = t.by_context ? p.decode_context_lengths.size() : 1;
    json by_context = json::array();
    for (size_t c = 0; c < num_contexts; ++c) {
      json rows = json::array();
      for (size_t r = 0; r < num_counts; ++r) {
        const auto first = t.time_us.begin() + (c * num_counts + r) * num_budgets;
        rows.push_back(std::vector<double>(first, first + num_budgets));
      }
      by_context.push_back(rows);
    }
    ops[t.op]["time_us"] = t.by_context ? by_context : by_context[0];
  }
  doc["operations"] = ops;
  json interference = json::array();
  for (const interference_point& e : p.interference)
    interference.push_back({{"compute_op", e.compute_op}, {"memory_op", e.memory_op}, {"compute_sms", e.compute_sms},
                            {"memory_sms", e.memory_sms}, {"compute_slowdown", e.compute_slowdown},
                            {"memory_slowdown", e.memory_slowdown}});
  doc["interference"] = interference;
  return doc;
}

void check_profile_matches(const operation_profile& profile, const profile_expectation& expected) {
  if (!expected.gpu.empty() && profile.gpu != expected.gpu)
    fail("profile: measured on \"{}\", not on this \"{}\" (a stale profile: profile this GPU again)", profile.gpu,
         expected.gpu);
  if (expected.model) {
    const std::vector<int> got = shape_values(profile.shape), want = shape_values(shape_of(*expected.model));
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != want[i])
        fail("profile: model {} is {}, but the model config says {} (a stale profile: profile this model again)",
             shape_keys[i], got[i], want[i]);
  }
}

operation_profile load_operation_profile(const std::filesystem::path& path, const op_graph& graph,
                                         const profile_expectation& expected) {
  std::ifstream file(path);
  if (!file) fail("operation profile {}: cannot open the file", path.string());
  json doc;
  try {
    doc = json::parse(file);
  } catch (const json::exception& e) {
    fail("operation profile {}: not valid JSON: {}", path.string(), e.what());
  }
  try {
    operation_profile profile = parse_operation_profile(doc, graph);
    check_profile_matches(profile, expected);
    return profile;
  } catch (const error& e) {
    fail("operation profile {}: {}", path.string(), e.what());
  }
}

void save_operation_profile(const operation_profile& profile, const std::filesystem::path& path) {
  std::ofstream file(path);
  if (!file) fail("operation profile {}: cannot write the file", path.string());
  file << to_json(profile).dump(1) << "\n";
  if (!file) fail("operation profile {}: write failed", path.string());
}

}  // namespace nf
