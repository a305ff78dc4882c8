// Bad input answered with the right status and an OpenAI error object, after which the server still
// serves a normal request.
#include "server_fixture.h"

namespace nf::test {
namespace {

class server_errors : public server_fixture {
 protected:
  // Checks the error reply, then that the server still answers a good request.
  void expect_error(const reply& r, int status, const std::string& param, const std::string& message_part) {
    EXPECT_EQ(r.status, status) << r.body;
    json body;
    ASSERT_NO_THROW(body = json::parse(r.body)) << r.body;
    ASSERT_TRUE(body.contains("error")) << r.body;
    const json& error = body["error"];
    EXPECT_TRUE(error["message"].is_string());
    EXPECT_TRUE(error["type"].is_string());
    ASSERT_TRUE(error.contains("param") && error.contains("code")) << r.body;
    if (param.empty()) {
      EXPECT_TRUE(error["param"].is_null()) << r.body;
    } else {
      EXPECT_EQ(error["param"], param) << r.body;
    }
    EXPECT_NE(error["message"].get<std::string>().find(message_part), std::string::npos) << r.body;
    const reply ok = post("/v1/completions", json{{"prompt", "still alive"}, {"max_tokens", 2}});
    EXPECT_EQ(ok.status, 200) << ok.body;
  }
};

TEST_F(server_errors, malformed_json) { expect_error(post("/v1/completions", std::string("{\"prompt\": ")), 400, "", "not valid JSON"); }

TEST_F(server_errors, body_not_an_object) { expect_error(post("/v1/completions", std::string("[1, 2]")), 400, "", "JSON object"); }

TEST_F(server_errors, wrong_types_name_the_field) {
  expect_error(post("/v1/completions", json{{"prompt", "x"}, {"temperature", "hot"}}), 400, "temperature", "number");
  expect_error(post("/v1/completions", json{{"prompt", "x"}, {"max_tokens", 2.5}}), 400, "max_tokens", "integer");
  expect_error(post("/v1/completions", json{{"prompt", "x"}, {"stream", "yes"}}), 400, "stream", "boolean");
  expect_error(post("/v1/completions", json{{"prompt", "x"}, {"stop", 3}}), 400, "stop", "string");
  expect_error(post("/v1/completions", json{{"prompt", 7}}), 400, "prompt", "string or a list of token ids");
  expect_error(post("/v1/chat/completions", json{{"messages", {{{"content", "x"}}}}}), 400, "messages[0].role", "role");
  expect_error(post("/v1/completions", json{{"prompt", "x"}, {"top_p", 1.5}}), 400, "top_p", "[0, 1]");
  expect_error(post("/v1/completions", json{{"prompt", "x"}, {"n", 0}}), 400, "n", "[1, 128]");
}

TEST_F(server_errors, unknown_model) {
  const reply r = post("/v1/completions", json{{"model", "gpt-4"}, {"prompt", "x"}});
  expect_error(r, 404, "model", "gpt-4");
  EXPECT_EQ(json::parse(r.body)["error"]["code"], "model_not_found");
}

TEST_F(server_errors, empty_messages_and_prompts) {
  expect_error(post("/v1/chat/completions", json{{"messages", json::array()}}), 400, "messages", "empty");
  expect_error(post("/v1/chat/completions", json{{"model", "tiny"}}), 400, "messages", "required");
  expect_error(post("/v1/completions", json{{"prompt", ""}}), 400, "prompt", "empty");
  expect_error(post("/v1/completions", json{{"prompt", json::array()}}), 400, "prompt", "empty");
}

TEST_F(server_errors, token_ids_outside_the_vocabulary) {
  expect_error(post("/v1/completions", json{{"prompt", {1, 999999}}}), 400, "prompt", "vocabulary");
  expect_error(post("/v1/completions", json{{"prompt", {1, -3}}}), 400, "prompt", "vocabulary");
}

TEST_F(server_errors, past_the_context) {
  expect_error(post("/v1/completions", json{{"prompt", {1, 2, 3}}, {"max_tokens", 300}}), 400, "max_tokens",
               "maximum context length is 256 tokens. However, you requested 303 tokens (3 in the prompt, 300 for");
  expect_error(post("/v1/completions", json{{"prompt", std::vector<int32_t>(256, 5)}}), 400, "prompt",
               "maximum context length is 256 tokens, but the prompt has 256 tokens");
}

TEST_F(server_errors, engine_rejection_is_a_400) {
  expect_error(post("/v1/completions", json{{"prompt", "x"}, {"stop_token_ids", {200000}}}), 400, "", "vocabulary");
}

TEST_F(server_errors, oversized_body) {
  const std::string big = json{{"prompt", std::string(70 * 1024, 'a')}}.dump();
  expect_error(post("/v1/completions", big), 413, "", "65536 bytes");
}

TEST_F(server_errors, invalid_utf8) {
  expect_error(post("/v1/completions", std::string("{\"prompt\": \"bad \xff\xfe byte\"}")), 400, "", "UTF-8");
  expect_error(post("/v1/completions", std::string("{\"prompt\": \"lone \\ud800 surrogate\"}")), 400, "", "UTF-8");
}

TEST_F(server_errors, unknown_route_and_wrong_method) {
  expect_error(post("/v1/embeddings", json{{"input", "x"}}), 404, "", "/v1/embeddings");
  const reply r = get("/v1/completions");
  expect_error(r, 405, "", "POST");
  expect_error(post("/v1/models", json::object()), 405, "", "GET");
}

class server_with_key : public server_fixture {
 protected:
  static server_options with_key() {
    server_options options;
    options.api_key = "sk-test-123";
    return options;
  }
  server_with_key() : server_fixture(with_key()) {}
};

TEST_F(server_with_key, api_key_is_required_on_v1) {
  const json request = {{"prompt", "x"}, {"max_tokens", 2}};
  for (const httplib::Headers& headers : {httplib::Headers{}, httplib::Headers{{"Authorization", "Bearer wrong"}},
                                          httplib::Headers{{"Authorization", "sk-test-123"}}}) {
    const reply r = post("/v1/completions", request, headers);
    EXPECT_EQ(r.status, 401) << r.body;
    EXPECT_EQ(json::parse(r.body)["error"]["code"], "invalid_api_key");
  }
  EXPECT_EQ(get("/v1/models").status, 401);
  EXPECT_EQ(post("/tokenize", json{{"prompt", "x"}}).status, 401);
  const httplib::Headers good = {{"Authorization", "Bearer sk-test-123"}};
  EXPECT_EQ(post("/v1/completions", request, good).status, 200);
  EXPECT_EQ(get("/v1/models", good).status, 200);
  EXPECT_EQ(get("/health").status, 200);  // health and metrics stay open, as in vLLM
  EXPECT_EQ(get("/metrics").status, 200);
}

}  // namespace
}  // namespace nf::test
