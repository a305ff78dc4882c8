// The step loop of an engine, synchronous or asynchronous, around the scheduler and a fake backend;
// it checks the scheduler's invariants after every call and collects each request's returned tokens.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "fake_model.h"
#include "sched/scheduler.h"

namespace nf::test {

class engine_loop {
 public:
  engine_loop(scheduler& sched, fake_model model, bool async) : sched_(sched), backend_(sched, model), async_(async) {}

  // One iteration. Synchronous: schedule, run, update. Asynchronous: schedule step i+1, run it, then
  // update step i. Returns false once nothing is left (no request, nothing in flight).
  bool step() {
    if (before_schedule) before_schedule();
    step_plan plan = sched_.schedule();
    check_plan(plan);
    std::vector<int32_t> sampled = backend_.run(plan);
    if (mid_step) mid_step();  // the step is "on the device": aborts and finishes land here
    check();
    if (!async_) {
      record(sched_.update(plan, sampled));
      check();
      return !(plan.empty() && !sched_.has_unfinished()) && !stalled(plan);
    }
    if (in_flight_) record(sched_.update(in_flight_->first, in_flight_->second));
    check();
    bool idle = plan.empty();
    in_flight_.emplace(std::move(plan), std::move(sampled));
    return !(idle && !sched_.has_unfinished()) && !stalled(in_flight_->first);
  }

  // Runs until done; fails the test past `max_steps`.
  void run(int max_steps = 100000) {
    for (int i = 0; i < max_steps; ++i)
      if (!step()) return;
    ADD_FAILURE() << "engine loop did not finish in " << max_steps << " steps";
  }

  // Optional actions: before each schedule() call, and between running a step and its update().
  std::function<void()> before_schedule;
  std::function<void()> mid_step;

  // Tokens returned per request, finish reasons, and every plan's token counts.
  std::map<request_id, std::vector<int32_t>> outputs;
  std::map<request_id, finish_reason> reasons;
  std::vector<int32_t> tokens_per_step;
  int max_decode_requests = 0;

 private:
  void record(const std::vector<request_output>& outs) {
    for (const auto& o : outs) {
      EXPECT_FALSE(reasons.count(o.id)) << "request " << o.id << " returned a token after it finished";
      auto& v = outputs[o.id];
      v.insert(v.end(), o.new_token_ids.begin(), o.new_token_ids.end());
      if (o.finished) reasons[o.id] = o.reason;
    }
  }

  void check_plan(const step_plan& plan) {
    int32_t total = 0;
    for (size_t i = 0; i < plan.requests.size(); ++i) {
      const auto& e = plan.requests[i];
      total += e.num_tokens();
      EXPECT_GE(e.num_tokens(), 1);
      if (static_cast<int32_t>(i) < plan.num_decode_requests) {
        EXPECT_EQ(e.num_tokens(), 1) << "decodes come first";
      }
    }
    EXPECT_EQ(total, plan.num_scheduled_tokens);
    EXPECT_LE(plan.num_scheduled_tokens, sched_.config().max_num_batched_tokens);
    tokens_per_step.push_back(plan.num_scheduled_tokens);
    max_decode_requests = std::max(max_decode_requests, plan.num_decode_requests);
    check();
  }

  void check() {
    EXPECT_EQ(sched_.check_invariants(), "");
  }

  // Two empty plans in a row with requests still live means the scheduler stalled.
  bool stalled(const step_plan& plan) {
    if (!plan.empty() || !sched_.has_unfinished()) {
      num_idle_ = 0;
      return false;
    }
    if (++num_idle_ < 3) return false;
    ADD_FAILURE() << "scheduler stalled with " << sched_.num_waiting() << " waiting, " << sched_.num_running()
                  << " running";
    return true;
  }

  scheduler& sched_;
  fake_backend backend_;
  bool async_;
  std::optional<std::pair<step_plan, std::vector<int32_t>>> in_flight_;
  int num_idle_ = 0;
};

}  // namespace nf::test
