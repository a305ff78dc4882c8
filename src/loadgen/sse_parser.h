// Incremental parser of a server-sent-events stream: bytes in (split anywhere), the `data` payload of each
// complete event out. Comments (lines starting with ':') and other fields (event:, id:, retry:) are dropped.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace nf {

class sse_parser {
 public:
  // Appends bytes and returns the data of every event completed by them (events end with a blank line;
  // several data lines of one event are joined with '\n'). Events with no data line give nothing.
  std::vector<std::string> feed(std::string_view bytes);
  // True when bytes of an unfinished event are still buffered (a stream cut short mid-event).
  bool has_partial_event() const;

 private:
  std::string line_;               // the current line, without its terminator
  std::string data_;               // the data of the current event so far
  bool has_data_ = false;
  bool has_partial_ = false;       // the current event has at least one line
  bool last_was_cr_ = false;       // the previous byte was '\r' (so a following '\n' ends nothing new)
};

}  // namespace nf
