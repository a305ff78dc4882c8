// Trace reading against the statistics its publishers give (data/traces/README.md), sampling and capping.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "core/error.h"
#include "test_paths.h"
#include "workload/workload.h"

namespace nf {
namespace {

struct moments {
  double input_mean, output_mean;
};

moments mean_lengths(const std::vector<request_lengths>& rows) {
  double input = 0, output = 0;
  for (const auto& row : rows) {
    input += row.input_len;
    output += row.output_len;
  }
  return {input / rows.size(), output / rows.size()};
}

TEST(trace, splitwise_conversation_matches_its_published_statistics) {
  const auto rows = read_trace(test::source_dir() / "data/traces/splitwise_conv.csv");
  EXPECT_EQ(rows.size(), 19366u);
  const moments m = mean_lengths(rows);
  EXPECT_NEAR(m.input_mean, 1155, 0.5);
  EXPECT_NEAR(m.output_mean, 211, 0.5);
  ASSERT_TRUE(rows[0].arrival_s && rows[1].arrival_s);
  EXPECT_EQ(*rows[0].arrival_s, 0.0);
  EXPECT_NEAR(*rows[1].arrival_s, 4.3145790, 1e-6);  // 18:15:50.9951690 - 18:15:46.6805900
}

TEST(trace, lmsys_has_no_arrival_times) {
  const auto rows = read_trace(test::source_dir() / "data/traces/lmsys.csv");
  EXPECT_EQ(rows.size(), 100000u);
  EXPECT_FALSE(rows[0].arrival_s.has_value());
  const moments m = mean_lengths(rows);
  EXPECT_NEAR(m.input_mean, 92, 0.5);
  EXPECT_NEAR(m.output_mean, 207, 0.5);
}

TEST(trace, sampling_is_reproducible_and_capped) {
  const std::vector<request_lengths> trace = {{5000, 300}, {10, 20}, {100, 5000}, {0, 0}};
  const auto a = sample_trace(trace, 4, 1, 1024), b = sample_trace(trace, 4, 1, 1024);
  ASSERT_EQ(a.size(), 4u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].input_len, b[i].input_len);
    EXPECT_GE(a[i].input_len, 1);
    EXPECT_GE(a[i].output_len, 1);
    EXPECT_LE(a[i].input_len + a[i].output_len, 1024);
  }
  EXPECT_EQ(sample_trace(trace, 2, 1, 1024).size(), 2u);
}

TEST(trace, malformed_rows_name_their_line) {
  const auto path = std::filesystem::temp_directory_path() / "nanoflow-bad-trace.csv";
  std::ofstream(path) << "TIMESTAMP,ContextTokens,GeneratedTokens\nXXX,10,5\nXXX,ten,5\n";
  try {
    read_trace(path);
    FAIL() << "no error";
  } catch (const nf::error& e) {
    EXPECT_NE(std::string(e.what()).find(":3: 'ten'"), std::string::npos) << e.what();
  }
  std::ofstream(path) << "a,b,c\n";
  EXPECT_THROW(read_trace(path), nf::error);
  std::filesystem::remove(path);
}

TEST(workload, random_prompts_have_the_asked_lengths_and_vocabulary) {
  const auto prompts = random_prompts(fixed_lengths(3, 17, 4), 50, 9);
  ASSERT_EQ(prompts.size(), 3u);
  for (const auto& prompt : prompts) {
    EXPECT_EQ(prompt.size(), 17u);
    for (int32_t id : prompt) EXPECT_TRUE(id >= 0 && id < 50);
  }
  EXPECT_NE(prompts[0], prompts[1]);
  EXPECT_EQ(random_prompts(fixed_lengths(3, 17, 4), 50, 9), prompts);
}

}  // namespace
}  // namespace nf
