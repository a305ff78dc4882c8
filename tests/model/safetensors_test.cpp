// Safetensors files that lie or are cut short, and checkpoints that do not match their config: each is a clear
// nf::error naming the problem, never a crash or an out-of-bounds read.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "test_paths.h"

namespace nf {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

class scratch_dir {
 public:
  scratch_dir() {
    path_ = fs::temp_directory_path() / ("nanoflow-test-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~scratch_dir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_safetensors(const fs::path& path, const json& header, size_t data_bytes) {
  const std::string text = header.dump();
  const uint64_t size = text.size();
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(&size), 8);
  file.write(text.data(), text.size());
  const std::vector<char> data(data_bytes, 1);
  file.write(data.data(), data.size());
}

std::string open_error(const fs::path& path) {
  try {
    safetensors_file file(path);
  } catch (const nf::error& e) {
    return e.what();
  }
  return "";
}

TEST(safetensors, reads_a_valid_file) {
  scratch_dir dir;
  write_safetensors(dir.path() / "a.safetensors",
                    {{"x", {{"dtype", "BF16"}, {"shape", {2, 3}}, {"data_offsets", {0, 12}}}},
                     {"__metadata__", {{"format", "pt"}}}},
                    12);
  safetensors_file file(dir.path() / "a.safetensors");
  ASSERT_EQ(file.tensors().size(), 1u);
  EXPECT_EQ(file.tensors().at("x").shape, (std::vector<int64_t>{2, 3}));
}

TEST(safetensors, header_that_lies_about_shape) {
  scratch_dir dir;
  write_safetensors(dir.path() / "a.safetensors",
                    {{"x", {{"dtype", "F32"}, {"shape", {4, 4}}, {"data_offsets", {0, 32}}}}}, 32);
  EXPECT_NE(open_error(dir.path() / "a.safetensors").find("'x' has shape [4,4]"), std::string::npos);
}

TEST(safetensors, offsets_past_the_end) {
  scratch_dir dir;
  write_safetensors(dir.path() / "a.safetensors",
                    {{"x", {{"dtype", "F32"}, {"shape", {8}}, {"data_offsets", {0, 32}}}}}, 16);
  EXPECT_NE(open_error(dir.path() / "a.safetensors").find("truncated"), std::string::npos);
}

TEST(safetensors, overlapping_tensors) {
  scratch_dir dir;
  write_safetensors(dir.path() / "a.safetensors",
                    {{"x", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}},
                     {"y", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {8, 24}}}}},
                    24);
  EXPECT_NE(open_error(dir.path() / "a.safetensors").find("overlap"), std::string::npos);
}

TEST(safetensors, header_length_past_the_file) {
  scratch_dir dir;
  const fs::path path = dir.path() / "a.safetensors";
  std::ofstream(path, std::ios::binary).write("\xff\xff\x00\x00\x00\x00\x00\x00{}", 10);
  EXPECT_NE(open_error(path).find("truncated or corrupt"), std::string::npos);
  std::ofstream(path, std::ios::binary).write("abc", 3);
  EXPECT_NE(open_error(path).find("truncated"), std::string::npos);
}

TEST(safetensors, header_that_is_not_json) {
  scratch_dir dir;
  const fs::path path = dir.path() / "a.safetensors";
  const std::string junk = "not json at all";
  const uint64_t size = junk.size();
  std::ofstream file(path, std::ios::binary);
  file.write(reinterpret_cast<const char*>(&size), 8);
  file << junk;
  file.close();
  EXPECT_NE(open_error(path).find("not a JSON object"), std::string::npos);
}

TEST(safetensors, unsupported_dtype_is_named) {
  scratch_dir dir;
  write_safetensors(dir.path() / "a.safetensors",
                    {{"x", {{"dtype", "F8_E4M3"}, {"shape", {4}}, {"data_offsets", {0, 4}}}}}, 4);
  EXPECT_NE(open_error(dir.path() / "a.safetensors").find("F8_E4M3"), std::string::npos);
}

// Copies a reference checkpoint so that one file of it can be damaged.
fs::path copy_checkpoint(const char* name, const fs::path& into) {
  fs::copy(test::model_dir(name), into, fs::copy_options::recursive);
  return into;
}

std::string load_error(const fs::path& dir) {
  try {
    load_weights(dir, load_model_config(dir));
  } catch (const nf::error& e) {
    return e.what();
  }
  return "";
}

TEST(checkpoint, truncated_file) {
  scratch_dir dir;
  const fs::path model = copy_checkpoint("qwen2-bias-tied", dir.path() / "m");
  fs::resize_file(model / "model.safetensors", fs::file_size(model / "model.safetensors") / 2);
  EXPECT_NE(load_error(model).find("truncated"), std::string::npos);
}

TEST(checkpoint, missing_shard) {
  scratch_dir dir;
  const fs::path model = copy_checkpoint("llama3-gqa", dir.path() / "m");
  fs::remove(model / "model-00003-of-00014.safetensors");
  EXPECT_NE(load_error(model).find("missing checkpoint shard"), std::string::npos);
}

TEST(checkpoint, no_weights_at_all) {
  scratch_dir dir;
  const fs::path model = copy_checkpoint("mistral-headdim", dir.path() / "m");
  fs::remove(model / "model.safetensors");
  EXPECT_NE(load_error(model).find("no model.safetensors"), std::string::npos);
}

TEST(checkpoint, config_that_disagrees_with_the_weights) {
  scratch_dir dir;
  const fs::path model = copy_checkpoint("mistral-headdim", dir.path() / "m");
  std::ifstream in(model / "config.json");
  json config = json::parse(in);
  in.close();
  config["intermediate_size"] = 200;
  std::ofstream(model / "config.json") << config.dump();
  EXPECT_NE(load_error(model).find("mlp.gate_proj.weight' has shape [192, 64], but config.json implies [200, 64]"),
            std::string::npos);
}

TEST(checkpoint, untied_config_without_lm_head) {
  scratch_dir dir;
  const fs::path model = copy_checkpoint("qwen2-bias-tied", dir.path() / "m");
  std::ifstream in(model / "config.json");
  json config = json::parse(in);
  in.close();
  config["tie_word_embeddings"] = false;
  std::ofstream(model / "config.json") << config.dump();
  EXPECT_NE(load_error(model).find("lm_head.weight"), std::string::npos);
}

}  // namespace
}  // namespace nf
