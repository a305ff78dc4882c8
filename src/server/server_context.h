// What the HTTP handlers share: the engine, tokenizer, chat formatter, options, metrics, response ids and
// the registry of in-flight generations that shutdown aborts. Internal to the server module.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "engine/engine_service.h"
#include "server/chat_formatter.h"
#include "server/generation.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace nf {

struct server_context {
  server_context(engine_service& engine, const tokenizer& tok, chat_formatter format_chat, server_options options);

  engine_service& engine;
  const tokenizer& tok;
  chat_formatter format_chat;
  server_options options;
  server_metrics metrics;
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> stop_requested_ms{0};  // steady-clock time of stop(), in ms

  // A fresh response id: prefix + 24 hex digits.
  std::string next_id(const char* prefix);
  // 404 unless `model` is empty or the served model's name.
  void check_model(const std::string& model) const;

  // Generations in flight, so that stop() can abort them.
  uint64_t register_generation(const std::shared_ptr<generation>& live);
  void unregister_generation(uint64_t key);
  void abort_all_generations();

 private:
  std::mutex mutex_;
  uint64_t id_base_ = 0;
  uint64_t num_ids_ = 0;
  uint64_t next_key_ = 0;
  std::map<uint64_t, std::weak_ptr<generation>> live_;
};

// The generation endpoints (openai_endpoints.cpp); api_error escapes for bad requests.
void handle_completions(server_context& context, const httplib::Request& request, httplib::Response& response);
void handle_chat_completions(server_context& context, const httplib::Request& request, httplib::Response& response);

}  // namespace nf
