// bf16 GEMM through cuBLASLt: y[m, n] = x[m, k] * w[n, k]^T (+ bias[n]), fp32 accumulation.
// One gemm_runner per stream owner: it holds the cuBLASLt handle, a workspace, and the plans (layouts and
// the heuristic's algorithm) cached per (m, n, k, bias, SM budget), so steady-state calls do no search.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>

namespace nf::kernels {

class gemm_runner {
 public:
  gemm_runner() = default;
  gemm_runner(const gemm_runner&) = delete;
  gemm_runner& operator=(const gemm_runner&) = delete;
  ~gemm_runner();

  // Creates the handle and a workspace of `workspace_bytes` on the current device.
  cudaError_t init(size_t workspace_bytes = 32u << 20);

  // num_sms <= 0: no SM budget (cuBLASLt uses the whole device); otherwise CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET.
  cudaError_t run(const __nv_bfloat16* x,     // [m, k]
                  const __nv_bfloat16* w,     // [n, k]
                  const __nv_bfloat16* bias,  // [n] or nullptr
                  __nv_bfloat16* y,           // [m, n]
                  int m, int n, int k, int num_sms, cudaStream_t stream);

  // The cuBLASLt status of the last failed call (CUBLAS_STATUS_SUCCESS when none failed).
  cublasStatus_t last_status() const { return last_status_; }

 private:
  struct plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  using plan_key = std::tuple<int, int, int, int, bool>;  // m, n, k, num_sms, has_bias
  cudaError_t make_plan(const plan_key& key, plan& out);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;  // [workspace_bytes_]
  size_t workspace_bytes_ = 0;
  std::map<plan_key, plan> plans_;
  cublasStatus_t last_status_ = CUBLAS_STATUS_SUCCESS;
};

}  // namespace nf::kernels
