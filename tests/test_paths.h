// Paths of the test data inside the source tree.
#pragma once

#include <cstdlib>
#include <filesystem>

namespace nf::test {

// The build's source tree, or $NANOFLOW_SOURCE_DIR when set (test binaries that travel to another machine).
inline std::filesystem::path source_dir() {
  const char* moved = std::getenv("NANOFLOW_SOURCE_DIR");
  return moved && *moved ? std::filesystem::path(moved) : std::filesystem::path(NANOFLOW_SOURCE_DIR);
}
inline std::filesystem::path model_dir(const char* name) { return source_dir() / "tests/data/models" / name; }

}  // namespace nf::test
