// /v1/completions and /v1/chat/completions: request -> prompt ids -> generation -> one JSON response or an
// SSE stream. The response is produced by a content provider that polls the generation, so a client that
// disconnects is noticed (socket no longer writable, or a failed write) and its engine requests aborted.
// httplib sends the headers before the provider runs; a stream that has nothing to say (waiting for a slot
// in the engine) sends an SSE comment every sse_keepalive_ms, so clients and proxies with read timeouts
// shorter than the wait keep the connection.
#include <httplib.h>

#include <fmt/format.h>

#include <chrono>
#include <ctime>

#include "core/error.h"
#include "server/api_error.h"
#include "server/openai_protocol.h"
#include "server/server_context.h"

namespace nf {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

enum class endpoint { completion, chat };

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

// What every response of one request shares.
struct response_shape {
  endpoint kind = endpoint::completion;
  std::string id;
  int64_t created = 0;
  std::string model;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
  int num_choices = 1;
};

std::string token_text(const tokenizer& tok, int32_t id) { return tok.decode(std::span<const int32_t>(&id, 1), false); }

json byte_list(std::string_view bytes) {
  json list = json::array();
  for (unsigned char c : bytes) list.push_back(static_cast<int>(c));
  return list;
}

// Completions: {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}.
json completion_logprobs(const tokenizer& tok, const std::vector<output_token>& tokens) {
  json result = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
                 {"text_offset", json::array()}};
  for (const output_token& token : tokens) {
    const std::string text = token_text(tok, token.id);
    result["tokens"].push_back(text);
    result["token_logprobs"].push_back(token.logprob);
    json top = json::object();
    for (const token_logprob& alt : token.top_logprobs) top[token_text(tok, alt.token_id)] = alt.logprob;
    if (!top.contains(text)) top[text] = token.logprob;
    result["top_logprobs"].push_back(std::move(top));
    result["text_offset"].push_back(token.text_offset);
  }
  return result;
}

// Chat: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
json chat_logprobs(const tokenizer& tok, const std::vector<output_token>& tokens) {
  json content = json::array();
  for (const output_token& token : tokens) {
    json top = json::array();
    for (const token_logprob& alt : token.top_logprobs)
      top.push_back({{"token", token_text(tok, alt.token_id)}, {"logprob", alt.logprob},
                     {"bytes", byte_list(tok.token_bytes(alt.token_id))}});
    content.push_back({{"token", token_text(tok, token.id)}, {"logprob", token.logprob},
                       {"bytes", byte_list(tok.token_bytes(token.id))}, {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

json logprobs_json(const server_context& context, const response_shape& shape, const std::vector<output_token>& tokens) {
  if (!shape.logprobs) return nullptr;
  return shape.kind == endpoint::chat ? chat_logprobs(context.tok, tokens) : completion_logprobs(context.tok, tokens);
}

json usage_json(const generation& gen) {
  return {{"prompt_tokens", gen.num_prompt_tokens()},
          {"completion_tokens", gen.num_completion_tokens()},
          {"total_tokens", gen.num_prompt_tokens() + gen.num_completion_tokens()}};
}

json chunk_base(const response_shape& shape) {
  json chunk = {{"id", shape.id},
                {"object", shape.kind == endpoint::chat ? "chat.completion.chunk" : "text_completion"},
                {"created", shape.created},
                {"model", shape.model},
                {"choices", json::array()}};
  if (shape.include_usage) chunk["usage"] = nullptr;
  return chunk;
}

bool send_event(httplib::DataSink& sink, const std::string& data) {
  const std::string event = "data: " + data + "\n\n";
  return sink.write(event.data(), event.size());
}

bool send_keepalive(httplib::DataSink& sink) {
  constexpr std::string_view comment = ": keep-alive\n\n";
  return sink.write(comment.data(), comment.size());
}

bool shutdown_overdue(const server_context& context) {
  if (!context.stopping.load()) return false;
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  return now_ms - context.stop_requested_ms.load() > context.options.shutdown_grace_ms;
}

// Streams SSE events until every choice finished; false when the client went away (or shutdown ran out of time).
bool stream_events(server_context& context, const response_shape& shape, generation& gen, httplib::DataSink& sink) {
  using steady = std::chrono::steady_clock;
  const auto keepalive_interval = std::chrono::milliseconds(context.options.sse_keepalive_ms);
  steady::time_point last_write = steady::now();
  if (shape.kind == endpoint::chat) {
    json chunk = chunk_base(shape);
    for (int i = 0; i < shape.num_choices; ++i)
      chunk["choices"].push_back(
          {{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}});
    if (!send_event(sink, dump(chunk))) return false;
  }
  while (!gen.done()) {
    std::vector<choice_update> updates = gen.poll(50ms);
    if (!updates.empty()) last_write = steady::now();
    for (choice_update& update : updates) {
      json choice = {{"index", update.index}};
      if (shape.kind == endpoint::chat) {
        choice["delta"] = update.text.empty() ? json::object() : json{{"content", update.text}};
      } else {
        choice["text"] = update.text;
      }
      choice["logprobs"] = update.tokens.empty() ? json(nullptr) : logprobs_json(context, shape, update.tokens);
      choice["finish_reason"] = update.finished ? json(update.finish_reason) : json(nullptr);
      json chunk = chunk_base(shape);
      chunk["choices"].push_back(std::move(choice));
      if (!send_event(sink, dump(chunk))) return false;
    }
    if (!sink.is_writable() || shutdown_overdue(context)) return false;
    if (keepalive_interval.count() > 0 && steady::now() - last_write >= keepalive_interval) {
      if (!send_keepalive(sink)) return false;
      last_write = steady::now();
    }
  }
  if (shape.include_usage) {
    json chunk = chunk_base(shape);
    chunk["usage"] = usage_json(gen);
    if (!send_event(sink, dump(chunk))) return false;
  }
  if (!send_event(sink, "[DONE]")) return false;
  sink.done();
  return true;
}

// Collects the whole output, then writes one JSON object; false when the client went away meanwhile.
bool write_response(server_context& context, const response_shape& shape, generation& gen, httplib::DataSink& sink) {
  struct collected {
    std::string text;
    std::vector<output_token> tokens;
    std::string finish_reason;
  };
  std::vector<collected> choices(shape.num_choices);
  while (!gen.done()) {
    for (choice_update& update : gen.poll(50ms)) {
      collected& choice = choices[update.index];
      choice.text += update.text;
      for (output_token& token : update.tokens) choice.tokens.push_back(std::move(token));
      if (update.finished) choice.finish_reason = update.finish_reason;
    }
    if (!sink.is_writable() || shutdown_overdue(context)) return false;
  }
  json body = {{"id", shape.id},
               {"object", shape.kind == endpoint::chat ? "chat.completion" : "text_completion"},
               {"created", shape.created},
               {"model", shape.model},
               {"choices", json::array()},
               {"usage", usage_json(gen)}};
  for (int i = 0; i < shape.num_choices; ++i) {
    json choice = {{"index", i}};
    if (shape.kind == endpoint::chat) {
      choice["message"] = {{"role", "assistant"}, {"content", choices[i].text}};
    } else {
      choice["text"] = choices[i].text;
    }
    choice["logprobs"] = logprobs_json(context, shape, choices[i].tokens);
    choice["finish_reason"] = choices[i].finish_reason;
    body["choices"].push_back(std::move(choice));
  }
  const std::string text = dump(body);
  if (!sink.write(text.data(), text.size())) return false;
  sink.done();
  return true;
}

// Checks the prompt and max_tokens against the context and fills params.max_tokens.
void fit_to_context(const server_context& context, size_t num_prompt_tokens, generation_options& options,
                    int default_max_tokens, const char* prompt_field) {
  const int64_t context_length = context.engine.config().max_position_embeddings;
  const int64_t prompt_length = static_cast<int64_t>(num_prompt_tokens);
  if (prompt_length == 0) bad_field(prompt_field, fmt::format("'{}' must not be empty", prompt_field));
  if (prompt_length >= context_length)
    bad_field(prompt_field, fmt::format("This model's maximum context length is {} tokens, but the prompt has {} tokens; "
                                        "no room is left for the completion",
                                        context_length, prompt_length));
  if (options.max_tokens) {
    if (prompt_length + *options.max_tokens > context_length)
      bad_field("max_tokens", fmt::format("This model's maximum context length is {} tokens. However, you requested {} "
                                          "tokens ({} in the prompt, {} for the completion)",
                                          context_length, prompt_length + *options.max_tokens, prompt_length,
                                          *options.max_tokens));
    options.params.max_tokens = *options.max_tokens;
  } else {
    options.params.max_tokens = static_cast<int>(std::min<int64_t>(default_max_tokens, context_length - prompt_length));
  }
  if (options.params.min_tokens > options.params.max_tokens)
    bad_field("min_tokens", fmt::format("'min_tokens' ({}) must not exceed max_tokens ({})", options.params.min_tokens,
                                        options.params.max_tokens));
  try {
    options.params.validate();
  } catch (const error& e) {
    throw api_error(400, e.what());
  }
}

void serve_generation(server_context& context, httplib::Response& response, response_shape shape,
                      std::vector<int32_t> prompt, const generation_options& options) {
  if (context.stopping.load()) throw api_error(503, "The server is shutting down");
  shape.created = static_cast<int64_t>(std::time(nullptr));
  shape.model = context.options.served_model_name;
  shape.stream = options.stream;
  shape.include_usage = options.stream && options.include_usage;
  shape.num_choices = options.n;
  auto gen = std::make_shared<generation>(context.engine, context.tok, context.metrics, std::move(prompt),
                                          options.params, options.n, generation::clock::now());
  try {
    gen->start();
  } catch (const error& e) {
    throw api_error(400, e.what());
  }
  const uint64_t key = context.register_generation(gen);
  auto provider = [&context, shape, gen](size_t, httplib::DataSink& sink) {
    const bool ok = shape.stream ? stream_events(context, shape, *gen, sink) : write_response(context, shape, *gen, sink);
    if (!ok) gen->abort();
    return ok;
  };
  auto release = [&context, key, gen](bool) {
    if (!gen->done()) gen->abort();
    context.unregister_generation(key);
  };
  if (shape.stream) response.set_header("Cache-Control", "no-cache");
  response.set_chunked_content_provider(shape.stream ? "text/event-stream" : "application/json", std::move(provider),
                                        std::move(release));
}

std::vector<int32_t> encode(const tokenizer& tok, const std::string& text, bool add_special_tokens, const char* field) {
  try {
    return tok.encode(text, add_special_tokens);
  } catch (const error& e) {
    bad_field(field, e.what());
  }
}

}  // namespace

void handle_completions(server_context& context, const httplib::Request& request, httplib::Response& response) {
  const json body = parse_json_body(request.body);
  completion_body parsed = parse_completion_body(body, context.engine.config().vocab_size);
  context.check_model(parsed.model);
  std::vector<int32_t> prompt =
      parsed.prompt_text ? encode(context.tok, *parsed.prompt_text, true, "prompt") : std::move(parsed.prompt_token_ids);
  fit_to_context(context, prompt.size(), parsed.options, 16, "prompt");
  response_shape shape;
  shape.kind = endpoint::completion;
  shape.id = context.next_id("cmpl-");
  shape.logprobs = parsed.options.params.logprobs >= 0;
  serve_generation(context, response, std::move(shape), std::move(prompt), parsed.options);
}

void handle_chat_completions(server_context& context, const httplib::Request& request, httplib::Response& response) {
  const json body = parse_json_body(request.body);
  chat_body parsed = parse_chat_body(body);
  context.check_model(parsed.model);
  std::string prompt_text;
  try {
    prompt_text = context.format_chat(parsed.messages, parsed.add_generation_prompt, parsed.chat_template_kwargs);
  } catch (const error& e) {
    bad_field("messages", fmt::format("The chat template failed on these messages: {}", e.what()));
  }
  std::vector<int32_t> prompt = encode(context.tok, prompt_text, false, "messages");
  fit_to_context(context, prompt.size(), parsed.options, std::numeric_limits<int>::max(), "messages");
  response_shape shape;
  shape.kind = endpoint::chat;
  shape.id = context.next_id("chatcmpl-");
  shape.logprobs = parsed.logprobs;
  serve_generation(context, response, std::move(shape), std::move(prompt), parsed.options);
}

}  // namespace nf
