// A burst of streams against `nanoflow serve` with far fewer engine slots than streams (issue 7): two long
// streams take both slots of --max-num-seqs 2, then 62 more streams connect at the same instant and wait
// longer than 5 s (httplib's default read timeout, which the clients here use) before their first token.
// The server process is stopped (SIGSTOP) for the second around the burst, so that no accept() drains the
// listen queue meanwhile: every connection must fit in the listen backlog, not just those a fast accept
// loop happens to take in time. Every stream must complete with its exact token count: the connections
// must survive the burst (the backlog) and the silence (the server's SSE keep-alive comments).
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "loadgen/bench_serve.h"
#include "loadgen/server_process.h"

namespace nf {
namespace {

using json = nlohmann::json;

constexpr int num_long = 2;        // = --max-num-seqs: they hold every slot
constexpr int num_burst = 62;      // connect together while the long ones run
constexpr int burst_tokens = 2;
constexpr double old_read_timeout_s = 5.0;
constexpr double long_stream_s = 6.0;  // how long the long streams should hold the slots

bench_serve_options burst_options(const test::server_process& server, int num_prompts) {
  bench_serve_options options;
  options.base_url = server.base_url();
  options.model = "burst";
  options.input_len = 16;
  options.output_len = burst_tokens;
  options.num_prompts = num_prompts;
  options.vocab_size = 128000;
  options.progress = false;
  options.client.read_timeout_s = old_read_timeout_s;
  return options;
}

void set_max_tokens(prepared_request& request, int max_tokens) {
  json body = json::parse(request.body);
  body["max_tokens"] = max_tokens;
  request.body = body.dump();
}

TEST(serve_burst, more_streams_than_slots_all_complete) {
  test::server_process server("burst", {"--max-num-seqs", "2", "--http-threads", "160"});
  ASSERT_NE(server.port(), 0) << server.log();

  // The time per output token on this machine, so that the long streams last about long_stream_s.
  bench_serve_options probe = burst_options(server, 1);
  probe.output_len = 32;
  const bench_serve_result timing = run_bench_serve(probe, make_workload(probe, nullptr));
  ASSERT_TRUE(timing.outputs[0].success) << timing.outputs[0].error;
  const double tpot_s = (timing.outputs[0].latency_s - timing.outputs[0].ttft_s) / 31.0;
  const int long_tokens = std::clamp(static_cast<int>(std::ceil(long_stream_s / std::max(tpot_s, 1e-4))), 16, 4000);

  const bench_serve_options options = burst_options(server, num_long + num_burst);
  bench_serve_workload workload = make_workload(options, nullptr);
  for (int i = 0; i < num_long + num_burst; ++i) {
    const bool is_long = i < num_long;
    if (is_long) set_max_tokens(workload.requests[i], long_tokens);
    workload.output_lens[i] = is_long ? long_tokens : burst_tokens;
    workload.arrival_s[i] = is_long ? 0.0 : 0.5;
  }
  std::thread pause([&server] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::kill(server.pid(), SIGSTOP);
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    ::kill(server.pid(), SIGCONT);
  });
  const bench_serve_result result = run_bench_serve(options, workload);
  pause.join();

  double longest_wait_s = 0.0;
  int num_failed = 0;
  for (int i = 0; i < num_long + num_burst; ++i) {
    const request_output& out = result.outputs[i];
    if (!out.success) {
      if (++num_failed <= 5) ADD_FAILURE() << "stream " << i << ": " << out.error;
      continue;
    }
    EXPECT_EQ(out.output_tokens, workload.output_lens[i]) << "stream " << i;
    if (i >= num_long) longest_wait_s = std::max(longest_wait_s, out.ttft_s);
  }
  EXPECT_EQ(num_failed, 0) << "of " << num_long + num_burst << " streams";
  std::printf("%.1f ms per token, long streams of %d tokens, longest wait for a first token %.1f s, %.1f s in all\n",
              tpot_s * 1e3, long_tokens, longest_wait_s, result.metrics.duration_s);
  // The test is only meaningful when streams did wait past the old timeout.
  EXPECT_GT(longest_wait_s, old_read_timeout_s);
  EXPECT_EQ(server.stop(), 0) << server.log();
}

}  // namespace
}  // namespace nf
