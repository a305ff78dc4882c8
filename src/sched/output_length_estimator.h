// Running estimate of how many tokens a request will generate, for admission by predicted KV use.
#pragma once

#include <cstdint>

namespace nf {

class output_length_estimator {
 public:
  // The estimate starts at `prior` and moves toward observed lengths as if `prior_weight` requests of
  // length `prior` had already finished.
  output_length_estimator(int prior, int prior_weight) : prior_(prior), prior_weight_(prior_weight) {}

  void record(int num_output_tokens) {
    ++num_finished_;
    sum_output_tokens_ += num_output_tokens;
  }

  double mean() const {
    double weight = static_cast<double>(prior_weight_) + static_cast<double>(num_finished_);
    if (weight <= 0.0) return static_cast<double>(prior_);
    return (static_cast<double>(prior_) * prior_weight_ + static_cast<double>(sum_output_tokens_)) / weight;
  }

  // Expected tokens still to come for a request that may generate up to `max_tokens` and has
  // generated `num_generated`: min(max_tokens - generated, mean).
  int expected_remaining(int max_tokens, int num_generated) const {
    double left = static_cast<double>(max_tokens - num_generated);
    double m = mean();
    double expected = left < m ? left : m;
    return expected <= 0.0 ? 0 : static_cast<int>(expected + 0.5);
  }

  int64_t num_finished() const { return num_finished_; }

 private:
  int prior_;
  int prior_weight_;
  int64_t num_finished_ = 0;
  int64_t sum_output_tokens_ = 0;
};

}  // namespace nf
