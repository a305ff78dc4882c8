// Embedding gather on the device: out[t, :] = table[token_ids[t], :], bf16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace nf::kernels {

// hidden_size must be a multiple of 8 (16-byte rows). num_sms <= 0: the whole device.
cudaError_t embedding(const int32_t* token_ids,     // [num_tokens]
                      const __nv_bfloat16* table,   // [vocab_size, hidden_size]
                      __nv_bfloat16* out,           // [num_tokens, hidden_size]
                      int num_tokens, int hidden_size, int num_sms, cudaStream_t stream);

}  // namespace nf::kernels
