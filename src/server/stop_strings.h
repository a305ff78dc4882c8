// Stop strings in text that grows token by token: finds the earliest one, even when it spans several
// tokens, and says how much of the text can be shown while the end might still become a stop string.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace nf {

class stop_matcher {
 public:
  explicit stop_matcher(std::vector<std::string> stops);

  // `text` is all text so far (it only grows between calls). Returns where the earliest stop string
  // starts (the output is cut there), or std::string::npos.
  size_t find(const std::string& text);
  // Length of the longest prefix of `text` that no stop string can still start in.
  size_t safe_length(const std::string& text) const;
  bool empty() const { return stops_.empty(); }

 private:
  std::vector<std::string> stops_;
  size_t max_length_ = 0;
  size_t searched_ = 0;  // text.size() at the last find(): no stop string ends before it
};

}  // namespace nf
