// lamina/quant/rounding.hpp — the float-to-integer roundings GGML's quantizers use, made total.
//
// GGML's reference quantizers turn floats into integers three ways: a C cast (truncation),
// roundf (half away from zero) and nearest_int (half to even, through a magic-number add).
// To give the same bytes as llama-quantize, lamina uses the same three. A plain C++ cast of
// NaN or of an out-of-range float is undefined behaviour, so the helpers here are defined for
// every input while returning exactly what the cast would wherever the cast is defined.
//
// Exactness needs every float expression evaluated as written, one rounding per operation.
// The threat is FMA contraction (a * b + c computed with one rounding), which compilers do
// on targets with FMA (-march=native, -mfma, AArch64):
//   - GCC contracts across statements in C++ whatever -std says (its "off in ISO mode" is for
//     C only), so every quantizer is marked LAMINA_DETAIL_NO_FP_CONTRACT, GCC's per-function
//     -ffp-contract=off. Such a function is not inlined into callers built without it: one
//     call per block, nothing next to the work of a scale search.
//   - Clang contracts within one expression; each quant header switches that off for its own
//     code (`#pragma clang fp contract(off)` between float_control push and pop).
//   quant/exact_float_begin.inl and exact_float_end.inl do both for the code between them.
//   - Dequantization needs neither: every product there (F16 scale times small integers) is
//     exact in float, so a fused multiply-add rounds the same way.
//   - 32-bit x86 without SSE (x87 arithmetic) is not exact: build with -msse2 -mfpmath=sse.
// GGML's own code has the same sensitivity: a llama-quantize built for an FMA target with
// contraction on may write other bytes in a few blocks than the reference definitions.
#pragma once

#include "../config.hpp"

#include <cstdint>
#include <cstring>

#include "exact_float_begin.inl"  // LAMINA_DETAIL_NO_FP_CONTRACT, until exact_float_end.inl

LAMINA_NAMESPACE_BEGIN
namespace quant {
namespace detail {

// Round to nearest, ties to even, by adding 1.5 * 2^23 so the FPU's own rounding does the
// work (GGML: nearest_int). Exact for |value| < 2^22; larger values and NaN give the same
// meaningless-but-defined integer GGML's bit trick gives (NaN -> 0, +-inf -> -2^22).
LAMINA_DETAIL_NO_FP_CONTRACT inline int nearest_int(float value) {
  const float shifted = value + 12582912.0f;
  std::uint32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  return static_cast<int>(bits & 0x007fffffu) - 0x00400000;
}

// C's float -> int conversion (truncation toward zero) where it is defined; NaN gives 0 and
// values beyond +-2^30 are clamped there instead of being undefined behaviour.
LAMINA_DETAIL_NO_FP_CONTRACT inline int truncate_to_int(float value) {
  constexpr float limit = 1073741824.0f;  // 2^30
  if (value != value) return 0;
  if (value >= limit) return 1073741824;
  if (value <= -limit) return -1073741824;
  return static_cast<int>(value);
}

// roundf (ties away from zero) to an int, total like truncate_to_int.
LAMINA_DETAIL_NO_FP_CONTRACT inline int round_half_away_to_int(float value) {
  // For |value| < 2^23 adding +-0.5 and truncating is exactly roundf, except that value + 0.5
  // may itself round up (0.49999997f + 0.5f == 1.0f), so compare against the truncation.
  const int truncated = truncate_to_int(value);
  const float fraction = value - static_cast<float>(truncated);  // exact for |value| < 2^30
  if (fraction >= 0.5f) return truncated + 1;
  if (fraction <= -0.5f) return truncated - 1;
  return truncated;
}

inline int clamp_int(int value, int lowest, int highest) {
  return value < lowest ? lowest : (value > highest ? highest : value);
}

}  // namespace detail
}  // namespace quant
LAMINA_NAMESPACE_END

#include "exact_float_end.inl"
