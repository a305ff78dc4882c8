// Variant 3 of prefill_attention: the Hopper warpgroup-MMA kernel (head_dim 128). Internal to the kernels library;
// callers go through prefill_attention(), which falls back to variant 0 where this one does not apply.
#pragma once

#include "kernels/cuda/prefill_attention.h"

namespace nf::kernels::detail {

bool prefill_attention_wgmma_supports(const prefill_attention_args& args);
cudaError_t prefill_attention_wgmma(const prefill_attention_args& args, cudaStream_t stream);

}  // namespace nf::kernels::detail
