// load_tokenizer: special ids from the config files, and clear errors for bad model folders.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "core/error.h"
#include "tokenizer/reference_cases.h"
#include "tokenizer/tokenizer.h"

namespace nf {
namespace {

class scratch_dir {
 public:
  scratch_dir() {
    path_ = std::filesystem::temp_directory_path() /
            ("nf_tokenizer_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~scratch_dir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  void write(const std::string& name, const std::string& content) const {
    std::ofstream(path_ / name, std::ios::binary) << content;
  }

 private:
  std::filesystem::path path_;
};

std::string load_error(const std::filesystem::path& dir) {
  try {
    load_tokenizer(dir);
  } catch (const error& e) {
    return e.what();
  }
  return "";
}

TEST(load_tokenizer, tiny_llama3_config_adds_bos_and_knows_eot) {
  const auto tok = load_tokenizer(std::filesystem::path(NANOFLOW_SOURCE_DIR) / "configs/models/tiny-llama3");
  EXPECT_EQ(tok->vocab_size(), 128256);
  EXPECT_EQ(tok->bos_id(), 128000);
  EXPECT_EQ(tok->eos_ids(), std::vector<int32_t>{128009});
  EXPECT_EQ(tok->encode("Hello", true), (std::vector<int32_t>{128000, 9906}));
  EXPECT_EQ(tok->encode("Hello", false), (std::vector<int32_t>{9906}));
  EXPECT_TRUE(tok->is_special(128009));
}

TEST(load_tokenizer, generation_config_adds_eos_ids) {
  scratch_dir dir;
  std::filesystem::copy(test::tokenizer_data_dir("spm-bpe") / "tokenizer.model", dir.path() / "tokenizer.model");
  dir.write("generation_config.json", R"({"bos_token_id": 1, "eos_token_id": [2, 5]})");
  const auto tok = load_tokenizer(dir.path());
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_ids(), (std::vector<int32_t>{2, 5}));
  dir.write("tokenizer_config.json", R"({"add_bos_token": false})");
  EXPECT_EQ(load_tokenizer(dir.path())->encode("the", true), load_tokenizer(dir.path())->encode("the", false));
}

TEST(load_tokenizer, qwen3_eos_and_no_bos) {
  const auto tok = load_tokenizer(test::tokenizer_data_dir("qwen3"));
  EXPECT_FALSE(tok->bos_id().has_value());
  ASSERT_EQ(tok->eos_ids().size(), 1u);
  EXPECT_EQ(tok->piece(tok->eos_ids()[0]), "<|im_end|>");
}

TEST(load_tokenizer, missing_folder_and_files) {
  EXPECT_NE(load_error("/nonexistent/model").find("does not exist"), std::string::npos);
  scratch_dir dir;
  EXPECT_NE(load_error(dir.path()).find("neither tokenizer.json nor tokenizer.model"), std::string::npos);
}

TEST(load_tokenizer, malformed_json) {
  scratch_dir dir;
  dir.write("tokenizer.json", "{\"model\": {");
  EXPECT_NE(load_error(dir.path()).find("not valid JSON"), std::string::npos);
  dir.write("tokenizer.json", "[1, 2]");
  EXPECT_NE(load_error(dir.path()).find("model"), std::string::npos);
}

TEST(load_tokenizer, unknown_model_type) {
  scratch_dir dir;
  dir.write("tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  EXPECT_NE(load_error(dir.path()).find("unsupported tokenizer model type 'WordPiece'"), std::string::npos);
}

TEST(load_tokenizer, unknown_pre_tokenizer_and_bad_merge) {
  scratch_dir dir;
  dir.write("tokenizer.json",
            R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
                "pre_tokenizer": {"type": "Whatever"}})");
  EXPECT_NE(load_error(dir.path()).find("unsupported pre_tokenizer type 'Whatever'"), std::string::npos);
  dir.write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})");
  EXPECT_NE(load_error(dir.path()).find("not in the vocab"), std::string::npos);
}

TEST(load_tokenizer, tiny_bpe_from_json_both_merge_dialects) {
  scratch_dir dir;
  for (const std::string merges : {R"(["a b", "ab c"])", R"([["a", "b"], ["ab", "c"]])"}) {
    dir.write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4},
                                     "merges": )" + merges + "}}");
    const auto tok = load_tokenizer(dir.path());
    EXPECT_EQ(tok->encode("abcab", false), (std::vector<int32_t>{4, 3}));
    EXPECT_EQ(tok->decode(std::vector<int32_t>{4, 3}, false), "abcab");
  }
}

TEST(load_tokenizer, truncated_and_unsupported_sentencepiece_models) {
  scratch_dir dir;
  std::ifstream in(test::tokenizer_data_dir("spm-bpe") / "tokenizer.model", std::ios::binary);
  const std::string model((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  dir.write("tokenizer.model", model.substr(0, model.size() / 2));
  EXPECT_NE(load_error(dir.path()).find("not a usable SentencePiece model"), std::string::npos);
  dir.write("tokenizer.model", "");
  EXPECT_NE(load_error(dir.path()).find("no pieces"), std::string::npos);
  // A model with one piece and model_type UNIGRAM (1): field 1 {piece "a"}, field 2 {model_type 1}.
  dir.write("tokenizer.model", std::string("\x0a\x03\x0a\x01" "a" "\x12\x02\x18\x01", 9));
  EXPECT_NE(load_error(dir.path()).find("only BPE"), std::string::npos);
}

TEST(tokenizer, bad_ids_and_bad_text_are_errors) {
  const auto tok = load_tokenizer(test::tokenizer_data_dir("spm-bpe"));
  EXPECT_THROW(tok->decode(std::vector<int32_t>{-1}, false), error);
  EXPECT_THROW(tok->decode(std::vector<int32_t>{tok->vocab_size()}, false), error);
  EXPECT_THROW(tok->encode("bad \xFF byte", false), error);
}

}  // namespace
}  // namespace nf
