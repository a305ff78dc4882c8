// Loading of Llama-family weights (Llama, Mistral and Qwen2 share their tensor names) into fused float32 buffers.
#include "model/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

#include "core/error.h"
#include "model/safetensors.h"

namespace nf {
namespace {

// Appends the tensor `name`, checked to have exactly `shape`, to `out` as float32.
void append_tensor(const safetensors_checkpoint& checkpoint, const std::string& name, std::vector<int64_t> shape,
                   std::vector<float>& out) {
  const tensor_view& view = checkpoint.get(name);
  if (view.shape != shape)
    fail("tensor '{}' has shape [{}], but config.json implies [{}]", name, fmt::join(view.shape, ", "),
         fmt::join(shape, ", "));
  if (view.type != dtype::f32 && view.type != dtype::f16 && view.type != dtype::bf16)
    fail("tensor '{}' is stored as {}; weights must be F32, F16 or BF16", name, dtype_name(view.type));
  const size_t offset = out.size();
  out.resize(offset + static_cast<size_t>(view.num_elements()));
  convert_to_f32(view.type, view.data, static_cast<size_t>(view.num_elements()), out.data() + offset);
}

std::vector<float> read_tensor(const safetensors_checkpoint& checkpoint, const std::string& name,
                               std::vector<int64_t> shape) {
  std::vector<float> out;
  append_tensor(checkpoint, name, std::move(shape), out);
  return out;
}

uint64_t split_mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform values with standard deviation `std`, from a counter-based hash of (seed, stream, index).
std::vector<float> random_buffer(size_t count, uint64_t seed, uint64_t stream, float std) {
  std::vector<float> out(count);
  const float half_width = std * std::sqrt(3.0f);
  const uint64_t key = split_mix(seed ^ split_mix(stream));
  for (size_t i = 0; i < count; ++i) {
    const double unit = static_cast<double>(split_mix(key + i) >> 11) * 0x1.0p-53;
    out[i] = static_cast<float>((2.0 * unit - 1.0) * half_width);
  }
  return out;
}

}  // namespace

model_weights load_weights(const std::filesystem::path& model_dir, const model_config& config) {
  const safetensors_checkpoint checkpoint(model_dir);
  const int64_t hidden = config.hidden_size, inter = config.intermediate_size;
  const int64_t q_size = config.q_size(), kv_size = config.kv_size();
  model_weights weights;
  weights.config = config;
  weights.embed = read_tensor(checkpoint, "model.embed_tokens.weight", {config.vocab_size, hidden});
  weights.final_norm = read_tensor(checkpoint, "model.norm.weight", {hidden});
  if (!config.tie_word_embeddings) {
    if (!checkpoint.find("lm_head.weight"))
      fail("checkpoint has no tensor 'lm_head.weight' and config.json does not tie word embeddings");
    weights.lm_head = read_tensor(checkpoint, "lm_head.weight", {config.vocab_size, hidden});
  }
  for (int i = 0; i < config.num_layers; ++i) {
    const std::string prefix = fmt::format("model.layers.{}.", i);
    layer_weights layer;
    layer.input_norm = read_tensor(checkpoint, prefix + "input_layernorm.weight", {hidden});
    layer.post_attention_norm = read_tensor(checkpoint, prefix + "post_attention_layernorm.weight", {hidden});
    append_tensor(checkpoint, prefix + "self_attn.q_proj.weight", {q_size, hidden}, layer.qkv);
    append_tensor(checkpoint, prefix + "self_attn.k_proj.weight", {kv_size, hidden}, layer.qkv);
    append_tensor(checkpoint, prefix + "self_attn.v_proj.weight", {kv_size, hidden}, layer.qkv);
    if (config.qkv_bias) {
      append_tensor(checkpoint, prefix + "self_attn.q_proj.bias", {q_size}, layer.qkv_bias);
      append_tensor(checkpoint, prefix + "self_attn.k_proj.bias", {kv_size}, layer.qkv_bias);
      append_tensor(checkpoint, prefix + "self_attn.v_proj.bias", {kv_size}, layer.qkv_bias);
    }
    layer.o = read_tensor(checkpoint, prefix + "self_attn.o_proj.weight", {hidden, q_size});
    if (config.o_bias) layer.o_bias = read_tensor(checkpoint, prefix + "self_attn.o_proj.bias", {hidden});
    append_tensor(checkpoint, prefix + "mlp.gate_proj.weight", {inter, hidden}, layer.gate_up);
    append_tensor(checkpoint, prefix + "mlp.up_proj.weight", {inter, hidden}, layer.gate_up);
    layer.down = read_tensor(checkpoint, prefix + "mlp.down_proj.weight", {hidden, inter});
    if (config.mlp_bias) {
      append_tensor(checkpoint, prefix + "mlp.gate_proj.bias", {inter}, layer.gate_up_bias);
      append_tensor(checkpoint, prefix + "mlp.up_proj.bias", {inter}, layer.gate_up_bias);
      layer.down_bias = read_tensor(checkpoint, prefix + "mlp.down_proj.bias", {hidden});
    }
    weights.layers.push_back(std::move(layer));
  }
  return weights;
}

model_weights dummy_weights(const model_config& config, uint64_t seed, float init_std) {
  const size_t hidden = config.hidden_size, inter = config.intermediate_size;
  const size_t qkv = config.qkv_size(), q_size = config.q_size();
  uint64_t stream = 0;
  auto random = [&](size_t count) { return random_buffer(count, seed, stream++, init_std); };
  model_weights weights;
  weights.config = config;
  weights.embed = random(config.vocab_size * hidden);
  weights.final_norm.assign(hidden, 1.0f);
  if (!config.tie_word_embeddings) weights.lm_head = random(config.vocab_size * hidden);
  for (int i = 0; i < config.num_layers; ++i) {
    layer_weights layer;
    layer.input_norm.assign(hidden, 1.0f);
    layer.post_attention_norm.assign(hidden, 1.0f);
    layer.qkv = random(qkv * hidden);
    if (config.qkv_bias) layer.qkv_bias = random(qkv);
    layer.o = random(hidden * q_size);
    if (config.o_bias) layer.o_bias = random(hidden);
    layer.gate_up = random(2 * inter * hidden);
    layer.down = random(hidden * inter);
    if (config.mlp_bias) {
      layer.gate_up_bias = random(2 * inter);
      layer.down_bias = random(hidden);
    }
    weights.layers.push_back(std::move(layer));
  }
  return weights;
}

}  // namespace nf
