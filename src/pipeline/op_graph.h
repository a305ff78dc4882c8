// The dense per-layer operation list of a model family, as data: every operation's buffers (what it reads and
// writes, and over which rows), its resource class and the rows it applies to. Dependencies between
// operations, and between their nano-operations, follow from these buffer accesses.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace nf {

// What bounds an operation's speed: the SM budget and stream of a nano-op are chosen by this.
enum class resource_class { compute, memory, network };

// The rows of the step's dense batch an operation applies to. Rows are ordered decode tokens first, then
// prefill tokens; decode attention works on the decode rows only, prefill attention on the prefill rows only.
enum class row_class { all, decode, prefill };

// Which rows of a buffer an access touches, for a nano-op over rows [begin, end) of its row class.
enum class footprint {
  rows,          // exactly [begin, end)
  class_prefix,  // [first row of the class, end): causal attention reads the KV of earlier rows of its sequences
};

enum class op_kind {
  attn_norm,          // residual += previous layer's output (not in layer 0); normed = rmsnorm(residual)
  qkv_gemm,           // qkv = normed * W_qkv^T (+ bias)
  rope_kv_append,     // q = rope(q part of qkv); K = rope(k part), V: written into the paged KV cache
  decode_attention,   // attention of the decode rows over the KV cache
  prefill_attention,  // causal attention of the prefill rows over the KV cache
  o_gemm,             // projected = attention * W_o^T (+ bias)
  ffn_norm,           // residual += projected; normed = rmsnorm(residual)
  gate_up_gemm,       // gate_up = normed * W_gate_up^T (+ bias)
  activation,         // activated = silu(gate) * up
  down_gemm,          // projected = activated * W_down^T (+ bias)
};

struct buffer_access {
  int buffer = 0;  // index into op_graph::buffers
  footprint rows = footprint::rows;
};

struct op_node {
  std::string name;
  op_kind kind;
  resource_class resource;
  row_class rows;
  std::vector<buffer_access> reads;
  std::vector<buffer_access> writes;
};

struct buffer_info {
  std::string name;
  std::string shape;  // for documentation: "[num_tokens, hidden]"
  bool per_layer;     // one per layer (the KV cache): no hazard between layers
};

// Op B depends on op A when they share a buffer that one of them writes (read after write, write after read
// or write after write) and A comes first: earlier in the same layer, or in the previous layer.
struct op_dependency {
  int from = 0;             // op index
  int to = 0;               // op index
  bool next_layer = false;  // `to` is in the layer after `from`'s
  int buffer = 0;           // the shared buffer (the first one found)
};

// One layer's operations in program order; the next layer repeats them. The order of `ops` is the
// reference (sequential) order: op j may depend on op i < j of the same layer, or on any op of the
// previous layer (through a shared buffer).
struct op_graph {
  std::string family;
  std::vector<buffer_info> buffers;
  std::vector<op_node> ops;

  // Index of the named operation, or -1.
  int find_op(std::string_view name) const;
  int find_buffer(std::string_view name) const;
  // "a, b, c": the names of every operation, for error messages.
  std::string op_names() const;
  // Every op-level dependency, within a layer and from one layer to the next.
  std::vector<op_dependency> dependencies() const;
};

// Two accesses of one buffer by two ops, at least one of them a write: a hazard unless ordered.
struct access_conflict {
  int buffer = 0;
  footprint first = footprint::rows;   // how op `a` touches it
  footprint second = footprint::rows;  // how op `b` touches it
  bool first_writes = false;
  bool second_writes = false;
};

// Every conflicting pair of accesses of ops a and b.
std::vector<access_conflict> conflicts(const op_node& a, const op_node& b);

// The Llama family (Llama, Mistral, Qwen2): biases are a property of the GEMM weights, not of the graph.
const op_graph& llama_op_graph();

std::string_view to_string(resource_class value);
std::string_view to_string(row_class value);

}  // namespace nf
