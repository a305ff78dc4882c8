// The engine's step loop. See llm_engine.h for the shape of the asynchronous loop.
#include "engine/llm_engine.h"

#include <algorithm>
#include <exception>
#include <utility>
#include <random>

#include "core/error.h"
#include "engine/generate.h"

namespace nf {
namespace {

scheduler_config complete_config(scheduler_config config, const backend& model) {
  config.kv.block_size = model.block_size();
  if (config.kv.num_tokens <= 0) config.kv.num_tokens = int64_t{model.num_kv_blocks()} * model.block_size();
  NF_CHECK(config.kv.num_tokens <= int64_t{model.num_kv_blocks()} * model.block_size(),
           "the scheduler may not use more KV than the backend has");
  config.max_model_len = std::min(config.max_model_len, model.config().max_position_embeddings);
  if (config.eos_token_ids.empty()) config.eos_token_ids = model.config().eos_token_ids;
  return config;
}

// True when the sampler would return the plain argmax of the logits: greedy, no penalties, no logprobs, no
// min_tokens masking at this position.
bool plain_greedy(const sampling_params& p, size_t num_outputs) {
  return p.greedy() && p.logprobs < 0 && p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f &&
         p.frequency_penalty == 0.0f && static_cast<int64_t>(num_outputs) >= p.min_tokens;
}

}  // namespace

llm_engine::llm_engine(std::unique_ptr<backend> model, const engine_options& options)
    : model_(std::move(model)),
      scheduler_(complete_config(options.scheduling, *model_)),
      async_(options.async_loop),
      seed_source_(std::random_device{}()) {
  if (async_) worker_ = std::thread([this] { worker_loop(); });
}

llm_engine::~llm_engine() {
  if (worker_.joinable()) {
    {
      std::lock_guard lock(worker_mutex_);
      worker_stop_ = true;
    }
    worker_cv_.notify_all();
    worker_.join();
  }
}

void llm_engine::validate(const completion_request& request) const {
  const model_config& c = config();
  validate_prompt(c, request.prompt_token_ids);
  request.params.validate();
  const int64_t total = static_cast<int64_t>(request.prompt_token_ids.size()) + request.params.max_tokens;
  const int max_len = scheduler_.config().max_model_len;
  if (total > max_len)
    fail("the prompt ({} tokens) plus max_tokens ({}) exceeds the model's context of {} tokens",
         request.prompt_token_ids.size(), request.params.max_tokens, max_len);
  const int64_t capacity = int64_t{scheduler_.kv().num_blocks()} * scheduler_.kv().block_size();
  if (total - 1 > capacity)
    fail("the request needs {} tokens of KV cache but the whole cache holds {}", total - 1, capacity);
}

void llm_engine::add_request(request_id id, completion_request request) {
  validate(request);
  scheduler_.add_request(id, request.prompt_token_ids, request.params, request.priority);
  sequence_state state;
  state.seed = request.params.seed.value_or(seed_source_());
  state.stream = request.sampling_stream;
  state.prompt = std::move(request.prompt_token_ids);
  state.params = std::move(request.params);
  num_prompt_tokens_of_[id] = static_cast<int>(state.prompt.size());
  arriving_.emplace_back(id, std::move(state));
}

bool llm_engine::abort(request_id id) {
  const request* r = scheduler_.find(id);
  if (!r) return false;
  completion_delta delta;
  delta.request_id = id;
  delta.finished = true;
  delta.finish_reason = "abort";
  delta.num_prompt_tokens = r->num_prompt_tokens;
  delta.num_cached_prompt_tokens = r->num_cached_prompt_tokens;
  scheduler_.abort(id);
  num_prompt_tokens_of_.erase(id);
  pending_deltas_.push_back(std::move(delta));
  return true;
}

bool llm_engine::has_unfinished() const {
  return scheduler_.has_unfinished() || in_flight_.has_value() || !pending_deltas_.empty();
}

void llm_engine::apply_plan_bookkeeping(const step_plan& plan) {
  for (auto& [id, state] : arriving_) sequences_.emplace(id, std::move(state));
  arriving_.clear();
  for (request_id id : plan.finished_ids) sequences_.erase(id);
  for (request_id id : plan.preempted_ids) {
    // Recomputation restarts from the tokens the scheduler delivered; samples of steps in flight are dropped.
    const request* r = scheduler_.find(id);
    auto it = sequences_.find(id);
    if (r && it != sequences_.end()) it->second.outputs.resize(r->num_output_tokens());
  }
}

void llm_engine::execute(const step_plan& plan, planned_batch& planned, step_result& result) {
  const size_t num_logits = planned.logit_entries.size();
  result.tokens.resize(num_logits);
  result.samples.resize(num_logits);
  const bool all_greedy = std::all_of(planned.logit_entries.begin(), planned.logit_entries.end(), [&](int32_t entry) {
    const sequence_state& state = sequences_.at(plan.requests[entry].id);
    return plain_greedy(state.params, state.outputs.size());
  });
  if (all_greedy) {
    // Only token ids cross back from the device.
    model_->forward_argmax(planned.batch, result.tokens);
    for (size_t j = 0; j < num_logits; ++j) {
      result.samples[j].token_id = result.tokens[j];
      sequences_.at(plan.requests[planned.logit_entries[j]].id).outputs.push_back(result.tokens[j]);
    }
    return;
  }
  std::vector<sampling_context> contexts;
  contexts.reserve(num_logits);
  for (size_t j = 0; j < num_logits; ++j) {
    sequence_state& state = sequences_.at(plan.requests[planned.logit_entries[j]].id);
    contexts.push_back({&state.params, state.seed, state.stream, state.prompt, state.outputs, config().eos_token_ids});
  }
  model_->forward_sample(planned.batch, contexts, result.samples);
  for (size_t j = 0; j < num_logits; ++j) {
    result.tokens[j] = result.samples[j].token_id;
    sequences_.at(plan.requests[planned.logit_entries[j]].id).outputs.push_back(result.tokens[j]);
  }
}

std::vector<completion_delta> llm_engine::retire(const step_plan& plan, const step_result& result) {
  std::unordered_map<request_id, size_t> sample_of;  // request -> its logit index in this step
  size_t logit = 0;
  for (const scheduled_request& entry : plan.requests) {
    if (!entry.needs_logits) continue;
    sample_of[entry.id] = logit++;
  }
  for (const scheduled_request& entry : plan.requests) {
    auto it = num_prompt_tokens_of_.find(entry.id);
    if (it == num_prompt_tokens_of_.end()) continue;
    num_prompt_tokens_ += std::max(0, std::min(it->second, entry.position + entry.num_tokens()) - entry.position);
  }
  std::vector<completion_delta> deltas;
  for (request_output& out : scheduler_.update(plan, result.tokens)) {
    completion_delta delta;
    delta.request_id = out.id;
    delta.token_ids = std::move(out.new_token_ids);
    if (!delta.token_ids.empty()) delta.samples.push_back(result.samples.at(sample_of.at(out.id)));
    delta.finished = out.finished;
    delta.finish_reason = out.finished ? std::string(to_string(out.reason)) : "";
    delta.num_cached_prompt_tokens = out.num_cached_prompt_tokens;
    if (auto it = num_prompt_tokens_of_.find(out.id); it != num_prompt_tokens_of_.end()) {
      delta.num_prompt_tokens = it->second;
      if (out.finished) num_prompt_tokens_of_.erase(it);
    }
    num_generation_tokens_ += static_cast<int64_t>(delta.token_ids.size());
    deltas.push_back(std::move(delta));
  }
  return deltas;
}

void llm_engine::launch(in_flight_step& step, planned_batch planned) {
  std::lock_guard lock(worker_mutex_);
  worker_job_ = [this, &step, planned = std::move(planned)]() mutable { execute(step.plan, planned, step.result); };
  worker_busy_ = true;
  worker_error_ = nullptr;
  worker_cv_.notify_all();
}

void llm_engine::wait_for_worker() {
  std::unique_lock lock(worker_mutex_);
  worker_cv_.wait(lock, [this] { return !worker_busy_; });
  if (worker_error_) std::rethrow_exception(std::exchange(worker_error_, nullptr));
}

void llm_engine::worker_loop() {
  std::unique_lock lock(worker_mutex_);
  while (true) {
    worker_cv_.wait(lock, [this] { return worker_stop_ || worker_busy_; });
    if (worker_stop_) return;
    std::function<void()> job = std::move(worker_job_);
    lock.unlock();
    std::exception_ptr error;
    try {
      job();
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    worker_error_ = error;
    worker_busy_ = false;
    worker_cv_.notify_all();
  }
}

std::vector<completion_delta> llm_engine::step() {
  std::vector<completion_delta> deltas = std::move(pending_deltas_);
  pending_deltas_.clear();
  // Scheduling and planning of the next step overlap the step in flight.
  step_plan plan = scheduler_.schedule();
  planned_batch planned = build_batch(plan, model_->block_size());
  if (in_flight_ && async_) wait_for_worker();
  std::optional<in_flight_step> previous = std::move(in_flight_);
  in_flight_.reset();
  apply_plan_bookkeeping(plan);
  if (!plan.empty()) {
    fill_placeholders(planned, [this](request_id id) {
      const sequence_state& state = sequences_.at(id);
      NF_CHECK(!state.outputs.empty(), "request {} decodes before sampling anything", id);
      return state.outputs.back();
    });
    in_flight_.emplace(in_flight_step{std::move(plan), {}});
    if (async_) {
      launch(*in_flight_, std::move(planned));
    } else {
      execute(in_flight_->plan, planned, in_flight_->result);
    }
  }
  // Retiring the previous step overlaps the step just launched.
  if (previous) {
    for (auto& delta : retire(previous->plan, previous->result)) deltas.push_back(std::move(delta));
  }
  if (!async_ && in_flight_) {
    for (auto& delta : retire(in_flight_->plan, in_flight_->result)) deltas.push_back(std::move(delta));
    in_flight_.reset();
  }
  ++num_steps_;
  return deltas;
}

engine_stats llm_engine::stats() const {
  engine_stats s;
  s.num_running = scheduler_.num_running();
  s.num_waiting = scheduler_.num_waiting();
  s.num_kv_blocks = scheduler_.kv().num_blocks();
  s.num_free_kv_blocks = scheduler_.kv().num_free_blocks();
  s.block_size = scheduler_.kv().block_size();
  s.prefix_cache_hit_rate = scheduler_.prefix_stats().hit_rate();
  s.num_preemptions = scheduler_.stats().num_preemptions;
  s.num_prompt_tokens = num_prompt_tokens_;
  s.num_generation_tokens = num_generation_tokens_;
  s.num_steps = num_steps_;
  return s;
}

}  // namespace nf
