// Incremental stop-string search with hold-back of a possible partial match.
#include "server/stop_strings.h"

#include <algorithm>

namespace nf {

stop_matcher::stop_matcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const auto& stop : stops_) max_length_ = std::max(max_length_, stop.size());
}

size_t stop_matcher::find(const std::string& text) {
  if (stops_.empty()) return std::string::npos;
  // A match that ended inside the text already searched would have been found then.
  const size_t start = searched_ + 1 > max_length_ ? searched_ + 1 - max_length_ : 0;
  size_t best = std::string::npos;
  for (const auto& stop : stops_) best = std::min(best, text.find(stop, start));
  searched_ = text.size();
  return best;
}

size_t stop_matcher::safe_length(const std::string& text) const {
  const size_t longest = std::min(text.size(), max_length_ > 0 ? max_length_ - 1 : 0);
  for (size_t k = longest; k > 0; --k) {
    const std::string_view tail(text.data() + text.size() - k, k);
    for (const auto& stop : stops_)
      if (std::string_view(stop).substr(0, k) == tail) return text.size() - k;
  }
  return text.size();
}

}  // namespace nf
