// Paths of the test data inside the source tree.
#pragma once

#include <filesystem>

namespace nf::test {

inline std::filesystem::path source_dir() { return NANOFLOW_SOURCE_DIR; }
inline std::filesystem::path model_dir(const char* name) { return source_dir() / "tests/data/models" / name; }

}  // namespace nf::test
