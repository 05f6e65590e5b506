// lamina/quant/iq4.hpp — scalar reference for GGML's non-linear 4-bit types IQ4_NL (32 values
// per block) and IQ4_XS (256 values, 8 sub-blocks of 32 with 6-bit scales).
//
//   quant::dequantize_block(const BlockIQ4_NL& block, float* values);  // writes 32 values
//   quant::quantize_block(const float* values, BlockIQ4_NL& block);    // reads 32 values
//
// Each 4-bit index selects one of 16 fixed levels (iq4_nl_levels), denser near 0 where most
// weights are, so 4 bits go further than Q4_0's evenly spaced grid.
//
// Dequantization is bit-exact with GGML's dequantize_row_iq4_nl/_xs. Quantization follows
// GGML's quantize_iq4_nl / quantize_iq4_xs without an importance matrix (both run
// quantize_row_iq4_nl_impl with a 15-step scale search), which is what llama-quantize does.
// Note: GGML's quantize_row_iq4_nl_ref, used when GGML converts activations or a KV cache to
// IQ4_NL at run time, skips that search and can give other bytes; lamina has only the
// llama-quantize variant.
//
// Non-finite input never crashes and never disturbs other blocks; the block holding it
// decodes to unspecified values, as in GGML.
#pragma once

#include "../config.hpp"
#include "../core/half.hpp"
#include "blocks.hpp"
#include "rounding.hpp"

#include <cmath>
#include <cstdint>

#include "exact_float_begin.inl"

LAMINA_NAMESPACE_BEGIN
namespace quant {

// The 16 levels of IQ4_NL and IQ4_XS, ascending. GGML: kvalues_iq4nl.
inline constexpr std::int8_t iq4_nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                  1,    13,   25,  38,  53,  69,  89,  113};

namespace detail {

// Index of the level nearest to `target` (ties go to the higher level; NaN gives 15).
// GGML: best_index_int8(16, kvalues_iq4nl, x).
LAMINA_DETAIL_NO_FP_CONTRACT inline int nearest_iq4_level(float target) {
  const std::int8_t* levels = iq4_nl_levels;
  if (target <= static_cast<float>(levels[0])) return 0;
  if (target >= static_cast<float>(levels[15])) return 15;
  int below = 0;
  int above = 15;
  while (above - below > 1) {
    const int middle = (below + above) / 2;
    if (target < static_cast<float>(levels[middle])) above = middle;
    else below = middle;
  }
  return target - static_cast<float>(levels[above - 1]) < static_cast<float>(levels[above]) - target ? above - 1 : above;
}

inline constexpr int iq4_scale_search_steps = 7;  // GGML: ntry = 7 in quantize_iq4_nl/_xs

// Best scale for one 32-value sub-block, weights x^2: the scale that maps the value of largest
// magnitude onto the outermost level (-127), then 15 grids around it, each keeping its
// weighted least-squares scale. 0 for an all-(near-)zero sub-block.
// GGML: the per-block part of quantize_row_iq4_nl_impl (quant_weights = NULL, ntry = 7).
LAMINA_DETAIL_NO_FP_CONTRACT inline float iq4_sub_block_scale(const float* x) {
  float largest_magnitude = 0.0f;
  float extreme = 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float magnitude = std::fabs(x[j]);
    if (magnitude > largest_magnitude) {
      largest_magnitude = magnitude;
      extreme = x[j];
    }
  }
  constexpr float group_max_epsilon = 1e-15f;  // GGML: GROUP_MAX_EPS
  if (largest_magnitude < group_max_epsilon) return 0.0f;

  const float outermost_level = static_cast<float>(iq4_nl_levels[0]);
  float scale = -extreme / outermost_level;
  float inverse_scale = 1.0f / scale;
  float sum_weighted_xq = 0.0f;
  float sum_weighted_qq = 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float level = static_cast<float>(iq4_nl_levels[nearest_iq4_level(inverse_scale * x[j])]);
    const float weight = x[j] * x[j];
    sum_weighted_xq += weight * level * x[j];
    sum_weighted_qq += weight * level * level;
  }
  scale = sum_weighted_qq > 0.0f ? sum_weighted_xq / sum_weighted_qq : 0.0f;
  float best = scale * sum_weighted_xq;
  for (int step = -iq4_scale_search_steps; step <= iq4_scale_search_steps; ++step) {
    inverse_scale = static_cast<float>(step + iq4_nl_levels[0]) / extreme;
    float trial_xq = 0.0f;
    float trial_qq = 0.0f;
    for (int j = 0; j < 32; ++j) {
      const float level = static_cast<float>(iq4_nl_levels[nearest_iq4_level(inverse_scale * x[j])]);
      const float weight = x[j] * x[j];
      trial_xq += weight * level * x[j];
      trial_qq += weight * level * level;
    }
    if (trial_qq > 0.0f && trial_xq * trial_xq > best * trial_qq) {
      scale = trial_xq / trial_qq;
      best = scale * trial_xq;
    }
  }
  return scale;
}

// Packs 32 indices like Q4_0's nibbles: index j low, index j+16 high.
inline void pack_iq4_indices_32(const std::uint8_t* indices, std::uint8_t* packed) {
  for (int j = 0; j < 16; ++j) packed[j] = static_cast<std::uint8_t>(indices[j] | (indices[j + 16] << 4));
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// IQ4_NL: value = scale * level[index].

inline void dequantize_block(const BlockIQ4_NL& block, float* values) {
  const float scale = f16_to_f32(block.scale);
  for (int j = 0; j < 16; ++j) {
    values[j] = scale * static_cast<float>(iq4_nl_levels[block.indices[j] & 0x0f]);
    values[j + 16] = scale * static_cast<float>(iq4_nl_levels[block.indices[j] >> 4]);
  }
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockIQ4_NL& block) {
  const float scale = detail::iq4_sub_block_scale(values);
  block.scale = f32_to_f16(scale);
  // The indices are chosen against the unrounded scale, as GGML does.
  const float inverse_scale = scale != 0.0f ? 1.0f / scale : 0.0f;
  std::uint8_t indices[32];
  for (int j = 0; j < 32; ++j) indices[j] = static_cast<std::uint8_t>(detail::nearest_iq4_level(inverse_scale * values[j]));
  detail::pack_iq4_indices_32(indices, block.indices);
}

// ---------------------------------------------------------------------------------------------
// IQ4_XS: value = super_scale * (s_k - 32) * level[index], s_k the 6-bit scale of sub-block k.

namespace detail {

inline int iq4_xs_sub_scale(const BlockIQ4_XS& block, int sub_block) {
  const int low = (block.scales_low[sub_block / 2] >> (4 * (sub_block % 2))) & 0x0f;
  const int high = (block.scales_high >> (2 * sub_block)) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace detail

inline void dequantize_block(const BlockIQ4_XS& block, float* values) {
  const float super_scale = f16_to_f32(block.super_scale);
  for (int k = 0; k < 8; ++k) {
    const float scale = super_scale * static_cast<float>(detail::iq4_xs_sub_scale(block, k));
    const std::uint8_t* packed = block.indices + 16 * k;
    float* out = values + 32 * k;
    for (int j = 0; j < 16; ++j) {
      out[j] = scale * static_cast<float>(iq4_nl_levels[packed[j] & 0x0f]);
      out[j + 16] = scale * static_cast<float>(iq4_nl_levels[packed[j] >> 4]);
    }
  }
}

LAMINA_DETAIL_NO_FP_CONTRACT inline void quantize_block(const float* values, BlockIQ4_XS& block) {
  float scales[8];
  float max_scale = 0.0f;  // the sub-block scale of largest magnitude, with its sign
  float largest_magnitude = 0.0f;
  for (int k = 0; k < 8; ++k) {
    scales[k] = detail::iq4_sub_block_scale(values + 32 * k);
    const float magnitude = std::fabs(scales[k]);
    if (magnitude > largest_magnitude) {
      largest_magnitude = magnitude;
      max_scale = scales[k];
    }
  }

  // 6-bit signed sub-block scales; the largest maps to -32. The indices are chosen against
  // the unrounded super-scale, as GGML does.
  const float super_scale = -max_scale / 32;
  block.super_scale = f32_to_f16(super_scale);
  block.scales_high = 0;
  const float inverse_super_scale = super_scale != 0.0f ? 1.0f / super_scale : 0.0f;
  std::uint8_t indices[32];
  for (int k = 0; k < 8; ++k) {
    const int scale_code = detail::clamp_int(detail::nearest_int(inverse_super_scale * scales[k]), -32, 31);
    const float scale = super_scale * static_cast<float>(scale_code);
    const float inverse_scale = scale != 0.0f ? 1.0f / scale : 0.0f;
    for (int j = 0; j < 32; ++j) {
      indices[j] = static_cast<std::uint8_t>(detail::nearest_iq4_level(inverse_scale * values[32 * k + j]));
    }
    detail::pack_iq4_indices_32(indices, block.indices + 16 * k);
    const int stored = scale_code + 32;
    if (k % 2 == 0) block.scales_low[k / 2] = static_cast<std::uint8_t>(stored & 0x0f);
    else block.scales_low[k / 2] = static_cast<std::uint8_t>(block.scales_low[k / 2] | ((stored & 0x0f) << 4));
    block.scales_high = static_cast<std::uint16_t>(block.scales_high | ((stored >> 4) << (2 * k)));
  }
}

}  // namespace quant
LAMINA_NAMESPACE_END

#include "exact_float_end.inl"
