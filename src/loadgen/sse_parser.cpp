// Server-sent-events parsing, after the WHATWG event-stream rules (lines end with CRLF, LF or CR).
#include "loadgen/sse_parser.h"

namespace nf {

std::vector<std::string> sse_parser::feed(std::string_view bytes) {
  std::vector<std::string> events;
  for (const char c : bytes) {
    if (c == '\n' && last_was_cr_) {
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c != '\n' && c != '\r') {
      line_ += c;
      continue;
    }
    if (line_.empty()) {  // a blank line dispatches the event
      if (has_data_) events.push_back(std::move(data_));
      data_.clear();
      has_data_ = false;
      has_partial_ = false;
      continue;
    }
    has_partial_ = true;
    if (line_[0] != ':') {
      const size_t colon = line_.find(':');
      const std::string_view field = std::string_view(line_).substr(0, colon);
      std::string_view value = colon == std::string::npos ? std::string_view() : std::string_view(line_).substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
      if (field == "data") {
        if (has_data_) data_ += '\n';
        data_ += value;
        has_data_ = true;
      }
    }
    line_.clear();
  }
  return events;
}

bool sse_parser::has_partial_event() const { return has_partial_ || !line_.empty(); }

}  // namespace nf
