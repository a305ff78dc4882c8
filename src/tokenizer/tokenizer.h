// The tokenizer interface every model format implements, and load_tokenizer() that picks one from a
// model folder (tokenizer.json, else tokenizer.model) and applies tokenizer_config.json and
// generation_config.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nf {

class tokenizer {
 public:
  virtual ~tokenizer() = default;

  // Text (valid UTF-8, else nf::error) to ids. add_special_tokens adds what the format adds around a
  // sequence (Llama BOS); special tokens written inside the text are always matched.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;

  // Ids to text. Invalid UTF-8 from byte tokens becomes U+FFFD. skip_special_tokens leaves out the
  // ids that is_special() reports. Out-of-range ids give nf::error.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // The raw bytes one id contributes to decode(), before UTF-8 repair and the leading-space rule.
  virtual std::string_view token_bytes(int32_t id) const = 0;
  // Number of leading spaces decode() drops from the start of the whole text (SentencePiece's dummy
  // prefix): 0 or 1 in practice.
  virtual int num_leading_spaces_to_strip() const = 0;

  // The vocabulary entry as written in the model file ("Ġthe", "▁the", "<0x0A>", "<|eot_id|>").
  virtual std::string_view piece(int32_t id) const = 0;
  virtual std::optional<int32_t> id_of(std::string_view piece) const = 0;
  // One past the largest id.
  virtual int32_t vocab_size() const = 0;
  // Control tokens: skipped by decode(ids, true) and never produced from plain text.
  virtual bool is_special(int32_t id) const = 0;

  std::optional<int32_t> bos_id() const { return bos_id_; }
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }

  // Set from tokenizer_config.json / generation_config.json by load_tokenizer().
  void set_bos_id(std::optional<int32_t> id) { bos_id_ = id; }
  void set_eos_ids(std::vector<int32_t> ids) { eos_ids_ = std::move(ids); }
  // Overrides whether encode(text, true) starts with BOS / ends with EOS; unset keeps the format's rule.
  void set_add_bos(std::optional<bool> add) { add_bos_ = add; }
  void set_add_eos(std::optional<bool> add) { add_eos_ = add; }

 protected:
  // Ids of the text alone, with no special tokens added around it.
  virtual std::vector<int32_t> encode_text(std::string_view text) const = 0;
  // The format's own rule for special tokens around a sequence (the post-processor): ids that go
  // before and after the text's ids.
  struct special_affixes {
    std::vector<int32_t> prefix;
    std::vector<int32_t> suffix;
  };
  virtual special_affixes special_tokens_around_text() const = 0;

 private:
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
  std::optional<bool> add_bos_;
  std::optional<bool> add_eos_;
};

// Loads model_dir/tokenizer.json if present, else model_dir/tokenizer.model, then reads
// tokenizer_config.json (bos_token, eos_token, add_bos_token, add_eos_token) and
// generation_config.json (bos_token_id, eos_token_id) where present. nf::error on bad files.
std::unique_ptr<tokenizer> load_tokenizer(const std::filesystem::path& model_dir);

}  // namespace nf
