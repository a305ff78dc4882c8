// The step loop: scheduler -> planner -> backend -> sampler -> scheduler.update, synchronous or
// asynchronous. In the asynchronous loop the CPU schedules and plans step i+1 and retires step i while the
// backend runs step i+1 on the engine's worker thread; decodes of step i+1 take their input token straight
// from step i's samples (never round-tripping through the scheduler), so EOS is seen one step late and the
// extra token is dropped, never shown.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <exception>
#include <functional>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/backend.h"
#include "engine/engine_service.h"
#include "engine/planner.h"
#include "sched/scheduler.h"

namespace nf {

struct engine_options {
  scheduler_config scheduling;  // kv.num_tokens 0: use every block the backend has
  bool async_loop = true;
};

class llm_engine {
 public:
  llm_engine(std::unique_ptr<backend> model, const engine_options& options);
  ~llm_engine();
  llm_engine(const llm_engine&) = delete;
  llm_engine& operator=(const llm_engine&) = delete;

  // Throws nf::error, changing nothing, when the request cannot be served.
  void add_request(request_id id, completion_request request);
  // Checks a request without queueing it (same errors as add_request).
  void validate(const completion_request& request) const;
  // Cancels; the next step() returns its final "abort" delta. False when unknown or finished.
  bool abort(request_id id);
  // Runs one iteration; returns what it produced.
  std::vector<completion_delta> step();
  bool has_unfinished() const;
  engine_stats stats() const;
  const model_config& config() const { return model_->config(); }
  backend& model() { return *model_; }
  const scheduler& scheduling() const { return scheduler_; }

 private:
  // Per-request state the sampler needs, including tokens sampled but not yet delivered.
  struct sequence_state {
    std::vector<int32_t> prompt;
    std::vector<int32_t> outputs;  // every sampled token, ahead of the scheduler by up to one step
    sampling_params params;
    uint64_t seed = 0;
    uint32_t stream = 0;
  };
  struct step_result {
    std::vector<int32_t> tokens;          // [num_logits] in plan order
    std::vector<sample_result> samples;   // [num_logits]
  };
  struct in_flight_step {
    step_plan plan;
    step_result result;
  };

  // Drops state of finished requests and rolls preempted ones back to what the scheduler delivered.
  void apply_plan_bookkeeping(const step_plan& plan);
  // Backend forward + sampling for one planned step (runs on the worker thread in the async loop).
  void execute(const step_plan& plan, planned_batch& planned, step_result& result);
  std::vector<completion_delta> retire(const step_plan& plan, const step_result& result);
  void launch(in_flight_step& step, planned_batch planned);
  void wait_for_worker();
  void worker_loop();

  std::unique_ptr<backend> model_;
  scheduler scheduler_;
  bool async_;
  std::unordered_map<request_id, sequence_state> sequences_;  // touched by the worker while a step runs
  std::vector<std::pair<request_id, sequence_state>> arriving_;  // added since the last launch
  std::unordered_map<request_id, int> num_prompt_tokens_of_;  // main thread only, until the final delta
  std::mt19937_64 seed_source_;  // seeds of requests that bring none
  std::vector<completion_delta> pending_deltas_;  // aborts, returned by the next step()
  std::optional<in_flight_step> in_flight_;
  int64_t num_prompt_tokens_ = 0;
  int64_t num_generation_tokens_ = 0;
  int64_t num_steps_ = 0;

  // The worker thread of the asynchronous loop: runs one job at a time.
  std::thread worker_;
  std::mutex worker_mutex_;
  std::condition_variable worker_cv_;
  std::function<void()> worker_job_;
  bool worker_busy_ = false;
  bool worker_stop_ = false;
  std::exception_ptr worker_error_;
};

}  // namespace nf
