// lamina/quant/legacy.hpp — scalar reference for GGML's first block types: Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0 and Q8_1 (32 values per block, one F16 scale each).
//
//   quant::dequantize_block(const BlockQ4_0& block, float* values);  // writes 32 values
//   quant::quantize_block(const float* values, BlockQ4_0& block);    // reads 32 values
//
// Dequantization is bit-exact with GGML's dequantize_row_*; quantization follows GGML's
// quantize_row_*_ref, which is what llama-quantize runs for these types without an
// importance matrix, so the bytes are the same. (With an imatrix, llama-quantize uses a
// weighted search instead; lamina does not implement that.)
//
// Non-finite input never crashes and never disturbs other blocks. Within its own block a NaN
// gets code 0 (what GGML's x86 build stores; for Q4_0 that decodes to -8 * scale), and it may
// or may not poison the scale depending on where it sits (GGML's comparisons, unchanged); an
// infinity makes the block's scale infinite, so the block decodes to NaN/inf.
#pragma once

#include "../config.hpp"
#include "../core/half.hpp"
#include "blocks.hpp"
#include "rounding.hpp"

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "exact_float_begin.inl"

LAMINA_NAMESPACE_BEGIN
namespace quant {
namespace detail {

// Packs 32 four-bit codes the legacy way: code j in the low nibble of byte j, code j+16 in
// the high nibble.
inline void pack_nibbles_32(const std::uint8_t* codes, std::uint8_t* nibbles) {
  for (int j = 0; j < 16; ++j) nibbles[j] = static_cast<std::uint8_t>(codes[j] | (codes[j + 16] << 4));
}

// The value of largest magnitude, with its sign; the first one wins a tie. NaN is never
// larger. GGML: the `amax < fabsf(v)` loops.
LAMINA_DETAIL_NO_FP_CONTRACT inline float value_of_largest_magnitude(const float* values, int count) {
  float largest_magnitude = 0.0f;
  float value = 0.0f;
  for (int i = 0; i < count; ++i) {
    if (largest_magnitude < std::fabs(values[i])) {
      largest_magnitude = std::fabs(values[i]);
      value = values[i];
    }
  }
  return value;
}

// Bits 4 of 32 five-bit codes, as the 32-bit little-endian mask Q5_0/Q5_1 store.
inline void pack_fifth_bits_32(const std::uint8_t* codes, std::uint8_t* high_bits) {
  for (int byte = 0; byte < 4; ++byte) high_bits[byte] = 0;
  for (int j = 0; j < 32; ++j) high_bits[j / 8] = static_cast<std::uint8_t>(high_bits[j / 8] | (((codes[j] >> 4) & 1) << (j % 8)));
}

// The 32 fifth bits as one little-endian mask: bit i belongs to value i.
inline std::uint32_t load_fifth_bits(const std::uint8_t* high_bits) {
  return static_cast<std::uint32_t>(high_bits[0]) | (static_cast<std::uint32_t>(high_bits[1]) << 8) |
         (static_cast<std::uint32_t>(high_bits[2]) << 16) | (static_cast<std::uint32_t>(high_bits[3]) << 24);
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Q4_0: value = scale * (q - 8). The value of largest magnitude maps to q = 0 exactly
// (scale = that value / -8), so the grid reaches -8 on its side and +7 on the other.

inline void dequantize_block(const BlockQ4_0& block, float* values) {
  const float scale = f16_to_f32(block.scale);
  for (int j = 0; j < 16; ++j) {
    values[j] = static_cast<float>((block.nibbles[j] & 0x0f) - 8) * scale;
    values[j + 16] = static_cast<float>((block.nibbles[j] >> 4) - 8) * scale;
  }
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ4_0& block) {
  const float extreme = detail::value_of_largest_magnitude(values, 32);
  const float scale = extreme / -8;
  const float inverse_scale = scale != 0.0f ? 1.0f / scale : 0.0f;
  block.scale = f32_to_f16(scale);
  std::uint8_t codes[32];
  for (int j = 0; j < 32; ++j) {
    // GGML: MIN(15, (int8_t)(x * id + 8.5f)); + 8.5 then truncation rounds half up.
    const float shifted = values[j] * inverse_scale + 8.5f;
    codes[j] = static_cast<std::uint8_t>(detail::clamp_int(detail::truncate_to_int(shifted), 0, 15));
  }
  detail::pack_nibbles_32(codes, block.nibbles);
}

// ---------------------------------------------------------------------------------------------
// Q4_1: value = scale * q + minimum; the block's minimum maps to q = 0, its maximum to q = 15.

inline void dequantize_block(const BlockQ4_1& block, float* values) {
  const float scale = f16_to_f32(block.scale);
  const float minimum = f16_to_f32(block.minimum);
  for (int j = 0; j < 16; ++j) {
    values[j] = static_cast<float>(block.nibbles[j] & 0x0f) * scale + minimum;
    values[j + 16] = static_cast<float>(block.nibbles[j] >> 4) * scale + minimum;
  }
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ4_1& block) {
  float minimum = FLT_MAX;
  float maximum = -FLT_MAX;
  for (int j = 0; j < 32; ++j) {
    if (values[j] < minimum) minimum = values[j];
    if (values[j] > maximum) maximum = values[j];
  }
  const float scale = (maximum - minimum) / 15;
  const float inverse_scale = scale != 0.0f ? 1.0f / scale : 0.0f;
  block.scale = f32_to_f16(scale);
  block.minimum = f32_to_f16(minimum);
  std::uint8_t codes[32];
  for (int j = 0; j < 32; ++j) {
    const float shifted = (values[j] - minimum) * inverse_scale + 0.5f;
    codes[j] = static_cast<std::uint8_t>(detail::clamp_int(detail::truncate_to_int(shifted), 0, 15));
  }
  detail::pack_nibbles_32(codes, block.nibbles);
}

// ---------------------------------------------------------------------------------------------
// Q5_0: value = scale * (q - 16), q in [0, 31]; Q4_0's rule with one more bit.

inline void dequantize_block(const BlockQ5_0& block, float* values) {
  const float scale = f16_to_f32(block.scale);
  const std::uint32_t fifth_bits = detail::load_fifth_bits(block.high_bits);
  for (int j = 0; j < 16; ++j) {
    const int low = (block.nibbles[j] & 0x0f) | static_cast<int>(((fifth_bits >> j) & 1u) << 4);
    const int high = (block.nibbles[j] >> 4) | static_cast<int>(((fifth_bits >> (j + 16)) & 1u) << 4);
    values[j] = static_cast<float>(low - 16) * scale;
    values[j + 16] = static_cast<float>(high - 16) * scale;
  }
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ5_0& block) {
  const float extreme = detail::value_of_largest_magnitude(values, 32);
  const float scale = extreme / -16;
  const float inverse_scale = scale != 0.0f ? 1.0f / scale : 0.0f;
  block.scale = f32_to_f16(scale);
  std::uint8_t codes[32];
  for (int j = 0; j < 32; ++j) {
    const float shifted = values[j] * inverse_scale + 16.5f;
    codes[j] = static_cast<std::uint8_t>(detail::clamp_int(detail::truncate_to_int(shifted), 0, 31));
  }
  for (int j = 0; j < 16; ++j) {
    block.nibbles[j] = static_cast<std::uint8_t>((codes[j] & 0x0f) | ((codes[j + 16] & 0x0f) << 4));
  }
  detail::pack_fifth_bits_32(codes, block.high_bits);
}

// ---------------------------------------------------------------------------------------------
// Q5_1: value = scale * q + minimum, q in [0, 31].

inline void dequantize_block(const BlockQ5_1& block, float* values) {
  const float scale = f16_to_f32(block.scale);
  const float minimum = f16_to_f32(block.minimum);
  const std::uint32_t fifth_bits = detail::load_fifth_bits(block.high_bits);
  for (int j = 0; j < 16; ++j) {
    const int low = (block.nibbles[j] & 0x0f) | static_cast<int>(((fifth_bits >> j) & 1u) << 4);
    const int high = (block.nibbles[j] >> 4) | static_cast<int>(((fifth_bits >> (j + 16)) & 1u) << 4);
    values[j] = static_cast<float>(low) * scale + minimum;
    values[j + 16] = static_cast<float>(high) * scale + minimum;
  }
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ5_1& block) {
  float minimum = FLT_MAX;
  float maximum = -FLT_MAX;
  for (int j = 0; j < 32; ++j) {
    if (values[j] < minimum) minimum = values[j];
    if (values[j] > maximum) maximum = values[j];
  }
  const float scale = (maximum - minimum) / 31;
  const float inverse_scale = scale != 0.0f ? 1.0f / scale : 0.0f;
  block.scale = f32_to_f16(scale);
  block.minimum = f32_to_f16(minimum);
  std::uint8_t codes[32];
  for (int j = 0; j < 32; ++j) {
    // GGML: (uint8_t)(x + 0.5f) without a clamp; for finite input the result is <= 31.
    const float shifted = (values[j] - minimum) * inverse_scale + 0.5f;
    codes[j] = static_cast<std::uint8_t>(detail::clamp_int(detail::truncate_to_int(shifted), 0, 31));
  }
  for (int j = 0; j < 16; ++j) {
    block.nibbles[j] = static_cast<std::uint8_t>((codes[j] & 0x0f) | ((codes[j + 16] & 0x0f) << 4));
  }
  detail::pack_fifth_bits_32(codes, block.high_bits);
}

// ---------------------------------------------------------------------------------------------
// Q8_0: value = scale * q, q in [-127, 127]; the largest magnitude maps to +-127.

inline void dequantize_block(const BlockQ8_0& block, float* values) {
  const float scale = f16_to_f32(block.scale);
  for (int j = 0; j < 32; ++j) values[j] = static_cast<float>(block.quants[j]) * scale;
}

namespace detail {

// Shared by Q8_0 and Q8_1: the scale (before F16 rounding) and the 32 quants.
LAMINA_DETAIL_NO_FP_CONTRACT inline float quantize_to_int8_32(const float* values, std::int8_t* quants) {
  float largest_magnitude = 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float magnitude = std::fabs(values[j]);
    largest_magnitude = largest_magnitude > magnitude ? largest_magnitude : magnitude;  // GGML's MAX, NaN included
  }
  const float scale = largest_magnitude / 127;
  const float inverse_scale = scale != 0.0f ? 1.0f / scale : 0.0f;
  for (int j = 0; j < 32; ++j) {
    quants[j] = static_cast<std::int8_t>(clamp_int(round_half_away_to_int(values[j] * inverse_scale), -128, 127));
  }
  return scale;
}

}  // namespace detail

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ8_0& block) {
  const float scale = detail::quantize_to_int8_32(values, block.quants);
  block.scale = f32_to_f16(scale);
}

// ---------------------------------------------------------------------------------------------
// Q8_1: Q8_0 plus F16(scale * sum of quants), where scale is the unrounded F32 scale.

inline void dequantize_block(const BlockQ8_1& block, float* values) {
  const float scale = f16_to_f32(block.scale);
  for (int j = 0; j < 32; ++j) values[j] = static_cast<float>(block.quants[j]) * scale;
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ8_1& block) {
  const float scale = detail::quantize_to_int8_32(values, block.quants);
  int sum = 0;
  for (int j = 0; j < 32; ++j) sum += block.quants[j];
  block.scale = f32_to_f16(scale);
  block.scaled_sum = f32_to_f16(static_cast<float>(sum) * scale);
}

}  // namespace quant
LAMINA_NAMESPACE_END

#include "exact_float_end.inl"
