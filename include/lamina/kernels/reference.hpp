// lamina/kernels/reference.hpp — the scalar reference of every operation of the forward pass.
//
// These loops define what each op computes. They are written to be read, not to be fast:
// optimized kernels (SIMD, GPU) are tested against them on random data. All vectors are
// contiguous float arrays; shapes are given next to each parameter.
#pragma once

#include "../core/dtype.hpp"
#include "../core/half.hpp"
#include "../quant/quant.hpp"
#include "../core/tensor.hpp"
#include "../config.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>

LAMINA_NAMESPACE_BEGIN
namespace reference {

// Converts one row of `count` values stored as `dtype` (F32, F16, BF16 or a quantized block
// type the quant/ reference knows) to float. Precondition: quant::can_dequantize(dtype) and
// count is a whole number of blocks (checked when the weights were bound).
inline void row_to_f32(DType dtype, const void* row, float* out, std::size_t count) {
  const Result<void> converted = quant::dequantize_row(dtype, row, out, count);
  LAMINA_ASSERT(converted.ok(), "row_to_f32: unsupported dtype or partial block");
  (void)converted;
}

// sum_i a[i] * b[i], accumulated in double so the reference is as exact as it can cheaply be.
inline float dot(const float* a, const float* b, std::size_t count) {
  double sum = 0;
  for (std::size_t i = 0; i < count; ++i) sum += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return static_cast<float>(sum);
}

// y[t][o] = sum_i weight[o][i] * x[t][i]   (x: [token_count, in], weight: [out, in], y: [token_count, out])
// `weight` may be of any type row_to_f32 converts. `row_scratch` holds `in` floats.
inline void matmul(const TensorView& weight, const float* x, float* y, std::size_t token_count, float* row_scratch) {
  const std::size_t in = static_cast<std::size_t>(weight.row_length());
  const std::size_t out = static_cast<std::size_t>(weight.row_count());
  for (std::size_t o = 0; o < out; ++o) {
    row_to_f32(weight.dtype, weight.row(static_cast<std::int64_t>(o)), row_scratch, in);
    for (std::size_t t = 0; t < token_count; ++t) y[t * out + o] = dot(row_scratch, x + t * in, in);
  }
}

// out[i] = x[i] / sqrt(mean(x^2) + epsilon) * weight[i]   (x, weight, out: [count])
inline void rms_norm(const float* x, const float* weight, float* out, std::size_t count, float epsilon) {
  double sum_of_squares = 0;
  for (std::size_t i = 0; i < count; ++i) sum_of_squares += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(sum_of_squares / static_cast<double>(count) + epsilon));
  for (std::size_t i = 0; i < count; ++i) out[i] = x[i] * scale * weight[i];
}

// How the dimensions of a head are paired for rotation.
enum class RopeStyle {
  interleaved,  // pairs (x[2i], x[2i+1]): Llama as stored in GGUF ("normal" in GGML)
  neox,         // pairs (x[i], x[i + n/2]): GPT-NeoX, Qwen2
};

// Rotary position embedding parameters, including the YaRN / linear context extension.
struct RopeParams {
  int rotary_dimension_count = 0;  // dimensions rotated at the start of each head (<= head size)
  float frequency_base = 10000.0f;
  float frequency_scale = 1.0f;  // 1 / linear scaling factor
  float extrapolation_factor = 0.0f;   // YaRN: 1 when YaRN scaling is on, else 0
  float attention_factor = 1.0f;       // YaRN magnitude scale
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  int original_context_length = 0;     // YaRN: training context before extension
  const float* frequency_factors = nullptr;  // [rotary_dimension_count / 2] divisors (Llama 3 rope_freqs), or null
};

namespace detail {
// YaRN: the dimension index at which a wavelength fits `rotations` times into the original context.
inline float rope_yarn_correction_dimension(int dimension_count, int original_context, float rotations, float base) {
  const float pi = 3.14159265358979323846f;
  return static_cast<float>(dimension_count) *
         std::log(static_cast<float>(original_context) / (rotations * 2.0f * pi)) / (2.0f * std::log(base));
}
}  // namespace detail

// The angle's cosine and sine for pair `pair_index` at `position`, as GGML's rope_yarn computes them.
inline void rope_cos_sin(const RopeParams& params, float position, int pair_index, float* cos_out, float* sin_out) {
  const int n = params.rotary_dimension_count;
  const float theta_scale = std::pow(params.frequency_base, -2.0f / static_cast<float>(n));
  float theta_extrapolated = position * std::pow(theta_scale, static_cast<float>(pair_index));
  if (params.frequency_factors != nullptr) theta_extrapolated /= params.frequency_factors[pair_index];
  const float theta_interpolated = params.frequency_scale * theta_extrapolated;
  float theta = theta_interpolated;
  float magnitude = params.attention_factor;
  if (params.extrapolation_factor != 0.0f) {
    float low = std::floor(detail::rope_yarn_correction_dimension(n, params.original_context_length, params.beta_fast, params.frequency_base));
    float high = std::ceil(detail::rope_yarn_correction_dimension(n, params.original_context_length, params.beta_slow, params.frequency_base));
    low = low < 0 ? 0 : low;
    high = high > static_cast<float>(n - 1) ? static_cast<float>(n - 1) : high;
    float ramp = (static_cast<float>(pair_index) - low) / (high - low > 0.001f ? high - low : 0.001f);
    ramp = 1.0f - (ramp < 0 ? 0 : (ramp > 1 ? 1 : ramp));
    const float mix = ramp * params.extrapolation_factor;
    theta = theta_interpolated * (1 - mix) + theta_extrapolated * mix;
    magnitude *= 1.0f + 0.1f * std::log(1.0f / params.frequency_scale);
  }
  *cos_out = std::cos(theta) * magnitude;
  *sin_out = std::sin(theta) * magnitude;
}

// Rotates the first rotary_dimension_count values of each of `head_count` heads in place by
// precomputed angles: pair i turns by the angle whose cosine and sine are cos_table[i], sin_table[i].
// heads: [head_count, head_size]; cos_table, sin_table: [rotary_dimension_count / 2]
inline void rope_rotate(float* heads, int head_count, int head_size, int rotary_dimension_count, const float* cos_table,
                        const float* sin_table, RopeStyle style) {
  const int n = rotary_dimension_count;
  for (int h = 0; h < head_count; ++h) {
    float* x = heads + static_cast<std::size_t>(h) * static_cast<std::size_t>(head_size);
    for (int pair = 0; pair < n / 2; ++pair) {
      const int first = style == RopeStyle::interleaved ? 2 * pair : pair;
      const int second = style == RopeStyle::interleaved ? 2 * pair + 1 : pair + n / 2;
      const float a = x[first], b = x[second];
      x[first] = a * cos_table[pair] - b * sin_table[pair];
      x[second] = a * sin_table[pair] + b * cos_table[pair];
    }
  }
}

// The angles of every pair at `position`. cos_table, sin_table: [rotary_dimension_count / 2]
inline void rope_angles(const RopeParams& params, float position, float* cos_table, float* sin_table) {
  for (int pair = 0; pair < params.rotary_dimension_count / 2; ++pair) {
    rope_cos_sin(params, position, pair, &cos_table[pair], &sin_table[pair]);
  }
}

// Rotates the heads of one token at `position`. heads: [head_count, head_size]
inline void rope(float* heads, int head_count, int head_size, float position, const RopeParams& params, RopeStyle style) {
  float cos_table[512], sin_table[512];  // rotary dimensions are at most a head (<= 1024)
  LAMINA_ASSERT(params.rotary_dimension_count <= 1024, "rope: rotary dimension count above 1024");
  rope_angles(params, position, cos_table, sin_table);
  rope_rotate(heads, head_count, head_size, params.rotary_dimension_count, cos_table, sin_table, style);
}

// In place: x[i] = exp(x[i] - max) / sum_j exp(x[j] - max)   (x: [count])
inline void softmax(float* x, std::size_t count) {
  if (count == 0) return;
  float maximum = x[0];
  for (std::size_t i = 1; i < count; ++i) maximum = x[i] > maximum ? x[i] : maximum;
  double sum = 0;
  for (std::size_t i = 0; i < count; ++i) {
    x[i] = std::exp(x[i] - maximum);
    sum += x[i];
  }
  const float inverse = static_cast<float>(1.0 / sum);
  for (std::size_t i = 0; i < count; ++i) x[i] *= inverse;
}

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

// The SwiGLU feed-forward's middle: gate[i] = silu(gate[i]) * up[i]   (gate, up: [count])
inline void silu_mul(float* gate, const float* up, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) gate[i] = silu(gate[i]) * up[i];
}

}  // namespace reference
LAMINA_NAMESPACE_END
