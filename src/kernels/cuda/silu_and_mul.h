// SwiGLU activation on the device: out = silu(gate) * up over rows holding [gate | up], bf16, fp32 math.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace nf::kernels {

// intermediate_size must be a multiple of 8. num_sms <= 0: the whole device.
cudaError_t silu_and_mul(const __nv_bfloat16* gate_up,  // [num_tokens, 2 * intermediate_size]
                         __nv_bfloat16* out,            // [num_tokens, intermediate_size]
                         int num_tokens, int intermediate_size, int num_sms, cudaStream_t stream);

}  // namespace nf::kernels
