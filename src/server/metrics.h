// Server metrics in Prometheus' text format: requests by outcome, token counters, latency histograms,
// and the engine's gauges (running and waiting requests, KV-cache usage, prefix-cache hit rate).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine_service.h"

namespace nf {

// Cumulative histogram with fixed upper bounds (seconds), as Prometheus expects.
class latency_histogram {
 public:
  explicit latency_histogram(std::vector<double> upper_bounds);
  void observe(double value);
  void render(std::string& out, std::string_view name, std::string_view labels) const;

 private:
  std::vector<double> upper_bounds_;
  std::vector<uint64_t> counts_;  // [num_bounds + 1]: per bucket, the last one +Inf; not cumulative
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

class server_metrics {
 public:
  server_metrics();

  // outcome: the finish reason of a generation ("stop", "length", "abort") or "error" for a rejected request.
  void count_request(std::string_view outcome);
  void observe_time_to_first_token(double seconds);
  void observe_time_per_output_token(double seconds);
  void add_tokens(int64_t num_prompt_tokens, int64_t num_generation_tokens);

  std::string render(const engine_stats& stats, const std::string& model_name) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, uint64_t, std::less<>> requests_by_outcome_;
  latency_histogram time_to_first_token_;
  latency_histogram time_per_output_token_;
  int64_t num_prompt_tokens_ = 0;
  int64_t num_generation_tokens_ = 0;
};

}  // namespace nf
