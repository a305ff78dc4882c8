// A bounded soak test of `nanoflow serve` (tiny Llama-3, dummy weights, 127.0.0.1 only): 32 client threads send
// 2016 mixed requests, each on a new connection (streamed and whole completions and chats, clients that hang
// up mid-stream after a random number of events, malformed and invalid requests). Every good request must get exactly its max_tokens, every bad one a 4xx
// error object; afterwards the server still answers, /metrics shows no running or waiting request and no KV
// block in use, and the process exits 0 on SIGTERM.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <fmt/format.h>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <thread>

#include "loadgen/server_process.h"
#include "loadgen/sse_parser.h"

namespace nf {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr int num_threads = 32;
constexpr int requests_per_thread = 63;  // 2016 requests

struct soak_client {
  int port;
  std::string model;
  std::mt19937 rng;
  std::vector<std::string>& problems;
  std::mutex& mutex;
  std::atomic<int>& num_disconnects;

  void problem(const std::string& what) {
    std::lock_guard lock(mutex);
    problems.push_back(what);
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }
  json completion_body(bool chat, int max_tokens) {
    json body = {{"model", model}, {"max_tokens", max_tokens}, {"ignore_eos", true}};
    if (chat) {
      body["messages"] = json::array({{{"role", "user"}, {"content", "Tell me about request " + std::to_string(rng())}}});
    } else {
      std::vector<int> ids(8 + rng() % 32);
      for (int& id : ids) id = static_cast<int>(rng() % 100000);
      body["prompt"] = ids;
    }
    return body;
  }
  const char* path(bool chat) const { return chat ? "/v1/chat/completions" : "/v1/completions"; }

  // A streamed request read to the end (or, with hang_up_after > 0, dropped after that many events).
  void streamed(bool chat, int hang_up_after) {
    const int max_tokens = hang_up_after > 0 ? 8 : 1 + static_cast<int>(rng() % 4);
    json body = completion_body(chat, max_tokens);
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    sse_parser parser;
    int num_events = 0, completion_tokens = -1;
    bool done = false;
    httplib::Request request;
    request.method = "POST";
    request.path = path(chat);
    request.body = body.dump();
    request.set_header("Content-Type", "application/json");
    int status = 0;
    request.response_handler = [&](const httplib::Response& r) {
      status = r.status;
      return true;
    };
    request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
      for (const std::string& event : parser.feed(std::string_view(data, size))) {
        ++num_events;
        if (event == "[DONE]") {
          done = true;
          continue;
        }
        const json chunk = json::parse(event, nullptr, false);
        if (!chunk.is_object()) problem("malformed event: " + event);
        else if (chunk.contains("usage") && chunk["usage"].is_object())
          completion_tokens = chunk["usage"]["completion_tokens"].get<int>();
      }
      return hang_up_after == 0 || num_events < hang_up_after;
    };
    httplib::Client c = client();
    httplib::Response response;
    httplib::Error error = httplib::Error::Success;
    const bool sent = c.send(request, response, error);
    if (hang_up_after > 0) {
      if (sent || error != httplib::Error::Canceled) problem("the hang-up did not cancel the stream");
      else ++num_disconnects;
      return;
    }
    if (!sent || status != 200) problem(fmt::format("stream: {} status {}", httplib::to_string(error), status));
    else if (!done || completion_tokens != max_tokens)
      problem(fmt::format("stream: done {} tokens {} of {}", done, completion_tokens, max_tokens));
  }

  void whole(bool chat) {
    const int max_tokens = 1 + static_cast<int>(rng() % 4);
    httplib::Client c = client();
    const auto result = c.Post(path(chat), completion_body(chat, max_tokens).dump(), "application/json");
    if (!result || result->status != 200) {
      problem(fmt::format("whole: {}", result ? result->body : httplib::to_string(result.error())));
      return;
    }
    const json reply = json::parse(result->body, nullptr, false);
    if (!reply.is_object() || reply["usage"]["completion_tokens"] != max_tokens ||
        reply["choices"][0]["finish_reason"] != "length")
      problem("whole: " + result->body);
  }

  void bad(int variant) {
    httplib::Client c = client();
    auto send = [&]() -> httplib::Result {
      switch (variant % 5) {
        case 0: return c.Post("/v1/completions", "{\"model\": \"" + model + "\", \"prompt\": ", "application/json");
        case 1: return c.Post("/v1/completions", json{{"model", "other"}, {"prompt", "x"}}.dump(), "application/json");
        case 2:
          return c.Post("/v1/chat/completions", json{{"model", model}, {"messages", "not a list"}}.dump(),
                        "application/json");
        case 3:
          return c.Post("/v1/completions", json{{"model", model}, {"prompt", "x"}, {"max_tokens", 1000000}}.dump(),
                        "application/json");
        default: return c.Get("/v1/completions");
      }
    };
    const httplib::Result result = send();
    if (!result) return problem("bad request: " + httplib::to_string(result.error()));
    const json reply = json::parse(result->body, nullptr, false);
    if (result->status < 400 || result->status >= 500 || !reply.is_object() || !reply.contains("error"))
      problem(fmt::format("bad request {} got {}: {}", variant % 5, result->status, result->body));
  }

  void run(int thread) {
    for (int j = 0; j < requests_per_thread; ++j) {
      // A random kind of request; a hang-up comes after 1 to 5 events (of the 10-11 a full stream has).
      const int hang_up_after = 1 + static_cast<int>(rng() % 5);
      switch (rng() % 7) {
        case 0: streamed(false, 0); break;
        case 1: whole(false); break;
        case 2: streamed(true, 0); break;
        case 3: whole(true); break;
        case 4: streamed(false, hang_up_after); break;
        case 5: bad(thread + j); break;
        default: streamed(true, hang_up_after); break;
      }
    }
  }
};

double gauge(const std::string& metrics, const std::string& name) {
  const std::regex line(name + "\\{[^}]*\\} ([0-9.eE+-]+)");
  std::smatch match;
  if (!std::regex_search(metrics, match, line)) return -1.0;
  return std::stod(match[1]);
}

TEST(serve_soak, mixed_load_leaves_nothing_behind) {
  test::server_process server("soak");
  ASSERT_NE(server.port(), 0) << server.log();
  std::vector<std::string> problems;
  std::mutex mutex;
  std::atomic<int> num_disconnects{0};
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < num_threads; ++t)
    threads.emplace_back([&, t] {
      soak_client client{server.port(), "soak", std::mt19937(static_cast<unsigned>(t)), problems, mutex, num_disconnects};
      client.run(t);
    });
  for (std::thread& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%d requests in %.1f s, %d hang-ups\n", num_threads * requests_per_thread, seconds, num_disconnects.load());
  for (size_t i = 0; i < std::min<size_t>(problems.size(), 5); ++i) ADD_FAILURE() << problems[i];
  EXPECT_TRUE(problems.empty()) << problems.size() << " problems";
  EXPECT_GT(num_disconnects.load(), 0);

  httplib::Client client("127.0.0.1", server.port());
  // Aborts of hung-up streams reach the engine within a step or two; allow a few seconds.
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    const auto result = client.Get("/metrics");
    ASSERT_TRUE(result) << "the server stopped answering";
    metrics = result->body;
    if (gauge(metrics, "nanoflow_num_requests_running") == 0 && gauge(metrics, "nanoflow_num_requests_waiting") == 0 &&
        gauge(metrics, "nanoflow_kv_cache_usage_ratio") == 0)
      break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(gauge(metrics, "nanoflow_num_requests_running"), 0) << metrics;
  EXPECT_EQ(gauge(metrics, "nanoflow_num_requests_waiting"), 0) << metrics;
  EXPECT_EQ(gauge(metrics, "nanoflow_kv_cache_usage_ratio"), 0) << metrics;
  const auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  const auto last = client.Post("/v1/completions",
                                json{{"model", "soak"}, {"prompt", "still here?"}, {"max_tokens", 5}, {"ignore_eos", true}}.dump(),
                                "application/json");
  ASSERT_TRUE(last);
  EXPECT_EQ(json::parse(last->body)["usage"]["completion_tokens"], 5) << last->body;
  EXPECT_EQ(server.stop(), 0) << server.log();
}

}  // namespace
}  // namespace nf
