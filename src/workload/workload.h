// Benchmark workloads: request lengths from fixed sizes or from a trace file, and random prompts of those
// lengths (the traces carry no text, so prompts are random token ids and outputs are forced with ignore_eos).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

namespace nf {

struct request_lengths {
  int input_len = 0;
  int output_len = 0;
  std::optional<double> arrival_s;  // seconds after the trace's first request, when the trace has real times
};

// Reads a CSV with header TIMESTAMP,ContextTokens,GeneratedTokens. Throws nf::error naming the line of
// any malformed row. Timestamps "YYYY-MM-DD HH:MM:SS.fffffff" become arrival offsets; others are ignored.
std::vector<request_lengths> read_trace(const std::filesystem::path& path);

// `count` rows drawn without replacement with `seed` (all rows, shuffled, when count >= rows), each capped
// to fit `max_model_len`: input at most max_model_len - 1, output at most what is left, both at least 1.
std::vector<request_lengths> sample_trace(const std::vector<request_lengths>& trace, int count, uint64_t seed,
                                          int max_model_len);

// `count` copies of (input_len, output_len).
std::vector<request_lengths> fixed_lengths(int count, int input_len, int output_len);

// Random token ids in [0, vocab_size) for each request, reproducible from `seed`.
std::vector<std::vector<int32_t>> random_prompts(const std::vector<request_lengths>& lengths, int vocab_size,
                                                 uint64_t seed);

}  // namespace nf
