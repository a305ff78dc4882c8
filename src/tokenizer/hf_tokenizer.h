// Hugging Face tokenizer.json: BPE model (byte-level as in Llama-3/Qwen2, or byte-fallback as in
// Llama-2/Mistral), added tokens, normalizer, pre-tokenizer, post-processor and decoder.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/tokenizer.h"

namespace nf {

class hf_tokenizer final : public tokenizer {
 public:
  // nf::error for a missing or malformed file, or a component this reader does not support.
  static std::unique_ptr<hf_tokenizer> from_file(const std::filesystem::path& path);
  explicit hf_tokenizer(const nlohmann::json& root);
  ~hf_tokenizer() override;

  std::string_view token_bytes(int32_t id) const override;
  int num_leading_spaces_to_strip() const override { return num_leading_spaces_to_strip_; }
  std::string_view piece(int32_t id) const override;
  std::optional<int32_t> id_of(std::string_view piece) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  bool is_special(int32_t id) const override;

 protected:
  std::vector<int32_t> encode_text(std::string_view text) const override;
  special_affixes special_tokens_around_text() const override { return affixes_; }

 private:
  struct added_token;
  struct normalizer_step;
  struct pre_tokenizer_step;

  void load_model(const nlohmann::json& model);
  void load_added_tokens(const nlohmann::json& added);
  void load_normalizer(const nlohmann::json& normalizer);
  void load_pre_tokenizer(const nlohmann::json& pre_tokenizer);
  void load_post_processor(const nlohmann::json& post_processor);
  void load_decoder(const nlohmann::json& decoder);

  // [begin, end, added token id or -1] pieces of text: added tokens and the text between them.
  struct segment {
    size_t begin;
    size_t end;
    int32_t id;
  };
  std::vector<segment> split_added_tokens(std::string_view text, bool normalized) const;
  std::string normalize(std::string_view text) const;
  std::vector<std::string> pre_tokenize(std::string text, bool first_segment) const;
  void encode_word(const std::string& word, std::vector<int32_t>& ids) const;
  void encode_word_uncached(const std::string& word, std::vector<int32_t>& ids) const;

  std::unordered_map<std::string, int32_t> vocab_;  // piece -> id, model vocabulary and added tokens
  std::vector<std::string> pieces_;                 // [vocab_size] piece of each id
  std::vector<std::string> token_bytes_;            // [vocab_size] decoded bytes of each id
  std::vector<bool> special_;                       // [vocab_size]
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left id, right id) -> (rank, id)
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  int32_t unk_id_ = -1;
  std::vector<int32_t> byte_ids_;  // [256] id of <0xNN>, or -1

  std::vector<added_token> added_tokens_;   // longest first
  std::vector<bool> added_token_first_byte_;  // [256] some added token starts with this byte
  std::vector<normalizer_step> normalizers_;
  std::vector<pre_tokenizer_step> pre_tokenizers_;
  special_affixes affixes_;  // what the post-processor puts around the sequence
  int num_leading_spaces_to_strip_ = 0;

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;  // word -> ids
};

}  // namespace nf
