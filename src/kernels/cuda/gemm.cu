// cuBLASLt bf16 GEMM wrapper. Row-major y = x w^T is computed as the column-major product
// y^T[n, m] = w[n, k] (transposed, k-major) * x^T[k, m], so no data is transposed.
#include "kernels/cuda/gemm.h"

namespace nf::kernels {

gemm_runner::~gemm_runner() {
  for (auto& [key, p] : plans_) {
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    cublasLtMatmulDescDestroy(p.desc);
  }
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

cudaError_t gemm_runner::init(size_t workspace_bytes) {
  if (handle_) return cudaSuccess;
  last_status_ = cublasLtCreate(&handle_);
  if (last_status_ != CUBLAS_STATUS_SUCCESS) return cudaErrorUnknown;
  workspace_bytes_ = workspace_bytes;
  if (workspace_bytes_ > 0) return cudaMalloc(&workspace_, workspace_bytes_);
  return cudaSuccess;
}

cudaError_t gemm_runner::make_plan(const plan_key& key, plan& p) {
  const auto [m, n, k, num_sms, has_bias] = key;
  cublasStatus_t s = cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof(trans));
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans, sizeof(no_trans));
  if (s == CUBLAS_STATUS_SUCCESS && has_bias) {
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_16BF;
    s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue));
    if (s == CUBLAS_STATUS_SUCCESS)
      s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type));
  }
  if (s == CUBLAS_STATUS_SUCCESS && num_sms > 0) {
    const int32_t target = num_sms;
    s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, &target, sizeof(target));
  }
  // A = w as stored: column-major [k, n] with leading dimension k, used transposed.
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, k, n, k);
  // B = x as stored: column-major [k, m] with leading dimension k.
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, k, m, k);
  // C = D = y as stored: column-major [n, m] with leading dimension n.
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&p.c, CUDA_R_16BF, n, m, n);

  cublasLtMatmulPreference_t pref = nullptr;
  if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulPreferenceCreate(&pref);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes_,
                                             sizeof(workspace_bytes_));
  cublasLtMatmulHeuristicResult_t result{};
  int num_results = 0;
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulAlgoGetHeuristic(handle_, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result, &num_results);
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  if (s == CUBLAS_STATUS_SUCCESS && num_results == 0) s = CUBLAS_STATUS_NOT_SUPPORTED;
  if (s != CUBLAS_STATUS_SUCCESS) {
    last_status_ = s;
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    p = plan{};
    return cudaErrorNotSupported;
  }
  p.algo = result.algo;
  return cudaSuccess;
}

cudaError_t gemm_runner::run(const __nv_bfloat16* x, const __nv_bfloat16* w, const __nv_bfloat16* bias,
                             __nv_bfloat16* y, int m, int n, int k, int num_sms, cudaStream_t stream) {
  if (!handle_) return cudaErrorNotReady;
  if (m < 0 || n <= 0 || k <= 0) return cudaErrorInvalidValue;
  if (m == 0) return cudaSuccess;
  const plan_key key{m, n, k, num_sms > 0 ? num_sms : 0, bias != nullptr};
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    plan p;
    if (cudaError_t err = make_plan(key, p); err != cudaSuccess) return err;
    it = plans_.emplace(key, p).first;
  }
  plan& p = it->second;
  if (bias) {
    cublasStatus_t s = cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
    if (s != CUBLAS_STATUS_SUCCESS) {
      last_status_ = s;
      return cudaErrorUnknown;
    }
  }
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t s = cublasLtMatmul(handle_, p.desc, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c, &p.algo,
                                          workspace_, workspace_bytes_, stream);
  if (s != CUBLAS_STATUS_SUCCESS) {
    last_status_ = s;
    return cudaErrorUnknown;
  }
  return cudaGetLastError();
}

}  // namespace nf::kernels
