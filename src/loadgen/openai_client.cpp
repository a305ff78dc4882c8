// The streaming OpenAI client of the load generator, on cpp-httplib's blocking client.
#include "loadgen/openai_client.h"

#include <httplib.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "loadgen/sse_parser.h"

namespace nf {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

constexpr size_t max_error_chars = 300;

double seconds_between(clock_type::time_point from, clock_type::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

std::string shorten(std::string text) {
  if (text.size() > max_error_chars) text = text.substr(0, max_error_chars) + "...";
  return text;
}

// The message of an OpenAI error object, else the body itself.
std::string error_message(const std::string& body) {
  const json parsed = json::parse(body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error")) {
    const json& e = parsed["error"];
    if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
    if (e.is_string()) return e.get<std::string>();
  }
  return shorten(body);
}

// Whether a chunk carries output: a non-empty `choices` that is not only chat's assistant-role announcement.
bool is_token_chunk(const json& chunk, bool chat) {
  const auto choices = chunk.find("choices");
  if (choices == chunk.end() || !choices->is_array() || choices->empty()) return false;
  if (!chat) return true;
  const json& first = (*choices)[0];
  const auto delta = first.find("delta");
  if (delta == first.end() || !delta->is_object()) return true;
  const auto content = delta->find("content");
  const bool has_content = content != delta->end() && content->is_string() && !content->get_ref<const std::string&>().empty();
  const bool role_only = delta->contains("role") && !has_content && !delta->contains("tool_calls");
  return !role_only || first.value("finish_reason", json()).is_string();
}

}  // namespace

base_url parse_base_url(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) fail("--base-url must start with http:// (https is not supported), got '{}'", url);
  std::string rest = url.substr(scheme.size());
  base_url parsed;
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    parsed.path_prefix = rest.substr(slash);
    rest = rest.substr(0, slash);
    while (!parsed.path_prefix.empty() && parsed.path_prefix.back() == '/') parsed.path_prefix.pop_back();
  }
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']', colon) == std::string::npos) {
    const std::string port = rest.substr(colon + 1);
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), parsed.port);
    if (ec != std::errc() || end != port.data() + port.size() || parsed.port < 1 || parsed.port > 65535)
      fail("--base-url '{}': '{}' is not a port", url, port);
    rest = rest.substr(0, colon);
  }
  if (rest.size() >= 2 && rest.front() == '[' && rest.back() == ']') rest = rest.substr(1, rest.size() - 2);
  if (rest.empty()) fail("--base-url '{}' has no host", url);
  parsed.host = rest;
  return parsed;
}

struct openai_client::impl {
  impl(const base_url& url, client_options o) : client(url.host, url.port), prefix(url.path_prefix), options(std::move(o)) {
    client.set_keep_alive(true);
    client.set_tcp_nodelay(true);
    const auto to_duration = [](double s) { return std::chrono::microseconds(static_cast<int64_t>(s * 1e6)); };
    client.set_connection_timeout(to_duration(options.connect_timeout_s));
    client.set_read_timeout(to_duration(options.read_timeout_s));
    client.set_write_timeout(to_duration(options.read_timeout_s));
  }

  httplib::Client client;
  std::string prefix;
  client_options options;
};

openai_client::openai_client(const base_url& url, client_options options)
    : impl_(std::make_unique<impl>(url, std::move(options))) {}

openai_client::~openai_client() = default;

request_output openai_client::send(const prepared_request& request, clock_type::time_point origin) {
  request_output out;
  out.prompt_tokens = request.prompt_len;
  httplib::Request http;
  http.method = "POST";
  http.path = impl_->prefix + request.endpoint;
  http.body = request.body;
  http.set_header("Content-Type", "application/json");
  http.set_header("Accept", "text/event-stream");
  if (!impl_->options.api_key.empty()) http.set_header("Authorization", "Bearer " + impl_->options.api_key);

  sse_parser parser;
  int status = 0;
  std::string error_body;
  bool done = false;
  bool first_token = false;
  int num_token_chunks = 0;
  int usage_completion_tokens = -1;
  clock_type::time_point last_token;
  const clock_type::time_point start = clock_type::now();
  out.start_s = seconds_between(origin, start);
  clock_type::time_point last_read = start;  // the latest bytes of the response, for read errors

  http.response_handler = [&](const httplib::Response& response) {
    last_read = clock_type::now();
    status = response.status;
    return true;
  };
  http.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    const clock_type::time_point now = clock_type::now();
    last_read = now;
    if (status != 200) {
      if (error_body.size() < 4096) error_body.append(data, size);
      return true;
    }
    for (const std::string& event : parser.feed(std::string_view(data, size))) {
      if (done) continue;  // anything after [DONE] is ignored
      if (event == "[DONE]") {
        done = true;
        continue;
      }
      const json chunk = json::parse(event, nullptr, false);
      if (!chunk.is_object()) {
        out.error = "malformed stream event: " + shorten(event);
        return false;
      }
      if (chunk.contains("error")) {
        out.error = "error event in the stream: " + error_message(event);
        return false;
      }
      if (is_token_chunk(chunk, request.chat)) {
        if (!first_token) {
          first_token = true;
          out.ttft_s = seconds_between(start, now);
        } else {
          out.itl_s.push_back(seconds_between(last_token, now));
        }
        last_token = now;
        ++num_token_chunks;
      }
      const auto usage = chunk.find("usage");
      if (usage != chunk.end() && usage->is_object()) {
        if (usage->contains("completion_tokens") && (*usage)["completion_tokens"].is_number_integer())
          usage_completion_tokens = (*usage)["completion_tokens"].get<int>();
        if (usage->contains("prompt_tokens") && (*usage)["prompt_tokens"].is_number_integer())
          out.prompt_tokens = (*usage)["prompt_tokens"].get<int>();
      }
    }
    return true;
  };

  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  const bool sent = impl_->client.send(http, response, error);
  if (!out.error.empty()) return out;  // set by the receiver, which cancelled the transfer
  if (!sent) {
    out.error = fmt::format("request failed: {}", httplib::to_string(error));
    if (error == httplib::Error::Read) {
      // httplib says only "Read" both for a silence past the read timeout and for a connection the server
      // (or the kernel) closed or reset; the time since the last bytes tells them apart.
      const double silence_s = seconds_between(last_read, clock_type::now());
      out.error += silence_s >= impl_->options.read_timeout_s * 0.99
                       ? fmt::format(" (nothing received for {:.1f} s: the read timeout)", silence_s)
                       : fmt::format(" (connection closed or reset after {:.1f} s of silence)", silence_s);
    }
    return out;
  }
  if (response.status != 200) {
    out.error = fmt::format("HTTP {}: {}", response.status,
                            error_body.empty() ? std::string("(empty body)") : error_message(error_body));
    return out;
  }
  if (!first_token) {
    out.error = "the stream carried no token";
    return out;
  }
  if (!done) {
    out.error = parser.has_partial_event() ? "the stream ended in the middle of an event" : "the stream ended without [DONE]";
    return out;
  }
  out.latency_s = seconds_between(start, last_token);
  out.output_tokens = usage_completion_tokens >= 0 ? usage_completion_tokens : num_token_chunks;
  out.success = true;
  return out;
}

}  // namespace nf
