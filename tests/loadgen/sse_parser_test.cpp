// Server-sent-events parsing: events split across reads at every byte, CRLF and CR line ends, comments,
// other fields and multi-line data.
#include <gtest/gtest.h>

#include "loadgen/sse_parser.h"

namespace nf {
namespace {

std::vector<std::string> byte_by_byte(const std::string& stream, bool* partial = nullptr) {
  sse_parser parser;
  std::vector<std::string> events;
  for (char c : stream)
    for (std::string& e : parser.feed(std::string_view(&c, 1))) events.push_back(std::move(e));
  if (partial) *partial = parser.has_partial_event();
  return events;
}

TEST(sse_parser, events_split_anywhere) {
  const std::string stream = "data: {\"a\":1}\n\n: keep-alive\n\nevent: x\nid: 3\ndata: {\"b\":2}\n\ndata: [DONE]\n\n";
  const std::vector<std::string> expected = {"{\"a\":1}", "{\"b\":2}", "[DONE]"};
  EXPECT_EQ(byte_by_byte(stream), expected);
  sse_parser whole;
  EXPECT_EQ(whole.feed(stream), expected);
  EXPECT_FALSE(whole.has_partial_event());
}

TEST(sse_parser, line_endings_and_multiline_data) {
  EXPECT_EQ(byte_by_byte("data: one\r\n\r\ndata:two\r\rdata: a\ndata: b\n\n"),
            (std::vector<std::string>{"one", "two", "a\nb"}));
}

TEST(sse_parser, unfinished_event_is_reported) {
  bool partial = false;
  EXPECT_EQ(byte_by_byte("data: {\"a\":1}\n\ndata: {\"b\"", &partial), (std::vector<std::string>{"{\"a\":1}"}));
  EXPECT_TRUE(partial);
  EXPECT_EQ(byte_by_byte("data: x\n", &partial), std::vector<std::string>{});
  EXPECT_TRUE(partial);
}

}  // namespace
}  // namespace nf
