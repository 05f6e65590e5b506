// lamina/quant/k_quants.hpp — scalar reference for GGML's K-quants: Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K (weights) and Q8_K (activations). 256 values per super-block.
//
//   quant::dequantize_block(const BlockQ4_K& block, float* values);  // writes 256 values
//   quant::quantize_block(const float* values, BlockQ4_K& block);    // reads 256 values
//
// A K-quant block is quantized in two levels: each sub-block (16 or 32 values) gets its own
// best scale (and minimum) by a small search, then those per-sub-block scales are themselves
// quantized to 4/6/8-bit integers against one F16 super-block scale, and finally the values
// are re-quantized against the scales as they will be decoded.
//
// Dequantization is bit-exact with GGML's dequantize_row_q*_K; quantization follows GGML's
// quantize_row_q*_K_ref, which is what llama-quantize runs without an importance matrix,
// including its scale searches (GGML: make_qx_quants, make_q3_quants, make_qkx2_quants).
// (Q4_K_M and friends only choose which type each tensor gets; each tensor is then quantized
// by these functions.)
//
// Non-finite input never crashes and never disturbs other blocks; a block that holds NaN or
// inf decodes to unspecified values (often NaN), exactly as GGML's arithmetic makes them.
#pragma once

#include "../config.hpp"
#include "../core/half.hpp"
#include "blocks.hpp"
#include "rounding.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "exact_float_begin.inl"

LAMINA_NAMESPACE_BEGIN
namespace quant {
namespace detail {

// Below this a group counts as all zeros (GGML: GROUP_MAX_EPS).
inline constexpr float group_max_epsilon = 1e-15f;

// ---------------------------------------------------------------------------------------------
// Sub-block scale searches.

// Symmetric quants q in [-levels, levels - 1] for `count` values with one scale, chosen to
// minimize sum(x^2 * (x - scale*q)^2): starting from "largest magnitude maps to -levels",
// 18 nearby grids are tried and each keeps the least-squares scale for its quants.
// Writes q + levels (so 0 .. 2*levels - 1) to `codes`, returns the scale.
// GGML: make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL).
LAMINA_DETAIL_NO_FP_CONTRACT inline float symmetric_quants_least_squares(int count, int levels, const float* x,
                                                                         std::int8_t* codes) {
  float largest_magnitude = 0.0f;
  float extreme = 0.0f;
  for (int i = 0; i < count; ++i) {
    const float magnitude = std::fabs(x[i]);
    if (magnitude > largest_magnitude) {
      largest_magnitude = magnitude;
      extreme = x[i];
    }
  }
  if (largest_magnitude < group_max_epsilon) {
    for (int i = 0; i < count; ++i) codes[i] = 0;
    return 0.0f;
  }
  const float levels_float = static_cast<float>(levels);
  float inverse_scale = -levels_float / extreme;
  float sum_weighted_xq = 0.0f;  // sum w * x * q, w = x^2
  float sum_weighted_qq = 0.0f;  // sum w * q * q
  for (int i = 0; i < count; ++i) {
    const int q = clamp_int(nearest_int(inverse_scale * x[i]), -levels, levels - 1);
    codes[i] = static_cast<std::int8_t>(q + levels);
    const float weight = x[i] * x[i];
    sum_weighted_xq += weight * x[i] * static_cast<float>(q);
    sum_weighted_qq += weight * static_cast<float>(q) * static_cast<float>(q);
  }
  float scale = sum_weighted_qq != 0.0f ? sum_weighted_xq / sum_weighted_qq : 0.0f;
  // For the least-squares scale, the weighted error is sum(w x^2) - scale * sum(w x q): the
  // larger scale * sum(w x q), the better.
  float best = scale * sum_weighted_xq;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    inverse_scale = -(levels_float + 0.1f * static_cast<float>(step)) / extreme;
    float trial_xq = 0.0f;
    float trial_qq = 0.0f;
    for (int i = 0; i < count; ++i) {
      const int q = clamp_int(nearest_int(inverse_scale * x[i]), -levels, levels - 1);
      const float weight = x[i] * x[i];
      trial_xq += weight * x[i] * static_cast<float>(q);
      trial_qq += weight * static_cast<float>(q) * static_cast<float>(q);
    }
    if (trial_qq > 0.0f && trial_xq * trial_xq > best * trial_qq) {
      for (int i = 0; i < count; ++i) {
        codes[i] = static_cast<std::int8_t>(levels + clamp_int(nearest_int(inverse_scale * x[i]), -levels, levels - 1));
      }
      scale = trial_xq / trial_qq;
      best = scale * trial_xq;
    }
  }
  return scale;
}

// Symmetric quants q in [-levels, levels - 1] (Q3_K's sub-blocks): start from "largest
// magnitude maps to -levels", then up to 5 rounds of moving single quants to the value that
// is best for the current least-squares scale (weights x^2), keeping each move that lowers
// the error. Writes q + levels to `codes`, returns the scale.
// GGML: make_q3_quants(n, nmax, x, L, do_rmse = true).
LAMINA_DETAIL_NO_FP_CONTRACT inline float symmetric_quants_refined(int count, int levels, const float* x,
                                                                   std::int8_t* codes) {
  float largest_magnitude = 0.0f;
  float extreme = 0.0f;
  for (int i = 0; i < count; ++i) {
    const float magnitude = std::fabs(x[i]);
    if (magnitude > largest_magnitude) {
      largest_magnitude = magnitude;
      extreme = x[i];
    }
  }
  if (largest_magnitude < group_max_epsilon) {
    for (int i = 0; i < count; ++i) codes[i] = 0;
    return 0.0f;
  }
  const float inverse_scale = -static_cast<float>(levels) / extreme;
  float sum_weighted_xq = 0.0f;
  float sum_weighted_qq = 0.0f;
  for (int i = 0; i < count; ++i) {
    const int q = clamp_int(nearest_int(inverse_scale * x[i]), -levels, levels - 1);
    codes[i] = static_cast<std::int8_t>(q);  // signed while refining
    const float weight = x[i] * x[i];
    sum_weighted_xq += weight * x[i] * static_cast<float>(q);
    sum_weighted_qq += weight * static_cast<float>(q) * static_cast<float>(q);
  }
  for (int round = 0; round < 5; ++round) {
    int changed = 0;
    for (int i = 0; i < count; ++i) {
      const float weight = x[i] * x[i];
      const float q_old = static_cast<float>(codes[i]);
      float without_xq = sum_weighted_xq - weight * x[i] * q_old;
      if (without_xq > 0.0f) {
        float without_qq = sum_weighted_qq - weight * q_old * q_old;
        // The quant for x[i] that is best for the scale the others imply.
        const int q_new = clamp_int(nearest_int(x[i] * without_qq / without_xq), -levels, levels - 1);
        if (q_new != codes[i]) {
          const float q_new_float = static_cast<float>(q_new);
          without_xq += weight * x[i] * q_new_float;
          without_qq += weight * q_new_float * q_new_float;
          // Keep it when (xq)^2 / qq, the error reduction, grows.
          if (without_qq > 0.0f &&
              without_xq * without_xq * sum_weighted_qq > sum_weighted_xq * sum_weighted_xq * without_qq) {
            codes[i] = static_cast<std::int8_t>(q_new);
            sum_weighted_xq = without_xq;
            sum_weighted_qq = without_qq;
            ++changed;
          }
        }
      }
    }
    if (changed == 0) break;
  }
  for (int i = 0; i < count; ++i) codes[i] = static_cast<std::int8_t>(codes[i] + levels);
  return sum_weighted_qq > 0.0f ? sum_weighted_xq / sum_weighted_qq : 0.0f;
}

// Asymmetric quants q in [0, levels] with value ~ scale * q - offset (offset >= 0, i.e. the
// minimum is never above 0): starts from the min..max grid, then tries `steps + 1` grids
// spaced (levels + first_step + step_size * s) / (max - min) and, for each, the weighted
// least-squares scale and minimum; keeps the one with the smallest weighted error, where the
// error is |diff| (use_absolute_error) or diff^2. Writes q to `codes`, the offset
// (= -minimum) to `offset`, returns the scale. `scratch` holds `count` codes.
// GGML: make_qkx2_quants(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad).
LAMINA_DETAIL_NO_FP_CONTRACT inline float asymmetric_quants_least_squares(int count, int levels, const float* x,
                                                                          const float* weights, std::uint8_t* codes,
                                                                          float* offset, std::uint8_t* scratch,
                                                                          float first_step, float step_size, int steps,
                                                                          bool use_absolute_error) {
  float minimum = x[0];
  float maximum = x[0];
  float sum_w = weights[0];
  float sum_wx = sum_w * x[0];
  for (int i = 1; i < count; ++i) {
    if (x[i] < minimum) minimum = x[i];
    if (x[i] > maximum) maximum = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_wx += w * x[i];
  }
  if (minimum > 0.0f) minimum = 0.0f;
  if (maximum == minimum) {
    for (int i = 0; i < count; ++i) codes[i] = 0;
    *offset = -minimum;
    return 0.0f;
  }
  const float levels_float = static_cast<float>(levels);
  float inverse_scale = levels_float / (maximum - minimum);
  float scale = 1.0f / inverse_scale;
  float best_error = 0.0f;
  for (int i = 0; i < count; ++i) {
    const int q = nearest_int(inverse_scale * (x[i] - minimum));
    codes[i] = static_cast<std::uint8_t>(clamp_int(q, 0, levels));
    float difference = scale * static_cast<float>(codes[i]) + minimum - x[i];
    difference = use_absolute_error ? std::fabs(difference) : difference * difference;
    best_error += weights[i] * difference;
  }
  if (steps < 1) {
    *offset = -minimum;
    return scale;
  }
  for (int step = 0; step <= steps; ++step) {
    inverse_scale = (first_step + step_size * static_cast<float>(step) + levels_float) / (maximum - minimum);
    float sum_wq = 0.0f;
    float sum_wqq = 0.0f;
    float sum_wqx = 0.0f;
    for (int i = 0; i < count; ++i) {
      const int q = clamp_int(nearest_int(inverse_scale * (x[i] - minimum)), 0, levels);
      scratch[i] = static_cast<std::uint8_t>(q);
      const float w = weights[i];
      const float q_float = static_cast<float>(q);
      sum_wq += w * q_float;
      sum_wqq += w * q_float * q_float;
      sum_wqx += w * q_float * x[i];
    }
    // Weighted least squares for x ~ scale * q + minimum (2x2 normal equations).
    const float determinant = sum_w * sum_wqq - sum_wq * sum_wq;
    if (determinant > 0.0f) {
      float trial_scale = (sum_w * sum_wqx - sum_wx * sum_wq) / determinant;
      float trial_minimum = (sum_wqq * sum_wx - sum_wq * sum_wqx) / determinant;
      if (trial_minimum > 0.0f) {
        trial_minimum = 0.0f;
        trial_scale = sum_wqx / sum_wqq;
      }
      float error = 0.0f;
      for (int i = 0; i < count; ++i) {
        float difference = trial_scale * static_cast<float>(scratch[i]) + trial_minimum - x[i];
        difference = use_absolute_error ? std::fabs(difference) : difference * difference;
        error += weights[i] * difference;
      }
      if (error < best_error) {
        for (int i = 0; i < count; ++i) codes[i] = scratch[i];
        best_error = error;
        scale = trial_scale;
        minimum = trial_minimum;
      }
    }
  }
  *offset = -minimum;
  return scale;
}

// ---------------------------------------------------------------------------------------------
// Packing of the sub-block scales.

// Q4_K/Q5_K: 8 six-bit scales and 8 six-bit minimums in 12 bytes. Sub-blocks 0..3 keep theirs
// in the low 6 bits of bytes 0..3 (scale) and 4..7 (minimum); sub-blocks 4..7 keep their low
// nibbles in bytes 8..11 (scale low, minimum high) and their top 2 bits in the top 2 bits of
// bytes 0..3 (scale) and 4..7 (minimum). GGML: get_scale_min_k4.
inline void unpack_scale_min_k4(int sub_block, const std::uint8_t* packed, int& scale, int& minimum) {
  if (sub_block < 4) {
    scale = packed[sub_block] & 63;
    minimum = packed[sub_block + 4] & 63;
  } else {
    scale = (packed[sub_block + 4] & 0x0f) | ((packed[sub_block - 4] >> 6) << 4);
    minimum = (packed[sub_block + 4] >> 4) | ((packed[sub_block] >> 6) << 4);
  }
}

inline void pack_scales_mins_k4(const std::uint8_t* scales, const std::uint8_t* minimums, std::uint8_t* packed) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      packed[j] = scales[j];
      packed[j + 4] = minimums[j];
    } else {
      packed[j + 4] = static_cast<std::uint8_t>((scales[j] & 0x0f) | ((minimums[j] & 0x0f) << 4));
      packed[j - 4] = static_cast<std::uint8_t>(packed[j - 4] | ((scales[j] >> 4) << 6));
      packed[j] = static_cast<std::uint8_t>(packed[j] | ((minimums[j] >> 4) << 6));
    }
  }
}

// Q3_K: sixteen 6-bit scales (stored + 32) in 12 bytes, see BlockQ3_K. Returns s - 32.
inline int q3_k_sub_scale(const std::uint8_t* packed, int sub_block) {
  const int low = sub_block < 8 ? (packed[sub_block] & 0x0f) : (packed[sub_block - 8] >> 4);
  const int high = (packed[8 + sub_block % 4] >> (2 * (sub_block / 4))) & 3;
  return (low | (high << 4)) - 32;
}

inline void pack_q3_k_sub_scale(std::uint8_t* packed, int sub_block, int stored) {  // stored in [0, 63]
  if (sub_block < 8) {
    packed[sub_block] = static_cast<std::uint8_t>(stored & 0x0f);
  } else {
    packed[sub_block - 8] = static_cast<std::uint8_t>(packed[sub_block - 8] | ((stored & 0x0f) << 4));
  }
  packed[8 + sub_block % 4] = static_cast<std::uint8_t>(packed[8 + sub_block % 4] | ((stored >> 4) << (2 * (sub_block / 4))));
}

// Q2_K/Q3_K: 256 two-bit codes in 64 bytes. In half h, value h*128 + 32*p + l is at bits
// 2p..2p+1 of byte h*32 + l.
inline void pack_two_bit_codes_256(const std::uint8_t* codes, std::uint8_t* packed) {
  for (int half = 0; half < 256; half += 128) {
    for (int l = 0; l < 32; ++l) {
      packed[half / 4 + l] = static_cast<std::uint8_t>(codes[half + l] | (codes[half + l + 32] << 2) |
                                                       (codes[half + l + 64] << 4) | (codes[half + l + 96] << 6));
    }
  }
}

// Q4_K/Q5_K: the low 4 bits of 256 codes in 128 bytes; in chunk c of 64 values, value
// 64c + l (l < 32) is the low nibble of byte 32c + l and value 64c + 32 + l the high nibble.
inline void pack_nibbles_256(const std::uint8_t* codes, std::uint8_t* packed) {
  for (int chunk = 0; chunk < 4; ++chunk) {
    for (int l = 0; l < 32; ++l) {
      packed[32 * chunk + l] =
          static_cast<std::uint8_t>((codes[64 * chunk + l] & 0x0f) | ((codes[64 * chunk + 32 + l] & 0x0f) << 4));
    }
  }
}

// Q4_K/Q5_K share everything but the width of the quants (levels = 15 or 31) and the search
// grid. Per 32-value sub-block: weights sqrt(mean x^2) + |x| and the asymmetric search; then
// the scales and minimums become 6-bit integers against super_scale = max scale / 63 and
// super_min = max minimum / 63; finally every value is re-quantized with the F16-rounded
// scales the decoder will use. Writes codes in [0, levels].
LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_k4_style(const float* values, int levels, float first_step, int steps,
                                                            std::uint16_t& super_scale, std::uint16_t& super_min,
                                                            std::uint8_t* packed_scales, std::uint8_t* codes) {
  float scales[8];
  float offsets[8];  // -minimum of each sub-block, >= 0
  float weights[32];
  std::uint8_t scratch[32];
  float max_scale = 0.0f;  // as the minimum is subtracted, scales are positive
  float max_offset = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float* x = values + 32 * j;
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 += x[l] * x[l];
    const float average_magnitude = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = average_magnitude + std::fabs(x[l]);
    scales[j] = asymmetric_quants_least_squares(32, levels, x, weights, codes + 32 * j, &offsets[j], scratch,
                                                first_step, 0.1f, steps, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (offsets[j] > max_offset) max_offset = offsets[j];
  }

  const float inverse_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inverse_offset = max_offset > 0.0f ? 63.0f / max_offset : 0.0f;
  std::uint8_t scale_codes[8];
  std::uint8_t offset_codes[8];
  for (int j = 0; j < 8; ++j) {
    // GGML stores nearest_int into a uint8_t first (modulo 256), then caps at 63.
    const std::uint8_t scale_code = static_cast<std::uint8_t>(nearest_int(inverse_scale * scales[j]));
    const std::uint8_t offset_code = static_cast<std::uint8_t>(nearest_int(inverse_offset * offsets[j]));
    scale_codes[j] = scale_code < 63 ? scale_code : 63;
    offset_codes[j] = offset_code < 63 ? offset_code : 63;
  }
  pack_scales_mins_k4(scale_codes, offset_codes, packed_scales);
  super_scale = f32_to_f16(max_scale / 63.0f);
  super_min = f32_to_f16(max_offset / 63.0f);

  const float decoded_super_scale = f16_to_f32(super_scale);
  const float decoded_super_min = f16_to_f32(super_min);
  for (int j = 0; j < 8; ++j) {
    int scale_code = 0;
    int offset_code = 0;
    unpack_scale_min_k4(j, packed_scales, scale_code, offset_code);
    const float scale = decoded_super_scale * static_cast<float>(scale_code);
    if (scale == 0.0f) continue;  // keeps the search's codes
    const float offset = decoded_super_min * static_cast<float>(offset_code);
    for (int l = 0; l < 32; ++l) {
      const int q = nearest_int((values[32 * j + l] + offset) / scale);
      codes[32 * j + l] = static_cast<std::uint8_t>(clamp_int(q, 0, levels));
    }
  }
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Q2_K: 16 sub-blocks of 16; value = super_scale * s * q - super_min * m, q in [0, 3].

inline void dequantize_block(const BlockQ2_K& block, float* values) {
  const float super_scale = f16_to_f32(block.super_scale);
  const float super_min = f16_to_f32(block.super_min);
  // Sub-block k = 8 * half + 2 * part + (l >= 16): 16 values of one 2-bit field.
  for (int k = 0; k < 16; ++k) {
    const float scale = super_scale * static_cast<float>(block.sub_scales[k] & 0x0f);
    const float offset = super_min * static_cast<float>(block.sub_scales[k] >> 4);
    const std::uint8_t* bytes = block.quants + 32 * (k / 8) + 16 * (k % 2);
    const int shift = 2 * ((k % 8) / 2);
    float* out = values + 16 * k;
    for (int l = 0; l < 16; ++l) out[l] = scale * static_cast<float>((bytes[l] >> shift) & 3) - offset;
  }
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ2_K& block) {
  std::uint8_t codes[256];
  std::uint8_t scratch[16];
  float weights[16];
  float scales[16];
  float offsets[16];
  float max_scale = 0.0f;
  float max_offset = 0.0f;
  for (int k = 0; k < 16; ++k) {
    const float* x = values + 16 * k;
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[l]);
    scales[k] = detail::asymmetric_quants_least_squares(16, 3, x, weights, codes + 16 * k, &offsets[k], scratch,
                                                        -0.5f, 0.1f, 15, true);
    if (scales[k] > max_scale) max_scale = scales[k];
    if (offsets[k] > max_offset) max_offset = offsets[k];
  }

  // 4-bit sub-block scales and minimums against super_scale = max / 15.
  const float code_range = 15.0f;
  if (max_scale > 0.0f) {
    const float inverse = code_range / max_scale;
    for (int k = 0; k < 16; ++k) block.sub_scales[k] = static_cast<std::uint8_t>(detail::nearest_int(inverse * scales[k]));
    block.super_scale = f32_to_f16(max_scale / code_range);
  } else {
    for (int k = 0; k < 16; ++k) block.sub_scales[k] = 0;
    block.super_scale = f32_to_f16(0.0f);
  }
  if (max_offset > 0.0f) {
    const float inverse = code_range / max_offset;
    for (int k = 0; k < 16; ++k) {
      const int offset_code = detail::nearest_int(inverse * offsets[k]);
      block.sub_scales[k] = static_cast<std::uint8_t>(block.sub_scales[k] | (offset_code << 4));
    }
    block.super_min = f32_to_f16(max_offset / code_range);
  } else {
    block.super_min = f32_to_f16(0.0f);
  }

  const float decoded_super_scale = f16_to_f32(block.super_scale);
  const float decoded_super_min = f16_to_f32(block.super_min);
  for (int k = 0; k < 16; ++k) {
    const float scale = decoded_super_scale * static_cast<float>(block.sub_scales[k] & 0x0f);
    if (scale == 0.0f) continue;
    const float offset = decoded_super_min * static_cast<float>(block.sub_scales[k] >> 4);
    for (int l = 0; l < 16; ++l) {
      const int q = detail::nearest_int((values[16 * k + l] + offset) / scale);
      codes[16 * k + l] = static_cast<std::uint8_t>(detail::clamp_int(q, 0, 3));
    }
  }
  detail::pack_two_bit_codes_256(codes, block.quants);
}

// ---------------------------------------------------------------------------------------------
// Q3_K: 16 sub-blocks of 16; value = super_scale * s * (q - 4), s in [-32, 31], q in [0, 7].

inline void dequantize_block(const BlockQ3_K& block, float* values) {
  const float super_scale = f16_to_f32(block.super_scale);
  for (int k = 0; k < 16; ++k) {
    const float scale = super_scale * static_cast<float>(detail::q3_k_sub_scale(block.packed_scales, k));
    // Low bits as in Q2_K; bit 2 of value i = 16k + l is bit i/32 = k/2 of high_bits[i % 32].
    const std::uint8_t* low_bytes = block.low_bits + 32 * (k / 8) + 16 * (k % 2);
    const std::uint8_t* high_bytes = block.high_bits + 16 * (k % 2);
    const int shift = 2 * ((k % 8) / 2);
    const int high_bit = k / 2;
    float* out = values + 16 * k;
    for (int l = 0; l < 16; ++l) {
      const int code = ((low_bytes[l] >> shift) & 3) - (((high_bytes[l] >> high_bit) & 1) ? 0 : 4);
      out[l] = scale * static_cast<float>(code);
    }
  }
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ3_K& block) {
  std::int8_t codes[256];  // q in [0, 7]
  float scales[16];
  float max_scale = 0.0f;  // the scale of largest magnitude, with its sign
  float largest_magnitude = 0.0f;
  for (int k = 0; k < 16; ++k) {
    scales[k] = detail::symmetric_quants_refined(16, 4, values + 16 * k, codes + 16 * k);
    const float magnitude = std::fabs(scales[k]);
    if (magnitude > largest_magnitude) {
      largest_magnitude = magnitude;
      max_scale = scales[k];
    }
  }

  // 6-bit signed sub-block scales; the largest maps to -32.
  for (int b = 0; b < 12; ++b) block.packed_scales[b] = 0;
  if (max_scale != 0.0f) {
    const float inverse = -32.0f / max_scale;
    for (int k = 0; k < 16; ++k) {
      // GGML keeps nearest_int in an int8_t before clamping.
      const int scale_code = static_cast<std::int8_t>(detail::nearest_int(inverse * scales[k]));
      detail::pack_q3_k_sub_scale(block.packed_scales, k, detail::clamp_int(scale_code, -32, 31) + 32);
    }
    block.super_scale = f32_to_f16(1.0f / inverse);
  } else {
    block.super_scale = f32_to_f16(0.0f);
  }

  const float decoded_super_scale = f16_to_f32(block.super_scale);
  for (int k = 0; k < 16; ++k) {
    const float scale = decoded_super_scale * static_cast<float>(detail::q3_k_sub_scale(block.packed_scales, k));
    if (scale == 0.0f) continue;
    for (int l = 0; l < 16; ++l) {
      const int q = detail::clamp_int(detail::nearest_int(values[16 * k + l] / scale), -4, 3);
      codes[16 * k + l] = static_cast<std::int8_t>(q + 4);
    }
  }

  // Bit 2 of value i goes to bit i/32 of high_bits[i % 32]; the low 2 bits are packed like Q2_K.
  std::uint8_t low_codes[256];
  for (int b = 0; b < 32; ++b) block.high_bits[b] = 0;
  for (int i = 0; i < 256; ++i) {
    int code = codes[i];
    if (code > 3) {
      block.high_bits[i % 32] = static_cast<std::uint8_t>(block.high_bits[i % 32] | (1 << (i / 32)));
      code -= 4;
    }
    low_codes[i] = static_cast<std::uint8_t>(code);
  }
  detail::pack_two_bit_codes_256(low_codes, block.low_bits);
}

// ---------------------------------------------------------------------------------------------
// Q4_K: 8 sub-blocks of 32; value = super_scale * s * q - super_min * m, q in [0, 15].

inline void dequantize_block(const BlockQ4_K& block, float* values) {
  const float super_scale = f16_to_f32(block.super_scale);
  const float super_min = f16_to_f32(block.super_min);
  for (int k = 0; k < 8; ++k) {
    int scale_code = 0;
    int offset_code = 0;
    detail::unpack_scale_min_k4(k, block.packed_scales, scale_code, offset_code);
    const float scale = super_scale * static_cast<float>(scale_code);
    const float offset = super_min * static_cast<float>(offset_code);
    // Sub-block k: the low (k even) or high (k odd) nibbles of bytes 32 * (k / 2) ...
    const std::uint8_t* bytes = block.nibbles + 32 * (k / 2);
    const int shift = 4 * (k % 2);
    float* out = values + 32 * k;
    for (int l = 0; l < 32; ++l) out[l] = scale * static_cast<float>((bytes[l] >> shift) & 0x0f) - offset;
  }
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ4_K& block) {
  std::uint8_t codes[256];
  detail::quantize_k4_style(values, 15, -1.0f, 20, block.super_scale, block.super_min, block.packed_scales, codes);
  detail::pack_nibbles_256(codes, block.nibbles);
}

// ---------------------------------------------------------------------------------------------
// Q5_K: Q4_K with 5-bit quants, q in [0, 31].

inline void dequantize_block(const BlockQ5_K& block, float* values) {
  const float super_scale = f16_to_f32(block.super_scale);
  const float super_min = f16_to_f32(block.super_min);
  for (int k = 0; k < 8; ++k) {
    int scale_code = 0;
    int offset_code = 0;
    detail::unpack_scale_min_k4(k, block.packed_scales, scale_code, offset_code);
    const float scale = super_scale * static_cast<float>(scale_code);
    const float offset = super_min * static_cast<float>(offset_code);
    const std::uint8_t* bytes = block.nibbles + 32 * (k / 2);
    const int shift = 4 * (k % 2);
    float* out = values + 32 * k;
    for (int l = 0; l < 32; ++l) {
      const int code = ((bytes[l] >> shift) & 0x0f) | (((block.high_bits[l] >> k) & 1) << 4);
      out[l] = scale * static_cast<float>(code) - offset;
    }
  }
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ5_K& block) {
  std::uint8_t codes[256];
  detail::quantize_k4_style(values, 31, -0.5f, 15, block.super_scale, block.super_min, block.packed_scales, codes);
  detail::pack_nibbles_256(codes, block.nibbles);
  // Sub-block k (values 32k .. 32k+31) keeps bit 4 of its codes in bit k of high_bits[l].
  for (int l = 0; l < 32; ++l) block.high_bits[l] = 0;
  for (int i = 0; i < 256; ++i) {
    if (codes[i] > 15) block.high_bits[i % 32] = static_cast<std::uint8_t>(block.high_bits[i % 32] | (1 << (i / 32)));
  }
}

// ---------------------------------------------------------------------------------------------
// Q6_K: 16 sub-blocks of 16; value = super_scale * s * (q - 32), s int8, q in [0, 63].

inline void dequantize_block(const BlockQ6_K& block, float* values) {
  const float super_scale = f16_to_f32(block.super_scale);
  for (int k = 0; k < 16; ++k) {
    const int half = k / 8;
    const int part = (k % 8) / 2;  // which 32-value quarter of the half
    const std::uint8_t* low_bytes = block.low_bits + 64 * half + 32 * (part % 2) + 16 * (k % 2);
    const std::uint8_t* high_bytes = block.high_bits + 32 * half + 16 * (k % 2);
    const int low_shift = part < 2 ? 0 : 4;
    const int high_shift = 2 * part;
    // GGML: d * sc[k] * q, evaluated left to right.
    const float scale = super_scale * static_cast<float>(block.sub_scales[k]);
    float* out = values + 16 * k;
    for (int l = 0; l < 16; ++l) {
      const int code = ((low_bytes[l] >> low_shift) & 0x0f) | (((high_bytes[l] >> high_shift) & 3) << 4);
      out[l] = scale * static_cast<float>(code - 32);
    }
  }
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ6_K& block) {
  std::int8_t codes[256];  // q in [0, 63]
  float scales[16];
  float max_scale = 0.0f;
  float largest_magnitude = 0.0f;
  for (int k = 0; k < 16; ++k) {
    scales[k] = detail::symmetric_quants_least_squares(16, 32, values + 16 * k, codes + 16 * k);
    const float magnitude = std::fabs(scales[k]);
    if (magnitude > largest_magnitude) {
      largest_magnitude = magnitude;
      max_scale = scales[k];
    }
  }
  if (largest_magnitude < detail::group_max_epsilon) {  // all (near) zero: an all-zero block
    std::memset(&block, 0, sizeof block);
    return;
  }

  // int8 sub-block scales; the largest maps to -128.
  const float inverse = -128.0f / max_scale;
  block.super_scale = f32_to_f16(1.0f / inverse);
  for (int k = 0; k < 16; ++k) {
    const int scale_code = detail::nearest_int(inverse * scales[k]);
    block.sub_scales[k] = static_cast<std::int8_t>(scale_code < 127 ? scale_code : 127);
  }

  const float decoded_super_scale = f16_to_f32(block.super_scale);
  for (int k = 0; k < 16; ++k) {
    const float scale = decoded_super_scale * static_cast<float>(block.sub_scales[k]);
    if (scale == 0.0f) continue;
    for (int l = 0; l < 16; ++l) {
      const int q = detail::clamp_int(detail::nearest_int(values[16 * k + l] / scale), -32, 31);
      codes[16 * k + l] = static_cast<std::int8_t>(q + 32);
    }
  }

  for (int half = 0; half < 2; ++half) {
    const std::int8_t* c = codes + 128 * half;
    std::uint8_t* low = block.low_bits + 64 * half;
    std::uint8_t* high = block.high_bits + 32 * half;
    for (int l = 0; l < 32; ++l) {
      low[l] = static_cast<std::uint8_t>((c[l] & 0x0f) | ((c[l + 64] & 0x0f) << 4));
      low[l + 32] = static_cast<std::uint8_t>((c[l + 32] & 0x0f) | ((c[l + 96] & 0x0f) << 4));
      high[l] = static_cast<std::uint8_t>((c[l] >> 4) | ((c[l + 32] >> 4) << 2) | ((c[l + 64] >> 4) << 4) | ((c[l + 96] >> 4) << 6));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Q8_K: value = scale * q, F32 scale, q in [-127, 127] (the largest magnitude maps to -127
// with the sign flipped as needed), plus sums of 16 quants for the K-quant dot products.

inline void dequantize_block(const BlockQ8_K& block, float* values) {
  for (int i = 0; i < 256; ++i) values[i] = block.scale * static_cast<float>(block.quants[i]);
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockQ8_K& block) {
  float largest_magnitude = 0.0f;
  float extreme = 0.0f;
  for (int i = 0; i < 256; ++i) {
    const float magnitude = std::fabs(values[i]);
    if (magnitude > largest_magnitude) {
      largest_magnitude = magnitude;
      extreme = values[i];
    }
  }
  if (largest_magnitude == 0.0f) {
    // GGML leaves the group sums as they were here; lamina zeroes them (they are all 0).
    std::memset(&block, 0, sizeof block);
    return;
  }
  const float inverse = -127.0f / extreme;
  for (int i = 0; i < 256; ++i) {
    const int q = detail::nearest_int(inverse * values[i]);
    block.quants[i] = static_cast<std::int8_t>(detail::clamp_int(q, -128, 127));
  }
  for (int group = 0; group < 16; ++group) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) sum += block.quants[16 * group + l];
    block.group_sums[group] = static_cast<std::int16_t>(sum);
  }
  block.scale = 1.0f / inverse;
}

}  // namespace quant
LAMINA_NAMESPACE_END

#include "exact_float_end.inl"
