// A compiled PCRE2 pattern (UTF + Unicode properties, JIT when available) for the pre-tokenizers'
// split patterns, which are written for Rust's regex / Oniguruma and are PCRE2-compatible.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nf {

class regex {
 public:
  // nf::error when the pattern does not compile.
  explicit regex(const std::string& pattern);
  ~regex();
  regex(regex&&) noexcept;
  regex& operator=(regex&&) noexcept;

  // Byte ranges [begin, end) of the successive non-overlapping matches in text (valid UTF-8).
  // An empty match advances by one code point and is not reported.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace nf
