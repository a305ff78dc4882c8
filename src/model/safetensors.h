// Memory-mapped safetensors files (single or sharded with model.safetensors.index.json), validated on open:
// a header that lies about dtypes, shapes or offsets is an nf::error, never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace nf {

struct tensor_view {
  std::string name;
  dtype type = dtype::f32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;  // inside the mapping; valid while the file stays open
  size_t num_bytes = 0;
  int64_t num_elements() const;
};

// One mapped .safetensors file.
class safetensors_file {
 public:
  explicit safetensors_file(const std::filesystem::path& path);
  ~safetensors_file();
  safetensors_file(const safetensors_file&) = delete;
  safetensors_file& operator=(const safetensors_file&) = delete;

  const std::map<std::string, tensor_view>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::map<std::string, tensor_view> tensors_;
};

// Every tensor of a model directory, across shards.
class safetensors_checkpoint {
 public:
  explicit safetensors_checkpoint(const std::filesystem::path& model_dir);
  // nullptr when absent.
  const tensor_view* find(const std::string& name) const;
  // Throws nf::error naming the tensor when absent.
  const tensor_view& get(const std::string& name) const;
  size_t num_tensors() const { return index_.size(); }

 private:
  std::vector<std::unique_ptr<safetensors_file>> files_;
  std::map<std::string, const tensor_view*> index_;
};

}  // namespace nf
