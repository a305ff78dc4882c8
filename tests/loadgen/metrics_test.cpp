// The benchmark statistics on synthetic timelines worked out by hand, and percentiles against the examples in
// numpy's own documentation (numpy.percentile, default linear method).
#include <gtest/gtest.h>

#include "core/error.h"
#include "loadgen/bench_metrics.h"

namespace nf {
namespace {

request_output timeline(double start, std::vector<double> chunk_times, int prompt_tokens, int output_tokens) {
  request_output out;
  out.success = true;
  out.start_s = start;
  out.ttft_s = chunk_times.front() - start;
  for (size_t i = 1; i < chunk_times.size(); ++i) out.itl_s.push_back(chunk_times[i] - chunk_times[i - 1]);
  out.latency_s = chunk_times.back() - start;
  out.prompt_tokens = prompt_tokens;
  out.output_tokens = output_tokens;
  return out;
}

double at(const latency_summary& s, double p) {
  for (const auto& [q, value] : s.percentiles_ms)
    if (q == p) return value;
  ADD_FAILURE() << "percentile " << p << " missing";
  return -1.0;
}

TEST(percentile, matches_numpy_documentation_examples) {
  // numpy.percentile docs: a = [[10, 7, 4], [3, 2, 1]]; np.percentile(a, 50) == 3.5.
  EXPECT_DOUBLE_EQ(percentile({10, 7, 4, 3, 2, 1}, 50), 3.5);
  // Linear interpolation between closest ranks: rank = p/100 * (n - 1).
  EXPECT_NEAR(percentile({1, 2, 3, 4}, 99), 3.97, 1e-12);
  EXPECT_NEAR(percentile({15, 20, 35, 40, 50}, 40), 29.0, 1e-12);
  EXPECT_DOUBLE_EQ(percentile({5}, 99), 5.0);
  EXPECT_DOUBLE_EQ(percentile({}, 99), 0.0);
  EXPECT_DOUBLE_EQ(percentile({3, 1, 2}, 0), 1.0);
  EXPECT_DOUBLE_EQ(percentile({3, 1, 2}, 100), 3.0);
}

TEST(bench_metrics, hand_worked_timelines) {
  // A: chunks at 0.10, 0.15, 0.25, 0.30 with 4 tokens: TTFT 0.1, ITL .05 .1 .05, TPOT (0.3 - 0.1) / 3.
  // B: chunks at 0.2 and 0.5 with 2 tokens: TTFT 0.2, ITL .3, TPOT 0.3.
  // C: one chunk at 0.05 with 1 token: no TPOT in the summary (0 for goodput).
  // D: failed.
  std::vector<request_output> outputs = {timeline(0.0, {0.10, 0.15, 0.25, 0.30}, 10, 4),
                                         timeline(1.0, {1.2, 1.5}, 20, 2), timeline(0.5, {0.55}, 30, 1)};
  request_output failed;
  failed.error = "HTTP 500: boom";
  failed.prompt_tokens = 40;
  outputs.push_back(failed);
  slo_targets slo;
  slo.ttft_ms = 150;
  slo.tpot_ms = 100;
  const bench_metrics m = compute_metrics(outputs, 2.0, {50, 99}, slo);
  EXPECT_EQ(m.num_completed, 3);
  EXPECT_EQ(m.num_failed, 1);
  EXPECT_EQ(m.total_input_tokens, 60);
  EXPECT_EQ(m.total_output_tokens, 7);
  EXPECT_DOUBLE_EQ(m.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(m.output_throughput, 3.5);
  EXPECT_DOUBLE_EQ(m.total_token_throughput, 33.5);
  // Goodput: A meets both SLOs, B misses TTFT (200 > 150), C has TPOT 0 and TTFT 50: 2 good in 2 s.
  EXPECT_EQ(m.num_good, 2);
  EXPECT_DOUBLE_EQ(m.request_goodput, 1.0);

  constexpr double tol = 1e-9;
  EXPECT_NEAR(m.ttft.mean_ms, 350.0 / 3.0, tol);  // (100 + 200 + 50) / 3
  EXPECT_NEAR(m.ttft.median_ms, 100.0, tol);
  EXPECT_NEAR(m.ttft.std_ms, 62.360956446232352, 1e-6);  // sqrt(((-50/3)^2 + (250/3)^2 + (-200/3)^2) / 3)
  EXPECT_NEAR(at(m.ttft, 99), 198.0, tol);               // 100 + 0.98 * (200 - 100)
  EXPECT_NEAR(m.tpot.mean_ms, (200.0 / 3.0 + 300.0) / 2.0, tol);
  EXPECT_NEAR(at(m.tpot, 99), 200.0 / 3.0 + 0.99 * (300.0 - 200.0 / 3.0), tol);
  EXPECT_NEAR(m.itl.mean_ms, 125.0, tol);                // (50 + 100 + 50 + 300) / 4
  EXPECT_NEAR(m.itl.median_ms, 75.0, tol);               // between 50 and 100
  EXPECT_NEAR(at(m.itl, 99), 294.0, tol);                // 100 + 0.97 * 200
  EXPECT_NEAR(m.e2el.mean_ms, 850.0 / 3.0, tol);         // (300 + 500 + 50) / 3
  EXPECT_NEAR(m.e2el.median_ms, 300.0, tol);
  EXPECT_NEAR(at(m.e2el, 99), 496.0, tol);               // 300 + 0.98 * 200
  EXPECT_NEAR(at(m.e2el, 50), 300.0, tol);
  // Peak buckets from the first start (0): A in second 0 (4 tokens), C in second 0 (1), B in second 1 (2).
  EXPECT_DOUBLE_EQ(m.max_output_tokens_per_s, 5.0);
  EXPECT_EQ(m.max_concurrent_requests, 2);
}

TEST(bench_metrics, tpot_definition) {
  const request_output a = timeline(0.0, {0.10, 0.15, 0.25, 0.30}, 1, 4);
  EXPECT_NEAR(time_per_output_token(a), 0.2 / 3.0, 1e-12);
  // Usage may report more tokens than chunks (several tokens in one chunk): TPOT divides by tokens, not chunks.
  request_output bundled = timeline(0.0, {0.1, 0.5}, 1, 5);
  EXPECT_NEAR(time_per_output_token(bundled), 0.1, 1e-12);
  EXPECT_EQ(bundled.itl_s.size(), 1u);
  EXPECT_DOUBLE_EQ(time_per_output_token(timeline(0.0, {0.2}, 1, 1)), 0.0);
}

TEST(bench_metrics, goodput_slos_are_inclusive_and_all_must_hold) {
  std::vector<request_output> outputs = {timeline(0.0, {0.25, 0.5}, 1, 2)};  // TTFT 250 ms, TPOT 250 ms, E2EL 500 ms
  slo_targets slo = parse_slo_targets({"ttft:250", "tpot:250", "e2el:500"});
  EXPECT_EQ(compute_metrics(outputs, 1.0, {}, slo).num_good, 1);
  slo.e2el_ms = 499.5;
  EXPECT_EQ(compute_metrics(outputs, 1.0, {}, slo).num_good, 0);
  EXPECT_EQ(compute_metrics(outputs, 1.0, {}, slo_targets{}).request_goodput, 0.0);
}

TEST(bench_metrics, empty_and_bad_input) {
  request_output failed;
  const bench_metrics m = compute_metrics({failed, failed}, 1.0, {99}, {});
  EXPECT_EQ(m.num_completed, 0);
  EXPECT_EQ(m.num_failed, 2);
  EXPECT_EQ(m.ttft.mean_ms, 0.0);
  EXPECT_THROW(compute_metrics({}, 0.0, {}, {}), error);
  EXPECT_THROW(parse_slo_targets({"ttft"}), error);
  EXPECT_THROW(parse_slo_targets({"latency:5"}), error);
  EXPECT_THROW(parse_slo_targets({"ttft:-1"}), error);
  EXPECT_THROW(parse_slo_targets({"ttft:abc"}), error);
  EXPECT_EQ(*parse_slo_targets({"tpot:12.5"}).tpot_ms, 12.5);
}

}  // namespace
}  // namespace nf
