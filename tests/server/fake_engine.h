// A deterministic stand-in for the engine behind the server tests: on its own thread, every step emits
// token (last + 1) % vocab_size for each running request, honours max_tokens, min_tokens, stop_token_ids,
// EOS and ignore_eos, reports logprobs (-0.5 for the sampled token, -1.5, -2.5, ... for the alternatives
// (id + 1), (id + 2), ...), and records submissions and aborts for the tests to check.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/error.h"
#include "engine/engine_service.h"

namespace nf::test {

class fake_engine : public engine_service {
 public:
  explicit fake_engine(int context_length = 256, std::chrono::microseconds step = std::chrono::microseconds(500))
      : step_(step) {
    config_.architecture_name = "FakeForCausalLM";
    config_.vocab_size = 128256;
    config_.max_position_embeddings = context_length;
    config_.eos_token_ids = {128001, 128009};
    thread_ = std::thread([this] { loop(); });
  }
  ~fake_engine() override {
    {
      std::lock_guard lock(mutex_);
      quit_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  const model_config& config() const override { return config_; }

  uint64_t submit(completion_request request, delta_callback on_delta) override {
    if (request.prompt_token_ids.empty()) fail("empty prompt");
    for (int32_t id : request.prompt_token_ids)
      if (id < 0 || id >= config_.vocab_size) fail("prompt token {} is outside the vocabulary", id);
    for (int32_t id : request.params.stop_token_ids)
      if (id < 0 || id >= config_.vocab_size) fail("stop token {} is outside the vocabulary", id);
    if (static_cast<int64_t>(request.prompt_token_ids.size()) + request.params.max_tokens > config_.max_position_embeddings)
      fail("prompt + max_tokens past the context");
    request.params.validate();
    std::lock_guard lock(mutex_);
    const uint64_t id = ++num_submitted_;
    submitted_.push_back(request);
    running_[id] = running{std::move(request), std::move(on_delta), 0, false, 0};
    running_[id].last = running_[id].request.prompt_token_ids.back();
    wake_.notify_all();
    return id;
  }

  void abort(uint64_t request_id) override {
    std::lock_guard lock(mutex_);
    aborts_.insert(request_id);
    const auto it = running_.find(request_id);
    if (it != running_.end()) it->second.aborted = true;
    wake_.notify_all();
  }

  engine_stats stats() const override {
    std::lock_guard lock(mutex_);
    engine_stats s;
    s.num_running = static_cast<int>(running_.size());
    s.num_kv_blocks = 100;
    s.num_free_kv_blocks = 100 - 2 * s.num_running;
    s.block_size = 16;
    s.prefix_cache_hit_rate = 0.25;
    return s;
  }

  // Test hooks.
  std::vector<completion_request> submitted() const {
    std::lock_guard lock(mutex_);
    return submitted_;
  }
  std::set<uint64_t> aborts() const {
    std::lock_guard lock(mutex_);
    return aborts_;
  }
  int num_running() const {
    std::lock_guard lock(mutex_);
    return static_cast<int>(running_.size());
  }
  // Waits until an abort arrived for a request that was still running, or the timeout passed.
  bool wait_for_running_abort(std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mutex_);
    return aborted_while_running_.wait_for(lock, timeout, [&] { return num_aborted_while_running_ > 0; });
  }
  int num_aborted_while_running() const {
    std::lock_guard lock(mutex_);
    return num_aborted_while_running_;
  }
  // The tokens a request with this prompt produces when nothing stops it.
  std::vector<int32_t> expected_tokens(const std::vector<int32_t>& prompt, int count) const {
    std::vector<int32_t> ids;
    int32_t last = prompt.back();
    for (int i = 0; i < count; ++i) ids.push_back(last = (last + 1) % config_.vocab_size);
    return ids;
  }

 private:
  struct running {
    completion_request request;
    delta_callback on_delta;
    int num_generated = 0;
    bool aborted = false;
    int32_t last = 0;
  };

  void loop() {
    std::unique_lock lock(mutex_);
    while (!quit_) {
      if (running_.empty()) {
        wake_.wait(lock, [&] { return quit_ || !running_.empty(); });
        continue;
      }
      std::vector<std::pair<delta_callback, completion_delta>> out;
      for (auto it = running_.begin(); it != running_.end();) {
        running& r = it->second;
        completion_delta delta;
        delta.request_id = it->first;
        delta.num_prompt_tokens = static_cast<int>(r.request.prompt_token_ids.size());
        if (r.aborted) {
          ++num_aborted_while_running_;
          aborted_while_running_.notify_all();
          delta.finished = true;
          delta.finish_reason = "abort";
        } else {
          const sampling_params& p = r.request.params;
          const int32_t token = (r.last + 1) % config_.vocab_size;
          r.last = token;
          ++r.num_generated;
          delta.token_ids.push_back(token);
          sample_result sample{token, -0.5f, {}};
          for (int j = 0; j < p.logprobs; ++j)
            sample.top_logprobs.push_back({(token + j) % config_.vocab_size, -0.5f - static_cast<float>(j)});
          if (p.logprobs >= 0) delta.samples.push_back(sample);
          const bool is_eos = std::count(config_.eos_token_ids.begin(), config_.eos_token_ids.end(), token) > 0;
          const bool is_stop = std::count(p.stop_token_ids.begin(), p.stop_token_ids.end(), token) > 0;
          if (r.num_generated >= p.min_tokens && (is_stop || (is_eos && !p.ignore_eos))) {
            delta.finished = true;
            delta.finish_reason = "stop";
          } else if (r.num_generated >= p.max_tokens) {
            delta.finished = true;
            delta.finish_reason = "length";
          }
        }
        out.emplace_back(r.on_delta, std::move(delta));
        it = out.back().second.finished ? running_.erase(it) : std::next(it);
      }
      lock.unlock();
      for (auto& [callback, delta] : out) callback(delta);
      std::this_thread::sleep_for(step_);
      lock.lock();
    }
  }

  model_config config_;
  std::chrono::microseconds step_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  mutable std::condition_variable aborted_while_running_;
  std::map<uint64_t, running> running_;
  std::vector<completion_request> submitted_;
  std::set<uint64_t> aborts_;
  int num_aborted_while_running_ = 0;
  uint64_t num_submitted_ = 0;
  bool quit_ = false;
  std::thread thread_;
};

}  // namespace nf::test
