// lamina/kernels/cpu/scalar.hpp — the kernel table built from the scalar reference ops.
//
// Always present, on every processor: the baseline the SIMD tables are tested against, and
// what runs where no SIMD table applies. It computes what the SIMD tables compute: quantized
// weights meet 8-bit activations in integer sums (scalar_quant.hpp, the readable twin of
// kernels/cpu/simd/quant_*.inl), float weights meet float activations.
#pragma once

#include "../../config.hpp"
#include "../../core/half.hpp"
#include "../reference.hpp"
#include "kernels.hpp"
#include "scalar_quant.hpp"

#include <cmath>
#include <cstring>

LAMINA_NAMESPACE_BEGIN
namespace cpu {
namespace scalar {

// Quantized weights take 8-bit activations and integer sums, as in the SIMD tables
// (scalar_quant.hpp); the float types take float activations.
inline ActivationFormat activation_format(DType weight_type) { return integer_activation_format(weight_type); }

// The float path: each weight row converted to float (task.dequantize_row), then a dot product
// with each token's float activations, accumulated in double. For F32, F16 and BF16 weights,
// and for any weight type whose caller hands over float activations.
inline void matmul_rows_float(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  for (std::size_t o = row_begin; o < row_end; ++o) {
    task.dequantize_row(task.weight + o * task.weight_row_stride, scratch, task.in);  // scratch: [in]
    for (std::size_t t = 0; t < task.token_count; ++t) {
      const float* x = reinterpret_cast<const float*>(task.activations + t * task.activation_row_stride);
      task.y[t * task.y_row_stride + o] = reference::dot(scratch, x, task.in);
    }
  }
}

inline void matmul_rows(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  if (task.activation_format == ActivationFormat::f32) matmul_rows_float(task, row_begin, row_end, scratch);
  else matmul_rows_integer(task, row_begin, row_end);
}

inline void add(float* y, const float* x, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) y[i] += x[i];
}

inline void scaled_add(float* y, const float* x, float scale, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) y[i] += scale * x[i];
}

inline void f32_to_f16(const float* x, std::uint16_t* out, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) out[i] = lamina::f32_to_f16(x[i]);
}

inline float dot_f16(const std::uint16_t* a, const float* b, std::size_t count) {
  double sum = 0;
  for (std::size_t i = 0; i < count; ++i) sum += static_cast<double>(lamina::f16_to_f32(a[i])) * b[i];
  return static_cast<float>(sum);
}

inline void scaled_add_f16(float* y, const std::uint16_t* x, float scale, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) y[i] += scale * lamina::f16_to_f32(x[i]);
}

inline float exp_shifted(float* x, float maximum, std::size_t count) {
  double sum = 0;
  for (std::size_t i = 0; i < count; ++i) {
    x[i] = std::exp(x[i] - maximum);
    sum += x[i];
  }
  return static_cast<float>(sum);
}

inline void attention_scores(const float* queries, std::size_t query_count, std::size_t head_size, CacheRows keys,
                             const std::uint32_t* cells, std::size_t cell_count, float scale, float* scores) {
  for (std::size_t h = 0; h < query_count; ++h) {
    for (std::size_t j = 0; j < cell_count; ++j) {
      const std::uint8_t* key = keys.data + cells[j] * keys.stride;
      const float* query = queries + h * head_size;
      scores[h * cell_count + j] = (keys.f16 ? dot_f16(reinterpret_cast<const std::uint16_t*>(key), query, head_size)
                                             : reference::dot(reinterpret_cast<const float*>(key), query, head_size)) * scale;
    }
  }
}

inline void attention_values(const float* weights, std::size_t query_count, std::size_t head_size, CacheRows values,
                             const std::uint32_t* cells, std::size_t cell_count, float* out) {
  for (std::size_t h = 0; h < query_count; ++h) {
    float* out_row = out + h * head_size;
    for (std::size_t i = 0; i < head_size; ++i) out_row[i] = 0.0f;
    for (std::size_t j = 0; j < cell_count; ++j) {
      const std::uint8_t* value = values.data + cells[j] * values.stride;
      const float weight = weights[h * cell_count + j];
      if (values.f16) scaled_add_f16(out_row, reinterpret_cast<const std::uint16_t*>(value), weight, head_size);
      else scaled_add(out_row, reinterpret_cast<const float*>(value), weight, head_size);
    }
  }
}

inline const CpuKernels& kernel_table() {
  static const CpuKernels table = [] {
    CpuKernels kernels;
    kernels.arch = CpuArch::scalar;
    kernels.activation_format = &activation_format;
    kernels.quantize_activations = &quantize_activations;
    kernels.matmul_rows = &matmul_rows;
    kernels.dot = &reference::dot;
    kernels.rms_norm = &reference::rms_norm;
    kernels.silu_mul = &reference::silu_mul;
    kernels.add = &add;
    kernels.scaled_add = &scaled_add;
    kernels.f32_to_f16 = &f32_to_f16;
    kernels.dot_f16 = &dot_f16;
    kernels.scaled_add_f16 = &scaled_add_f16;
    kernels.exp_shifted = &exp_shifted;
    kernels.attention_scores = &attention_scores;
    kernels.attention_values = &attention_values;
    return kernels;
  }();
  return table;
}

}  // namespace scalar
}  // namespace cpu
LAMINA_NAMESPACE_END
