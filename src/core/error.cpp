// Reporting of broken internal invariants.
#include "core/error.h"

#include <cstdio>
#include <cstdlib>

namespace nf {

void invariant_failed(const char* expression, const char* file, int line, const std::string& message) {
  std::fprintf(stderr, "nanoflow: internal error at %s:%d: %s (%s)\n", file, line, message.c_str(), expression);
  std::fflush(stderr);
  std::abort();
}

}  // namespace nf
