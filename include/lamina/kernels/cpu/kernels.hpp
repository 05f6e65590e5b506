// lamina/kernels/cpu/kernels.hpp — the table of CPU kernels that every instruction set fills in.
//
// The kernels live in kernels/cpu/simd/*.inl, one copy per instruction set, each in a namespace
// named after it (lamina::cpu::avx2 ...) and compiled with its target (kernels/cpu/instantiate.hpp),
// so code compiled for AVX2 never shares a symbol with code compiled for SSE2 and the linker
// cannot mix them up. Arch code calls nothing outside its namespace but intrinsics; what it needs
// from the rest of lamina (dequantizing a row for the generic path) arrives as a function pointer
// compiled in the caller's translation unit. kernels/cpu/dispatch.hpp holds the tables and picks
// one at run time.
#pragma once

#include "../../config.hpp"
#include "../../core/dtype.hpp"
#include "arch.hpp"

#include <cstddef>
#include <cstdint>

LAMINA_NAMESPACE_BEGIN
namespace cpu {

// How activations (the float inputs of a matrix product) are handed to a kernel. Integer dot
// products need them quantized to 8 bits, as GGML does; the block layouts are GGML's.
enum class ActivationFormat {
  f32,   // plain floats
  q8_0,  // blocks of 32: F16 scale + 32 int8                         (for Q4_0, Q5_0, Q8_0, IQ4_NL)
  q8_1,  // blocks of 32: F16 scale, F16 scale × sum, 32 int8          (for Q4_1, Q5_1)
  q8_k,  // blocks of 256: F32 scale, 256 int8, 16 int16 sums of 16    (for the K-quants, IQ4_XS)
};

// Bytes of one activation row of `count` values in `format` (count: a multiple of the block size).
inline std::size_t activation_row_bytes(ActivationFormat format, std::size_t count) {
  switch (format) {
    case ActivationFormat::f32: return count * 4;
    case ActivationFormat::q8_0: return count / 32 * 34;
    case ActivationFormat::q8_1: return count / 32 * 36;
    case ActivationFormat::q8_k: return count / 256 * 292;
  }
  return 0;
}

// One matrix product over a range of output rows:
//   y[t * y_row_stride + o] = sum_i weight[o][i] * x[t][i]   for t < token_count, o in [row_begin, row_end)
struct MatmulTask {
  DType weight_type = DType::f32;
  const std::uint8_t* weight = nullptr;  // row o at weight + o * weight_row_stride
  std::size_t weight_row_stride = 0;     // bytes
  std::size_t in = 0;                    // values per weight row
  ActivationFormat activation_format = ActivationFormat::f32;
  const std::uint8_t* activations = nullptr;  // token t at activations + t * activation_row_stride
  std::size_t activation_row_stride = 0;      // bytes
  std::size_t token_count = 0;
  float* y = nullptr;
  std::size_t y_row_stride = 0;  // floats between tokens' outputs (the weight's row count)
  // The generic path dequantizes weight rows with this (quant::dequantize_row for weight_type).
  void (*dequantize_row)(const void* row, float* out, std::size_t count) = nullptr;
  // Take the kernels for many tokens at any token_count, so that each token's outputs are the
  // same in any pass, whatever its size and the token's place in it (a prompt read in pieces
  // then gives the logits of one call). Otherwise a few tokens take the kernels made for them,
  // which add in another order.
  bool batch_invariant = false;
};

// Floats of scratch one matmul_rows call may use (per parallel chunk): room for a block of
// weight rows converted to float plus one more row, so prompts read each weight once.
inline constexpr std::size_t matmul_scratch_rows = 32;
inline std::size_t matmul_scratch_floats(std::size_t in) { return (matmul_scratch_rows + 1) * in + 64; }

// The rows one KV head has in the cache (keys or values): cell c's row of head_size elements
// at data + c * stride bytes, F16 or F32. The attention kernels read the cells a token sees.
struct CacheRows {
  const std::uint8_t* data = nullptr;
  std::size_t stride = 0;  // bytes between consecutive cells
  bool f16 = true;         // else F32
};

struct CpuKernels {
  CpuArch arch = CpuArch::scalar;

  // --- matrix products ---
  // The activation format this instruction set's kernel for `weight_type` wants.
  ActivationFormat (*activation_format)(DType weight_type) = nullptr;
  // Converts `count` floats to `format` (count: a multiple of the format's block size).
  void (*quantize_activations)(ActivationFormat format, const float* x, void* out, std::size_t count) = nullptr;
  // The rows [row_begin, row_end) of a task. `scratch`: matmul_scratch_floats(task.in) floats.
  void (*matmul_rows)(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) = nullptr;

  // --- vectors ---
  float (*dot)(const float* a, const float* b, std::size_t count) = nullptr;
  // out = x / sqrt(mean(x²) + epsilon) * weight
  void (*rms_norm)(const float* x, const float* weight, float* out, std::size_t count, float epsilon) = nullptr;
  // gate = silu(gate) * up
  void (*silu_mul)(float* gate, const float* up, std::size_t count) = nullptr;
  // y += x
  void (*add)(float* y, const float* x, std::size_t count) = nullptr;
  // y += scale * x
  void (*scaled_add)(float* y, const float* x, float scale, std::size_t count) = nullptr;

  // --- attention over an F16 KV cache ---
  void (*f32_to_f16)(const float* x, std::uint16_t* out, std::size_t count) = nullptr;
  float (*dot_f16)(const std::uint16_t* a, const float* b, std::size_t count) = nullptr;
  // y += scale * x
  void (*scaled_add_f16)(float* y, const std::uint16_t* x, float scale, std::size_t count) = nullptr;
  // x = exp(x - maximum), returns the sum (for softmax)
  float (*exp_shifted)(float* x, float maximum, std::size_t count) = nullptr;
  // For the query heads sharing one KV head (grouped-query attention), over `cell_count` cells:
  //   scores[h][j] = scale * queries[h] · keys.row(cells[j])
  // queries [query_count, head_size], scores [query_count, cell_count].
  void (*attention_scores)(const float* queries, std::size_t query_count, std::size_t head_size, CacheRows keys,
                           const std::uint32_t* cells, std::size_t cell_count, float scale, float* scores) = nullptr;
  //   out[h] = sum_j weights[h][j] * values.row(cells[j])
  // weights [query_count, cell_count], out [query_count, head_size].
  void (*attention_values)(const float* weights, std::size_t query_count, std::size_t head_size, CacheRows values,
                           const std::uint32_t* cells, std::size_t cell_count, float* out) = nullptr;
};

}  // namespace cpu
LAMINA_NAMESPACE_END
