// Encode and decode of every tokenizer in tests/data/tokenizers against ids from independent
// implementations (Hugging Face's JavaScript tokenizers, Debian's spm_encode).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>

#include "tokenizer/reference_cases.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_normalize.h"

namespace nf {
namespace {

// Loading the large vocabularies takes a moment: once per tokenizer per test binary.
const tokenizer& cached(const std::string& name) {
  static std::map<std::string, std::unique_ptr<tokenizer>> loaded;
  auto& slot = loaded[name];
  if (!slot) slot = load_tokenizer(test::tokenizer_data_dir(name));
  return *slot;
}

bool is_hf(const std::string& name) { return name.rfind("spm", 0) != 0; }

class reference_test : public ::testing::TestWithParam<std::string> {};

TEST_P(reference_test, encode_matches_reference_ids) {
  const tokenizer& tok = cached(GetParam());
  const auto cases = test::load_reference(GetParam());
  ASSERT_GE(cases.size(), 60u);
  for (const auto& c : cases) {
    EXPECT_EQ(tok.encode(c.text, c.add_special_tokens), c.ids)
        << "text: '" << c.text << "' add_special_tokens=" << c.add_special_tokens;
  }
}

TEST_P(reference_test, decode_matches_reference_text) {
  const tokenizer& tok = cached(GetParam());
  for (const auto& c : test::load_reference(GetParam())) {
    if (is_hf(GetParam())) {
      EXPECT_EQ(tok.decode(c.ids, false), c.decoded) << "text: '" << c.text << "'";
    }
    EXPECT_EQ(tok.decode(c.ids, true), c.decoded_skip_special) << "text: '" << c.text << "'";
  }
}

TEST_P(reference_test, decode_inverts_encode_where_lossless) {
  const std::string name = GetParam();
  if (name == "spm-bpe-ws") GTEST_SKIP() << "collapses runs of spaces by design";
  const tokenizer& tok = cached(name);
  for (const auto& c : test::load_reference(name)) {
    // Qwen normalizes to NFC; the others keep the text as it is.
    const std::string expected = name == "qwen3" ? unicode_normalize(c.text, unicode_form::nfc) : c.text;
    const auto ids = tok.encode(c.text, false);
    // SentencePiece-style vocabularies add a space after a special token written in the text.
    const bool has_special = std::any_of(ids.begin(), ids.end(), [&](int32_t id) { return tok.is_special(id); });
    if (tok.num_leading_spaces_to_strip() > 0 && has_special) continue;
    EXPECT_EQ(tok.decode(ids, false), expected) << "text: '" << c.text << "'";
  }
}

TEST_P(reference_test, encodes_a_few_kilobytes_quickly) {
  const tokenizer& tok = cached(GetParam());
  std::string text;
  for (const auto& c : test::load_reference(GetParam())) text += c.text;
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tok.encode(text, false);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("encode_ms", std::to_string(ms));
  std::printf("%s: %zu bytes -> %zu ids in %.2f ms\n", GetParam().c_str(), text.size(), ids.size(), ms);
  EXPECT_EQ(tok.decode(ids, false).empty(), text.empty());
}

INSTANTIATE_TEST_SUITE_P(tokenizers, reference_test,
                         ::testing::Values("llama3", "qwen3", "mistral", "spm-bpe", "spm-bpe-ws"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n) if (ch == '-') ch = '_';
                           return n;
                         });

TEST(hf_tokenizer, llama3_splits_digits_in_groups_of_three) {
  const tokenizer& tok = cached("llama3");
  const auto ids = tok.encode("1234567", false);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(tok.piece(ids[0]), "123");
  EXPECT_EQ(tok.piece(ids[1]), "456");
  EXPECT_EQ(tok.piece(ids[2]), "7");
}

TEST(hf_tokenizer, special_tokens_inside_text_are_matched) {
  const tokenizer& tok = cached("qwen3");
  const auto ids = tok.encode("<|im_start|>user", false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(tok.piece(ids[0]), "<|im_start|>");
  EXPECT_TRUE(tok.is_special(ids[0]));
  EXPECT_FALSE(tok.is_special(*tok.id_of("<tool_call>")));
}

TEST(sentencepiece_tokenizer, user_defined_symbols_and_byte_fallback) {
  const tokenizer& tok = cached("spm-bpe");
  const auto ids = tok.encode("<tool>\xF0\x9F\x98\x80", false);
  ASSERT_GE(ids.size(), 5u);
  EXPECT_EQ(tok.piece(ids[1]), "<tool>");
  EXPECT_EQ(tok.piece(ids[ids.size() - 4]), "<0xF0>");
}

}  // namespace
}  // namespace nf
