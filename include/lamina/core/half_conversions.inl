// lamina/core/half_conversions.inl — the body of core/half.hpp: float <-> F16 / BF16.
//
// Kept in its own file, without includes or a namespace, so that the SIMD kernels can compile
// their own copy inside their instruction-set namespace (see kernels/cpu/kernels.hpp on the
// ODR trap). Needs <cstdint> and <cstring> included before it.

inline std::uint32_t float_bits(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

inline float float_from_bits(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// F16 -> F32, exact for every input including subnormals, infinities and NaN payloads.
inline float f16_to_f32(std::uint16_t half) {
  const std::uint32_t sign = static_cast<std::uint32_t>(half & 0x8000u) << 16;
  const std::uint32_t exponent = (half >> 10) & 0x1fu;
  std::uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0x1f) return float_from_bits(sign | 0x7f800000u | (mantissa << 13));  // inf / NaN
  if (exponent == 0) {
    if (mantissa == 0) return float_from_bits(sign);  // +-0
    // Subnormal half: normalise. The value is mantissa * 2^-24.
    int shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    mantissa &= 0x3ffu;
    const std::uint32_t float_exponent = static_cast<std::uint32_t>(127 - 15 + 1 - shift);
    return float_from_bits(sign | (float_exponent << 23) | (mantissa << 13));
  }
  return float_from_bits(sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13));
}

// F32 -> F16, round to nearest even; overflow gives infinity, NaN stays NaN (quiet).
inline std::uint16_t f32_to_f16(float value) {
  const std::uint32_t bits = float_bits(value);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t exponent = (bits >> 23) & 0xffu;
  const std::uint32_t mantissa = bits & 0x7fffffu;
  if (exponent == 0xff) {  // inf or NaN
    return static_cast<std::uint16_t>(sign | 0x7c00u | (mantissa ? (0x200u | (mantissa >> 13)) : 0u));
  }
  const int half_exponent = static_cast<int>(exponent) - 127 + 15;
  if (half_exponent >= 0x1f) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (half_exponent <= 0) {
    // Result is subnormal (or zero): shift the full 24-bit significand into place, rounding.
    if (half_exponent < -10) return sign;  // below half the smallest subnormal: +-0
    const std::uint32_t significand = mantissa | 0x800000u;
    const int shift = 14 - half_exponent;  // 14..24
    std::uint32_t half_mantissa = significand >> shift;
    const std::uint32_t remainder = significand & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (remainder > halfway || (remainder == halfway && (half_mantissa & 1u))) ++half_mantissa;
    return static_cast<std::uint16_t>(sign | half_mantissa);  // a carry into bit 10 gives the smallest normal, correctly
  }
  std::uint32_t result = (static_cast<std::uint32_t>(half_exponent) << 10) | (mantissa >> 13);
  const std::uint32_t remainder = mantissa & 0x1fffu;
  if (remainder > 0x1000u || (remainder == 0x1000u && (result & 1u))) ++result;  // may carry into exponent: correct, up to inf
  return static_cast<std::uint16_t>(sign | result);
}

// BF16 -> F32: exact (bf16 is a truncated float).
inline float bf16_to_f32(std::uint16_t bf16) { return float_from_bits(static_cast<std::uint32_t>(bf16) << 16); }

// F32 -> BF16, round to nearest even; NaN stays a quiet NaN.
inline std::uint16_t f32_to_bf16(float value) {
  const std::uint32_t bits = float_bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

