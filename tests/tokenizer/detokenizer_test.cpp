// Incremental detokenizer: deltas concatenate to decode(), each delta is valid UTF-8, and characters
// split over byte tokens are held back until complete.
#include "tokenizer/detokenizer.h"

#include <gtest/gtest.h>

#include "tokenizer/reference_cases.h"
#include "tokenizer/utf8.h"

namespace nf {
namespace {

class detokenizer_test : public ::testing::TestWithParam<std::string> {};

TEST_P(detokenizer_test, deltas_concatenate_to_decode) {
  const auto tok = load_tokenizer(test::tokenizer_data_dir(GetParam()));
  int num_held_back = 0;
  for (const auto& c : test::load_reference(GetParam())) {
    for (const bool skip : {false, true}) {
      detokenizer detok(*tok, skip);
      std::string streamed;
      for (const int32_t id : c.ids) {
        const std::string delta = detok.add(id);
        EXPECT_TRUE(utf8_is_valid(delta)) << "text: '" << c.text << "'";
        if (delta.empty() && !tok->token_bytes(id).empty() && !(skip && tok->is_special(id))) ++num_held_back;
        streamed += delta;
      }
      streamed += detok.finish();
      EXPECT_EQ(streamed, tok->decode(c.ids, skip)) << "text: '" << c.text << "' skip=" << skip;
    }
  }
  // The strings include characters that these vocabularies split over several byte tokens.
  if (GetParam() != "qwen3") EXPECT_GT(num_held_back, 0);
}

INSTANTIATE_TEST_SUITE_P(tokenizers, detokenizer_test,
                         ::testing::Values("llama3", "qwen3", "mistral", "spm-bpe", "spm-bpe-ws"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n) if (ch == '-') ch = '_';
                           return n;
                         });

TEST(detokenizer, emoji_over_byte_tokens_is_held_until_complete) {
  const auto tok = load_tokenizer(test::tokenizer_data_dir("spm-bpe"));
  // U+1F600 is not in this small vocabulary: four byte-fallback tokens.
  const std::vector<int32_t> ids = {*tok->id_of("<0xF0>"), *tok->id_of("<0x9F>"), *tok->id_of("<0x98>"),
                                    *tok->id_of("<0x80>")};
  detokenizer detok(*tok, true);
  EXPECT_EQ(detok.add(ids[0]), "");
  EXPECT_EQ(detok.add(ids[1]), "");
  EXPECT_EQ(detok.add(ids[2]), "");
  EXPECT_EQ(detok.add(ids[3]), "\xF0\x9F\x98\x80");
  EXPECT_EQ(detok.finish(), "");
}

TEST(detokenizer, sentencepiece_leading_space_is_dropped_once) {
  const auto tok = load_tokenizer(test::tokenizer_data_dir("mistral"));
  const auto ids = tok->encode("Hello world", true);  // <s> ▁Hello ▁world
  detokenizer detok(*tok, true);
  std::string out;
  for (const int32_t id : ids) out += detok.add(id);
  EXPECT_EQ(out, "Hello world");
}

TEST(detokenizer, unfinished_sequence_becomes_replacement_character) {
  const auto tok = load_tokenizer(test::tokenizer_data_dir("spm-bpe"));
  detokenizer detok(*tok, true);
  EXPECT_EQ(detok.add(*tok->id_of("<0xE6>")), "");
  EXPECT_EQ(detok.add(*tok->id_of("<0x97>")), "");
  EXPECT_EQ(detok.add(*tok->id_of("<0x41>")), "\xEF\xBF\xBD" "A");
  EXPECT_EQ(detok.add(*tok->id_of("<0xE6>")), "");
  EXPECT_EQ(detok.finish(), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace nf
