// Safetensors reader: 8-byte little-endian header length, a JSON header, then the raw data section.
// Everything the header claims is checked against the file before any tensor is exposed.
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace nf {
namespace {

using json = nlohmann::json;
constexpr uint64_t max_header_bytes = 100ull << 20;

dtype parse_dtype(const std::string& name, const std::string& path, const std::string& tensor) {
  if (name == "F32") return dtype::f32;
  if (name == "F16") return dtype::f16;
  if (name == "BF16") return dtype::bf16;
  if (name == "I32") return dtype::i32;
  if (name == "I64") return dtype::i64;
  fail("{}: tensor '{}' has dtype {}, which is not supported (F32, F16, BF16)", path, tensor, name);
}

}  // namespace

int64_t tensor_view::num_elements() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

safetensors_file::safetensors_file(const std::filesystem::path& path) : path_(path) {
  const std::string name = path.string();
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open {}: {}", name, std::strerror(errno));
  struct stat status {};
  if (::fstat(fd, &status) != 0 || !S_ISREG(status.st_mode)) {
    ::close(fd);
    fail("{} is not a regular file", name);
  }
  mapping_size_ = static_cast<size_t>(status.st_size);
  if (mapping_size_ < 8) {
    ::close(fd);
    fail("{} is truncated: {} bytes, too short for a safetensors header", name, mapping_size_);
  }
  mapping_ = ::mmap(nullptr, mapping_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapping_ == MAP_FAILED) {
    mapping_ = nullptr;
    fail("cannot map {}: {}", name, std::strerror(errno));
  }
  try {
    const auto* bytes = static_cast<const std::byte*>(mapping_);
    uint64_t header_size = 0;
    std::memcpy(&header_size, bytes, 8);
    if (header_size > max_header_bytes || header_size > mapping_size_ - 8)
      fail("{} is truncated or corrupt: header claims {} bytes, file has {}", name, header_size, mapping_size_);
    const auto* header_begin = reinterpret_cast<const char*>(bytes + 8);
    json header = json::parse(header_begin, header_begin + header_size, nullptr, false);
    if (header.is_discarded() || !header.is_object()) fail("{}: the safetensors header is not a JSON object", name);
    const std::byte* data = bytes + 8 + header_size;
    const uint64_t data_size = mapping_size_ - 8 - header_size;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (const auto& [tensor_name, entry] : header.items()) {
      if (tensor_name == "__metadata__") continue;
      if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
        fail("{}: tensor '{}' lacks dtype, shape or data_offsets", name, tensor_name);
      const auto& offsets = entry["data_offsets"];
      if (!entry["dtype"].is_string() || !entry["shape"].is_array() || !offsets.is_array() || offsets.size() != 2 ||
          !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
        fail("{}: tensor '{}' has a malformed entry {}", name, tensor_name, entry.dump());
      tensor_view view;
      view.name = tensor_name;
      view.type = parse_dtype(entry["dtype"].get<std::string>(), name, tensor_name);
      uint64_t num_elements = 1;
      for (const auto& dim : entry["shape"]) {
        if (!dim.is_number_unsigned()) fail("{}: tensor '{}' has a bad shape {}", name, tensor_name, entry["shape"].dump());
        const uint64_t extent = dim.get<uint64_t>();
        if (extent != 0 && num_elements > (uint64_t{1} << 48) / extent)
          fail("{}: tensor '{}' has an impossibly large shape", name, tensor_name);
        num_elements *= extent;
        view.shape.push_back(static_cast<int64_t>(extent));
      }
      const uint64_t begin = offsets[0].get<uint64_t>();
      const uint64_t end = offsets[1].get<uint64_t>();
      if (begin > end || end > data_size)
        fail("{} is truncated or corrupt: tensor '{}' spans bytes [{}, {}) of a {}-byte data section", name, tensor_name,
             begin, end, data_size);
      if (end - begin != num_elements * dtype_size(view.type))
        fail("{}: tensor '{}' has shape {} of {} ({} bytes) but its offsets span {} bytes", name, tensor_name,
             entry["shape"].dump(), dtype_name(view.type), num_elements * dtype_size(view.type), end - begin);
      view.data = data + begin;
      view.num_bytes = end - begin;
      ranges.emplace_back(begin, end);
      tensors_.emplace(tensor_name, std::move(view));
    }
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i)
      if (ranges[i].first < ranges[i - 1].second) fail("{} is corrupt: the data of two tensors overlap", name);
  } catch (...) {
    ::munmap(mapping_, mapping_size_);
    mapping_ = nullptr;
    throw;
  }
}

safetensors_file::~safetensors_file() {
  if (mapping_) ::munmap(mapping_, mapping_size_);
}

safetensors_checkpoint::safetensors_checkpoint(const std::filesystem::path& model_dir) {
  std::vector<std::filesystem::path> shard_paths;
  const auto index_path = model_dir / "model.safetensors.index.json";
  if (std::filesystem::exists(index_path)) {
    std::ifstream file(index_path);
    json index = json::parse(file, nullptr, false);
    if (index.is_discarded() || !index.contains("weight_map") || !index["weight_map"].is_object())
      fail("{}: not a valid index (no weight_map object)", index_path.string());
    std::set<std::string> shard_names;
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      if (!shard.is_string()) fail("{}: weight_map entry for '{}' is not a file name", index_path.string(), tensor);
      const std::string shard_name = shard.get<std::string>();
      if (shard_name.find('/') != std::string::npos || shard_name.find("..") != std::string::npos)
        fail("{}: shard name '{}' must be a plain file name", index_path.string(), shard_name);
      shard_names.insert(shard_name);
    }
    for (const auto& shard_name : shard_names) shard_paths.push_back(model_dir / shard_name);
  } else if (std::filesystem::exists(model_dir / "model.safetensors")) {
    shard_paths.push_back(model_dir / "model.safetensors");
  } else {
    fail("no model.safetensors or model.safetensors.index.json in {}", model_dir.string());
  }
  for (const auto& path : shard_paths) {
    if (!std::filesystem::exists(path)) fail("missing checkpoint shard {}", path.string());
    files_.push_back(std::make_unique<safetensors_file>(path));
    for (const auto& [name, view] : files_.back()->tensors()) {
      if (!index_.emplace(name, &view).second) fail("tensor '{}' appears in more than one shard", name);
    }
  }
}

const tensor_view* safetensors_checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const tensor_view& safetensors_checkpoint::get(const std::string& name) const {
  const tensor_view* view = find(name);
  if (!view) fail("checkpoint has no tensor '{}'", name);
  return *view;
}

}  // namespace nf
