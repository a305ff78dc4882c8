// SentencePiece tokenizer.model (Llama-2, Mistral): reads the ModelProto protobuf itself and encodes
// with BPE by piece score, user-defined symbols, byte fallback and the normalizer's whitespace flags.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace nf {

class sentencepiece_tokenizer final : public tokenizer {
 public:
  // nf::error for a missing, truncated or unsupported model file.
  static std::unique_ptr<sentencepiece_tokenizer> from_file(const std::filesystem::path& path);
  explicit sentencepiece_tokenizer(std::string_view model_proto);

  std::string_view token_bytes(int32_t id) const override;
  int num_leading_spaces_to_strip() const override { return add_dummy_prefix_ ? 1 : 0; }
  std::string_view piece(int32_t id) const override;
  std::optional<int32_t> id_of(std::string_view piece) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  bool is_special(int32_t id) const override;

  std::optional<int32_t> model_bos_id() const { return bos_id_; }
  std::optional<int32_t> model_eos_id() const { return eos_id_; }

 protected:
  std::vector<int32_t> encode_text(std::string_view text) const override;
  special_affixes special_tokens_around_text() const override;

 private:
  enum class piece_type { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };
  std::string normalize(std::string_view text) const;

  std::vector<std::string> pieces_;      // [vocab_size]
  std::vector<float> scores_;            // [vocab_size]
  std::vector<piece_type> types_;        // [vocab_size]
  std::vector<std::string> token_bytes_; // [vocab_size] decoded bytes
  std::unordered_map<std::string, int32_t> mergeable_;     // normal, user-defined and unused pieces
  std::vector<std::string> user_defined_;                   // longest first
  std::vector<int32_t> byte_ids_;                           // [256] id of <0xNN>, or -1
  int32_t unk_id_ = 0;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
  bool byte_fallback_ = false;
  bool add_dummy_prefix_ = true;
  bool remove_extra_whitespaces_ = true;
  bool escape_whitespaces_ = true;
};

}  // namespace nf
