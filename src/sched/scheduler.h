// The continuous-batching scheduler (NanoFlow style): a fixed dense token budget per step, decodes
// first, then chunked prefill to fill the budget exactly; admission by predicted peak KV use; rare
// preemption by recomputation; FCFS or priority order; prefix-cache reuse at admission.
//
// Per step the engine calls schedule() -> runs the plan -> update(plan, sampled tokens). For an
// asynchronous loop it may call schedule() for step i+1 before update() for step i: decodes whose input
// token is not known yet get placeholder_token, KV is reserved for them, and a request that stops in
// step i but was already scheduled in step i+1 is finished at update(i); its token from step i+1 is
// dropped at update(i+1) and never returned. The backend must run steps in order.
//
// Not thread-safe: one thread calls every method.
//
// Synchronous step loop:
//   step_plan plan = sched.schedule();
//   std::vector<int32_t> sampled = backend.run(plan);        // one token per entry with needs_logits
//   for (const request_output& out : sched.update(plan, sampled)) stream(out);
//
// Asynchronous step loop (the backend keeps each request's last sampled token on the device and
// substitutes it for placeholder_token; it must drop state of plan.finished_ids / preempted_ids):
//   step_plan next = sched.schedule();                       // step i+1, before step i's tokens are known
//   backend.launch(next);
//   if (in_flight) for (auto& out : sched.update(*in_flight, backend.wait(*in_flight))) stream(out);
//   in_flight = std::move(next);
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/sampling_params.h"
#include "kv/kv_cache_manager.h"
#include "sched/output_length_estimator.h"
#include "sched/request.h"
#include "sched/scheduler_config.h"
#include "sched/step_plan.h"

namespace nf {

struct scheduler_stats {
  uint64_t num_steps = 0;          // schedule() calls
  int64_t num_preemptions = 0;
  int64_t num_finished = 0;        // stop or length
  int64_t num_aborted = 0;
  int64_t num_dropped_tokens = 0;  // sampled tokens update() dropped: request finished, aborted or preempted since
  double mean_output_len = 0.0;    // the admission estimate now (prior blended with finished requests)
};

class scheduler {
 public:
  // Throws nf::error when the configuration is invalid.
  explicit scheduler(const scheduler_config& config);

  // Queues a request. Throws nf::error, changing nothing, for a duplicate id, an empty prompt, a negative
  // token id, invalid sampling parameters, or prompt + max_tokens past the context or the whole KV pool.
  void add_request(request_id id, std::vector<int32_t> prompt_token_ids, const sampling_params& params,
                   int priority = 0);

  // Forms the next step. May preempt running requests when KV runs out. Returns an empty plan (no
  // requests, maybe finished_ids) when there is nothing to run.
  step_plan schedule();

  // Applies a step's results: `sampled_token_ids` holds one token per plan entry with needs_logits, in
  // plan order. Appends tokens, advances the prefix cache, checks token-id stop conditions, frees
  // finished requests. Returns one output per request that received a token, in plan order. Plans must
  // be updated in the order they were scheduled; entries of finished, aborted or preempted requests are
  // skipped.
  std::vector<request_output> update(const step_plan& plan, std::span<const int32_t> sampled_token_ids);

  // Cancels a request wherever it is (waiting, running, mid-step) and frees its blocks at once.
  // Returns false when the id is unknown or already finished.
  bool abort(request_id id);
  // Finishes a request for a reason found outside (a stop string): like abort, but counted as finished.
  bool finish(request_id id, finish_reason reason = finish_reason::stop);

  // The live request, or nullptr once it finished (finished requests are forgotten at once).
  const request* find(request_id id) const;
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_running() const { return static_cast<int>(running_.size()); }
  bool has_unfinished() const { return !requests_.empty(); }
  const scheduler_config& config() const { return config_; }
  const kv_cache_manager& kv() const { return kv_; }
  prefix_cache_stats prefix_stats() const { return kv_.stats(); }
  scheduler_stats stats() const;

  // Full consistency check (tests and debug builds): empty when consistent, else the first problem.
  // Checks that each block's reference count equals the number of running requests holding it, that
  // free + held == total, that waiting requests hold nothing, and the block pool's own structures.
  std::string check_invariants() const;

 private:
  struct waiting_order {
    bool use_priority = false;
    bool operator()(const request* a, const request* b) const {
      if (use_priority && a->priority != b->priority) return a->priority < b->priority;
      return a->arrival < b->arrival;
    }
  };

  // Appends the plan entry for `n` tokens of `r` starting at its num_computed_tokens and advances it.
  void emit(request& r, int n, step_plan& plan);
  // Tries to give running request `r` blocks for up to `n` more tokens, preempting the newest running
  // requests not yet scheduled in this step (possibly `r` itself). Returns the tokens granted (0 when
  // `r` was preempted).
  int reserve_running(request& r, int n, step_plan& plan);
  request* pick_victim(uint64_t step_id) const;
  void preempt(request& r, step_plan& plan);
  void admit_waiting(int& budget, step_plan& plan);
  // Blocks running requests are predicted to need beyond what they hold now.
  int64_t predicted_growth_blocks() const;
  finish_reason check_stop(const request& r, int32_t token) const;
  // Frees and forgets a request; `r` is dangling afterwards.
  void finish_request(request& r, finish_reason reason);

  scheduler_config config_;
  kv_cache_manager kv_;
  output_length_estimator output_len_;
  std::unordered_map<request_id, std::unique_ptr<request>> requests_;
  std::set<request*, waiting_order> waiting_;
  std::vector<request*> running_;               // admission order
  std::vector<request_id> finished_since_plan_;
  uint64_t next_step_id_ = 0;
  uint64_t next_arrival_ = 0;
  int64_t num_preemptions_ = 0;
  int64_t num_finished_ = 0;
  int64_t num_aborted_ = 0;
  int64_t num_dropped_tokens_ = 0;
};

}  // namespace nf
