// The engine thread's loop: drain the inbox (submissions, then aborts), run one step, deliver deltas.
#include "engine/engine_thread.h"

#include "core/error.h"

namespace nf {

engine_thread::engine_thread(std::unique_ptr<llm_engine> engine)
    : engine_(std::move(engine)), config_(engine_->config()) {
  stats_ = engine_->stats();
  thread_ = std::thread([this] { loop(); });
}

engine_thread::~engine_thread() { shutdown(); }

uint64_t engine_thread::submit(completion_request request, delta_callback on_delta) {
  engine_->validate(request);  // reads only fixed configuration: safe beside the engine thread
  const uint64_t id = next_id_.fetch_add(1);
  {
    std::lock_guard lock(mutex_);
    if (stopping_) fail("the engine is shutting down");
    inbox_.push_back({id, std::move(request), std::move(on_delta)});
  }
  wake_.notify_one();
  return id;
}

void engine_thread::abort(uint64_t request_id) {
  {
    std::lock_guard lock(mutex_);
    aborts_.push_back(request_id);
  }
  wake_.notify_one();
}

engine_stats engine_thread::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void engine_thread::shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void engine_thread::deliver(const completion_delta& delta) {
  auto it = callbacks_.find(delta.request_id);
  if (it == callbacks_.end()) return;
  it->second(delta);
  if (delta.finished) callbacks_.erase(it);
}

void engine_thread::loop() {
  while (true) {
    std::vector<submission> submissions;
    std::vector<uint64_t> aborts;
    bool stopping = false;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !inbox_.empty() || !aborts_.empty() || engine_->has_unfinished(); });
      submissions.swap(inbox_);
      aborts.swap(aborts_);
      stopping = stopping_;
    }
    for (submission& s : submissions) {
      callbacks_.emplace(s.id, std::move(s.on_delta));
      try {
        engine_->add_request(s.id, std::move(s.request));
      } catch (const nf::error&) {
        // Validated at submit; a request that still cannot be queued ends at once as aborted.
        completion_delta delta;
        delta.request_id = s.id;
        delta.finished = true;
        delta.finish_reason = "abort";
        deliver(delta);
      }
    }
    if (stopping) {
      std::vector<uint64_t> all;
      for (const auto& [id, callback] : callbacks_) all.push_back(id);
      aborts.insert(aborts.end(), all.begin(), all.end());
    }
    for (uint64_t id : aborts) engine_->abort(id);
    if (engine_->has_unfinished()) {
      for (const completion_delta& delta : engine_->step()) deliver(delta);
    }
    {
      std::lock_guard lock(mutex_);
      stats_ = engine_->stats();
    }
    if (stopping && !engine_->has_unfinished()) {
      for (auto& [id, callback] : callbacks_) {
        completion_delta delta;
        delta.request_id = id;
        delta.finished = true;
        delta.finish_reason = "abort";
        callback(delta);
      }
      callbacks_.clear();
      return;
    }
  }
}

}  // namespace nf
