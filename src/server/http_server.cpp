// The HTTP layer: httplib wiring, authentication, error objects for every failure (404, 405, 413 included),
// the small endpoints (/v1/models, /health, /metrics, /tokenize, /detokenize), start and graceful stop.
#include "server/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <random>
#include <thread>

#include "core/error.h"
#include "server/api_error.h"
#include "server/openai_protocol.h"
#include "server/server_context.h"

namespace nf {
namespace {

using json = nlohmann::json;

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(httplib::Response& response, const api_error& e) {
  response.status = e.status();
  response.set_content(dump(e.to_json()), "application/json");
}

// Compares without leaking where the first difference is.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(b.size(), 1)]);
  return diff == 0;
}

// Debian's libcpp-httplib is compiled with listen(fd, 5): a burst of connections arriving faster than the
// accept loop drains them overflows that queue, the kernel drops the excess, and clients whose handshake
// completed on their side (SYN cookies) see the connection reset before any response. Linux lets listen()
// be called again on a listening socket to change its backlog; the socket is a protected member of
// httplib::Server.
class listening_server : public httplib::Server {
 public:
  bool set_listen_backlog(int backlog) { return ::listen(svr_sock_, backlog) == 0; }
};

struct route {
  const char* method;
  const char* path;
  bool needs_key;
};

constexpr route routes[] = {
    {"POST", "/v1/completions", true}, {"POST", "/v1/chat/completions", true}, {"GET", "/v1/models", true},
    {"POST", "/tokenize", true},       {"POST", "/detokenize", true},          {"GET", "/health", false},
    {"GET", "/metrics", false},
};

}  // namespace

server_context::server_context(engine_service& engine_, const tokenizer& tok_, chat_formatter format_chat_,
                               server_options options_)
    : engine(engine_), tok(tok_), format_chat(std::move(format_chat_)), options(std::move(options_)) {
  std::random_device device;
  id_base_ = (uint64_t{device()} << 32) | device();
}

std::string server_context::next_id(const char* prefix) {
  std::lock_guard lock(mutex_);
  // splitmix64 of a counter: distinct ids that do not reveal how many came before.
  uint64_t z = id_base_ + 0x9e3779b97f4a7c15ull * ++num_ids_;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return fmt::format("{}{:016x}{:08x}", prefix, z, static_cast<uint32_t>(num_ids_));
}

void server_context::check_model(const std::string& model) const {
  if (!model.empty() && model != options.served_model_name)
    throw api_error(404, fmt::format("The model '{}' does not exist; this server serves '{}'", model,
                                     options.served_model_name),
                    "model", "model_not_found");
}

uint64_t server_context::register_generation(const std::shared_ptr<generation>& live) {
  std::lock_guard lock(mutex_);
  live_[++next_key_] = live;
  return next_key_;
}

void server_context::unregister_generation(uint64_t key) {
  std::lock_guard lock(mutex_);
  live_.erase(key);
}

void server_context::abort_all_generations() {
  std::vector<std::shared_ptr<generation>> live;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [key, weak] : live_)
      if (auto gen = weak.lock()) live.push_back(std::move(gen));
  }
  for (const auto& gen : live) gen->abort();
}

struct http_server::impl {
  impl(engine_service& engine, const tokenizer& tok, chat_formatter format_chat, server_options options)
      : context(engine, tok, std::move(format_chat), std::move(options)) {}

  server_context context;
  listening_server server;
  std::thread listener;
  std::atomic<bool> listen_returned{false};  // the accept loop has ended (or never started)
  int port = -1;
  bool stopped = false;

  using handler = std::function<void(const httplib::Request&, httplib::Response&)>;

  // Authentication, then the handler; every failure becomes an OpenAI error object.
  httplib::Server::Handler guarded(const route& r, handler body) {
    return [this, r, body = std::move(body)](const httplib::Request& request, httplib::Response& response) {
      try {
        if (r.needs_key && !context.options.api_key.empty()) {
          const std::string header = request.get_header_value("Authorization");
          const std::string_view prefix = "Bearer ";
          if (header.rfind(prefix, 0) != 0 || !same_secret(header.substr(prefix.size()), context.options.api_key))
            throw api_error(401, "Missing or wrong API key; send 'Authorization: Bearer <key>'", "", "invalid_api_key");
        }
        body(request, response);
      } catch (const api_error& e) {
        context.metrics.count_request("error");
        send_error(response, e);
      } catch (const error& e) {
        context.metrics.count_request("error");
        send_error(response, api_error(400, e.what()));
      } catch (const std::exception& e) {
        context.metrics.count_request("error");
        send_error(response, api_error(500, fmt::format("Internal error: {}", e.what())));
      }
    };
  }

  // 404 and 413 from httplib itself, and 405 for a known path with the wrong method.
  httplib::Server::HandlerResponse on_error(const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // a handler's own error
    if (response.status == 404) {
      std::string allowed;
      for (const route& r : routes)
        if (request.path == r.path) allowed += (allowed.empty() ? "" : ", ") + std::string(r.method);
      if (!allowed.empty()) {
        response.set_header("Allow", allowed);
        send_error(response, api_error(405, fmt::format("Method {} is not allowed on {}; use {}", request.method,
                                                        request.path, allowed)));
      } else {
        send_error(response, api_error(404, fmt::format("No route {} {}", request.method, request.path)));
      }
    } else if (response.status == 413) {
      send_error(response, api_error(413, fmt::format("The request body is larger than the limit of {} bytes",
                                                      context.options.max_body_bytes)));
    } else {
      send_error(response, api_error(response.status, fmt::format("HTTP error {}", response.status)));
    }
    return httplib::Server::HandlerResponse::Handled;
  }

  void add_routes() {
    auto add = [this](const route& r, handler body) {
      const std::string method = r.method;
      if (method == "GET") server.Get(r.path, guarded(r, std::move(body)));
      else server.Post(r.path, guarded(r, std::move(body)));
    };
    add(routes[0], [this](const auto& req, auto& res) { handle_completions(context, req, res); });
    add(routes[1], [this](const auto& req, auto& res) { handle_chat_completions(context, req, res); });
    add(routes[2], [this](const auto&, auto& res) { models(res); });
    add(routes[3], [this](const auto& req, auto& res) { tokenize(req, res); });
    add(routes[4], [this](const auto& req, auto& res) { detokenize(req, res); });
    add(routes[5], [this](const auto&, auto& res) {
      if (context.stopping.load()) throw api_error(503, "The server is shutting down");
      res.set_content("", "text/plain");
    });
    add(routes[6], [this](const auto&, auto& res) {
      res.set_content(context.metrics.render(context.engine.stats(), context.options.served_model_name),
                      "text/plain; version=0.0.4");
    });
  }

  void models(httplib::Response& response) {
    const json model = {{"id", context.options.served_model_name},
                        {"object", "model"},
                        {"created", static_cast<int64_t>(std::time(nullptr))},
                        {"owned_by", "nanoflow"},
                        {"root", context.options.served_model_name},
                        {"max_model_len", context.engine.config().max_position_embeddings}};
    response.set_content(dump({{"object", "list"}, {"data", json::array({model})}}), "application/json");
  }

  void tokenize(const httplib::Request& request, httplib::Response& response) {
    const tokenize_body body = parse_tokenize_body(parse_json_body(request.body));
    context.check_model(body.model);
    std::string text;
    if (body.prompt) {
      text = *body.prompt;
    } else {
      try {
        text = context.format_chat(body.messages, body.add_generation_prompt, json::object());
      } catch (const error& e) {
        throw api_error(400, e.what(), "messages");
      }
    }
    std::vector<int32_t> ids;
    try {
      ids = context.tok.encode(text, body.add_special_tokens);
    } catch (const error& e) {
      throw api_error(400, e.what(), body.prompt ? "prompt" : "messages");
    }
    response.set_content(dump({{"count", ids.size()},
                               {"max_model_len", context.engine.config().max_position_embeddings},
                               {"tokens", ids}}),
                         "application/json");
  }

  void detokenize(const httplib::Request& request, httplib::Response& response) {
    const detokenize_body body =
        parse_detokenize_body(parse_json_body(request.body), context.tok.vocab_size());
    context.check_model(body.model);
    response.set_content(dump({{"prompt", context.tok.decode(body.tokens, false)}}), "application/json");
  }
};

http_server::http_server(engine_service& engine, const tokenizer& tok, chat_formatter format_chat, server_options options)
    : impl_(std::make_unique<impl>(engine, tok, std::move(format_chat), std::move(options))) {
  const server_options& o = impl_->context.options;
  if (o.num_threads < 1) fail("the server needs at least one thread, got {}", o.num_threads);
  if (o.max_body_bytes < 1) fail("the body limit must be at least one byte");
  if (o.listen_backlog < 1) fail("the listen backlog must be at least 1, got {}", o.listen_backlog);
  if (o.sse_keepalive_ms < 0) fail("the SSE keep-alive interval must not be negative, got {} ms", o.sse_keepalive_ms);
  httplib::Server& server = impl_->server;
  const size_t num_threads = static_cast<size_t>(o.num_threads);
  server.new_task_queue = [num_threads] { return new httplib::ThreadPool(num_threads); };
  server.set_payload_max_length(o.max_body_bytes);
  server.set_keep_alive_max_count(1000);
  server.set_read_timeout(30, 0);
  server.set_write_timeout(30, 0);
  server.set_tcp_nodelay(true);
  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& request, httplib::Response& response) { return impl_->on_error(request, response); }));
  impl_->add_routes();
}

http_server::~http_server() { stop(); }

int http_server::start() {
  NF_CHECK(impl_->port < 0, "http_server started twice");
  const server_options& o = impl_->context.options;
  int port = -1;
  if (o.port == 0) {
    port = impl_->server.bind_to_any_port(o.host);
  } else if (impl_->server.bind_to_port(o.host, o.port)) {
    port = o.port;
  }
  if (port <= 0) fail("cannot listen on {}:{} (address in use, or not an address of this host?)", o.host, o.port);
  if (!impl_->server.set_listen_backlog(o.listen_backlog))
    fail("cannot set the listen backlog of {}:{} to {}", o.host, port, o.listen_backlog);
  impl_->port = port;
  impl_->listener = std::thread([this] {
    impl_->server.listen_after_bind();
    impl_->listen_returned = true;
  });
  // httplib's stop() does nothing until the accept loop runs, so a stop() soon after start() would leave the loop
  // (and the join in stop()) waiting forever: return only once the loop runs.
  while (!impl_->server.is_running() && !impl_->listen_returned)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  return port;
}

void http_server::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  server_context& context = impl_->context;
  context.stop_requested_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  context.stopping = true;
  context.abort_all_generations();
  // Closes the listening socket; the thread pool then finishes the requests in flight and joins.
  impl_->server.stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}

int http_server::port() const { return impl_->port; }

}  // namespace nf
