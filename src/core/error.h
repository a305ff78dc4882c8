// Errors: `nf::error` for bad input from users (caught at the edge, printed, non-zero exit or 4xx);
// NF_CHECK for internal invariants (aborts with file:line).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace nf {

// Raised for problems the user can fix: a missing file, a malformed config, a prompt past the context.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw error(fmt::format(format, std::forward<Args>(args)...));
}

[[noreturn]] void invariant_failed(const char* expression, const char* file, int line, const std::string& message);

}  // namespace nf

// Internal invariant: a false condition is a bug in nanoflow, never a user's mistake.
#define NF_CHECK(condition, ...)                                                                     \
  do {                                                                                               \
    if (!(condition)) ::nf::invariant_failed(#condition, __FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
  } while (0)
