// The server driven by curl, an HTTP client nobody here wrote: whole and streamed completions and chats,
// and an error status.
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "server_fixture.h"

namespace nf::test {
namespace {

struct curl_result {
  int http_status = 0;
  std::string body;
};

class server_curl : public server_fixture {
 protected:
  curl_result curl(const std::string& path, const json& body) {
    const std::filesystem::path file = std::filesystem::path(::testing::TempDir()) /
                                       ("nanoflow_curl_" + std::to_string(port_) + "_" + std::to_string(num_calls_++) + ".json");
    std::ofstream(file) << body.dump();
    const std::string command = "curl -sS -N --max-time 20 -X POST -H 'Content-Type: application/json' --data-binary @" +
                                file.string() + " -w '\\n%{http_code}' http://127.0.0.1:" + std::to_string(port_) + path;
    FILE* pipe = ::popen(command.c_str(), "r");
    std::string out;
    std::array<char, 4096> buffer{};
    size_t count = 0;
    while ((count = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) out.append(buffer.data(), count);
    const int status = ::pclose(pipe);
    std::filesystem::remove(file);
    EXPECT_EQ(status, 0) << out;
    const size_t last_line = out.rfind('\n');
    if (last_line == std::string::npos) return {0, out};
    return {std::atoi(out.c_str() + last_line + 1), out.substr(0, last_line)};
  }
  int num_calls_ = 0;
};

TEST_F(server_curl, whole_and_streamed_completion) {
  const curl_result whole = curl("/v1/completions", json{{"prompt", "Once upon a time"}, {"max_tokens", 7}});
  ASSERT_EQ(whole.http_status, 200) << whole.body;
  const std::string expected = expected_text(encode("Once upon a time"), 7);
  EXPECT_EQ(json::parse(whole.body)["choices"][0]["text"], expected);

  const curl_result streamed = curl("/v1/completions", json{{"prompt", "Once upon a time"}, {"max_tokens", 7},
                                                            {"stream", true}, {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(streamed.http_status, 200) << streamed.body;
  const auto events = sse_events(streamed.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 2 < events.size(); ++i) text += json::parse(events[i])["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, expected);
  EXPECT_EQ(json::parse(events[events.size() - 2])["usage"]["completion_tokens"], 7);
}

TEST_F(server_curl, whole_and_streamed_chat) {
  const json messages = {{{"role", "user"}, {"content", "Hello"}}};
  const std::string expected = expected_text(encode("user: Hello\nassistant:", false), 5);
  const curl_result whole = curl("/v1/chat/completions", json{{"messages", messages}, {"max_tokens", 5}});
  ASSERT_EQ(whole.http_status, 200) << whole.body;
  EXPECT_EQ(json::parse(whole.body)["choices"][0]["message"]["content"], expected);

  const curl_result streamed = curl("/v1/chat/completions", json{{"messages", messages}, {"max_tokens", 5}, {"stream", true}});
  ASSERT_EQ(streamed.http_status, 200) << streamed.body;
  std::string text;
  for (const auto& event : sse_events(streamed.body)) {
    if (event == "[DONE]") continue;
    const json delta = json::parse(event)["choices"][0]["delta"];
    if (delta.contains("content")) text += delta["content"].get<std::string>();
  }
  EXPECT_EQ(text, expected);
}

TEST_F(server_curl, error_status) {
  const curl_result r = curl("/v1/chat/completions", json{{"messages", json::array()}});
  EXPECT_EQ(r.http_status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["param"], "messages");
}

}  // namespace
}  // namespace nf::test
