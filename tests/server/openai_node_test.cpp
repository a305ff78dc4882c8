// The server driven by the official openai npm client (tests/server/openai_node). Skipped while its
// node_modules are absent: `npm install` in that folder (or NANOFLOW_OPENAI_NODE_DIR naming a folder
// with the script's dependencies installed) enables it.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "server_fixture.h"

namespace nf::test {
namespace {

class server_openai_node : public server_fixture {};

TEST_F(server_openai_node, official_client_round_trips) {
  namespace fs = std::filesystem;
  const fs::path script = source_dir() / "tests/server/openai_node/openai_client_check.mjs";
  const char* override_dir = std::getenv("NANOFLOW_OPENAI_NODE_DIR");
  const fs::path modules_dir = override_dir ? fs::path(override_dir) : script.parent_path();
  if (!fs::exists(modules_dir / "node_modules/openai/package.json"))
    GTEST_SKIP() << "openai npm package not installed in " << modules_dir.string();
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node not found";

  const json expected = {{"prompt", "Hello there"},
                         {"completion_text", expected_text(encode("Hello there"), 8)},
                         {"chat_user", "Hi"},
                         {"chat_text", expected_text(encode("user: Hi\nassistant:", false), 6)}};
  const fs::path expected_file = fs::path(::testing::TempDir()) / ("nanoflow_openai_" + std::to_string(port_) + ".json");
  std::ofstream(expected_file) << expected.dump();
  // The script resolves `openai` from its own folder, so run a copy placed beside the modules when overridden.
  fs::path run_script = script;
  if (override_dir) {
    run_script = modules_dir / script.filename();
    fs::copy_file(script, run_script, fs::copy_options::overwrite_existing);
  }
  const std::string command = "node " + run_script.string() + " http://127.0.0.1:" + std::to_string(port_) + "/v1 " +
                              expected_file.string() + " 2>&1";
  const int status = std::system(command.c_str());
  fs::remove(expected_file);
  EXPECT_EQ(status, 0) << command;
}

}  // namespace
}  // namespace nf::test
