// `nanoflow serve` as a user starts it, with the real engine: curl's completions (whole and streamed) equal
// `nanoflow generate` on the same model, bad input gets an OpenAI error object and harms nothing, and
// SIGTERM stops the server cleanly.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "run_command.h"
#include "test_paths.h"

namespace nf {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

std::string capture(const std::string& command) { return test::run_command(command + " 2>/dev/null").out; }

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

class serve_process : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("curl --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "curl not found";
    log_ = fs::temp_directory_path() / ("nanoflow-serve-" + std::to_string(::getpid()) + ".log");
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
      ::dup2(fd, STDERR_FILENO);
      ::dup2(fd, STDOUT_FILENO);
      const std::string model = model_dir();
      ::execl(NANOFLOW_BINARY, NANOFLOW_BINARY, "serve", "--model", model.c_str(), "--load-format", "dummy", "--port",
              "0", "--served-model-name", "tiny", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const std::regex serving("serving tiny on http://127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 600 && port_ == 0; ++i) {
      std::this_thread::sleep_for(50ms);
      std::ifstream file(log_);
      std::stringstream text;
      text << file.rdbuf();
      std::smatch match;
      const std::string log = text.str();
      if (std::regex_search(log, match, serving)) port_ = std::stoi(match[1]);
    }
    ASSERT_NE(port_, 0) << "the server did not start";
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      bool exited = false;
      for (int i = 0; i < 200 && !exited; ++i) {
        exited = ::waitpid(pid_, &status, WNOHANG) == pid_;
        if (!exited) std::this_thread::sleep_for(50ms);
      }
      if (!exited) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        ADD_FAILURE() << "the server ignored SIGTERM";
      } else {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "exit status " << status;
      }
    }
    fs::remove(log_);
  }
  static std::string model_dir() { return (test::source_dir() / "configs/models/tiny-llama3").string(); }
  std::string post(const std::string& path, const std::string& body, const std::string& extra = "") const {
    return capture("curl -s " + extra + " -H 'Content-Type: application/json' -d " + shell_quote(body) +
                   " http://127.0.0.1:" + std::to_string(port_) + path);
  }

  pid_t pid_ = -1;
  int port_ = 0;
  fs::path log_;
};

TEST_F(serve_process, completions_equal_generate_and_bad_input_is_contained) {
  const std::string prompt = "The capital of France is";
  const json direct = json::parse(capture(std::string(NANOFLOW_BINARY) + " generate --model " + model_dir() +
                                          " --load-format dummy --max-tokens 12 --ignore-eos --json --prompt " +
                                          shell_quote(prompt)));
  const json request = {{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0},
                        {"ignore_eos", true}};
  const json whole = json::parse(post("/v1/completions", request.dump()));
  EXPECT_EQ(whole["choices"][0]["text"], direct["text"]);
  EXPECT_EQ(whole["usage"]["prompt_tokens"], direct["prompt_token_ids"].size());
  EXPECT_EQ(whole["usage"]["completion_tokens"], 12);

  json streaming = request;
  streaming["stream"] = true;
  const std::string events = post("/v1/completions", streaming.dump(), "-N");
  std::string streamed;
  std::istringstream lines(events);
  std::string line;
  bool done = false;
  while (std::getline(lines, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    if (line == "data: [DONE]") {
      done = true;
      continue;
    }
    const json chunk = json::parse(line.substr(6));
    for (const auto& choice : chunk["choices"]) streamed += choice["text"].get<std::string>();
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(streamed, direct["text"]);

  const json malformed = json::parse(post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": "));
  EXPECT_EQ(malformed["error"]["type"], "invalid_request_error");
  const json too_long = json::parse(post("/v1/completions", json{{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", 100000}}.dump()));
  EXPECT_NE(too_long["error"]["message"].get<std::string>().find("8192"), std::string::npos) << too_long.dump();
  const json unknown = json::parse(post("/v1/completions", json{{"model", "other"}, {"prompt", prompt}}.dump()));
  EXPECT_TRUE(unknown.contains("error"));
  EXPECT_EQ(json::parse(post("/v1/completions", request.dump()))["choices"][0]["text"], direct["text"]);

  const json chat = json::parse(post("/v1/chat/completions",
                                     json{{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                                          {"max_tokens", 5}, {"temperature", 0}, {"ignore_eos", true}}.dump()));
  EXPECT_EQ(chat["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(chat["usage"]["completion_tokens"], 5);
  // Llama-3's template: <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|> + the
  // assistant header: 1 + 3 + 1 (\n\n) + 1 + 1 + 3 + 1 = 11 tokens, with "Hi" one token.
  EXPECT_EQ(chat["usage"]["prompt_tokens"], 11) << chat.dump();
}

TEST_F(serve_process, official_openai_client_sees_the_engine_output) {
  const fs::path client_dir = test::source_dir() / "tests/server/openai_node";
  if (!fs::exists(client_dir / "node_modules/openai/package.json"))
    GTEST_SKIP() << "openai npm package not installed in " << client_dir.string();
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node not found";
  const std::string prompt = "Once upon a time";
  const json direct = json::parse(capture(std::string(NANOFLOW_BINARY) + " generate --model " + model_dir() +
                                          " --load-format dummy --max-tokens 12 --ignore-eos --json --prompt " +
                                          shell_quote(prompt)));
  const fs::path expected = fs::temp_directory_path() / ("nanoflow-openai-real-" + std::to_string(::getpid()) + ".json");
  std::ofstream(expected) << json{{"prompt", prompt}, {"completion_text", direct["text"]}}.dump();
  const std::string command = "node " + (client_dir / "real_engine_check.mjs").string() + " http://127.0.0.1:" +
                              std::to_string(port_) + "/v1 " + expected.string() + " 2>&1";
  const test::command_result result = test::run_command(command);
  fs::remove(expected);
  std::printf("%s", result.out.c_str());
  EXPECT_EQ(result.exit_code, 0) << result.out;
}

}  // namespace
}  // namespace nf
