// The engine on a thread of its own, as an engine_service: front-end threads submit and abort; the engine
// thread runs the step loop whenever there is work and sleeps otherwise, and hands each delta to the
// request's callback.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/engine_service.h"
#include "engine/llm_engine.h"

namespace nf {

class engine_thread final : public engine_service {
 public:
  explicit engine_thread(std::unique_ptr<llm_engine> engine);
  ~engine_thread() override;  // shutdown()
  engine_thread(const engine_thread&) = delete;
  engine_thread& operator=(const engine_thread&) = delete;

  const model_config& config() const override { return config_; }
  uint64_t submit(completion_request request, delta_callback on_delta) override;
  void abort(uint64_t request_id) override;
  engine_stats stats() const override;
  // Aborts every request (each callback sees its final "abort" delta) and stops the thread. Idempotent.
  void shutdown();

 private:
  struct submission {
    uint64_t id;
    completion_request request;
    delta_callback on_delta;
  };
  void loop();
  void deliver(const completion_delta& delta);

  std::unique_ptr<llm_engine> engine_;  // engine thread only, after construction
  const model_config config_;
  std::atomic<uint64_t> next_id_{1};
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<submission> inbox_;  // guarded by mutex_
  std::vector<uint64_t> aborts_;   // guarded by mutex_
  engine_stats stats_;             // guarded by mutex_, refreshed after each step
  bool stopping_ = false;          // guarded by mutex_
  std::unordered_map<uint64_t, delta_callback> callbacks_;  // engine thread only
  std::thread thread_;
};

}  // namespace nf
