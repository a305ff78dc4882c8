// One OpenAI request in flight: n engine requests for one prompt, their deltas turned into text (incremental
// detokenizing, stop strings cut out and held back while they may still be forming), and aborts.
// The engine's callback only queues deltas; all the work happens on the HTTP thread that polls.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine_service.h"
#include "server/metrics.h"
#include "server/stop_strings.h"
#include "tokenizer/detokenizer.h"

namespace nf {

// One generated token with what a client may ask about it.
struct output_token {
  int32_t id = 0;
  float logprob = 0.0f;
  std::vector<token_logprob> top_logprobs;  // best first; empty unless logprobs were asked for
  size_t text_offset = 0;                   // bytes of the choice's text before this token's text
};

// What one choice produced since the previous poll.
struct choice_update {
  int index = 0;
  std::string text;                  // new text that can be shown (never part of a stop string)
  std::vector<output_token> tokens;  // new tokens
  bool finished = false;
  std::string finish_reason;         // when finished: "stop", "length" or "abort"
};

class generation {
 public:
  using clock = std::chrono::steady_clock;

  // `params.stop` holds the stop strings; the engine gets the parameters without them. Choice i samples with
  // seed + i when a seed is given, so the n choices differ and stay reproducible.
  generation(engine_service& engine, const tokenizer& tok, server_metrics& metrics, std::vector<int32_t> prompt,
             sampling_params params, int num_choices, clock::time_point arrival);
  ~generation();
  generation(const generation&) = delete;
  generation& operator=(const generation&) = delete;

  // Submits the engine requests. An engine rejection (nf::error) aborts those already submitted and propagates.
  void start();
  // Waits up to `timeout` for engine deltas and returns the choices that changed, by index.
  std::vector<choice_update> poll(std::chrono::milliseconds timeout);
  // Every choice finished. Call from the polling thread.
  bool done() const { return num_finished_ == static_cast<int>(choices_.size()); }
  // Cancels the unfinished engine requests; thread-safe, idempotent. Their "abort" deltas finish the choices.
  void abort();

  int num_prompt_tokens() const { return static_cast<int>(prompt_.size()); }
  int num_completion_tokens() const;
  const sampling_params& params() const { return params_; }

 private:
  struct inbox;
  struct choice_state {
    explicit choice_state(stop_matcher matcher) : stops(std::move(matcher)) {}
    stop_matcher stops;
    std::unique_ptr<detokenizer> detok;
    std::string text;    // all text so far, cut at a stop string once one is found
    size_t shown = 0;    // bytes of text already returned by poll()
    int num_tokens = 0;
    bool finished = false;
    std::string finish_reason;
    clock::time_point first_token_time;
    clock::time_point last_token_time;
  };

  void apply(int index, const completion_delta& delta, clock::time_point when, choice_update& update);
  void finish(int index, std::string reason);
  bool is_stop_token(int32_t id) const;

  engine_service& engine_;
  const tokenizer& tok_;
  server_metrics& metrics_;
  std::vector<int32_t> prompt_;
  sampling_params params_;
  clock::time_point arrival_;
  std::shared_ptr<inbox> inbox_;
  std::vector<choice_state> choices_;
  std::vector<uint64_t> engine_ids_;  // [num_choices] once started
  int num_finished_ = 0;
  bool started_ = false;
};

}  // namespace nf
