// Turning engine deltas into choices: detokenizing, stop strings, finish reasons, latency metrics.
#include "server/generation.h"

#include <algorithm>
#include <map>

#include "core/error.h"

namespace nf {

struct generation::inbox {
  struct item {
    int index = 0;
    completion_delta delta;
    clock::time_point when;
  };
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<item> items;
};

generation::generation(engine_service& engine, const tokenizer& tok, server_metrics& metrics,
                       std::vector<int32_t> prompt, sampling_params params, int num_choices,
                       clock::time_point arrival)
    : engine_(engine), tok_(tok), metrics_(metrics), prompt_(std::move(prompt)), params_(std::move(params)),
      arrival_(arrival), inbox_(std::make_shared<inbox>()) {
  NF_CHECK(num_choices >= 1, "a generation needs at least one choice, got {}", num_choices);
  choices_.reserve(num_choices);
  for (int i = 0; i < num_choices; ++i) {
    choice_state& choice = choices_.emplace_back(stop_matcher(params_.stop));
    choice.detok = std::make_unique<detokenizer>(tok_, true);
  }
}

generation::~generation() {
  if (started_ && !done()) abort();
}

void generation::start() {
  NF_CHECK(!started_, "generation started twice");
  sampling_params engine_params = params_;
  engine_params.stop.clear();  // text is the front end's business
  try {
    for (int i = 0; i < static_cast<int>(choices_.size()); ++i) {
      completion_request request{prompt_, engine_params};
      if (params_.seed && i > 0) request.params.seed = *params_.seed + static_cast<uint64_t>(i);
      std::shared_ptr<inbox> box = inbox_;
      const uint64_t id = engine_.submit(std::move(request), [box, i](const completion_delta& delta) {
        {
          std::lock_guard lock(box->mutex);
          box->items.push_back({i, delta, clock::now()});
        }
        box->ready.notify_one();
      });
      engine_ids_.push_back(id);
    }
  } catch (...) {
    for (uint64_t id : engine_ids_) engine_.abort(id);
    throw;
  }
  started_ = true;
}

void generation::abort() {
  for (uint64_t id : engine_ids_) engine_.abort(id);
}

int generation::num_completion_tokens() const {
  int total = 0;
  for (const auto& choice : choices_) total += choice.num_tokens;
  return total;
}

bool generation::is_stop_token(int32_t id) const {
  if (std::find(params_.stop_token_ids.begin(), params_.stop_token_ids.end(), id) != params_.stop_token_ids.end())
    return true;
  if (params_.ignore_eos) return false;
  const auto& eos = tok_.eos_ids();
  const auto& config_eos = engine_.config().eos_token_ids;
  return std::find(eos.begin(), eos.end(), id) != eos.end() ||
         std::find(config_eos.begin(), config_eos.end(), id) != config_eos.end();
}

void generation::finish(int index, std::string reason) {
  choice_state& choice = choices_[index];
  choice.finished = true;
  choice.finish_reason = std::move(reason);
  ++num_finished_;
  metrics_.count_request(choice.finish_reason);
  if (choice.num_tokens > 0) {
    metrics_.observe_time_to_first_token(std::chrono::duration<double>(choice.first_token_time - arrival_).count());
    if (choice.num_tokens > 1)
      metrics_.observe_time_per_output_token(
          std::chrono::duration<double>(choice.last_token_time - choice.first_token_time).count() /
          (choice.num_tokens - 1));
  }
  metrics_.add_tokens(index == 0 ? num_prompt_tokens() : 0, choice.num_tokens);
}

void generation::apply(int index, const completion_delta& delta, clock::time_point when, choice_update& update) {
  choice_state& choice = choices_[index];
  if (choice.finished) return;  // e.g. the "abort" delta after a stop string was found here
  const bool stopped_by_token = delta.finished && delta.finish_reason == "stop";
  for (size_t k = 0; k < delta.token_ids.size(); ++k) {
    const int32_t id = delta.token_ids[k];
    if (choice.num_tokens == 0) choice.first_token_time = when;
    choice.last_token_time = when;
    ++choice.num_tokens;
    output_token token{id, 0.0f, {}, choice.text.size()};
    if (k < delta.samples.size()) {
      token.logprob = delta.samples[k].logprob;
      token.top_logprobs = delta.samples[k].top_logprobs;
    }
    update.tokens.push_back(std::move(token));
    // The EOS or stop token that ended the output is not part of its text.
    if (stopped_by_token && k + 1 == delta.token_ids.size() && is_stop_token(id)) continue;
    choice.text += choice.detok->add(id);
    const size_t cut = choice.stops.find(choice.text);
    if (cut != std::string::npos) {
      choice.text.resize(cut);
      engine_.abort(engine_ids_[index]);
      finish(index, "stop");
      break;
    }
  }
  if (!choice.finished && delta.finished) {
    choice.text += choice.detok->finish();
    const size_t cut = choice.stops.find(choice.text);
    if (cut != std::string::npos) choice.text.resize(cut);
    finish(index, cut != std::string::npos ? "stop" : delta.finish_reason);
  }
  const size_t visible = choice.finished ? choice.text.size() : choice.stops.safe_length(choice.text);
  if (visible > choice.shown) {
    update.text += choice.text.substr(choice.shown, visible - choice.shown);
    choice.shown = visible;
  }
  if (choice.finished) {
    update.finished = true;
    update.finish_reason = choice.finish_reason;
  }
}

std::vector<choice_update> generation::poll(std::chrono::milliseconds timeout) {
  std::deque<inbox::item> items;
  {
    std::unique_lock lock(inbox_->mutex);
    inbox_->ready.wait_for(lock, timeout, [&] { return !inbox_->items.empty(); });
    items.swap(inbox_->items);
  }
  std::map<int, choice_update> updates;
  for (const auto& item : items) {
    choice_update& update = updates[item.index];
    update.index = item.index;
    apply(item.index, item.delta, item.when, update);
  }
  std::vector<choice_update> result;
  for (auto& [index, update] : updates)
    if (!update.text.empty() || !update.tokens.empty() || update.finished) result.push_back(std::move(update));
  return result;
}

}  // namespace nf
