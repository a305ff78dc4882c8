// Element type sizes, names and conversions.
#include "core/dtype.h"

#include <cmath>

#include "core/error.h"

namespace nf {

size_t dtype_size(dtype type) {
  switch (type) {
    case dtype::f32: return 4;
    case dtype::f16: return 2;
    case dtype::bf16: return 2;
    case dtype::i32: return 4;
    case dtype::i64: return 8;
  }
  return 0;
}

std::string_view dtype_name(dtype type) {
  switch (type) {
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::i32: return "I32";
    case dtype::i64: return "I64";
  }
  return "?";
}

float f16_to_float(uint16_t bits) {
  const uint32_t sign = (bits >> 15) & 1u;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    magnitude = mantissa ? NAN : INFINITY;
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

uint16_t float_to_f16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const float magnitude = std::fabs(value);
  if (std::isnan(value)) return static_cast<uint16_t>(sign | 0x7e00u);
  if (magnitude >= 65520.0f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (magnitude < 6.103515625e-05f) {  // subnormal: multiples of 2^-24
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(magnitude * 16777216.0f)));
  }
  int exponent;
  const float fraction = std::frexp(magnitude, &exponent);  // magnitude = fraction * 2^exponent, fraction in [0.5,1)
  uint32_t mantissa = static_cast<uint32_t>(std::nearbyint((fraction * 2.0f - 1.0f) * 1024.0f));
  uint32_t biased = static_cast<uint32_t>(exponent - 1 + 15);
  if (mantissa == 1024) {
    mantissa = 0;
    ++biased;
  }
  return static_cast<uint16_t>(sign | (biased << 10) | mantissa);
}

void convert_to_f32(dtype type, const void* source, size_t count, float* destination) {
  switch (type) {
    case dtype::f32:
      std::memcpy(destination, source, count * sizeof(float));
      return;
    case dtype::bf16: {
      const auto* values = static_cast<const uint16_t*>(source);
      for (size_t i = 0; i < count; ++i) destination[i] = bf16_to_float(values[i]);
      return;
    }
    case dtype::f16: {
      const auto* values = static_cast<const uint16_t*>(source);
      for (size_t i = 0; i < count; ++i) destination[i] = f16_to_float(values[i]);
      return;
    }
    default:
      fail("cannot convert {} tensors to float32", dtype_name(type));
  }
}

}  // namespace nf
