// A server on 127.0.0.1 (ephemeral port) in front of the fake engine, with the Llama-3 tokenizer from the
// test data, plus helpers to send requests and read SSE streams.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fake_engine.h"
#include "server/http_server.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace nf::test {

using json = nlohmann::json;

inline const tokenizer& llama3_tokenizer() {
  static const std::unique_ptr<tokenizer> tok = load_tokenizer(source_dir() / "tests/data/tokenizers/llama3");
  return *tok;
}

struct reply {
  int status = 0;
  std::string body;
  json body_json() const { return json::parse(body); }
};

// The data of every `data: ...` event of an SSE body, in order.
inline std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> events;
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find("\n\n", start);
    if (end == std::string::npos) end = body.size();
    const std::string event = body.substr(start, end - start);
    if (event.rfind("data: ", 0) == 0) events.push_back(event.substr(6));
    start = end + 2;
  }
  return events;
}

class server_fixture : public ::testing::Test {
 protected:
  explicit server_fixture(server_options options = {}, int context_length = 256,
                          std::chrono::microseconds step = std::chrono::microseconds(500))
      : engine_(context_length, step) {
    options.host = "127.0.0.1";
    options.port = 0;
    options.served_model_name = "tiny";
    options.max_body_bytes = 64 * 1024;
    options.num_threads = 16;
    server_ = std::make_unique<http_server>(engine_, llama3_tokenizer(), plain_chat_formatter(), options);
    port_ = server_->start();
  }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(10, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }

  reply post(const std::string& path, const std::string& body, const httplib::Headers& headers = {}) const {
    httplib::Client c = client();
    const auto result = c.Post(path.c_str(), headers, body, "application/json");
    if (!result) return {-1, httplib::to_string(result.error())};
    return {result->status, result->body};
  }
  reply post(const std::string& path, const json& body, const httplib::Headers& headers = {}) const {
    return post(path, body.dump(), headers);
  }
  reply get(const std::string& path, const httplib::Headers& headers = {}) const {
    httplib::Client c = client();
    const auto result = c.Get(path.c_str(), headers);
    if (!result) return {-1, httplib::to_string(result.error())};
    return {result->status, result->body};
  }

  // What the fake engine generates after `prompt`, as text, when it runs for `count` tokens.
  std::string expected_text(const std::vector<int32_t>& prompt, int count) const {
    return llama3_tokenizer().decode(engine_.expected_tokens(prompt, count), true);
  }
  std::vector<int32_t> encode(const std::string& text, bool add_special_tokens = true) const {
    return llama3_tokenizer().encode(text, add_special_tokens);
  }

  fake_engine engine_;
  std::unique_ptr<http_server> server_;
  int port_ = 0;
};

}  // namespace nf::test
