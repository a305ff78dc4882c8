// Variants 3 to 10 of prefill_attention: the Hopper warpgroup-MMA kernels (head_dim 128). Internal to the kernels
// library; callers go through prefill_attention(), which runs variant 0 where these do not apply.
#pragma once

#include "kernels/cuda/prefill_attention.h"

namespace nf::kernels::detail {

// Whether args.variant is one of these (3-10) and the head dim theirs (128).
bool prefill_attention_wgmma_supports(const prefill_attention_args& args);
cudaError_t prefill_attention_wgmma(const prefill_attention_args& args, cudaStream_t stream);

}  // namespace nf::kernels::detail
