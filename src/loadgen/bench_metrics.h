// The statistics of a serving benchmark, defined as `vllm bench serve` defines them, from per-request
// timelines measured on the client: TTFT, ITL, TPOT, E2EL, throughputs and goodput.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nf {

// What the client saw of one streamed request. Times are seconds.
struct request_output {
  bool success = false;
  std::string error;            // why it failed (empty on success)
  double start_s = 0.0;         // when the request was sent, after the benchmark's start
  double ttft_s = 0.0;          // time to first token: first token-carrying chunk - start
  double latency_s = 0.0;       // end-to-end latency: last token-carrying chunk - start
  std::vector<double> itl_s;    // [num_token_chunks - 1] inter-token latencies: gaps between successive token chunks
  int prompt_tokens = 0;        // the server's usage.prompt_tokens, else the length the benchmark asked for
  int output_tokens = 0;        // the server's usage.completion_tokens, else the number of token chunks
};

// Mean, population standard deviation, median and the selected percentiles of a list, in milliseconds.
struct latency_summary {
  double mean_ms = 0.0;
  double std_ms = 0.0;
  double median_ms = 0.0;
  std::vector<std::pair<double, double>> percentiles_ms;  // (percentile, value)
};

// Service-level objectives for goodput, in milliseconds; a request is good when it meets every one given.
struct slo_targets {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
  std::optional<double> e2el_ms;
  bool any() const { return ttft_ms || tpot_ms || e2el_ms; }
};

// Parses "ttft:MS", "tpot:MS", "e2el:MS" items (vLLM's --goodput); nf::error on anything else.
slo_targets parse_slo_targets(const std::vector<std::string>& items);

struct bench_metrics {
  int num_completed = 0;
  int num_failed = 0;
  int64_t total_input_tokens = 0;   // prompt tokens of the completed requests
  int64_t total_output_tokens = 0;  // output tokens of the completed requests
  double duration_s = 0.0;
  double request_throughput = 0.0;      // completed / duration
  double request_goodput = 0.0;         // completed requests meeting every SLO / duration (0 without SLOs)
  int num_good = 0;
  double output_throughput = 0.0;       // output tokens / duration
  double total_token_throughput = 0.0;  // (input + output tokens) / duration
  latency_summary ttft, tpot, itl, e2el;
  double max_output_tokens_per_s = 0.0;  // most token chunks in any one-second bucket
  int max_concurrent_requests = 0;       // most completed requests active in any one-second bucket
};

// numpy.percentile's default (linear interpolation between closest ranks); 0 for an empty list.
double percentile(std::vector<double> values, double p);

// Summary of durations given in seconds (reported in ms); zeros for an empty list.
latency_summary summarize(const std::vector<double>& seconds, const std::vector<double>& percentiles);

// TPOT of one request: (E2EL - TTFT) / (output tokens - 1), 0 when it has at most one output token.
double time_per_output_token(const request_output& output);

// The benchmark's statistics over the completed requests (failed ones count only in num_failed). TPOT's summary
// covers requests with more than one output token; goodput counts TPOT as 0 for the others, as vLLM does.
bench_metrics compute_metrics(const std::vector<request_output>& outputs, double duration_s,
                              const std::vector<double>& percentiles, const slo_targets& slo);

}  // namespace nf
