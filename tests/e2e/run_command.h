// Runs a shell command for the end-to-end tests and collects its exit status and output.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace nf::test {

struct command_result {
  int exit_code = -1;
  std::string out;
};

// `command` runs under /bin/sh; append " 2>&1" to collect stderr too.
inline command_result run_command(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  command_result result;
  std::array<char, 4096> buffer{};
  size_t count = 0;
  while ((count = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.out.append(buffer.data(), count);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace nf::test
