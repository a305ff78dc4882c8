// The engine as a service on its own thread: concurrent submitters get the same tokens as solo runs, aborts
// end a request at once with one final delta, shutdown ends every request, bad requests harm nothing.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "engine/cpu_backend.h"
#include "engine/engine_thread.h"
#include "engine/generate.h"
#include "model/weights.h"
#include "test_paths.h"

namespace nf {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<cpu_backend> load(int num_blocks) {
  const auto dir = test::model_dir("llama3-gqa");
  return std::make_unique<cpu_backend>(load_weights(dir, load_model_config(dir)), num_blocks, 16);
}

std::unique_ptr<llm_engine> make_engine() {
  engine_options options;
  options.scheduling.max_num_batched_tokens = 64;
  return std::make_unique<llm_engine>(load(64), options);
}

// Collects deltas from the engine thread and lets the test wait for request ends.
struct collector {
  std::mutex mutex;
  std::condition_variable changed;
  std::map<uint64_t, std::vector<int32_t>> tokens;
  std::map<uint64_t, std::string> finish_reason;
  std::map<uint64_t, int> num_final_deltas;

  delta_callback callback() {
    return [this](const completion_delta& delta) {
      std::lock_guard lock(mutex);
      auto& out = tokens[delta.request_id];
      out.insert(out.end(), delta.token_ids.begin(), delta.token_ids.end());
      if (delta.finished) {
        finish_reason[delta.request_id] = delta.finish_reason;
        ++num_final_deltas[delta.request_id];
      }
      changed.notify_all();
    };
  }
  bool wait_finished(size_t count, std::chrono::seconds timeout = 20s) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, timeout, [&] { return finish_reason.size() >= count; });
  }
};

completion_request greedy_request(std::vector<int32_t> prompt, int max_tokens) {
  completion_request request;
  request.prompt_token_ids = std::move(prompt);
  request.params.temperature = 0.0f;
  request.params.max_tokens = max_tokens;
  request.params.ignore_eos = true;
  return request;
}

TEST(engine_thread, concurrent_submitters_get_solo_outputs) {
  engine_thread service(make_engine());
  collector sink;
  std::mutex ids_mutex;
  std::map<uint64_t, completion_request> submitted;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < 3; ++i) {
        completion_request request = greedy_request({c + 1, i + 2, 7, 9, 11 * c + i}, 6 + c + i);
        const completion_request copy = request;
        const uint64_t id = service.submit(std::move(request), sink.callback());
        std::lock_guard lock(ids_mutex);
        submitted.emplace(id, copy);
      }
    });
  }
  for (auto& client : clients) client.join();
  ASSERT_TRUE(sink.wait_finished(12));
  auto solo = load(64);
  for (const auto& [id, request] : submitted) {
    EXPECT_EQ(sink.tokens[id], generate_one(*solo, request.prompt_token_ids, request.params, 0).token_ids) << id;
    EXPECT_EQ(sink.finish_reason[id], "length");
    EXPECT_EQ(sink.num_final_deltas[id], 1);
  }
  const engine_stats stats = service.stats();
  EXPECT_EQ(stats.num_running + stats.num_waiting, 0);
  EXPECT_EQ(stats.num_free_kv_blocks, stats.num_kv_blocks);
}

TEST(engine_thread, abort_ends_a_request_with_one_final_delta) {
  engine_thread service(make_engine());
  collector sink;
  const uint64_t id = service.submit(greedy_request({1, 2, 3}, 900), sink.callback());
  {
    std::unique_lock lock(sink.mutex);
    ASSERT_TRUE(sink.changed.wait_for(lock, 20s, [&] { return sink.tokens[id].size() >= 2; }));
  }
  service.abort(id);
  ASSERT_TRUE(sink.wait_finished(1));
  std::this_thread::sleep_for(50ms);
  std::lock_guard lock(sink.mutex);
  EXPECT_EQ(sink.finish_reason[id], "abort");
  EXPECT_EQ(sink.num_final_deltas[id], 1);
  EXPECT_LT(sink.tokens[id].size(), 900u);
  const engine_stats stats = service.stats();
  EXPECT_EQ(stats.num_free_kv_blocks, stats.num_kv_blocks);
}

TEST(engine_thread, bad_requests_throw_and_harm_nothing) {
  engine_thread service(make_engine());
  collector sink;
  EXPECT_THROW(service.submit(greedy_request({}, 4), sink.callback()), nf::error);
  EXPECT_THROW(service.submit(greedy_request({1, 1 << 20}, 4), sink.callback()), nf::error);
  EXPECT_THROW(service.submit(greedy_request({1, 2}, 5000), sink.callback()), nf::error);
  const uint64_t id = service.submit(greedy_request({1, 2}, 4), sink.callback());
  ASSERT_TRUE(sink.wait_finished(1));
  EXPECT_EQ(sink.tokens[id].size(), 4u);
}

TEST(engine_thread, shutdown_ends_every_request) {
  collector sink;
  {
    engine_thread service(make_engine());
    for (int i = 0; i < 3; ++i) service.submit(greedy_request({1, 2, 3, i}, 900), sink.callback());
    std::this_thread::sleep_for(20ms);
    service.shutdown();
    EXPECT_THROW(service.submit(greedy_request({1}, 4), sink.callback()), nf::error);
  }
  ASSERT_TRUE(sink.wait_finished(3, 1s));
  for (const auto& [id, reason] : sink.finish_reason) {
    EXPECT_EQ(reason, "abort") << id;
    EXPECT_EQ(sink.num_final_deltas[id], 1) << id;
  }
}

}  // namespace
}  // namespace nf
