// Real chat templates rendered by the interpreter must match, byte for byte, the committed output of
// Hugging Face's JavaScript Jinja implementation (tests/data/chat/reference.json, made by
// tests/data/chat/make_reference.mjs).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace nf {
namespace {

using ojson = nlohmann::ordered_json;

std::tm reference_time() {
  std::tm t{};
  t.tm_year = 2024 - 1900;
  t.tm_mon = 6;
  t.tm_mday = 26;
  return t;
}

ojson load_reference() {
  std::ifstream in(std::string(NANOFLOW_SOURCE_DIR) + "/tests/data/chat/reference.json", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ojson::parse(ss.str());
}

TEST(chat_reference, every_case_matches) {
  ojson ref = load_reference();
  size_t num_cases = 0;
  for (const auto& tmpl : ref["templates"]) {
    std::string source = tmpl["source"].get<std::string>();
    chat_template t = chat_template::parse(source);
    for (const auto& c : tmpl["cases"]) {
      SCOPED_TRACE(tmpl["name"].get<std::string>() + " / " + c["name"].get<std::string>());
      ++num_cases;
      std::string got, err;
      try {
        got = t.render(c["context"], reference_time);
      } catch (const error& e) {
        err = e.what();
      }
      if (c.contains("error")) {
        if (c["error_from_template"].get<bool>()) {
          EXPECT_EQ(err, c["error"].get<std::string>());
        } else {
          EXPECT_NE(err, "") << "the reference failed with: " << c["error"].get<std::string>();
        }
      } else {
        EXPECT_EQ(err, "");
        EXPECT_EQ(got, c["output"].get<std::string>());
      }
    }
  }
  EXPECT_GT(num_cases, 50u);
}

}  // namespace
}  // namespace nf
