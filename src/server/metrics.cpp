// Prometheus text rendering of the server's counters and the engine's gauges.
#include "server/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace nf {

latency_histogram::latency_histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {}

void latency_histogram::observe(double value) {
  const size_t bucket = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  ++counts_[bucket];
  sum_ += value;
  ++count_;
}

void latency_histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < upper_bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, upper_bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels, count_);
  out += fmt::format("{}_sum{{{}}} {}\n", name, labels, sum_);
  out += fmt::format("{}_count{{{}}} {}\n", name, labels, count_);
}

server_metrics::server_metrics()
    : time_to_first_token_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0}),
      time_per_output_token_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0}) {
  for (const char* outcome : {"stop", "length", "abort", "error"}) requests_by_outcome_[outcome] = 0;
}

void server_metrics::count_request(std::string_view outcome) {
  std::lock_guard lock(mutex_);
  auto it = requests_by_outcome_.find(outcome);
  if (it == requests_by_outcome_.end()) it = requests_by_outcome_.emplace(std::string(outcome), 0).first;
  ++it->second;
}

void server_metrics::observe_time_to_first_token(double seconds) {
  std::lock_guard lock(mutex_);
  time_to_first_token_.observe(seconds);
}

void server_metrics::observe_time_per_output_token(double seconds) {
  std::lock_guard lock(mutex_);
  time_per_output_token_.observe(seconds);
}

void server_metrics::add_tokens(int64_t num_prompt_tokens, int64_t num_generation_tokens) {
  std::lock_guard lock(mutex_);
  num_prompt_tokens_ += num_prompt_tokens;
  num_generation_tokens_ += num_generation_tokens;
}

std::string server_metrics::render(const engine_stats& stats, const std::string& model_name) const {
  const std::string labels = fmt::format("model_name=\"{}\"", model_name);
  std::string out;
  auto header = [&](std::string_view name, std::string_view type, std::string_view help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  auto sample = [&](std::string_view name, std::string_view extra_labels, auto value) {
    out += fmt::format("{}{{{}{}}} {}\n", name, labels, extra_labels, value);
  };
  const double kv_usage =
      stats.num_kv_blocks > 0 ? 1.0 - double(stats.num_free_kv_blocks) / double(stats.num_kv_blocks) : 0.0;

  header("nanoflow_num_requests_running", "gauge", "Requests the engine is running.");
  sample("nanoflow_num_requests_running", "", stats.num_running);
  header("nanoflow_num_requests_waiting", "gauge", "Requests waiting to be scheduled.");
  sample("nanoflow_num_requests_waiting", "", stats.num_waiting);
  header("nanoflow_kv_cache_usage_ratio", "gauge", "Fraction of KV-cache blocks in use (0 to 1).");
  sample("nanoflow_kv_cache_usage_ratio", "", kv_usage);
  header("nanoflow_prefix_cache_hit_rate", "gauge", "Prompt tokens served by the prefix cache / prompt tokens queried.");
  sample("nanoflow_prefix_cache_hit_rate", "", stats.prefix_cache_hit_rate);
  header("nanoflow_num_preemptions_total", "counter", "Requests preempted by the engine.");
  sample("nanoflow_num_preemptions_total", "", stats.num_preemptions);

  std::lock_guard lock(mutex_);
  header("nanoflow_requests_total", "counter", "Finished requests by outcome (finish reason, or error).");
  for (const auto& [outcome, count] : requests_by_outcome_)
    sample("nanoflow_requests_total", fmt::format(",outcome=\"{}\"", outcome), count);
  header("nanoflow_prompt_tokens_total", "counter", "Prompt tokens of the requests served.");
  sample("nanoflow_prompt_tokens_total", "", num_prompt_tokens_);
  header("nanoflow_generation_tokens_total", "counter", "Tokens generated for the requests served.");
  sample("nanoflow_generation_tokens_total", "", num_generation_tokens_);
  header("nanoflow_time_to_first_token_seconds", "histogram", "Time from request arrival to its first token.");
  time_to_first_token_.render(out, "nanoflow_time_to_first_token_seconds", labels);
  header("nanoflow_time_per_output_token_seconds", "histogram", "Mean time between output tokens of a request.");
  time_per_output_token_.render(out, "nanoflow_time_per_output_token_seconds", labels);
  return out;
}

}  // namespace nf
