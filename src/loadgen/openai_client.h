// One connection to an OpenAI-compatible server that sends streaming completion or chat requests and times
// every server-sent event on arrival: TTFT, inter-token gaps and end-to-end latency as `vllm bench serve`
// measures them. Any failure (no connection, HTTP 4xx/5xx, malformed or cut-short stream) is returned in
// request_output::error, never thrown.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "loadgen/bench_metrics.h"

namespace nf {

// "http://HOST:PORT[/PREFIX]" split into its parts; nf::error for other schemes or a malformed URL.
struct base_url {
  std::string host;
  int port = 80;
  std::string path_prefix;  // "" or "/prefix" without a trailing slash
};
base_url parse_base_url(const std::string& url);

struct client_options {
  std::string api_key;               // sent as "Authorization: Bearer KEY" when not empty
  double connect_timeout_s = 10.0;
  double read_timeout_s = 6 * 3600.0;  // longest silence between two reads of one response (vLLM's bench: 6 h)
};

// A request ready to send: the endpoint path and its JSON body (which must ask for stream: true).
struct prepared_request {
  std::string endpoint;   // "/v1/completions" or "/v1/chat/completions"
  std::string body;
  int prompt_len = 0;     // used when the server reports no usage
  bool chat = false;      // chat chunks carry delta.content; a role-only first delta is not a token
};

// Not thread-safe: one per worker thread. Keeps its connection alive between requests.
class openai_client {
 public:
  openai_client(const base_url& url, client_options options);
  ~openai_client();
  openai_client(const openai_client&) = delete;
  openai_client& operator=(const openai_client&) = delete;

  // Sends the request and reads the whole stream; times are seconds after `origin`. A token chunk is an
  // event whose `choices` is non-empty (for chat, not just the assistant-role announcement): TTFT is the
  // first one, ITL the gaps between successive ones, E2EL the last one. Success needs HTTP 200, at least one
  // token chunk and the closing [DONE].
  request_output send(const prepared_request& request, std::chrono::steady_clock::time_point origin);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace nf
