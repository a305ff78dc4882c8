// The Llama-family layer as data: ten operations over eight activation buffers and the layer's KV cache.
#include "pipeline/op_graph.h"

namespace nf {

namespace {

op_graph make_llama_graph() {
  op_graph g;
  g.family = "llama";
  g.buffers = {
      {"residual", "[num_tokens, hidden]", false},
      {"normed", "[num_tokens, hidden]", false},
      {"qkv", "[num_tokens, q_size + 2 * kv_size]", false},
      {"q", "[num_tokens, num_q_heads, head_dim]", false},
      {"kv_cache", "[num_blocks, 2, num_kv_heads, block_size, head_dim], by the rows whose KV it holds", true},
      {"attention", "[num_tokens, num_q_heads, head_dim]", false},
      {"projected", "[num_tokens, hidden]", false},
      {"gate_up", "[num_tokens, 2 * intermediate]", false},
      {"activated", "[num_tokens, intermediate]", false},
  };
  auto b = [&g](const char* name, footprint rows = footprint::rows) { return buffer_access{g.find_buffer(name), rows}; };
  using rc = resource_class;
  g.ops = {
      {"attn_norm", op_kind::attn_norm, rc::memory, row_class::all, {b("residual"), b("projected")},
       {b("residual"), b("normed")}},
      {"qkv_gemm", op_kind::qkv_gemm, rc::compute, row_class::all, {b("normed")}, {b("qkv")}},
      {"rope_kv_append", op_kind::rope_kv_append, rc::memory, row_class::all, {b("qkv")}, {b("q"), b("kv_cache")}},
      // A decode sequence is one row, so a decode row's attention reads only its own row's new KV.
      {"decode_attention", op_kind::decode_attention, rc::memory, row_class::decode, {b("q"), b("kv_cache")},
       {b("attention")}},
      // A prefill row reads the new KV of every earlier row of its chunk; the footprint does not depend on
      // where sequences start, so one dependency graph serves every step of the same shape.
      {"prefill_attention", op_kind::prefill_attention, rc::compute, row_class::prefill,
       {b("q"), b("kv_cache", footprint::class_prefix)}, {b("attention")}},
      {"o_gemm", op_kind::o_gemm, rc::compute, row_class::all, {b("attention")}, {b("projected")}},
      {"ffn_norm", op_kind::ffn_norm, rc::memory, row_class::all, {b("residual"), b("projected")},
       {b("residual"), b("normed")}},
      {"gate_up_gemm", op_kind::gate_up_gemm, rc::compute, row_class::all, {b("normed")}, {b("gate_up")}},
      {"activation", op_kind::activation, rc::memory, row_class::all, {b("gate_up")}, {b("activated")}},
      {"down_gemm", op_kind::down_gemm, rc::compute, row_class::all, {b("activated")}, {b("projected")}},
  };
  return g;
}

}  // namespace

int op_graph::find_op(std::string_view name) const {
  for (size_t i = 0; i < ops.size(); ++i)
    if (ops[i].name == name) return static_cast<int>(i);
  return -1;
}

int op_graph::find_buffer(std::string_view name) const {
  for (size_t i = 0; i < buffers.size(); ++i)
    if (buffers[i].name == name) return static_cast<int>(i);
  return -1;
}

std::string op_graph::op_names() const {
  std::string names;
  for (const op_node& op : ops) names += (names.empty() ? "" : ", ") + op.name;
  return names;
}

std::vector<access_conflict> conflicts(const op_node& a, const op_node& b) {
  std::vector<access_conflict> result;
  auto add = [&](const std::vector<buffer_access>& xs, bool x_writes, const std::vector<buffer_access>& ys,
                 bool y_writes) {
    for (const buffer_access& x : xs)
      for (const buffer_access& y : ys)
        if (x.buffer == y.buffer) result.push_back({x.buffer, x.rows, y.rows, x_writes, y_writes});
  };
  add(a.writes, true, b.reads, false);
  add(a.writes, true, b.writes, true);
  add(a.reads, false, b.writes, true);
  return result;
}

std::vector<op_dependency> op_graph::dependencies() const {
  std::vector<op_dependency> result;
  for (size_t from = 0; from < ops.size(); ++from)
    for (size_t to = 0; to < ops.size(); ++to) {
      const std::vector<access_conflict> found = conflicts(ops[from], ops[to]);
      if (to > from && !found.empty()) result.push_back({int(from), int(to), false, found.front().buffer});
      for (const access_conflict& c : found)
        if (!buffers[c.buffer].per_layer) {
          result.push_back({int(from), int(to), true, c.buffer});
          break;
        }
    }
  return result;
}

const op_graph& llama_op_graph() {
  static const op_graph graph = make_llama_graph();
  return graph;
}

std::string_view to_string(resource_class value) {
  switch (value) {
    case resource_class::compute: return "compute";
    case resource_class::memory: return "memory";
    case resource_class::network: return "network";
  }
  return "?";
}

std::string_view to_string(row_class value) {
  switch (value) {
    case row_class::all: return "all";
    case row_class::decode: return "decode";
    case row_class::prefill: return "prefill";
  }
  return "?";
}

}  // namespace nf
