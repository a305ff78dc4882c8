// Greedy sampling on the device: the index of the largest logit of each row (the lowest index among equals).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace nf::cuda {

cudaError_t argmax_rows(const __nv_bfloat16* logits,  // [num_rows, vocab_size]
                        int32_t* token_ids,           // [num_rows]
                        int num_rows, int vocab_size, cudaStream_t stream);

}  // namespace nf::cuda
