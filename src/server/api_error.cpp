// OpenAI-style error objects.
#include "server/api_error.h"

namespace nf {

std::string api_error::type() const {
  switch (status_) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 405: return "method_not_allowed_error";
    case 413: return "request_too_large_error";
    case 503: return "service_unavailable_error";
    default: return status_ >= 500 ? "internal_server_error" : "invalid_request_error";
  }
}

nlohmann::json api_error::to_json() const {
  nlohmann::json error = {{"message", what()}, {"type", type()}};
  error["param"] = param_.empty() ? nlohmann::json(nullptr) : nlohmann::json(param_);
  error["code"] = code_.empty() ? nlohmann::json(nullptr) : nlohmann::json(code_);
  return {{"error", error}};
}

}  // namespace nf
