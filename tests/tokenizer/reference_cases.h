// Reads the committed reference ids (tests/data/tokenizers/<name>/reference.json) for the tokenizer tests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nf::test {

struct reference_case {
  std::string text;
  bool add_special_tokens = false;
  std::vector<int32_t> ids;
  std::string decoded;               // decode(ids) by the reference, special tokens kept (spm: skipped)
  std::string decoded_skip_special;  // with special tokens skipped
};

inline std::filesystem::path tokenizer_data_dir(const std::string& name) {
  return std::filesystem::path(NANOFLOW_SOURCE_DIR) / "tests/data/tokenizers" / name;
}

inline std::vector<reference_case> load_reference(const std::string& name) {
  std::ifstream in(tokenizer_data_dir(name) / "reference.json");
  const nlohmann::json root = nlohmann::json::parse(in);
  std::vector<reference_case> cases;
  for (const auto& c : root.at("cases")) {
    reference_case r;
    r.text = c.at("text").get<std::string>();
    r.add_special_tokens = c.at("add_special_tokens").get<bool>();
    r.ids = c.at("ids").get<std::vector<int32_t>>();
    r.decoded = c.at("decoded").get<std::string>();
    r.decoded_skip_special = c.value("decoded_skip_special", r.decoded);
    cases.push_back(std::move(r));
  }
  return cases;
}

}  // namespace nf::test
