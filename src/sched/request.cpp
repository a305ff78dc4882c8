// Names of request states and finish reasons, for logs and API responses.
#include "sched/request.h"

namespace nf {

std::string_view to_string(request_status status) {
  switch (status) {
    case request_status::waiting: return "waiting";
    case request_status::running: return "running";
    case request_status::preempted: return "preempted";
    case request_status::finished: return "finished";
  }
  return "unknown";
}

std::string_view to_string(finish_reason reason) {
  switch (reason) {
    case finish_reason::none: return "none";
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
    case finish_reason::abort: return "abort";
  }
  return "unknown";
}

}  // namespace nf
