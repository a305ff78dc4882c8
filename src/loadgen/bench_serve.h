// `bench serve`: a load generator for any OpenAI-compatible server, comparable to `vllm bench serve`.
// Requests arrive as a gamma process (or at a trace's own times) and are sent, streaming, by a bounded pool
// of client threads; the report is the statistics of bench_metrics.h as a table and as JSON.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "loadgen/bench_metrics.h"
#include "loadgen/openai_client.h"

namespace nf {

class tokenizer;

struct bench_serve_options {
  std::string base_url = "http://127.0.0.1:8000";
  std::string endpoint = "/v1/completions";  // or /v1/chat/completions (needs a tokenizer for the text)
  std::string model;                         // the served model name sent in every request
  std::string api_key;
  int input_len = 0;                         // fixed lengths, when there is no trace
  int output_len = 0;
  std::string trace;                         // CSV of data/traces/; lengths (and times) per request
  bool use_trace_arrivals = false;           // a contiguous window of the trace at its own times
  int max_model_len = 0;                     // caps trace lengths (input + output); 0: no cap
  int num_prompts = 1000;
  double request_rate = std::numeric_limits<double>::infinity();  // requests/s; inf: all at once
  double burstiness = 1.0;                   // gamma shape; 1 = Poisson
  int max_concurrency = 0;                   // requests in flight at most; 0: as many as arrive (up to max_client_threads)
  uint64_t seed = 0;
  int vocab_size = 32000;                    // random prompt ids are drawn below this when there is no tokenizer
  std::vector<double> percentiles = {99.0};
  slo_targets slo;
  client_options client;
  bool progress = true;                      // a progress line on stderr when it is a terminal
};

// The thread pool never exceeds this; with no --max-concurrency it is the effective limit.
constexpr int max_client_threads = 1024;

struct bench_serve_workload {
  std::vector<prepared_request> requests;  // [num_prompts]
  std::vector<double> arrival_s;           // [num_prompts] send times after the start, non-decreasing
  std::vector<int> output_lens;            // [num_prompts] max_tokens asked of each request (ignore_eos: exact)
  std::string description;
};

// Builds the prompts and arrival times. Prompts are random token ids sent as a list of ids (completions), or,
// with a tokenizer, the text of random non-special ids (needed for chat). nf::error on bad options.
bench_serve_workload make_workload(const bench_serve_options& options, const tokenizer* tok);

struct bench_serve_result {
  bench_metrics metrics;
  std::vector<request_output> outputs;  // [num_prompts] in workload order
  int num_client_threads = 0;
};

// Sends the workload and waits for every request; never throws for failures of the server or the network.
bench_serve_result run_bench_serve(const bench_serve_options& options, const bench_serve_workload& workload);

// The result as a table like vLLM's, and as JSON with vLLM's key names (plus per-request lists).
std::string format_report(const bench_serve_options& options, const bench_serve_workload& workload,
                          const bench_serve_result& result);
nlohmann::json report_json(const bench_serve_options& options, const bench_serve_workload& workload,
                           const bench_serve_result& result);

// The first `count` distinct failure messages with how many requests failed with each.
std::vector<std::pair<std::string, int>> first_errors(const std::vector<request_output>& outputs, size_t count);

}  // namespace nf
