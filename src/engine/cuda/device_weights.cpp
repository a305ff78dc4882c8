// Weight upload: one device allocation carved into tensors, then either a streaming copy from the
// checkpoint's mmap (per tensor: convert a chunk to bf16 into one of two pinned buffers, copy it
// asynchronously, convert the next chunk meanwhile) or random fills on the device.
#include "engine/cuda/device_weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "core/dtype.h"
#include "engine/cuda/random_fill.h"
#include "model/safetensors.h"

namespace nf::cuda {
namespace {

// Carves 256-byte aligned tensors out of one block; the first pass only counts.
class carver {
 public:
  __nv_bfloat16* take(size_t count) {
    const size_t offset = bytes_;
    bytes_ += (count * sizeof(__nv_bfloat16) + 255) / 256 * 256;
    return base_ ? reinterpret_cast<__nv_bfloat16*>(base_ + offset) : nullptr;
  }
  size_t bytes() const { return bytes_; }
  void start(std::byte* base) {
    base_ = base;
    bytes_ = 0;
  }

 private:
  std::byte* base_ = nullptr;
  size_t bytes_ = 0;
};

void carve(const model_config& c, carver& out, device_weights& w) {
  const size_t hidden = c.hidden_size, inter = c.intermediate_size, vocab = c.vocab_size;
  w.embed = out.take(vocab * hidden);
  w.lm_head = c.tie_word_embeddings ? w.embed : out.take(vocab * hidden);
  w.final_norm = out.take(hidden);
  w.layers.assign(c.num_layers, {});
  for (device_layer_weights& l : w.layers) {
    l.input_norm = out.take(hidden);
    l.post_attention_norm = out.take(hidden);
    l.qkv = out.take(size_t(c.qkv_size()) * hidden);
    if (c.qkv_bias) l.qkv_bias = out.take(c.qkv_size());
    l.o = out.take(hidden * c.q_size());
    if (c.o_bias) l.o_bias = out.take(hidden);
    l.gate_up = out.take(2 * inter * hidden);
    l.down = out.take(hidden * inter);
    if (c.mlp_bias) {
      l.gate_up_bias = out.take(2 * inter);
      l.down_bias = out.take(hidden);
    }
  }
}

class progress_bar {
 public:
  progress_bar(int total, bool enabled, const char* what)
      : total_(total), enabled_(enabled && ::isatty(STDERR_FILENO)), what_(what) {}
  void update(int done) {
    if (!enabled_) return;
    constexpr int width = 40;
    const int filled = total_ ? width * done / total_ : width;
    std::fprintf(stderr, "\r%s [%.*s%*s] %d/%d layers", what_, filled, "========================================",
                 width - filled, "", done, total_);
    if (done == total_) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  int total_;
  bool enabled_;
  const char* what_;
};

// Streams host tensors (any of f32, f16, bf16) to the device as bf16 through two pinned chunk buffers.
class uploader {
 public:
  static constexpr size_t chunk_elements = size_t{16} << 20;  // 32 MiB of bf16 per chunk

  uploader() {
    for (int i = 0; i < 2; ++i) {
      staging_[i].reserve(chunk_elements * sizeof(uint16_t));
      NF_CUDA_CHECK(cudaEventCreateWithFlags(&done_[i], cudaEventDisableTiming));
      NF_CUDA_CHECK(cudaEventRecord(done_[i], stream_));
    }
  }
  ~uploader() {
    cudaStreamSynchronize(stream_);
    for (cudaEvent_t e : done_) cudaEventDestroy(e);
  }
  uploader(const uploader&) = delete;
  uploader& operator=(const uploader&) = delete;

  // Appends `view` to the device tensor at `destination` (element offset advanced by the caller).
  void upload(const tensor_view& view, __nv_bfloat16* destination) {
    const size_t count = static_cast<size_t>(view.num_elements());
    const size_t element_bytes = dtype_size(view.type);
    for (size_t start = 0; start < count; start += chunk_elements) {
      const size_t n = std::min(chunk_elements, count - start);
      NF_CUDA_CHECK(cudaEventSynchronize(done_[next_]));
      uint16_t* out = staging_[next_].as<uint16_t>();
      const std::byte* in = view.data + start * element_bytes;
      switch (view.type) {
        case dtype::bf16: std::memcpy(out, in, n * sizeof(uint16_t)); break;
        case dtype::f32:
          for (size_t i = 0; i < n; ++i) {
            float x;
            std::memcpy(&x, in + i * 4, 4);
            out[i] = float_to_bf16(x);
          }
          break;
        case dtype::f16:
          for (size_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, in + i * 2, 2);
            out[i] = float_to_bf16(f16_to_float(h));
          }
          break;
        default: NF_CHECK(false, "unexpected dtype");
      }
      NF_CUDA_CHECK(cudaMemcpyAsync(destination + start, out, n * sizeof(uint16_t), cudaMemcpyHostToDevice, stream_));
      NF_CUDA_CHECK(cudaEventRecord(done_[next_], stream_));
      next_ ^= 1;
    }
  }
  void finish() { NF_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  memory_block staging_[2] = {memory_block(true), memory_block(true)};  // [chunk_elements] bf16 each
  cudaEvent_t done_[2] = {};
  cudaStream_t stream_ = cudaStreamPerThread;
  int next_ = 0;
};

// Uploads the tensors `names` (each checked against its shape) back to back into `destination`.
void upload_fused(const safetensors_checkpoint& checkpoint, uploader& up, __nv_bfloat16* destination,
                  const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts) {
  size_t offset = 0;
  for (const auto& [name, shape] : parts) {
    const tensor_view& view = checkpoint.get(name);
    if (view.shape != shape)
      fail("tensor '{}' has shape [{}], but config.json implies [{}]", name, fmt::join(view.shape, ", "),
           fmt::join(shape, ", "));
    if (view.type != dtype::f32 && view.type != dtype::f16 && view.type != dtype::bf16)
      fail("tensor '{}' is stored as {}; weights must be F32, F16 or BF16", name, dtype_name(view.type));
    up.upload(view, destination + offset);
    offset += static_cast<size_t>(view.num_elements());
  }
}

void load_checkpoint(const model_config& c, const std::filesystem::path& dir, device_weights& w, bool show_progress) {
  const safetensors_checkpoint checkpoint(dir);
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size, q = c.q_size(), kv = c.kv_size();
  uploader up;
  upload_fused(checkpoint, up, w.embed, {{"model.embed_tokens.weight", {c.vocab_size, hidden}}});
  upload_fused(checkpoint, up, w.final_norm, {{"model.norm.weight", {hidden}}});
  if (!c.tie_word_embeddings) {
    if (!checkpoint.find("lm_head.weight"))
      fail("checkpoint has no tensor 'lm_head.weight' and config.json does not tie word embeddings");
    upload_fused(checkpoint, up, w.lm_head, {{"lm_head.weight", {c.vocab_size, hidden}}});
  }
  progress_bar bar(c.num_layers, show_progress, "loading weights");
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    const device_layer_weights& l = w.layers[i];
    upload_fused(checkpoint, up, l.input_norm, {{p + "input_layernorm.weight", {hidden}}});
    upload_fused(checkpoint, up, l.post_attention_norm, {{p + "post_attention_layernorm.weight", {hidden}}});
    upload_fused(checkpoint, up, l.qkv,
                 {{p + "self_attn.q_proj.weight", {q, hidden}},
                  {p + "self_attn.k_proj.weight", {kv, hidden}},
                  {p + "self_attn.v_proj.weight", {kv, hidden}}});
    if (c.qkv_bias)
      upload_fused(checkpoint, up, l.qkv_bias,
                   {{p + "self_attn.q_proj.bias", {q}}, {p + "self_attn.k_proj.bias", {kv}}, {p + "self_attn.v_proj.bias", {kv}}});
    upload_fused(checkpoint, up, l.o, {{p + "self_attn.o_proj.weight", {hidden, q}}});
    if (c.o_bias) upload_fused(checkpoint, up, l.o_bias, {{p + "self_attn.o_proj.bias", {hidden}}});
    upload_fused(checkpoint, up, l.gate_up, {{p + "mlp.gate_proj.weight", {inter, hidden}}, {p + "mlp.up_proj.weight", {inter, hidden}}});
    upload_fused(checkpoint, up, l.down, {{p + "mlp.down_proj.weight", {hidden, inter}}});
    if (c.mlp_bias) {
      upload_fused(checkpoint, up, l.gate_up_bias, {{p + "mlp.gate_proj.bias", {inter}}, {p + "mlp.up_proj.bias", {inter}}});
      upload_fused(checkpoint, up, l.down_bias, {{p + "mlp.down_proj.bias", {hidden}}});
    }
    bar.update(i + 1);
  }
  up.finish();
}

// Same tensors, order of random streams and values as model/weights.cpp's dummy_weights.
void fill_dummy(const model_config& c, const weight_source& source, device_weights& w, bool show_progress) {
  const size_t hidden = c.hidden_size, inter = c.intermediate_size, qkv = c.qkv_size(), q = c.q_size();
  const cudaStream_t stream = cudaStreamPerThread;
  uint64_t stream_id = 0;
  auto random = [&](__nv_bfloat16* out, size_t count) {
    NF_CUDA_CHECK(fill_uniform(out, count, source.dummy_seed, stream_id++, source.dummy_std, stream));
  };
  auto ones = [&](__nv_bfloat16* out, size_t count) { NF_CUDA_CHECK(fill_constant(out, count, 1.0f, stream)); };
  random(w.embed, c.vocab_size * hidden);
  ones(w.final_norm, hidden);
  if (!c.tie_word_embeddings) random(w.lm_head, c.vocab_size * hidden);
  progress_bar bar(c.num_layers, show_progress, "generating weights");
  for (int i = 0; i < c.num_layers; ++i) {
    const device_layer_weights& l = w.layers[i];
    ones(l.input_norm, hidden);
    ones(l.post_attention_norm, hidden);
    random(l.qkv, qkv * hidden);
    if (c.qkv_bias) random(l.qkv_bias, qkv);
    random(l.o, hidden * q);
    if (c.o_bias) random(l.o_bias, hidden);
    random(l.gate_up, 2 * inter * hidden);
    random(l.down, hidden * inter);
    if (c.mlp_bias) {
      random(l.gate_up_bias, 2 * inter);
      random(l.down_bias, hidden);
    }
    bar.update(i + 1);
  }
  NF_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace

device_weights load_device_weights(const model_config& config, const weight_source& source, bool show_progress) {
  device_weights w;
  carver counter;
  carve(config, counter, w);
  w.storage.allocate_exact(counter.bytes());
  carver placer;
  placer.start(w.storage.as<std::byte>());
  carve(config, placer, w);
  if (source.dummy) fill_dummy(config, source, w, show_progress);
  else load_checkpoint(config, source.model_dir, w, show_progress);
  return w;
}

}  // namespace nf::cuda
