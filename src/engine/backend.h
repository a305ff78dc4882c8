// What the engine needs from a device: run a batch over the paged KV cache and return logits.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/model_batch.h"
#include "engine/sampler.h"
#include "model/model_config.h"
#include "pipeline/pipeline_spec.h"

namespace nf {

// Row i of `logits` ([contexts.size(), vocab]) sampled on the host with contexts[i].
inline void sample_rows(const std::vector<float>& logits, int vocab, std::span<const sampling_context> contexts,
                        std::vector<sample_result>& results) {
  const size_t width = static_cast<size_t>(vocab);
  results.resize(contexts.size());
  for (size_t i = 0; i < contexts.size(); ++i)
    results[i] = sample_token(std::span<const float>(logits.data() + i * width, width), contexts[i]);
}

class backend {
 public:
  virtual ~backend() = default;
  virtual const model_config& config() const = 0;
  virtual std::string name() const = 0;
  virtual int block_size() const = 0;
  virtual int num_kv_blocks() const = 0;
  // Runs every layer for the batch and writes logits of its logit_rows: [num_sampled, vocab_size].
  virtual void forward(const model_batch& batch, std::vector<float>& logits) = 0;
  // Greedy decoding: the highest-logit token of each logit row (the lowest id among equal logits), exactly
  // the argmax of forward()'s logits. Devices override it to pick on the device and return only the ids.
  virtual void forward_argmax(const model_batch& batch, std::vector<int32_t>& token_ids) {
    std::vector<float> logits;
    forward(batch, logits);
    const size_t vocab = static_cast<size_t>(config().vocab_size);
    token_ids.resize(batch.logit_rows.size());
    for (size_t i = 0; i < token_ids.size(); ++i) {
      const auto row = logits.begin() + static_cast<std::ptrdiff_t>(i * vocab);
      token_ids[i] = static_cast<int32_t>(std::max_element(row, row + static_cast<std::ptrdiff_t>(vocab)) - row);
    }
  }
  // Sampling: row i of the logit rows sampled with contexts[i], exactly as sample_token() on forward()'s logits
  // would. Devices override it to sample where the logits are and return only the results.
  virtual void forward_sample(const model_batch& batch, std::span<const sampling_context> contexts,
                              std::vector<sample_result>& results) {
    std::vector<float> logits;
    forward(batch, logits);
    sample_rows(logits, config().vocab_size, contexts, results);
  }
  // The pipeline spec the layers run as, and a switch to another one between steps (nf::error, and no change,
  // when the spec is not valid for the model's op graph).
  virtual const pipeline_spec& schedule() const = 0;
  virtual void set_schedule(const pipeline_spec& spec) = 0;
  // Dense GEMM rate of this backend at the given batch shape, in FLOP/s, measured now (the compute ceiling).
  virtual double measure_gemm_flops(int num_tokens) = 0;
};

}  // namespace nf
