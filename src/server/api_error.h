// An error answered to an HTTP client as an OpenAI-style error object with its status code:
// {"error": {"message", "type", "param", "code"}}.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

namespace nf {

class api_error : public std::runtime_error {
 public:
  api_error(int status, std::string message, std::string param = {}, std::string code = {})
      : std::runtime_error(message), status_(status), param_(std::move(param)), code_(std::move(code)) {}

  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  // OpenAI's error type for the status: invalid_request_error, authentication_error, not_found_error, ...
  std::string type() const;
  nlohmann::json to_json() const;

 private:
  int status_;
  std::string param_;
  std::string code_;
};

// 400 naming the offending request field.
[[noreturn]] inline void bad_field(const std::string& param, const std::string& message) {
  throw api_error(400, message, param);
}

}  // namespace nf
