// A `nanoflow serve` child process for tests: started on port 0 with the tiny Llama-3 model and dummy weights,
// its port read from the "serving NAME on http://127.0.0.1:PORT" line, stopped with SIGTERM.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_paths.h"

namespace nf::test {

class server_process {
 public:
  // Starts the server; port() is 0 when it did not come up within 30 s.
  explicit server_process(const std::string& served_name, std::vector<std::string> extra_args = {}) {
    log_ = std::filesystem::temp_directory_path() /
           ("nanoflow-serve-" + std::to_string(::getpid()) + "-" + served_name + ".log");
    std::vector<std::string> args = {NANOFLOW_BINARY, "serve", "--model", model_dir().string(), "--load-format", "dummy",
                                     "--port", "0", "--served-model-name", served_name};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
      ::dup2(fd, STDERR_FILENO);
      ::dup2(fd, STDOUT_FILENO);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(NANOFLOW_BINARY, argv.data());
      ::_exit(127);
    }
    const std::regex serving("serving " + served_name + " on http://127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 600 && port_ == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::smatch match;
      const std::string text = log();
      if (std::regex_search(text, match, serving)) port_ = std::stoi(match[1]);
    }
  }
  ~server_process() {
    if (pid_ > 0 && !stopped_) stop();
    std::filesystem::remove(log_);
  }
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  static std::filesystem::path model_dir() { return source_dir() / "configs/models/tiny-llama3"; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log() const {
    std::ifstream file(log_);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }

  // SIGTERM, then up to 10 s for the exit; returns the exit code, or -1 when it had to be killed (or died of a signal).
  int stop() {
    stopped_ = true;
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 200; ++i) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  bool stopped_ = false;
  std::filesystem::path log_;
};

}  // namespace nf::test
