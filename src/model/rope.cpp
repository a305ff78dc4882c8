// RoPE frequencies: default, linear and llama3 scaling (Llama 3.1: low frequencies divided by `factor`,
// high frequencies kept, a smooth blend between the two wavelength bounds).
#include "model/rope.h"

#include <cmath>
#include <numbers>

namespace nf {

std::vector<float> rope_inverse_frequencies(const rope_config& rope, int head_dim) {
  const int half = head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i) {
    double frequency = 1.0 / std::pow(rope.theta, (2.0 * i) / head_dim);
    switch (rope.type) {
      case rope_config::scaling::none:
        break;
      case rope_config::scaling::linear:
        frequency /= rope.factor;
        break;
      case rope_config::scaling::llama3: {
        const double original = rope.original_max_position_embeddings;
        const double low_freq_wavelength = original / rope.low_freq_factor;
        const double high_freq_wavelength = original / rope.high_freq_factor;
        const double wavelength = 2.0 * std::numbers::pi / frequency;
        if (wavelength > low_freq_wavelength) {
          frequency /= rope.factor;
        } else if (wavelength >= high_freq_wavelength) {
          const double smooth = (original / wavelength - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
          frequency = (1.0 - smooth) * frequency / rope.factor + smooth * frequency;
        }
        break;
      }
    }
    inv_freq[i] = static_cast<float>(frequency);
  }
  return inv_freq;
}

}  // namespace nf
