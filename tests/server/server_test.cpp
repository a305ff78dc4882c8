// The OpenAI endpoints through httplib's client: response shapes, streaming, n > 1, logprobs, stop strings
// that span tokens, include_usage, disconnects that abort, metrics, concurrency, shutdown, SSE
// keep-alive comments, option checks.
#include <atomic>
#include <thread>

#include "core/error.h"
#include "server_fixture.h"

namespace nf::test {
namespace {

using namespace std::chrono_literals;

class server_api : public server_fixture {};

TEST_F(server_api, completion_matches_the_engine_output) {
  const reply r = post("/v1/completions", json{{"model", "tiny"}, {"prompt", "Hello world"}, {"max_tokens", 8}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = r.body_json();
  const auto prompt = encode("Hello world");
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["model"], "tiny");
  EXPECT_EQ(body["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_TRUE(body["created"].is_number_integer());
  ASSERT_EQ(body["choices"].size(), 1u);
  EXPECT_EQ(body["choices"][0]["index"], 0);
  EXPECT_EQ(body["choices"][0]["text"], expected_text(prompt, 8));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(body["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(body["usage"], (json{{"prompt_tokens", prompt.size()}, {"completion_tokens", 8},
                                 {"total_tokens", prompt.size() + 8}}));
  const auto submitted = engine_.submitted();
  ASSERT_EQ(submitted.size(), 1u);
  EXPECT_EQ(submitted[0].prompt_token_ids, prompt);
  EXPECT_EQ(submitted[0].params.max_tokens, 8);
}

TEST_F(server_api, sampling_fields_reach_the_engine) {
  const json request = {{"prompt", {1, 2, 3}}, {"max_tokens", 5}, {"temperature", 0.7}, {"top_p", 0.9},
                        {"top_k", 40}, {"min_p", 0.05}, {"repetition_penalty", 1.1}, {"presence_penalty", 0.5},
                        {"frequency_penalty", -0.5}, {"seed", 42}, {"ignore_eos", true}, {"min_tokens", 2},
                        {"stop_token_ids", {7, 8}}};
  const reply r = post("/v1/completions", request);
  ASSERT_EQ(r.status, 200) << r.body;
  const sampling_params p = engine_.submitted().at(0).params;
  EXPECT_EQ(engine_.submitted()[0].prompt_token_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_FLOAT_EQ(p.temperature, 0.7f);
  EXPECT_FLOAT_EQ(p.top_p, 0.9f);
  EXPECT_EQ(p.top_k, 40);
  EXPECT_FLOAT_EQ(p.min_p, 0.05f);
  EXPECT_FLOAT_EQ(p.repetition_penalty, 1.1f);
  EXPECT_FLOAT_EQ(p.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(p.frequency_penalty, -0.5f);
  EXPECT_EQ(p.seed, 42u);
  EXPECT_TRUE(p.ignore_eos);
  EXPECT_EQ(p.min_tokens, 2);
  EXPECT_EQ(p.max_tokens, 5);
  EXPECT_EQ(p.stop_token_ids, (std::vector<int32_t>{7, 8}));
  EXPECT_TRUE(p.stop.empty());
}

TEST_F(server_api, streamed_completion_equals_the_whole_one) {
  const json request = {{"prompt", "The quick brown fox"}, {"max_tokens", 12}, {"stream", true},
                        {"stream_options", {{"include_usage", true}}}};
  const reply r = post("/v1/completions", request);
  ASSERT_EQ(r.status, 200) << r.body;
  const auto events = sse_events(r.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  std::string finish_reason;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    const json chunk = json::parse(events[i]);
    EXPECT_EQ(chunk["object"], "text_completion");
    EXPECT_TRUE(chunk.contains("usage") && chunk["usage"].is_null());
    ASSERT_EQ(chunk["choices"].size(), 1u);
    text += chunk["choices"][0]["text"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) finish_reason = chunk["choices"][0]["finish_reason"];
  }
  const auto prompt = encode("The quick brown fox");
  EXPECT_EQ(text, expected_text(prompt, 12));
  EXPECT_EQ(finish_reason, "length");
  const json usage_chunk = json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"]["prompt_tokens"], prompt.size());
  EXPECT_EQ(usage_chunk["usage"]["completion_tokens"], 12);
  EXPECT_EQ(usage_chunk["usage"]["total_tokens"], prompt.size() + 12);
}

TEST_F(server_api, chat_completion_and_its_stream) {
  const json messages = json::array({{{"role", "system"}, {"content", "Be brief."}},
                                     {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hi "}},
                                                                     {{"type", "text"}, {"text", "there"}}}}}});
  const std::vector<int32_t> prompt = encode("system: Be brief.\nuser: Hi there\nassistant:", false);
  const reply whole = post("/v1/chat/completions", json{{"messages", messages}, {"max_completion_tokens", 10}});
  ASSERT_EQ(whole.status, 200) << whole.body;
  const json body = whole.body_json();
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(body["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(body["choices"][0]["message"]["content"], expected_text(prompt, 10));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["prompt_tokens"], prompt.size());
  EXPECT_EQ(engine_.submitted().at(0).prompt_token_ids, prompt);

  const reply streamed = post("/v1/chat/completions", json{{"messages", messages}, {"max_tokens", 10}, {"stream", true}});
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  const auto events = sse_events(streamed.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  const json first = json::parse(events[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_FALSE(first.contains("usage"));
  std::string text;
  for (size_t i = 1; i + 1 < events.size(); ++i) {
    const json delta = json::parse(events[i])["choices"][0]["delta"];
    if (delta.contains("content")) text += delta["content"].get<std::string>();
  }
  EXPECT_EQ(text, expected_text(prompt, 10));
  EXPECT_EQ(json::parse(events[events.size() - 2])["choices"][0]["finish_reason"], "length");
}

TEST_F(server_api, n_choices_are_indexed_and_seeded_apart) {
  const reply r = post("/v1/completions", json{{"prompt", "abc"}, {"max_tokens", 4}, {"n", 3}, {"seed", 9}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = r.body_json();
  ASSERT_EQ(body["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(body["choices"][i]["index"], i);
    EXPECT_EQ(body["choices"][i]["text"], expected_text(encode("abc"), 4));
  }
  EXPECT_EQ(body["usage"]["completion_tokens"], 12);
  EXPECT_EQ(body["usage"]["prompt_tokens"], encode("abc").size());
  const auto submitted = engine_.submitted();
  ASSERT_EQ(submitted.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(submitted[i].params.seed, 9u + i);

  const reply streamed = post("/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "x"}}}},
                                                           {"max_tokens", 3}, {"n", 2}, {"stream", true}});
  ASSERT_EQ(streamed.status, 200);
  std::vector<std::string> texts(2);
  std::vector<int> finishes(2, 0);
  for (const auto& event : sse_events(streamed.body)) {
    if (event == "[DONE]") continue;
    const json chunk = json::parse(event);
    for (const auto& choice : chunk["choices"]) {
      const int index = choice["index"];
      if (choice["delta"].contains("content")) texts.at(index) += choice["delta"]["content"].get<std::string>();
      if (!choice["finish_reason"].is_null()) ++finishes.at(index);
    }
  }
  EXPECT_EQ(texts[0], texts[1]);
  EXPECT_EQ(finishes, (std::vector<int>{1, 1}));
}

TEST_F(server_api, completion_logprobs) {
  const std::vector<int32_t> prompt = {100, 200, 300};
  const reply r = post("/v1/completions", json{{"prompt", prompt}, {"max_tokens", 5}, {"logprobs", 2}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json logprobs = r.body_json()["choices"][0]["logprobs"];
  const auto expected = engine_.expected_tokens(prompt, 5);
  ASSERT_EQ(logprobs["tokens"].size(), 5u);
  std::string text;
  for (size_t i = 0; i < 5; ++i) {
    const std::string piece = llama3_tokenizer().decode(std::vector<int32_t>{expected[i]}, false);
    EXPECT_EQ(logprobs["tokens"][i], piece);
    EXPECT_FLOAT_EQ(logprobs["token_logprobs"][i].get<float>(), -0.5f);
    EXPECT_EQ(logprobs["text_offset"][i], text.size());
    text += piece;
    const json top = logprobs["top_logprobs"][i];
    ASSERT_EQ(top.size(), 2u) << top;
    const std::string alt = llama3_tokenizer().decode(std::vector<int32_t>{expected[i] + 1}, false);
    EXPECT_FLOAT_EQ(top[alt].get<float>(), -1.5f);
  }
  EXPECT_EQ(r.body_json()["choices"][0]["text"], text);
}

TEST_F(server_api, chat_logprobs_with_bytes) {
  const reply r = post("/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "x"}}}},
                                                    {"max_tokens", 3}, {"logprobs", true}, {"top_logprobs", 3}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json content = r.body_json()["choices"][0]["logprobs"]["content"];
  const auto expected = engine_.expected_tokens(encode("user: x\nassistant:", false), 3);
  ASSERT_EQ(content.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const std::string_view bytes = llama3_tokenizer().token_bytes(expected[i]);
    EXPECT_EQ(content[i]["bytes"], json(std::vector<int>(bytes.begin(), bytes.end())));
    EXPECT_FLOAT_EQ(content[i]["logprob"].get<float>(), -0.5f);
    ASSERT_EQ(content[i]["top_logprobs"].size(), 3u);
    EXPECT_FLOAT_EQ(content[i]["top_logprobs"][2]["logprob"].get<float>(), -2.5f);
  }
  const reply none = post("/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_tokens", 2}});
  EXPECT_TRUE(none.body_json()["choices"][0]["logprobs"].is_null());
}

// A stop string that starts inside one token and ends inside a later one: the output is cut before it,
// the engine request is aborted, and the stream never shows any of it.
TEST_F(server_api, stop_string_across_tokens) {
  const std::vector<int32_t> prompt = {1000};
  const auto ids = engine_.expected_tokens(prompt, 40);
  std::vector<size_t> offsets;  // byte offset where each token's text starts
  std::string full;
  for (int32_t id : ids) {
    offsets.push_back(full.size());
    full += llama3_tokenizer().decode(std::vector<int32_t>{id}, false);
  }
  ASSERT_EQ(full, llama3_tokenizer().decode(ids, true));
  // Start one byte into token 5 and end one byte into token 8.
  ASSERT_GT(offsets[6] - offsets[5], 1u);
  const std::string stop = full.substr(offsets[5] + 1, offsets[8] + 1 - (offsets[5] + 1));
  const size_t cut = full.find(stop);
  ASSERT_NE(cut, std::string::npos);
  const std::string expected = full.substr(0, cut);

  for (bool stream : {false, true}) {
    const json request = {{"prompt", prompt}, {"max_tokens", 40}, {"stop", {"never-seen", stop}}, {"stream", stream}};
    const reply r = post("/v1/completions", request);
    ASSERT_EQ(r.status, 200) << r.body;
    std::string text, finish_reason;
    if (stream) {
      for (const auto& event : sse_events(r.body)) {
        if (event == "[DONE]") continue;
        const json choice = json::parse(event)["choices"][0];
        text += choice["text"].get<std::string>();
        EXPECT_EQ(text, expected.substr(0, text.size())) << "streamed text that is not part of the output";
        if (!choice["finish_reason"].is_null()) finish_reason = choice["finish_reason"];
      }
    } else {
      text = r.body_json()["choices"][0]["text"];
      finish_reason = r.body_json()["choices"][0]["finish_reason"];
    }
    EXPECT_EQ(text, expected) << "stream " << stream;
    EXPECT_EQ(finish_reason, "stop");
  }
  // Both requests were aborted in the engine once the stop string showed.
  EXPECT_EQ(engine_.aborts().size(), 2u);
}

TEST_F(server_api, stop_token_ends_the_output_without_its_text) {
  const std::vector<int32_t> prompt = {500};
  const auto ids = engine_.expected_tokens(prompt, 10);
  const reply r = post("/v1/completions", json{{"prompt", prompt}, {"max_tokens", 10}, {"stop_token_ids", {ids[3]}}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json body = r.body_json();
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["choices"][0]["text"], llama3_tokenizer().decode(std::vector<int32_t>(ids.begin(), ids.begin() + 3), true));
  EXPECT_EQ(body["usage"]["completion_tokens"], 4);
}

TEST_F(server_api, models_health_tokenize_detokenize) {
  const reply models = get("/v1/models");
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(models.body_json()["object"], "list");
  EXPECT_EQ(models.body_json()["data"][0]["id"], "tiny");
  EXPECT_EQ(models.body_json()["data"][0]["max_model_len"], 256);
  EXPECT_EQ(get("/health").status, 200);

  const reply tokens = post("/tokenize", json{{"prompt", "Hello world"}});
  ASSERT_EQ(tokens.status, 200) << tokens.body;
  EXPECT_EQ(tokens.body_json()["tokens"], json(encode("Hello world")));
  EXPECT_EQ(tokens.body_json()["count"], encode("Hello world").size());
  EXPECT_EQ(tokens.body_json()["max_model_len"], 256);
  const reply text = post("/detokenize", json{{"tokens", encode("Hello world", false)}});
  ASSERT_EQ(text.status, 200) << text.body;
  EXPECT_EQ(text.body_json()["prompt"], "Hello world");
  const reply chat = post("/tokenize", json{{"messages", {{{"role", "user"}, {"content", "x"}}}}});
  EXPECT_EQ(chat.body_json()["tokens"], json(encode("user: x\nassistant:", false)));
}

TEST_F(server_api, metrics_count_requests_tokens_and_latency) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(post("/v1/completions", json{{"prompt", {1, 2}}, {"max_tokens", 4}}).status, 200);
  ASSERT_EQ(post("/v1/completions", json{{"prompt", {1, 2}}, {"max_tokens", 9}, {"stop_token_ids", {4}}}).status, 200);
  ASSERT_EQ(post("/v1/completions", std::string("{")).status, 400);
  const reply r = get("/metrics");
  ASSERT_EQ(r.status, 200);
  const std::string& m = r.body;
  auto has = [&](const std::string& line) { return m.find(line) != std::string::npos; };
  EXPECT_TRUE(has("nanoflow_requests_total{model_name=\"tiny\",outcome=\"length\"} 3\n")) << m;
  EXPECT_TRUE(has("nanoflow_requests_total{model_name=\"tiny\",outcome=\"stop\"} 1\n")) << m;
  EXPECT_TRUE(has("nanoflow_requests_total{model_name=\"tiny\",outcome=\"error\"} 1\n")) << m;
  EXPECT_TRUE(has("nanoflow_prompt_tokens_total{model_name=\"tiny\"} 8\n")) << m;
  EXPECT_TRUE(has("nanoflow_generation_tokens_total{model_name=\"tiny\"} 14\n")) << m;
  EXPECT_TRUE(has("nanoflow_time_to_first_token_seconds_count{model_name=\"tiny\"} 4\n")) << m;
  EXPECT_TRUE(has("nanoflow_time_to_first_token_seconds_bucket{model_name=\"tiny\",le=\"+Inf\"} 4\n")) << m;
  EXPECT_TRUE(has("nanoflow_time_per_output_token_seconds_count{model_name=\"tiny\"} 4\n")) << m;
  EXPECT_TRUE(has("# TYPE nanoflow_time_to_first_token_seconds histogram\n")) << m;
  EXPECT_TRUE(has("nanoflow_num_requests_running{model_name=\"tiny\"} 0\n")) << m;
  EXPECT_TRUE(has("nanoflow_num_requests_waiting{model_name=\"tiny\"} 0\n")) << m;
  EXPECT_TRUE(has("nanoflow_kv_cache_usage_ratio{model_name=\"tiny\"} 0\n")) << m;
  EXPECT_TRUE(has("nanoflow_prefix_cache_hit_rate{model_name=\"tiny\"} 0.25\n")) << m;
}

TEST_F(server_api, concurrent_requests_from_several_threads) {
  constexpr int num_threads = 8, num_requests = 5;
  std::atomic<int> num_ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < num_threads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < num_requests; ++i) {
        const std::vector<int32_t> prompt = {t * 100 + i + 1};
        const bool stream = (i % 2) == 1;
        const reply r = post("/v1/completions", json{{"prompt", prompt}, {"max_tokens", 6}, {"stream", stream}});
        if (r.status != 200) continue;
        std::string text;
        if (stream) {
          for (const auto& event : sse_events(r.body))
            if (event != "[DONE]") text += json::parse(event)["choices"][0]["text"].get<std::string>();
        } else {
          text = r.body_json()["choices"][0]["text"];
        }
        if (text == expected_text(prompt, 6)) ++num_ok;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(num_ok.load(), num_threads * num_requests);
  EXPECT_EQ(engine_.num_running(), 0);
}

// A slow engine, so that requests are still running when clients go away or the server stops.
class server_slow : public server_fixture {
 protected:
  server_slow() : server_fixture({}, 4096, std::chrono::milliseconds(20)) {}
};

TEST_F(server_slow, client_disconnect_mid_stream_aborts) {
  int num_chunks = 0;
  const json request = {{"prompt", {5}}, {"max_tokens", 2000}, {"ignore_eos", true}, {"stream", true}};
  const auto start = std::chrono::steady_clock::now();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = request.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) { return ++num_chunks < 3; };
  {
    httplib::Client c = client();
    EXPECT_FALSE(c.send(req));  // cancelled by the receiver; the client closes the connection
  }
  EXPECT_TRUE(engine_.wait_for_running_abort(3s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(engine_.num_aborted_while_running(), 1);
}

TEST_F(server_slow, client_gone_during_a_whole_response_aborts) {
  {
    httplib::Client c = client();
    c.set_read_timeout(0, 300000);  // gives up after 300 ms, long before 2000 tokens at 20 ms
    EXPECT_FALSE(c.Post("/v1/completions", json{{"prompt", {5}}, {"max_tokens", 2000}, {"ignore_eos", true}}.dump(),
                        "application/json"));
  }
  EXPECT_TRUE(engine_.wait_for_running_abort(3s));
}

TEST_F(server_slow, stop_aborts_streams_and_returns) {
  std::string body;
  std::thread reader([&] {
    const reply r = post("/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "x"}}}},
                                                      {"max_tokens", 2000}, {"stream", true}});
    body = r.body;
  });
  while (engine_.num_running() == 0) std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(100ms);
  const auto start = std::chrono::steady_clock::now();
  server_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  reader.join();
  const auto events = sse_events(body);
  ASSERT_GE(events.size(), 2u) << body;
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(json::parse(events[events.size() - 2])["choices"][0]["finish_reason"], "abort");
  EXPECT_EQ(engine_.num_running(), 0);
  EXPECT_EQ(get("/health").status, -1);  // no longer listening
}

// A slow engine (150 ms steps) and a 40 ms keep-alive interval: the silences of a stream carry SSE comments.
class server_keepalive : public server_fixture {
 protected:
  server_keepalive() : server_fixture(keepalive_options(), 4096, std::chrono::milliseconds(150)) {}
  static server_options keepalive_options() {
    server_options options;
    options.sse_keepalive_ms = 40;
    return options;
  }
};

TEST_F(server_keepalive, silent_streams_carry_comments_between_the_same_events) {
  const std::vector<int32_t> prompt = {5, 6};
  const reply r = post("/v1/completions", json{{"prompt", prompt}, {"max_tokens", 4}, {"ignore_eos", true}, {"stream", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  size_t num_comments = 0;
  for (size_t at = r.body.find(": keep-alive\n\n"); at != std::string::npos; at = r.body.find(": keep-alive\n\n", at + 1)) {
    EXPECT_TRUE(at == 0 || r.body.compare(at - 2, 2, "\n\n") == 0) << "a comment inside an event: " << r.body;
    ++num_comments;
  }
  EXPECT_GE(num_comments, 4u) << r.body;  // 4 steps of 150 ms, a comment after each 40 ms of silence
  const auto events = sse_events(r.body);
  ASSERT_EQ(events.size(), 5u) << r.body;
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i) text += json::parse(events[i])["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, expected_text(prompt, 4));
  EXPECT_EQ(events.back(), "[DONE]");
}

TEST(http_server_options, bad_values_are_errors) {
  fake_engine engine;
  server_options backlog;
  backlog.listen_backlog = 0;
  EXPECT_THROW(http_server(engine, llama3_tokenizer(), plain_chat_formatter(), backlog), error);
  server_options keepalive;
  keepalive.sse_keepalive_ms = -1;
  EXPECT_THROW(http_server(engine, llama3_tokenizer(), plain_chat_formatter(), keepalive), error);
}

}  // namespace
}  // namespace nf::test
