// RMSNorm on the device, bf16 storage and fp32 math: plain, and fused with the residual add.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace nf::kernels {

// out = x / rms(x) * weight, per row. hidden_size must be a multiple of 8. num_sms <= 0: the whole device.
cudaError_t rmsnorm(const __nv_bfloat16* x,       // [num_tokens, hidden_size]
                    const __nv_bfloat16* weight,  // [hidden_size]
                    __nv_bfloat16* out,           // [num_tokens, hidden_size]
                    int num_tokens, int hidden_size, float eps, int num_sms, cudaStream_t stream);

// residual += delta (rounded to bf16 in place); out = rmsnorm(residual) * weight.
cudaError_t add_rmsnorm(__nv_bfloat16* residual,      // [num_tokens, hidden_size], updated in place
                        const __nv_bfloat16* delta,   // [num_tokens, hidden_size]
                        const __nv_bfloat16* weight,  // [hidden_size]
                        __nv_bfloat16* out,           // [num_tokens, hidden_size]
                        int num_tokens, int hidden_size, float eps, int num_sms, cudaStream_t stream);

}  // namespace nf::kernels
