// The scheduler: admission, the per-step token budget, preemption, and applying sampled tokens.
#include "sched/scheduler.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"

namespace nf {

namespace {

const scheduler_config& validated(const scheduler_config& config) {
  config.validate();
  return config;
}

bool contains(const std::vector<int32_t>& ids, int32_t token) {
  return std::find(ids.begin(), ids.end(), token) != ids.end();
}

}  // namespace

scheduler::scheduler(const scheduler_config& config)
    : config_(validated(config)),
      kv_(config.kv),
      output_len_(config.output_len_prior, config.output_len_prior_weight),
      waiting_(waiting_order{config.policy == scheduling_policy::priority}) {}

void scheduler::add_request(request_id id, std::vector<int32_t> prompt_token_ids, const sampling_params& params,
                            int priority) {
  if (requests_.count(id)) fail("request id {} is already in use", id);
  if (prompt_token_ids.empty()) fail("request {}: the prompt is empty", id);
  for (int32_t token : prompt_token_ids)
    if (token < 0) fail("request {}: token ids must be non-negative, got {}", id, token);
  params.validate();
  int64_t num_prompt = static_cast<int64_t>(prompt_token_ids.size());
  if (num_prompt + params.max_tokens > config_.max_model_len)
    fail("request {}: prompt of {} tokens + max_tokens {} exceeds the model context of {} tokens", id, num_prompt,
         params.max_tokens, config_.max_model_len);
  // The last sampled token is never fed back, so a request holds KV for at most prompt + max_tokens - 1.
  int64_t peak_kv_tokens = num_prompt + params.max_tokens - 1;
  if (kv_.num_blocks_for(peak_kv_tokens) > kv_.num_blocks())
    fail("request {}: prompt of {} tokens + max_tokens {} needs {} KV tokens, more than the whole cache of {}", id,
         num_prompt, params.max_tokens, peak_kv_tokens, kv_.num_tokens_capacity());

  auto r = std::make_unique<request>();
  r->id = id;
  r->num_prompt_tokens = static_cast<int>(num_prompt);
  r->token_ids = std::move(prompt_token_ids);
  r->token_ids.reserve(static_cast<size_t>(num_prompt + params.max_tokens));
  r->params = params;
  r->priority = priority;
  r->arrival = next_arrival_++;
  waiting_.insert(r.get());
  requests_.emplace(id, std::move(r));
}

const request* scheduler::find(request_id id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

scheduler_stats scheduler::stats() const {
  return scheduler_stats{.num_steps = next_step_id_,
                         .num_preemptions = num_preemptions_,
                         .num_finished = num_finished_,
                         .num_aborted = num_aborted_,
                         .num_dropped_tokens = num_dropped_tokens_,
                         .mean_output_len = output_len_.mean()};
}

// ---- schedule -----------------------------------------------------------------------------------

step_plan scheduler::schedule() {
  step_plan plan;
  plan.step_id = next_step_id_++;
  plan.finished_ids = std::move(finished_since_plan_);
  finished_since_plan_.clear();
  plan.requests.reserve(running_.size() + 8);
  int budget = config_.max_num_batched_tokens;

  // Running requests: decodes (one token left to feed) first, then unfinished prefills. A snapshot,
  // since preemption edits running_.
  std::vector<request*> snapshot = running_;
  for (int pass = 0; pass < 2; ++pass) {
    for (request* r : snapshot) {
      if (budget == 0) break;
      if (r->status != request_status::running || r->last_scheduled_step == plan.step_id) continue;
      int remaining = r->num_tokens_with_pending() - r->num_computed_tokens;
      bool is_decode = remaining == 1;
      if (remaining < 1 || is_decode != (pass == 0)) continue;
      // Its last possible token is already on the way: it will finish by length at update().
      if (r->num_output_tokens() + r->num_pending_tokens >= r->params.max_tokens) continue;
      int n = reserve_running(*r, std::min(remaining, budget), plan);
      if (n == 0) continue;
      emit(*r, n, plan);
      budget -= n;
    }
    if (pass == 0) plan.num_decode_requests = static_cast<int32_t>(plan.requests.size());
  }

  // New (and preempted) requests fill what is left, unless KV ran out this very step.
  if (plan.preempted_ids.empty()) admit_waiting(budget, plan);

  NF_CHECK(plan.num_scheduled_tokens <= config_.max_num_batched_tokens, "step over budget: {} tokens",
           plan.num_scheduled_tokens);
  return plan;
}

int scheduler::reserve_running(request& r, int n, step_plan& plan) {
  for (;;) {
    // Tokens that fit in the blocks it holds plus every free (or evictable) block.
    int64_t room = static_cast<int64_t>(r.kv.block_table.size() + static_cast<size_t>(kv_.num_free_blocks())) *
                       kv_.block_size() - r.num_computed_tokens;
    if (room >= 1) {
      n = static_cast<int>(std::min<int64_t>(n, room));
      bool ok = kv_.grow(r.kv, r.num_computed_tokens + n);
      NF_CHECK(ok, "growing request {} to {} tokens failed with room for {}", r.id, r.num_computed_tokens + n, room);
      return n;
    }
    request* victim = pick_victim(plan.step_id);
    NF_CHECK(victim != nullptr, "no preemption victim although request {} is unscheduled", r.id);
    preempt(*victim, plan);
    if (victim == &r) return 0;
  }
}

request* scheduler::pick_victim(uint64_t step_id) const {
  // The newest (lowest-priority under the priority policy) running request not yet in this step's plan.
  waiting_order order{config_.policy == scheduling_policy::priority};
  request* victim = nullptr;
  for (request* r : running_) {
    if (r->last_scheduled_step == step_id) continue;
    if (victim == nullptr || order(victim, r)) victim = r;
  }
  return victim;
}

void scheduler::preempt(request& r, step_plan& plan) {
  kv_.free(r.kv);
  running_.erase(std::find(running_.begin(), running_.end(), &r));
  r.status = request_status::preempted;
  r.num_computed_tokens = 0;
  r.num_pending_tokens = 0;  // tokens of steps in flight are dropped; they are sampled again
  r.first_valid_step = plan.step_id;
  ++r.num_preemptions;
  ++num_preemptions_;
  waiting_.insert(&r);
  plan.preempted_ids.push_back(r.id);
}

int64_t scheduler::predicted_growth_blocks() const {
  int64_t growth = 0;
  for (const request* r : running_) {
    int generated = r->num_output_tokens() + r->num_pending_tokens;
    int64_t peak_tokens = static_cast<int64_t>(r->num_tokens_with_pending()) +
                          output_len_.expected_remaining(r->params.max_tokens, generated);
    growth += std::max<int64_t>(0, kv_.num_blocks_for(peak_tokens) - static_cast<int64_t>(r->kv.block_table.size()));
  }
  return growth;
}

void scheduler::admit_waiting(int& budget, step_plan& plan) {
  if (waiting_.empty() || budget == 0) return;
  // Predicted peak use: blocks held now, plus what running requests are expected to add, plus the
  // candidate's own expected peak (less hit blocks that others already hold, counted in `held`).
  int64_t held = kv_.num_blocks() - kv_.num_free_blocks();
  int64_t predicted = held + predicted_growth_blocks();
  auto limit = static_cast<int64_t>(config_.kv_admission_fraction * kv_.num_blocks());

  while (budget > 0 && !waiting_.empty() && static_cast<int>(running_.size()) < config_.max_num_seqs) {
    request& r = **waiting_.begin();
    prefix_hit hit = kv_.find_prefix(r.kv, r.token_ids);
    int64_t peak_tokens = static_cast<int64_t>(r.num_tokens()) +
                          output_len_.expected_remaining(r.params.max_tokens, r.num_output_tokens());
    int64_t need = kv_.num_blocks_for(peak_tokens) - static_cast<int64_t>(hit.blocks.size() - hit.num_unheld);
    // Strict order: the head waits rather than letting later requests overtake it. A lone request
    // is always admitted (add_request made sure it fits the pool) so the engine never stalls.
    if (!running_.empty() && predicted + need > limit) break;
    int n = std::min(r.num_tokens() - hit.num_tokens, budget);
    if (!kv_.allocate(r.kv, hit, hit.num_tokens + n)) break;
    kv_.record_query(r.num_tokens(), hit.num_tokens);
    predicted += need;
    waiting_.erase(waiting_.begin());
    running_.push_back(&r);
    r.status = request_status::running;
    r.num_computed_tokens = hit.num_tokens;
    r.num_cached_prompt_tokens = hit.num_tokens;
    emit(r, n, plan);
    budget -= n;
  }
}

void scheduler::emit(request& r, int n, step_plan& plan) {
  scheduled_request& e = plan.requests.emplace_back();
  e.id = r.id;
  e.position = r.num_computed_tokens;
  e.token_ids.resize(static_cast<size_t>(n));
  int num_known = r.num_tokens();
  for (int i = 0; i < n; ++i) {
    int p = r.num_computed_tokens + i;
    e.token_ids[static_cast<size_t>(i)] = p < num_known ? r.token_ids[static_cast<size_t>(p)] : placeholder_token;
  }
  r.num_computed_tokens += n;
  NF_CHECK(static_cast<int>(r.kv.block_table.size()) == kv_.num_blocks_for(r.num_computed_tokens),
           "request {} holds {} blocks for {} tokens", r.id, r.kv.block_table.size(), r.num_computed_tokens);
  e.block_table = r.kv.block_table;
  e.needs_logits = r.num_computed_tokens == r.num_tokens_with_pending();
  if (e.needs_logits) ++r.num_pending_tokens;
  r.last_scheduled_step = plan.step_id;
  plan.num_scheduled_tokens += n;
}

// ---- update -------------------------------------------------------------------------------------

finish_reason scheduler::check_stop(const request& r, int32_t token) const {
  int generated = r.num_output_tokens();
  // Below min_tokens, stop tokens do not stop (the sampler should also mask them).
  if (generated >= r.params.min_tokens) {
    if (!r.params.ignore_eos && contains(config_.eos_token_ids, token)) return finish_reason::stop;
    if (contains(r.params.stop_token_ids, token)) return finish_reason::stop;
  }
  if (generated >= r.params.max_tokens || r.num_tokens() >= config_.max_model_len) return finish_reason::length;
  return finish_reason::none;
}

std::vector<request_output> scheduler::update(const step_plan& plan, std::span<const int32_t> sampled_token_ids) {
  NF_CHECK(static_cast<int32_t>(sampled_token_ids.size()) == plan.num_logits(),
           "step {}: {} sampled tokens for {} requests with logits", plan.step_id, sampled_token_ids.size(),
           plan.num_logits());
  std::vector<request_output> outputs;
  outputs.reserve(sampled_token_ids.size());
  size_t next_sample = 0;
  for (const scheduled_request& e : plan.requests) {
    int32_t token = e.needs_logits ? sampled_token_ids[next_sample++] : placeholder_token;
    auto it = requests_.find(e.id);
    bool live = it != requests_.end() && plan.step_id >= it->second->first_valid_step &&
                it->second->status == request_status::running;
    if (!live) {  // finished, aborted or preempted since the step was scheduled
      if (e.needs_logits) ++num_dropped_tokens_;
      continue;
    }
    request& r = *it->second;

    // The step wrote KV for positions below position + num_tokens, whose ids are all known by now.
    kv_.cache_computed(r.kv, r.token_ids, e.position + e.num_tokens());
    if (!e.needs_logits) continue;
    NF_CHECK(token >= 0, "step {}: request {} sampled invalid token {}", plan.step_id, r.id, token);
    NF_CHECK(r.num_pending_tokens > 0, "request {} received a token it did not wait for", r.id);
    --r.num_pending_tokens;
    r.token_ids.push_back(token);
    finish_reason reason = check_stop(r, token);
    outputs.push_back(request_output{.id = r.id,
                                     .new_token_ids = {token},
                                     .finished = reason != finish_reason::none,
                                     .reason = reason,
                                     .num_cached_prompt_tokens = r.num_cached_prompt_tokens});
    if (reason != finish_reason::none) finish_request(r, reason);
  }
  return outputs;
}

// ---- finishing ----------------------------------------------------------------------------------

void scheduler::finish_request(request& r, finish_reason reason) {
  NF_CHECK(reason != finish_reason::none, "finish without a reason");
  if (r.status == request_status::running) {
    kv_.free(r.kv);
    running_.erase(std::find(running_.begin(), running_.end(), &r));
  } else {
    NF_CHECK(r.kv.block_table.empty(), "queued request {} holds blocks", r.id);
    waiting_.erase(&r);
  }
  if (reason == finish_reason::abort) {
    ++num_aborted_;
  } else {
    ++num_finished_;
    output_len_.record(r.num_output_tokens());
  }
  finished_since_plan_.push_back(r.id);
  requests_.erase(r.id);
}

bool scheduler::abort(request_id id) { return finish(id, finish_reason::abort); }

bool scheduler::finish(request_id id, finish_reason reason) {
  if (reason == finish_reason::none) fail("finish() of request {} needs a reason", id);
  auto it = requests_.find(id);
  if (it == requests_.end()) return false;
  finish_request(*it->second, reason);
  return true;
}

// ---- checks -------------------------------------------------------------------------------------

std::string scheduler::check_invariants() const {
  const block_pool& pool = kv_.pool();
  if (std::string s = pool.check_consistency(); !s.empty()) return s;
  if (running_.size() + waiting_.size() != requests_.size())
    return fmt::format("{} running + {} waiting != {} live requests", running_.size(), waiting_.size(),
                       requests_.size());
  if (static_cast<int>(running_.size()) > config_.max_num_seqs) return "more running requests than max_num_seqs";
  std::vector<int32_t> holders(static_cast<size_t>(kv_.num_blocks()), 0);  // [num_blocks]
  for (const request* r : running_) {
    if (r->status != request_status::running) return fmt::format("request {} in running is {}", r->id, to_string(r->status));
    if (requests_.count(r->id) == 0) return fmt::format("running request {} is not live", r->id);
    if (static_cast<int>(r->kv.block_table.size()) != kv_.num_blocks_for(r->num_computed_tokens))
      return fmt::format("request {} holds {} blocks for {} tokens", r->id, r->kv.block_table.size(),
                         r->num_computed_tokens);
    if (r->num_computed_tokens > r->num_tokens_with_pending())
      return fmt::format("request {} computed past its tokens", r->id);
    for (block_id b : r->kv.block_table) ++holders[static_cast<size_t>(b)];
  }
  for (const request* r : waiting_) {
    if (r->status != request_status::waiting && r->status != request_status::preempted)
      return fmt::format("request {} in waiting is {}", r->id, to_string(r->status));
    if (!r->kv.block_table.empty()) return fmt::format("waiting request {} holds blocks", r->id);
    if (r->num_computed_tokens != 0 || r->num_pending_tokens != 0)
      return fmt::format("waiting request {} has computed or pending tokens", r->id);
  }
  int num_held = 0;
  for (block_id b = 0; b < kv_.num_blocks(); ++b) {
    if (pool.ref_count(b) != holders[static_cast<size_t>(b)])
      return fmt::format("block {} has ref_count {} but {} holders", b, pool.ref_count(b), holders[static_cast<size_t>(b)]);
    if (holders[static_cast<size_t>(b)] > 0) ++num_held;
  }
  if (num_held + pool.num_free_blocks() != kv_.num_blocks())
    return fmt::format("{} held + {} free != {} blocks", num_held, pool.num_free_blocks(), kv_.num_blocks());
  return {};
}

}  // namespace nf
