// `bench serve` against a real `nanoflow serve` (tiny Llama-3, dummy weights) started by the test: a short run
// completes every request with exact token counts and sane latencies, through the library and through the
// command line (chat, with text prompts from the tokenizer); nothing listening and a wrong model name are
// counted as failed requests, with their messages, and never crash the tool.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "loadgen/bench_serve.h"
#include "loadgen/server_process.h"
#include "tokenizer/tokenizer.h"

namespace nf {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string run_command(const std::string& command, int* status) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  std::string out;
  char buffer[4096];
  size_t count = 0;
  while ((count = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, count);
  *status = ::pclose(pipe);
  return out;
}

int closed_port() {
  // Bind a socket to any free port and close it again: nothing listens there afterwards.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t size = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  ::close(fd);
  return ntohs(address.sin_port);
}

TEST(bench_serve, short_run_against_nanoflow_serve) {
  test::server_process server("tiny");
  ASSERT_NE(server.port(), 0) << server.log();
  bench_serve_options options;
  options.base_url = server.base_url();
  options.model = "tiny";
  options.input_len = 32;
  options.output_len = 8;
  options.num_prompts = 20;
  options.request_rate = 50.0;
  options.max_concurrency = 8;
  options.vocab_size = 128000;
  options.percentiles = {50, 90, 99};
  options.slo.e2el_ms = 60000;
  options.progress = false;
  const bench_serve_workload workload = make_workload(options, nullptr);
  EXPECT_NEAR(workload.arrival_s.back(), 20.0 / 50.0, 1e-9);
  const bench_serve_result result = run_bench_serve(options, workload);
  const bench_metrics& m = result.metrics;
  for (const auto& [message, count] : first_errors(result.outputs, 5)) ADD_FAILURE() << count << " x " << message;
  EXPECT_EQ(m.num_completed, 20);
  EXPECT_EQ(m.num_failed, 0);
  EXPECT_EQ(result.num_client_threads, 8);
  for (const request_output& out : result.outputs) {
    EXPECT_EQ(out.prompt_tokens, 32);  // usage reported by the server
    EXPECT_EQ(out.output_tokens, 8);
    EXPECT_GT(out.ttft_s, 0.0);
    EXPECT_GE(out.latency_s, out.ttft_s);
    EXPECT_LE(out.itl_s.size(), 7u);  // the server may put several tokens in one chunk
    EXPECT_LT(out.latency_s, 30.0);
  }
  EXPECT_EQ(m.total_input_tokens, 640);
  EXPECT_EQ(m.total_output_tokens, 160);
  EXPECT_GE(m.duration_s, 0.4);  // the last request is sent at 20 / 50 s
  EXPECT_NEAR(m.request_throughput, 20.0 / m.duration_s, 1e-9);
  EXPECT_NEAR(m.total_token_throughput, 800.0 / m.duration_s, 1e-9);
  EXPECT_NEAR(m.request_goodput, m.request_throughput, 1e-9);  // every request within 60 s
  EXPECT_GT(m.tpot.mean_ms, 0.0);
  EXPECT_GT(m.itl.mean_ms, 0.0);
  EXPECT_LE(m.ttft.median_ms, m.ttft.percentiles_ms[2].second);
  EXPECT_LE(m.ttft.mean_ms, m.e2el.mean_ms);
  const json report = report_json(options, workload, result);
  EXPECT_EQ(report["completed"], 20);
  EXPECT_EQ(report["output_lens"], json(std::vector<int>(20, 8)));
  EXPECT_TRUE(report.contains("p99_itl_ms"));
  EXPECT_TRUE(report.contains("p90_e2el_ms"));
  const std::string table = format_report(options, workload, result);
  EXPECT_NE(table.find("Successful requests:"), std::string::npos);
  EXPECT_NE(table.find("P99 TPOT (ms):"), std::string::npos);
  EXPECT_EQ(server.stop(), 0);
}

TEST(bench_serve, command_line_chat_with_text_prompts) {
  test::server_process server("tiny-chat");
  ASSERT_NE(server.port(), 0) << server.log();
  const fs::path output = fs::temp_directory_path() / ("nanoflow-bench-serve-" + std::to_string(::getpid()) + ".json");
  int status = 0;
  const std::string log = run_command(
      std::string(NANOFLOW_BINARY) + " bench serve --base-url " + server.base_url() +
          " --model tiny-chat --endpoint /v1/chat/completions --tokenizer " + test::server_process::model_dir().string() +
          " --input-len 16 --output-len 4 --num-prompts 10 --request-rate inf --max-concurrency 4 --seed 3"
          " --goodput ttft:60000 tpot:60000 --metric-percentiles 50 99 --output-json " + output.string(),
      &status);
  ASSERT_EQ(status, 0) << log;
  EXPECT_NE(log.find("Serving Benchmark Result"), std::string::npos) << log;
  EXPECT_NE(log.find("Request goodput (req/s):"), std::string::npos) << log;
  std::ifstream file(output);
  const json report = json::parse(file);
  fs::remove(output);
  EXPECT_EQ(report["completed"], 10) << report["errors"];
  EXPECT_EQ(report["failed"], 0);
  EXPECT_EQ(report["output_lens"], json(std::vector<int>(10, 4)));
  EXPECT_EQ(report["backend"], "openai-chat");
  // Prompts of 16 random tokens as text, wrapped in the chat template: more than 16 tokens each.
  for (const json& n : report["input_lens"]) EXPECT_GT(n.get<int>(), 16);
  EXPECT_NEAR(report["request_goodput"].get<double>(), report["request_throughput"].get<double>(), 1e-9);
  EXPECT_EQ(server.stop(), 0);
}

TEST(bench_serve, nothing_listening_counts_failures) {
  bench_serve_options options;
  options.base_url = "http://127.0.0.1:" + std::to_string(closed_port());
  options.model = "tiny";
  options.input_len = 4;
  options.output_len = 2;
  options.num_prompts = 6;
  options.max_concurrency = 3;
  options.progress = false;
  const bench_serve_result result = run_bench_serve(options, make_workload(options, nullptr));
  EXPECT_EQ(result.metrics.num_completed, 0);
  EXPECT_EQ(result.metrics.num_failed, 6);
  const auto errors = first_errors(result.outputs, 5);
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors[0].first.find("request failed"), std::string::npos) << errors[0].first;

  int status = 0;
  const std::string log = run_command(std::string(NANOFLOW_BINARY) + " bench serve --base-url " + options.base_url +
                                          " --model tiny --input-len 4 --output-len 2 --num-prompts 3",
                                      &status);
  EXPECT_EQ(status, 0) << log;
  EXPECT_NE(log.find("failed (3 requests): request failed"), std::string::npos) << log;
  EXPECT_NE(log.find("Failed requests:                         3"), std::string::npos) << log;
}

TEST(bench_serve, wrong_model_name_is_a_failed_request) {
  test::server_process server("tiny-named");
  ASSERT_NE(server.port(), 0) << server.log();
  bench_serve_options options;
  options.base_url = server.base_url();
  options.model = "not-this-one";
  options.input_len = 4;
  options.output_len = 2;
  options.num_prompts = 5;
  options.progress = false;
  const bench_serve_result result = run_bench_serve(options, make_workload(options, nullptr));
  EXPECT_EQ(result.metrics.num_failed, 5);
  const auto errors = first_errors(result.outputs, 5);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].second, 5);
  EXPECT_NE(errors[0].first.find("HTTP 404"), std::string::npos) << errors[0].first;
  EXPECT_NE(errors[0].first.find("does not exist"), std::string::npos) << errors[0].first;
  EXPECT_EQ(server.stop(), 0);
}

TEST(bench_serve, bad_options_are_errors) {
  bench_serve_options options;
  options.model = "m";
  EXPECT_THROW(make_workload(options, nullptr), error);  // no lengths
  options.input_len = 4;
  options.output_len = 4;
  options.endpoint = "/v1/chat/completions";
  EXPECT_THROW(make_workload(options, nullptr), error);  // chat needs a tokenizer
  options.endpoint = "/v1/embeddings";
  EXPECT_THROW(make_workload(options, nullptr), error);
  options.endpoint = "/v1/completions";
  options.trace = (test::source_dir() / "data/traces/lmsys.csv").string();
  options.input_len = options.output_len = 0;
  options.use_trace_arrivals = true;
  EXPECT_THROW(make_workload(options, nullptr), error);  // lmsys has no timestamps
  options.trace = (test::source_dir() / "data/traces/splitwise_conv.csv").string();
  options.num_prompts = 50;
  const bench_serve_workload w = make_workload(options, nullptr);
  ASSERT_EQ(w.arrival_s.size(), 50u);
  EXPECT_EQ(w.arrival_s.front(), 0.0);
  for (size_t i = 1; i < w.arrival_s.size(); ++i) {
    EXPECT_GE(w.arrival_s[i], w.arrival_s[i - 1]);
  }
  EXPECT_GT(w.arrival_s.back(), 0.0);
}

}  // namespace
}  // namespace nf
