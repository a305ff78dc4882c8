// Device sampler: host-side packing of the per-row parameters and CSR token lists, one upload, one launch,
// one download.
#include "engine/cuda/device_sampler.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "kernels/cuda/sampling.h"

namespace nf::cuda {
namespace {

constexpr size_t section_alignment = 16;

size_t aligned(size_t bytes) { return (bytes + section_alignment - 1) / section_alignment * section_alignment; }

void check_ids(std::span<const int32_t> ids, int vocab, const char* what) {
  for (int32_t id : ids)
    if (id < 0 || id >= vocab) fail("{} token id {} is outside the vocabulary of {} tokens", what, id, vocab);
}

// Sections of one contiguous buffer: offsets in bytes, in the order the kernel's arguments take them.
struct input_layout {
  size_t params = 0, penalty_offsets = 0, mask_offsets = 0, penalty_ids = 0, penalty_counts = 0, mask_ids = 0, end = 0;
  input_layout(size_t num_rows, size_t num_penalty, size_t num_mask) {
    penalty_offsets = params + aligned(num_rows * sizeof(kernels::sampling_row_params));
    mask_offsets = penalty_offsets + aligned((num_rows + 1) * sizeof(int32_t));
    penalty_ids = mask_offsets + aligned((num_rows + 1) * sizeof(int32_t));
    penalty_counts = penalty_ids + aligned(num_penalty * sizeof(int32_t));
    mask_ids = penalty_counts + aligned(num_penalty * sizeof(int32_t));
    end = mask_ids + aligned(num_mask * sizeof(int32_t));
  }
};

struct output_layout {
  size_t token_ids = 0, logprobs = 0, top_ids = 0, top_logprobs = 0, end = 0;
  explicit output_layout(size_t num_rows) {
    logprobs = token_ids + aligned(num_rows * sizeof(int32_t));
    top_ids = logprobs + aligned(num_rows * sizeof(float));
    top_logprobs = top_ids + aligned(num_rows * kernels::max_top_logprobs * sizeof(int32_t));
    end = top_logprobs + aligned(num_rows * kernels::max_top_logprobs * sizeof(float));
  }
};

template <typename T>
T* at(void* base, size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

}  // namespace

void device_sampler::sample(const __nv_bfloat16* logits, int vocab, std::span<const sampling_context> rows,
                            cudaStream_t stream, std::vector<sample_result>& results) {
  const size_t num_rows = rows.size();
  results.assign(num_rows, sample_result{});
  if (num_rows == 0) return;
  NF_CHECK(vocab > 0 && logits != nullptr, "device sampler needs logits");

  std::vector<kernels::sampling_row_params> params(num_rows);
  std::vector<int32_t> penalty_offsets{0}, mask_offsets{0}, penalty_ids, penalty_counts, mask_ids;
  for (size_t r = 0; r < num_rows; ++r) {
    const sampling_context& context = rows[r];
    NF_CHECK(context.params != nullptr, "row {} has no sampling parameters", r);
    const sampling_params& p = *context.params;
    kernels::sampling_row_params& row = params[r];
    row.temperature = p.temperature;
    row.top_k = p.top_k;
    row.top_p = p.top_p;
    row.min_p = p.min_p;
    row.repetition_penalty = p.repetition_penalty;
    row.presence_penalty = p.presence_penalty;
    row.frequency_penalty = p.frequency_penalty;
    if (p.logprobs > kernels::max_top_logprobs) fail("logprobs must be at most {}, got {}", kernels::max_top_logprobs, p.logprobs);
    row.num_logprobs = p.logprobs < 0 ? -1 : p.logprobs;
    row.seed = context.seed;
    row.stream = context.stream;
    row.position = static_cast<uint32_t>(context.output_token_ids.size());

    // Penalty entries: every distinct id the penalties touch, with its count in the output.
    const bool repetition = p.repetition_penalty != 1.0f;
    const bool additive = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
    if (repetition || additive) {
      // Distinct ids in first-seen order, counted in token_counts_ (-1: not seen), which is reset after.
      check_ids(context.output_token_ids, vocab, "output");
      if (repetition) check_ids(context.prompt_token_ids, vocab, "prompt");
      token_counts_.resize(vocab, -1);
      const size_t first_entry = penalty_ids.size();
      for (int32_t id : context.output_token_ids) {
        if (token_counts_[id] < 0) {
          token_counts_[id] = 0;
          penalty_ids.push_back(id);
        }
        ++token_counts_[id];
      }
      if (repetition)
        for (int32_t id : context.prompt_token_ids)
          if (token_counts_[id] < 0) {
            token_counts_[id] = 0;
            penalty_ids.push_back(id);
          }
      for (size_t e = first_entry; e < penalty_ids.size(); ++e) {
        penalty_counts.push_back(token_counts_[penalty_ids[e]]);
        token_counts_[penalty_ids[e]] = -1;
      }
    }
    penalty_offsets.push_back(static_cast<int32_t>(penalty_ids.size()));

    if (static_cast<int64_t>(context.output_token_ids.size()) < p.min_tokens) {
      row.mask_stop_tokens = 1;
      if (!p.ignore_eos) {
        check_ids(context.eos_token_ids, vocab, "EOS");
        mask_ids.insert(mask_ids.end(), context.eos_token_ids.begin(), context.eos_token_ids.end());
      }
      for (int32_t id : p.stop_token_ids)  // out-of-range stop ids are ignored, as on the host
        if (id >= 0 && id < vocab) mask_ids.push_back(id);
    }
    mask_offsets.push_back(static_cast<int32_t>(mask_ids.size()));
  }

  const input_layout in(num_rows, penalty_ids.size(), mask_ids.size());
  const output_layout out(num_rows);
  staging_.reserve(in.end + out.end);
  device_inputs_.reserve(in.end);
  device_outputs_.reserve(out.end);
  workspace_.reserve(kernels::sampling_workspace_floats(static_cast<int>(num_rows), vocab) * sizeof(float));

  void* host = staging_.as<void>();
  std::memcpy(at<void>(host, in.params), params.data(), params.size() * sizeof(params[0]));
  std::memcpy(at<void>(host, in.penalty_offsets), penalty_offsets.data(), penalty_offsets.size() * sizeof(int32_t));
  std::memcpy(at<void>(host, in.mask_offsets), mask_offsets.data(), mask_offsets.size() * sizeof(int32_t));
  std::memcpy(at<void>(host, in.penalty_ids), penalty_ids.data(), penalty_ids.size() * sizeof(int32_t));
  std::memcpy(at<void>(host, in.penalty_counts), penalty_counts.data(), penalty_counts.size() * sizeof(int32_t));
  std::memcpy(at<void>(host, in.mask_ids), mask_ids.data(), mask_ids.size() * sizeof(int32_t));
  void* device_in = device_inputs_.as<void>();
  NF_CUDA_CHECK(cudaMemcpyAsync(device_in, host, in.end, cudaMemcpyHostToDevice, stream));

  kernels::sampling_token_lists lists;
  lists.penalty_offsets = at<const int32_t>(device_in, in.penalty_offsets);
  lists.penalty_ids = at<const int32_t>(device_in, in.penalty_ids);
  lists.penalty_counts = at<const int32_t>(device_in, in.penalty_counts);
  lists.mask_offsets = at<const int32_t>(device_in, in.mask_offsets);
  lists.mask_ids = at<const int32_t>(device_in, in.mask_ids);
  void* device_out = device_outputs_.as<void>();
  kernels::sampling_outputs outputs;
  outputs.token_ids = at<int32_t>(device_out, out.token_ids);
  outputs.logprobs = at<float>(device_out, out.logprobs);
  outputs.top_ids = at<int32_t>(device_out, out.top_ids);
  outputs.top_logprobs = at<float>(device_out, out.top_logprobs);
  NF_CUDA_CHECK(kernels::sample_rows(logits, at<const kernels::sampling_row_params>(device_in, in.params), lists,
                                     workspace_.as<float>(), outputs, static_cast<int>(num_rows), vocab, stream));

  void* host_out = at<void>(host, in.end);
  NF_CUDA_CHECK(cudaMemcpyAsync(host_out, device_out, out.end, cudaMemcpyDeviceToHost, stream));
  NF_CUDA_CHECK(cudaStreamSynchronize(stream));

  const int32_t* token_ids = at<const int32_t>(host_out, out.token_ids);
  const float* logprobs = at<const float>(host_out, out.logprobs);
  const int32_t* top_ids = at<const int32_t>(host_out, out.top_ids);
  const float* top_logprobs = at<const float>(host_out, out.top_logprobs);
  for (size_t r = 0; r < num_rows; ++r) {
    sample_result& result = results[r];
    result.token_id = token_ids[r];
    if (params[r].num_logprobs < 0) continue;
    result.logprob = logprobs[r];
    const int num_top = std::min(params[r].num_logprobs, vocab);
    for (int j = 0; j < num_top; ++j) {
      const size_t k = r * kernels::max_top_logprobs + j;
      result.top_logprobs.push_back({top_ids[k], top_logprobs[k]});
    }
  }
}

}  // namespace nf::cuda
