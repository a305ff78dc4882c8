// stop_matcher on hand-made text: earliest match across calls, and the hold-back of a partial match.
#include <gtest/gtest.h>

#include "server/stop_strings.h"

namespace nf {
namespace {

TEST(stop_matcher, finds_a_match_that_grew_over_several_calls) {
  stop_matcher m({"END"});
  std::string text = "abcE";
  EXPECT_EQ(m.find(text), std::string::npos);
  EXPECT_EQ(m.safe_length(text), 3u);  // "E" may start "END"
  text += "N";
  EXPECT_EQ(m.find(text), std::string::npos);
  EXPECT_EQ(m.safe_length(text), 3u);
  text += "Dxyz";
  EXPECT_EQ(m.find(text), 3u);
}

TEST(stop_matcher, earliest_of_several_and_hold_back_of_the_longest_prefix) {
  stop_matcher m({"world", "lo w"});
  EXPECT_EQ(m.safe_length("hello"), 3u);   // "lo" may start "lo w"
  EXPECT_EQ(m.safe_length("hello w"), 3u);  // "lo w" is complete: find() reports it
  EXPECT_EQ(m.find("hello world"), 3u);
  stop_matcher none({});
  EXPECT_EQ(none.find("anything"), std::string::npos);
  EXPECT_EQ(none.safe_length("anything"), 8u);
}

TEST(stop_matcher, text_without_a_possible_start_is_all_safe) {
  stop_matcher m({"###"});
  EXPECT_EQ(m.safe_length("abc"), 3u);
  EXPECT_EQ(m.safe_length("abc#"), 3u);
  EXPECT_EQ(m.safe_length("abc##"), 3u);
  EXPECT_EQ(m.find("abc##"), std::string::npos);
  EXPECT_EQ(m.find("abc###"), 3u);
}

}  // namespace
}  // namespace nf
