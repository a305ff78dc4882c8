// Trace parsing, sampling and random prompts for the benchmarks.
#include "workload/workload.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>
#include <string>

#include "core/error.h"

namespace nf {
namespace {

int parse_count(const std::string& text, const std::filesystem::path& path, int line) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0)
    fail("{}:{}: '{}' is not a token count", path.string(), line, text);
  return value;
}

// Seconds since the epoch of a "YYYY-MM-DD HH:MM:SS.fff" timestamp (days counted by the civil calendar).
std::optional<double> parse_timestamp(const std::string& text) {
  int year, month, day, hour, minute;
  double second;
  if (std::sscanf(text.c_str(), "%d-%d-%d %d:%d:%lf", &year, &month, &day, &hour, &minute, &second) != 6)
    return std::nullopt;
  const int y = year - (month <= 2);
  const int era = y / 400;
  const int year_of_era = y - era * 400;
  const int day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  const double days = era * 146097.0 + day_of_era - 719468.0;
  return days * 86400.0 + hour * 3600.0 + minute * 60.0 + second;
}

}  // namespace

std::vector<request_lengths> read_trace(const std::filesystem::path& path) {
  std::ifstream file(path);
  if (!file) fail("cannot open trace {}", path.string());
  std::string line;
  if (!std::getline(file, line)) fail("trace {} is empty", path.string());
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line != "TIMESTAMP,ContextTokens,GeneratedTokens")
    fail("trace {}: expected the header TIMESTAMP,ContextTokens,GeneratedTokens, got '{}'", path.string(), line);
  std::vector<request_lengths> rows;
  std::optional<double> first_time;
  int line_number = 1;
  while (std::getline(file, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const size_t first = line.find(','), second = line.find(',', first == std::string::npos ? first : first + 1);
    if (first == std::string::npos || second == std::string::npos || line.find(',', second + 1) != std::string::npos)
      fail("{}:{}: expected three comma-separated fields", path.string(), line_number);
    request_lengths row;
    row.input_len = parse_count(line.substr(first + 1, second - first - 1), path, line_number);
    row.output_len = parse_count(line.substr(second + 1), path, line_number);
    if (auto time = parse_timestamp(line.substr(0, first))) {
      if (!first_time) first_time = *time;
      row.arrival_s = *time - *first_time;
    }
    rows.push_back(row);
  }
  if (rows.empty()) fail("trace {} has no requests", path.string());
  return rows;
}

std::vector<request_lengths> sample_trace(const std::vector<request_lengths>& trace, int count, uint64_t seed,
                                          int max_model_len) {
  if (max_model_len < 2) fail("the model context must hold at least 2 tokens");
  std::vector<size_t> order(trace.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  order.resize(std::min<size_t>(order.size(), static_cast<size_t>(std::max(count, 0))));
  std::vector<request_lengths> sampled;
  for (size_t index : order) {
    request_lengths row = trace[index];
    row.input_len = std::clamp(row.input_len, 1, max_model_len - 1);
    row.output_len = std::clamp(row.output_len, 1, max_model_len - row.input_len);
    sampled.push_back(row);
  }
  return sampled;
}

std::vector<request_lengths> fixed_lengths(int count, int input_len, int output_len) {
  if (input_len < 1 || output_len < 1) fail("input and output lengths must be at least 1");
  return std::vector<request_lengths>(static_cast<size_t>(std::max(count, 0)), {input_len, output_len, std::nullopt});
}

std::vector<std::vector<int32_t>> random_prompts(const std::vector<request_lengths>& lengths, int vocab_size,
                                                 uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x70726f6d707473ull);
  std::uniform_int_distribution<int32_t> token(0, vocab_size - 1);
  std::vector<std::vector<int32_t>> prompts;
  prompts.reserve(lengths.size());
  for (const request_lengths& row : lengths) {
    std::vector<int32_t> prompt(static_cast<size_t>(row.input_len));
    for (int32_t& id : prompt) id = token(rng);
    prompts.push_back(std::move(prompt));
  }
  return prompts;
}

}  // namespace nf
