// The streaming client against a scripted server with known delays: TTFT, ITL and E2EL come from event arrival
// times (chat's role-only first chunk is not a token), usage gives the token counts, and every failure
// (HTTP error, malformed event, error event, stream cut before [DONE], nothing listening) is a failed request.
// SSE comments (keep-alives) are neither tokens nor silence; a read error says whether it was the timeout.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "loadgen/openai_client.h"

namespace nf {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

std::string event(const json& data) { return "data: " + data.dump() + "\n\n"; }

class scripted_server : public ::testing::Test {
 protected:
  void SetUp() override {
    auto handler = [](const httplib::Request& request, httplib::Response& response) {
      const std::string scenario = json::parse(request.body).value("model", "");
      if (scenario == "http-error") {
        response.status = 500;
        response.set_content(json{{"error", {{"message", "engine exploded"}}}}.dump(), "application/json");
        return;
      }
      const bool chat = request.path == "/v1/chat/completions";
      response.set_chunked_content_provider("text/event-stream", [scenario, chat](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& text) { sink.write(text.data(), text.size()); };
        auto token = [&](const std::string& text, bool last) {
          json choice = {{"index", 0}, {"finish_reason", last ? json("length") : json(nullptr)}};
          if (chat) choice["delta"] = {{"content", text}};
          else choice["text"] = text;
          write(event({{"choices", {choice}}}));
        };
        if (scenario == "malformed") {
          token("a", false);
          write("data: {not json\n\n");
        } else if (scenario == "error-event") {
          token("a", false);
          write(event({{"error", {{"message", "aborted by the server"}}}}));
        } else if (scenario == "no-done") {
          token("a", false);
        } else if (scenario == "drop") {
          token("a", false);
          return false;  // httplib closes the connection without the chunked terminator
        } else {
          if (scenario == "silent") std::this_thread::sleep_for(1000ms);
          for (int i = 0; scenario == "keepalive" && i < 5; ++i) {
            std::this_thread::sleep_for(200ms);
            write(": keep-alive\n\n");
          }
          if (chat) write(event({{"choices", {{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}}}}}));
          std::this_thread::sleep_for(150ms);
          token("a", false);
          std::this_thread::sleep_for(100ms);
          token("b", false);
          std::this_thread::sleep_for(100ms);
          token("", true);  // a finishing chunk with no text still counts, as in vLLM
          write(event({{"choices", json::array()}, {"usage", {{"prompt_tokens", 7}, {"completion_tokens", 5}}}}));
          write("data: [DONE]\n\n");
        }
        sink.done();
        return true;
      });
    };
    server_.Post("/v1/completions", handler);
    server_.Post("/v1/chat/completions", handler);
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    for (int i = 0; i < 100 && !server_.is_running(); ++i) std::this_thread::sleep_for(10ms);
  }
  void TearDown() override {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  request_output send(openai_client& client, const std::string& scenario, bool chat = false) {
    prepared_request request;
    request.endpoint = chat ? "/v1/chat/completions" : "/v1/completions";
    request.chat = chat;
    request.prompt_len = 3;
    request.body = json{{"model", scenario}, {"stream", true}}.dump();
    return client.send(request, std::chrono::steady_clock::now());
  }
  base_url url() const { return parse_base_url("http://127.0.0.1:" + std::to_string(port_)); }

  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

TEST_F(scripted_server, completion_timeline) {
  openai_client client(url(), {});
  const request_output out = send(client, "ok");
  ASSERT_TRUE(out.success) << out.error;
  EXPECT_EQ(out.prompt_tokens, 7);   // from usage, not the 3 asked for
  EXPECT_EQ(out.output_tokens, 5);   // from usage, not the 3 token chunks
  EXPECT_GE(out.ttft_s, 0.14);
  EXPECT_LT(out.ttft_s, 1.0);
  ASSERT_EQ(out.itl_s.size(), 2u);
  for (double gap : out.itl_s) {
    EXPECT_GE(gap, 0.09);
    EXPECT_LT(gap, 0.6);
  }
  EXPECT_NEAR(out.latency_s, out.ttft_s + out.itl_s[0] + out.itl_s[1], 1e-6);
  EXPECT_GE(out.start_s, 0.0);
}

TEST_F(scripted_server, chat_role_chunk_is_not_the_first_token) {
  openai_client client(url(), {});
  const request_output out = send(client, "ok", true);
  ASSERT_TRUE(out.success) << out.error;
  EXPECT_GE(out.ttft_s, 0.14);  // the role chunk came at once; the first content 150 ms later
  EXPECT_EQ(out.itl_s.size(), 2u);
  EXPECT_EQ(out.output_tokens, 5);
}

TEST_F(scripted_server, failures_are_counted_not_thrown) {
  openai_client client(url(), {});
  const request_output http = send(client, "http-error");
  EXPECT_FALSE(http.success);
  EXPECT_EQ(http.error, "HTTP 500: engine exploded");
  const request_output malformed = send(client, "malformed");
  EXPECT_FALSE(malformed.success);
  EXPECT_NE(malformed.error.find("malformed stream event"), std::string::npos) << malformed.error;
  const request_output error_event = send(client, "error-event");
  EXPECT_FALSE(error_event.success);
  EXPECT_NE(error_event.error.find("aborted by the server"), std::string::npos) << error_event.error;
  const request_output cut = send(client, "no-done");
  EXPECT_FALSE(cut.success);
  EXPECT_NE(cut.error.find("[DONE]"), std::string::npos) << cut.error;
  // The same client still works after each failure.
  EXPECT_TRUE(send(client, "ok").success);
}

TEST_F(scripted_server, read_errors_say_whether_it_was_the_timeout) {
  client_options options;
  options.read_timeout_s = 0.4;
  openai_client client(url(), options);
  const request_output silent = send(client, "silent");
  EXPECT_FALSE(silent.success);
  EXPECT_NE(silent.error.find("the read timeout"), std::string::npos) << silent.error;
  openai_client other(url(), options);
  const request_output dropped = send(other, "drop");
  EXPECT_FALSE(dropped.success);
  EXPECT_NE(dropped.error.find("closed or reset"), std::string::npos) << dropped.error;
}

TEST_F(scripted_server, keepalive_comments_hold_the_stream_and_are_not_tokens) {
  client_options options;
  options.read_timeout_s = 0.5;  // shorter than the 1 s wait, longer than the 0.2 s between comments
  openai_client client(url(), options);
  const request_output out = send(client, "keepalive");
  ASSERT_TRUE(out.success) << out.error;
  EXPECT_GE(out.ttft_s, 1.1);  // 5 comments, 200 ms apart, then the first token after 150 ms
  EXPECT_EQ(out.itl_s.size(), 2u);
  EXPECT_EQ(out.output_tokens, 5);
}

TEST(openai_client, nothing_listening) {
  // Bind a socket to a free port and close it: nothing listens there afterwards.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t size = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  ::close(fd);
  const int port = ntohs(address.sin_port);
  openai_client client(parse_base_url("http://127.0.0.1:" + std::to_string(port)), {});
  prepared_request request{"/v1/completions", "{}", 1, false};
  const request_output out = client.send(request, std::chrono::steady_clock::now());
  EXPECT_FALSE(out.success);
  EXPECT_NE(out.error.find("request failed"), std::string::npos) << out.error;
}

TEST(base_url, parsing) {
  const base_url a = parse_base_url("http://127.0.0.1:8000");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 8000);
  EXPECT_EQ(a.path_prefix, "");
  const base_url b = parse_base_url("http://example.com/api/");
  EXPECT_EQ(b.host, "example.com");
  EXPECT_EQ(b.port, 80);
  EXPECT_EQ(b.path_prefix, "/api");
  EXPECT_THROW(parse_base_url("https://x"), std::exception);
  EXPECT_THROW(parse_base_url("http://x:99999"), std::exception);
  EXPECT_THROW(parse_base_url("http://:80"), std::exception);
}

}  // namespace
}  // namespace nf
