// Serving-benchmark statistics; the definitions follow vLLM's benchmark so numbers compare one to one.
#include "loadgen/bench_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace nf {

slo_targets parse_slo_targets(const std::vector<std::string>& items) {
  slo_targets slo;
  for (const std::string& item : items) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos) fail("--goodput: expected NAME:MILLISECONDS (ttft, tpot or e2el), got '{}'", item);
    const std::string name = item.substr(0, colon);
    const std::string text = item.substr(colon + 1);
    size_t used = 0;
    double value = -1.0;
    try {
      value = std::stod(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != text.size() || text.empty() || !(value >= 0.0) || std::isinf(value))
      fail("--goodput: '{}' is not a non-negative number of milliseconds in '{}'", text, item);
    if (name == "ttft") slo.ttft_ms = value;
    else if (name == "tpot") slo.tpot_ms = value;
    else if (name == "e2el") slo.e2el_ms = value;
    else fail("--goodput: unknown metric '{}' (use ttft, tpot or e2el)", name);
  }
  return slo;
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  if (!(p >= 0.0 && p <= 100.0)) fail("percentile {} is outside [0, 100]", p);
  std::sort(values.begin(), values.end());
  const double rank = p / 100.0 * static_cast<double>(values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, values.size() - 1);
  const double fraction = rank - static_cast<double>(below);
  return values[below] + (values[above] - values[below]) * fraction;
}

latency_summary summarize(const std::vector<double>& seconds, const std::vector<double>& percentiles) {
  latency_summary s;
  if (!seconds.empty()) {
    const double n = static_cast<double>(seconds.size());
    const double mean = std::accumulate(seconds.begin(), seconds.end(), 0.0) / n;
    double squares = 0.0;
    for (double x : seconds) squares += (x - mean) * (x - mean);
    s.mean_ms = 1e3 * mean;
    s.std_ms = 1e3 * std::sqrt(squares / n);
    s.median_ms = 1e3 * percentile(seconds, 50.0);
  }
  for (double p : percentiles) s.percentiles_ms.emplace_back(p, 1e3 * percentile(seconds, p));
  return s;
}

double time_per_output_token(const request_output& output) {
  if (output.output_tokens <= 1) return 0.0;
  return (output.latency_s - output.ttft_s) / static_cast<double>(output.output_tokens - 1);
}

bench_metrics compute_metrics(const std::vector<request_output>& outputs, double duration_s,
                              const std::vector<double>& percentiles, const slo_targets& slo) {
  if (!(duration_s > 0.0)) fail("the benchmark duration must be positive, got {}", duration_s);
  bench_metrics m;
  m.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  double first_start = INFINITY, last_end = 0.0;
  for (const request_output& out : outputs) {
    if (!out.success) {
      ++m.num_failed;
      continue;
    }
    ++m.num_completed;
    m.total_input_tokens += out.prompt_tokens;
    m.total_output_tokens += out.output_tokens;
    const double tpot = time_per_output_token(out);
    if (out.output_tokens > 1) tpots.push_back(tpot);
    itls.insert(itls.end(), out.itl_s.begin(), out.itl_s.end());
    ttfts.push_back(out.ttft_s);
    e2els.push_back(out.latency_s);
    const bool good = (!slo.ttft_ms || out.ttft_s * 1e3 <= *slo.ttft_ms) &&
                      (!slo.tpot_ms || tpot * 1e3 <= *slo.tpot_ms) &&
                      (!slo.e2el_ms || out.latency_s * 1e3 <= *slo.e2el_ms);
    if (slo.any() && good) ++m.num_good;
    first_start = std::min(first_start, out.start_s);
    last_end = std::max(last_end, out.start_s + out.latency_s);
  }
  m.request_throughput = m.num_completed / duration_s;
  m.request_goodput = m.num_good / duration_s;
  m.output_throughput = static_cast<double>(m.total_output_tokens) / duration_s;
  m.total_token_throughput = static_cast<double>(m.total_input_tokens + m.total_output_tokens) / duration_s;
  m.ttft = summarize(ttfts, percentiles);
  m.tpot = summarize(tpots, percentiles);
  m.itl = summarize(itls, percentiles);
  m.e2el = summarize(e2els, percentiles);

  // Peak output rate and concurrency in one-second buckets from the first request's start.
  if (m.num_completed > 0) {
    const size_t num_buckets = static_cast<size_t>(std::ceil(last_end - first_start)) + 1;
    std::vector<double> tokens(num_buckets, 0.0);  // [num_buckets]
    std::vector<int> active(num_buckets, 0);       // [num_buckets]
    auto bucket = [&](double t) { return static_cast<size_t>(std::max(0.0, t - first_start)); };
    for (const request_output& out : outputs) {
      if (!out.success) continue;
      double t = out.start_s + out.ttft_s;
      if (bucket(t) < num_buckets) tokens[bucket(t)] += 1.0;
      for (double gap : out.itl_s) {
        t += gap;
        if (bucket(t) < num_buckets) tokens[bucket(t)] += 1.0;
      }
      for (size_t b = bucket(out.start_s); b <= bucket(out.start_s + out.latency_s) && b < num_buckets; ++b) ++active[b];
    }
    m.max_output_tokens_per_s = *std::max_element(tokens.begin(), tokens.end());
    m.max_concurrent_requests = *std::max_element(active.begin(), active.end());
  }
  return m;
}

}  // namespace nf
