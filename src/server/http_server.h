// The OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions (both with SSE streaming),
// /v1/models, /health, /metrics, /tokenize, /detokenize. Runs on its own thread pool in front of an
// engine_service; a client that goes away mid-generation has its engine requests aborted.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "engine/engine_service.h"
#include "server/chat_formatter.h"
#include "tokenizer/tokenizer.h"

namespace nf {

struct server_options {
  std::string host = "127.0.0.1";
  int port = 8000;                            // 0: any free port (see http_server::port())
  std::string served_model_name = "model";    // the only model name requests may use
  std::string api_key;                        // empty: no authentication; else "Authorization: Bearer KEY" on /v1, /tokenize, /detokenize
  size_t max_body_bytes = size_t{8} << 20;    // larger bodies get 413
  int num_threads = 64;                       // connections served at once (each stream holds one thread)
  int listen_backlog = 4096;                  // connections the kernel holds for accept() (capped by net.core.somaxconn)
  int sse_keepalive_ms = 2000;                // a ": keep-alive" comment on a stream silent this long; 0: none
  int shutdown_grace_ms = 5000;               // how long stop() waits for aborted streams to end
};

class http_server {
 public:
  // engine and tok must outlive the server.
  http_server(engine_service& engine, const tokenizer& tok, chat_formatter format_chat, server_options options);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  // Binds and serves on background threads; returns the bound port. nf::error when the address cannot be bound.
  int start();
  // Stops accepting connections, aborts in-flight generations (their streams end with finish_reason "abort"),
  // and waits for the handler threads. Idempotent; the destructor calls it.
  void stop();
  int port() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace nf
