// Owning handles of device and pinned host memory, and the check that turns a CUDA error into an nf::error.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "core/error.h"

#define NF_CUDA_CHECK(expr)                                                                       \
  do {                                                                                            \
    const cudaError_t nf_cuda_status = (expr);                                                    \
    if (nf_cuda_status != cudaSuccess) ::nf::fail("CUDA error in {}: {}", #expr, cudaGetErrorString(nf_cuda_status)); \
  } while (0)

namespace nf::cuda {

// Device memory, or page-locked host memory when `pinned_host` is set. Resizing drops the old contents.
class memory_block {
 public:
  explicit memory_block(bool pinned_host = false) : pinned_host_(pinned_host) {}
  memory_block(const memory_block&) = delete;
  memory_block& operator=(const memory_block&) = delete;
  memory_block(memory_block&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)), pinned_host_(other.pinned_host_) {}
  memory_block& operator=(memory_block&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
      pinned_host_ = other.pinned_host_;
    }
    return *this;
  }
  ~memory_block() { release(); }

  // Makes room for at least `bytes` (grows by half again to avoid reallocating every step).
  void reserve(size_t bytes) {
    if (bytes <= bytes_) return;
    release();
    const size_t size = bytes + bytes / 2;
    if (pinned_host_) {
      NF_CUDA_CHECK(cudaHostAlloc(&data_, size, cudaHostAllocDefault));
    } else {
      const cudaError_t status = cudaMalloc(&data_, size);
      if (status != cudaSuccess)
        fail("cannot allocate {:.2f} GiB on the device: {}", size / double(1 << 30), cudaGetErrorString(status));
    }
    bytes_ = size;
  }
  // Exactly `bytes`, once.
  void allocate_exact(size_t bytes) {
    release();
    const cudaError_t status = cudaMalloc(&data_, bytes == 0 ? 1 : bytes);
    if (status != cudaSuccess)
      fail("cannot allocate {:.2f} GiB on the device: {}", bytes / double(1 << 30), cudaGetErrorString(status));
    bytes_ = bytes;
  }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }
  size_t bytes() const { return bytes_; }

 private:
  void release() {
    if (data_) {
      if (pinned_host_) cudaFreeHost(data_);
      else cudaFree(data_);
    }
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t bytes_ = 0;
  bool pinned_host_ = false;
};

}  // namespace nf::cuda
