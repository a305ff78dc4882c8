// UTF-8 repair: maximal-subpart replacement, and streaming equals one-shot.
#include "tokenizer/utf8.h"

#include <gtest/gtest.h>

namespace nf {
namespace {

std::string repair(std::string_view s) {
  std::string out;
  utf8_repair(s, true, out);
  return out;
}

TEST(utf8, repair_replaces_ill_formed_subsequences) {
  EXPECT_EQ(repair("a\xC3\xA9z"), "a\xC3\xA9z");
  EXPECT_EQ(repair("\xFF"), "\xEF\xBF\xBD");
  EXPECT_EQ(repair("\xE6\x97" "A"), "\xEF\xBF\xBD" "A");      // one maximal subpart
  EXPECT_EQ(repair("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_FALSE(utf8_is_valid("\xC0\x80"));
  EXPECT_TRUE(utf8_is_valid("\xF0\x9F\x98\x80"));
}

TEST(utf8, streaming_repair_equals_one_shot) {
  const std::string bytes = "x\xF0\x9F\x98\x80\xE6\x97\xA5\xE6\x97" "B\xFF\xC3";
  for (size_t cut = 0; cut <= bytes.size(); ++cut) {
    std::string out;
    std::string pending = bytes.substr(0, cut);
    pending.erase(0, utf8_repair(pending, false, out));
    pending += bytes.substr(cut);
    utf8_repair(pending, true, out);
    EXPECT_EQ(out, repair(bytes)) << "cut at " << cut;
  }
}

}  // namespace
}  // namespace nf
