// The `bench serve` run loop: a dispatcher that releases requests at their arrival times into a queue, and a
// fixed pool of client threads (one blocking streaming connection each) that drains it. A pool of threads
// rather than an event loop: httplib's client is blocking, each stream mostly sleeps in recv(), and a few
// hundred threads cost only their stacks; the pool size is the concurrency limit, as vLLM's semaphore is.
#include "loadgen/bench_serve.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <fmt/format.h>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "core/error.h"
#include "loadgen/arrivals.h"
#include "tokenizer/tokenizer.h"
#include "workload/workload.h"

namespace nf {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

// A contiguous window of a timed trace, starting at a row chosen by the seed, at its own relative times.
std::vector<request_lengths> trace_window(const std::vector<request_lengths>& trace, int count, uint64_t seed) {
  for (const request_lengths& row : trace)
    if (!row.arrival_s) fail("--use-trace-arrivals: the trace has no timestamps (only the Splitwise traces do)");
  const size_t n = std::min<size_t>(trace.size(), static_cast<size_t>(count));
  std::mt19937_64 rng(seed);
  const size_t offset = trace.size() > n ? std::uniform_int_distribution<size_t>(0, trace.size() - n)(rng) : 0;
  std::vector<request_lengths> window(trace.begin() + static_cast<std::ptrdiff_t>(offset),
                                      trace.begin() + static_cast<std::ptrdiff_t>(offset + n));
  const double first = *window.front().arrival_s;
  for (request_lengths& row : window) row.arrival_s = std::max(0.0, *row.arrival_s - first);
  std::stable_sort(window.begin(), window.end(), [](const auto& a, const auto& b) { return *a.arrival_s < *b.arrival_s; });
  return window;
}

std::string prompt_text(const tokenizer& tok, std::vector<int32_t> ids) {
  // Specials would be skipped by the decoder and shorten the prompt: replace them by ordinary ids.
  const int32_t vocab = tok.vocab_size();
  for (int32_t& id : ids) {
    for (int step = 0; tok.is_special(id) && step < vocab; ++step) id = (id + 1) % vocab;
  }
  return tok.decode(ids, true);
}

}  // namespace

bench_serve_workload make_workload(const bench_serve_options& options, const tokenizer* tok) {
  if (options.model.empty()) fail("--model (the served model name) is required");
  const bool chat = options.endpoint == "/v1/chat/completions";
  if (!chat && options.endpoint != "/v1/completions")
    fail("--endpoint must be /v1/completions or /v1/chat/completions, got '{}'", options.endpoint);
  if (chat && !tok) fail("--endpoint /v1/chat/completions sends text: give --tokenizer DIR to make the prompts");
  if (options.num_prompts < 1) fail("--num-prompts must be at least 1, got {}", options.num_prompts);
  if (options.max_concurrency < 0) fail("--max-concurrency must be positive (or 0 for no limit)");
  if (options.use_trace_arrivals && options.trace.empty()) fail("--use-trace-arrivals needs --trace");
  if (!tok && options.vocab_size < 2) fail("--vocab-size must be at least 2");
  for (double p : options.percentiles)
    if (!(p > 0.0 && p < 100.0)) fail("--metric-percentiles: {} is not in (0, 100)", p);

  bench_serve_workload w;
  std::vector<request_lengths> lengths;
  if (!options.trace.empty()) {
    if (options.input_len > 0 || options.output_len > 0) fail("give either --trace or --input-len/--output-len, not both");
    const std::vector<request_lengths> trace = read_trace(options.trace);
    const int cap = options.max_model_len > 0 ? options.max_model_len : (1 << 30);
    if (options.use_trace_arrivals) {
      lengths = trace_window(trace, options.num_prompts, options.seed);
      for (request_lengths& row : lengths) {
        row.input_len = std::clamp(row.input_len, 1, cap - 1);
        row.output_len = std::clamp(row.output_len, 1, cap - row.input_len);
      }
    } else {
      lengths = sample_trace(trace, options.num_prompts, options.seed, cap);
    }
    w.description = fmt::format("trace {}", options.trace);
  } else {
    if (options.input_len < 1 || options.output_len < 1) fail("give --input-len and --output-len (both >= 1), or --trace");
    lengths = fixed_lengths(options.num_prompts, options.input_len, options.output_len);
    w.description = fmt::format("random {} in / {} out", options.input_len, options.output_len);
  }
  const int vocab = tok ? tok->vocab_size() : options.vocab_size;
  const std::vector<std::vector<int32_t>> prompts = random_prompts(lengths, vocab, options.seed);

  if (options.use_trace_arrivals) {
    for (const request_lengths& row : lengths) w.arrival_s.push_back(*row.arrival_s);
    w.description += " at its own arrival times";
  } else {
    w.arrival_s = gamma_arrival_times(static_cast<int>(lengths.size()), options.request_rate, options.burstiness,
                                      options.seed);
  }
  for (size_t i = 0; i < lengths.size(); ++i) {
    json body = {{"model", options.model},
                 {"stream", true},
                 {"stream_options", {{"include_usage", true}}},
                 {"ignore_eos", true}};
    prepared_request request;
    request.endpoint = options.endpoint;
    request.chat = chat;
    request.prompt_len = lengths[i].input_len;
    if (chat) {
      const std::string text = prompt_text(*tok, prompts[i]);
      request.prompt_len = static_cast<int>(tok->encode(text, false).size());
      body["messages"] = json::array({{{"role", "user"}, {"content", text}}});
      body["max_completion_tokens"] = lengths[i].output_len;
    } else {
      if (tok) {
        const std::string text = prompt_text(*tok, prompts[i]);
        request.prompt_len = static_cast<int>(tok->encode(text, false).size());
        body["prompt"] = text;
      } else {
        body["prompt"] = prompts[i];
      }
      body["max_tokens"] = lengths[i].output_len;
    }
    request.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
    w.requests.push_back(std::move(request));
    w.output_lens.push_back(lengths[i].output_len);
  }
  return w;
}

bench_serve_result run_bench_serve(const bench_serve_options& options, const bench_serve_workload& workload) {
  const base_url url = parse_base_url(options.base_url);
  const size_t num_requests = workload.requests.size();
  NF_CHECK(workload.arrival_s.size() == num_requests, "workload arrival times do not match its requests");
  const int limit = options.max_concurrency > 0 ? std::min(options.max_concurrency, max_client_threads) : max_client_threads;
  const int num_threads = static_cast<int>(std::min<size_t>(num_requests, static_cast<size_t>(limit)));

  bench_serve_result result;
  result.num_client_threads = num_threads;
  result.outputs.resize(num_requests);
  std::mutex mutex;
  std::condition_variable ready, finished;
  std::deque<size_t> queue;
  bool closed = false;
  size_t num_finished = 0, num_failed = 0;
  int64_t num_output_tokens = 0;

  const clock_type::time_point origin = clock_type::now();
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(num_threads));
  for (int t = 0; t < num_threads; ++t) {
    workers.emplace_back([&] {
      openai_client client(url, options.client);
      for (;;) {
        size_t index = 0;
        {
          std::unique_lock lock(mutex);
          ready.wait(lock, [&] { return closed || !queue.empty(); });
          if (queue.empty()) return;
          index = queue.front();
          queue.pop_front();
        }
        request_output output = client.send(workload.requests[index], origin);
        std::lock_guard lock(mutex);
        ++num_finished;
        num_failed += !output.success;
        num_output_tokens += output.output_tokens;
        result.outputs[index] = std::move(output);
        finished.notify_all();
      }
    });
  }

  const bool show_progress = options.progress && ::isatty(STDERR_FILENO);
  auto print_progress = [&](size_t done, size_t failed, int64_t tokens) {
    if (!show_progress) return;
    const double elapsed = std::chrono::duration<double>(clock_type::now() - origin).count();
    std::fprintf(stderr, "\r%zu/%zu requests done (%zu failed), %.1f s, %.0f output tokens/s   ", done, num_requests,
                 failed, elapsed, tokens / std::max(elapsed, 1e-9));
    std::fflush(stderr);
  };
  for (size_t i = 0; i < num_requests; ++i) {
    std::this_thread::sleep_until(origin + std::chrono::duration_cast<clock_type::duration>(
                                               std::chrono::duration<double>(workload.arrival_s[i])));
    std::lock_guard lock(mutex);
    queue.push_back(i);
    ready.notify_one();
  }
  {
    std::unique_lock lock(mutex);
    closed = true;
    ready.notify_all();
    while (num_finished < num_requests) {
      finished.wait_for(lock, std::chrono::milliseconds(250));
      print_progress(num_finished, num_failed, num_output_tokens);
    }
  }
  for (std::thread& worker : workers) worker.join();
  const double duration = std::chrono::duration<double>(clock_type::now() - origin).count();
  if (show_progress) std::fprintf(stderr, "\n");
  result.metrics = compute_metrics(result.outputs, duration, options.percentiles, options.slo);
  return result;
}

std::vector<std::pair<std::string, int>> first_errors(const std::vector<request_output>& outputs, size_t count) {
  std::vector<std::pair<std::string, int>> errors;
  for (const request_output& out : outputs) {
    if (out.success) continue;
    auto it = std::find_if(errors.begin(), errors.end(), [&](const auto& e) { return e.first == out.error; });
    if (it != errors.end()) ++it->second;
    else if (errors.size() < count) errors.emplace_back(out.error, 1);
  }
  return errors;
}

namespace {

std::string percentile_name(double p) {
  return p == std::floor(p) ? fmt::format("{}", static_cast<int64_t>(p)) : fmt::format("{}", p);
}

const std::pair<const char*, const latency_summary bench_metrics::*> summaries[] = {
    {"ttft", &bench_metrics::ttft}, {"tpot", &bench_metrics::tpot}, {"itl", &bench_metrics::itl}, {"e2el", &bench_metrics::e2el}};

}  // namespace

std::string format_report(const bench_serve_options& options, const bench_serve_workload& workload,
                          const bench_serve_result& result) {
  const bench_metrics& m = result.metrics;
  std::string out;
  auto line = [&](std::string_view label, const std::string& value) { out += fmt::format("{:<40} {:<10}\n", label, value); };
  auto section = [&](std::string_view title) { out += fmt::format("{:-^50}\n", title); };
  out += fmt::format("{:=^50}\n", " Serving Benchmark Result ");
  line("Workload:", workload.description);
  line("Request rate (req/s):", std::isinf(options.request_rate) ? "inf" : fmt::format("{:g}", options.request_rate));
  line("Burstiness:", fmt::format("{:g}", options.burstiness));
  line("Max concurrency:", options.max_concurrency > 0 ? fmt::format("{}", options.max_concurrency) : "none");
  line("Successful requests:", fmt::format("{}", m.num_completed));
  line("Failed requests:", fmt::format("{}", m.num_failed));
  line("Benchmark duration (s):", fmt::format("{:.2f}", m.duration_s));
  line("Total input tokens:", fmt::format("{}", m.total_input_tokens));
  line("Total generated tokens:", fmt::format("{}", m.total_output_tokens));
  line("Request throughput (req/s):", fmt::format("{:.2f}", m.request_throughput));
  if (options.slo.any()) line("Request goodput (req/s):", fmt::format("{:.2f}", m.request_goodput));
  line("Output token throughput (tok/s):", fmt::format("{:.2f}", m.output_throughput));
  line("Peak output token throughput (tok/s):", fmt::format("{:.2f}", m.max_output_tokens_per_s));
  line("Peak concurrent requests:", fmt::format("{}", m.max_concurrent_requests));
  line("Total token throughput (tok/s):", fmt::format("{:.2f}", m.total_token_throughput));
  const char* titles[] = {"Time to First Token", "Time per Output Token (excl. 1st token)", "Inter-token Latency",
                          "End-to-end Latency"};
  const char* names[] = {"TTFT", "TPOT", "ITL", "E2EL"};
  for (size_t k = 0; k < 4; ++k) {
    const latency_summary& s = m.*(summaries[k].second);
    section(titles[k]);
    line(fmt::format("Mean {} (ms):", names[k]), fmt::format("{:.2f}", s.mean_ms));
    line(fmt::format("Median {} (ms):", names[k]), fmt::format("{:.2f}", s.median_ms));
    for (const auto& [p, value] : s.percentiles_ms)
      line(fmt::format("P{} {} (ms):", percentile_name(p), names[k]), fmt::format("{:.2f}", value));
  }
  out += std::string(50, '=') + "\n";
  return out;
}

json report_json(const bench_serve_options& options, const bench_serve_workload& workload,
                 const bench_serve_result& result) {
  const bench_metrics& m = result.metrics;
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  std::strftime(date, sizeof(date), "%Y%m%d-%H%M%S", &local);
  json j = {
      {"date", date},
      {"backend", options.endpoint == "/v1/chat/completions" ? "openai-chat" : "openai"},
      {"endpoint", options.endpoint},
      {"base_url", options.base_url},
      {"model_id", options.model},
      {"workload", workload.description},
      {"num_prompts", workload.requests.size()},
      {"request_rate", std::isinf(options.request_rate) ? json("inf") : json(options.request_rate)},
      {"burstiness", options.burstiness},
      {"max_concurrency", options.max_concurrency > 0 ? json(options.max_concurrency) : json(nullptr)},
      {"num_client_threads", result.num_client_threads},
      {"duration", m.duration_s},
      {"completed", m.num_completed},
      {"failed", m.num_failed},
      {"total_input_tokens", m.total_input_tokens},
      {"total_output_tokens", m.total_output_tokens},
      {"request_throughput", m.request_throughput},
      {"request_goodput", options.slo.any() ? json(m.request_goodput) : json(nullptr)},
      {"output_throughput", m.output_throughput},
      {"total_token_throughput", m.total_token_throughput},
      {"max_output_tokens_per_s", m.max_output_tokens_per_s},
      {"max_concurrent_requests", m.max_concurrent_requests},
  };
  json goodput = json::object();
  if (options.slo.ttft_ms) goodput["ttft"] = *options.slo.ttft_ms;
  if (options.slo.tpot_ms) goodput["tpot"] = *options.slo.tpot_ms;
  if (options.slo.e2el_ms) goodput["e2el"] = *options.slo.e2el_ms;
  j["goodput_ms"] = goodput;
  for (const auto& [name, member] : summaries) {
    const latency_summary& s = m.*member;
    j[fmt::format("mean_{}_ms", name)] = s.mean_ms;
    j[fmt::format("median_{}_ms", name)] = s.median_ms;
    j[fmt::format("std_{}_ms", name)] = s.std_ms;
    for (const auto& [p, value] : s.percentiles_ms) j[fmt::format("p{}_{}_ms", percentile_name(p), name)] = value;
  }
  json input_lens = json::array(), output_lens = json::array(), ttfts = json::array(), itls = json::array(),
       errors = json::array(), start_times = json::array();
  for (const request_output& out : result.outputs) {
    input_lens.push_back(out.prompt_tokens);
    output_lens.push_back(out.success ? out.output_tokens : 0);
    ttfts.push_back(out.ttft_s);
    itls.push_back(out.itl_s);
    errors.push_back(out.error);
    start_times.push_back(out.start_s);
  }
  j["input_lens"] = std::move(input_lens);
  j["output_lens"] = std::move(output_lens);
  j["ttfts"] = std::move(ttfts);
  j["itls"] = std::move(itls);
  j["start_times"] = std::move(start_times);
  j["errors"] = std::move(errors);
  return j;
}

}  // namespace nf
