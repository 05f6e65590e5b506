// lamina/kernels/cpu/matmul.hpp — the matrix products of the forward pass on the CPU.
//
// y[t][o] = sum_i weight[o][i] * x[t][i]   (x: [token_count, in], weight: [out, in], y: [token_count, out])
//
// The activations are first put in the form the chosen kernel wants (8-bit blocks for the
// integer kernels of quantized weights), then the output rows are split into chunks that run in
// parallel. The split depends only on the shapes, and each output is computed the same way
// whichever chunk holds it, so results are identical for any thread count.
#pragma once

#include "../../config.hpp"
#include "../../core/executor.hpp"
#include "../../core/result.hpp"
#include "../../core/tensor.hpp"
#include "../../quant/quant.hpp"
#include "dispatch.hpp"
#include "kernels.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace cpu {

// Upper bound on the chunks a matmul or attention is split into.
inline constexpr std::size_t max_parallel_chunks = 64;

namespace detail {
template <DType Type>
void dequantize_row_as(const void* row, float* out, std::size_t count) {
  const Result<void> converted = quant::dequantize_row(Type, row, out, count);
  LAMINA_ASSERT(converted.ok(), "dequantize_row_as: the weights were checked when bound");
  (void)converted;
}
}  // namespace detail

// quant::dequantize_row for `type` as a plain function pointer (what MatmulTask carries), or
// nullptr when lamina cannot decode the type.
inline void (*dequantize_row_function(DType type))(const void*, float*, std::size_t) {
  switch (type) {
    case DType::f32: return &detail::dequantize_row_as<DType::f32>;
    case DType::f16: return &detail::dequantize_row_as<DType::f16>;
    case DType::bf16: return &detail::dequantize_row_as<DType::bf16>;
    case DType::q4_0: return &detail::dequantize_row_as<DType::q4_0>;
    case DType::q4_1: return &detail::dequantize_row_as<DType::q4_1>;
    case DType::q5_0: return &detail::dequantize_row_as<DType::q5_0>;
    case DType::q5_1: return &detail::dequantize_row_as<DType::q5_1>;
    case DType::q8_0: return &detail::dequantize_row_as<DType::q8_0>;
    case DType::q2_k: return &detail::dequantize_row_as<DType::q2_k>;
    case DType::q3_k: return &detail::dequantize_row_as<DType::q3_k>;
    case DType::q4_k: return &detail::dequantize_row_as<DType::q4_k>;
    case DType::q5_k: return &detail::dequantize_row_as<DType::q5_k>;
    case DType::q6_k: return &detail::dequantize_row_as<DType::q6_k>;
    case DType::iq4_nl: return &detail::dequantize_row_as<DType::iq4_nl>;
    case DType::iq4_xs: return &detail::dequantize_row_as<DType::iq4_xs>;
    default: return nullptr;
  }
}

// True when matmul() takes weights of `type` on every kernel table: the integer and float
// kernels cover what they know, the generic path covers the rest through this dequantizer.
// The model binder asks this, so a file cannot bring a weight type the kernels lack. Q8_1 and
// Q8_K are activation formats (what the integer kernels quantize x to), not weight types:
// llama.cpp has no weight kernel for them either, and they are refused here.
inline bool can_multiply(DType weight_type) { return dequantize_row_function(weight_type) != nullptr; }

// Buffers for matrix products of rows up to `max_in` values and up to `max_tokens` tokens:
// quantized activations and kernel scratch for each of `chunk_count` parallel chunks. Sized
// once; a matmul allocates nothing. The chunk count only decides how rows are shared out,
// never a result, so it may follow the executor's concurrency (a few chunks per thread).
class MatmulWorkspace {
 public:
  MatmulWorkspace() = default;
  MatmulWorkspace(std::size_t max_in, std::size_t max_tokens, std::size_t chunk_count = max_parallel_chunks)
      : max_in_(max_in),
        max_tokens_(max_tokens),
        chunk_count_(chunk_count == 0 ? 1 : (chunk_count > max_parallel_chunks ? max_parallel_chunks : chunk_count)),
        chunk_floats_(matmul_scratch_floats(max_in)),
        scratch_(chunk_count_ * chunk_floats_),
        activations_(max_tokens * largest_quantized_row_bytes(max_in)) {}

  std::size_t max_in() const { return max_in_; }
  std::size_t max_tokens() const { return max_tokens_; }
  std::size_t chunk_count() const { return chunk_count_; }
  float* chunk_scratch(std::size_t chunk) { return scratch_.data() + chunk * chunk_floats_; }
  std::uint8_t* activations() { return activations_.data(); }
  // The products compute tokens [invariant_from, token_count) with MatmulTask::batch_invariant,
  // the tokens before it with the kernels for their count: set per pass by its owner (the
  // forward pass puts prompt tokens after decoding ones). no_invariant_tokens: none.
  static constexpr std::size_t no_invariant_tokens = static_cast<std::size_t>(-1);
  std::size_t invariant_from() const { return invariant_from_; }
  void set_invariant_from(std::size_t token) { invariant_from_ = token; }

 private:
  static std::size_t largest_quantized_row_bytes(std::size_t in) {
    // Formats whose block does not divide `in` are never chosen for it; round up to be safe.
    const std::size_t rounded = (in + 255) / 256 * 256;
    std::size_t largest = activation_row_bytes(ActivationFormat::q8_0, rounded);
    if (activation_row_bytes(ActivationFormat::q8_1, rounded) > largest) largest = activation_row_bytes(ActivationFormat::q8_1, rounded);
    if (activation_row_bytes(ActivationFormat::q8_k, rounded) > largest) largest = activation_row_bytes(ActivationFormat::q8_k, rounded);
    return largest;
  }

  std::size_t max_in_ = 0;
  std::size_t max_tokens_ = 0;
  std::size_t chunk_count_ = 1;
  std::size_t chunk_floats_ = 0;
  std::size_t invariant_from_ = no_invariant_tokens;
  std::vector<float> scratch_;
  std::vector<std::uint8_t> activations_;
};

// Work that runs right after a chunk's output rows are computed, on the same thread, while
// those rows are hot: LoRA adapters add their changes to them there when decoding (no second
// pass over the outputs, no second round of parallel jobs). It must treat each row the same
// way whatever chunk holds it.
struct MatmulEpilogue {
  void (*function)(void* context, std::size_t row_begin, std::size_t row_end) = nullptr;
  void* context = nullptr;
};

// y [token_count, y_row_stride] gets the rows [row_begin, row_end) of x · Wᵀ, at
// y[t * y_row_stride + row]: a piece of a product (each row's value is the same as in the whole
// product). matmul() below is the whole of it.
inline void matmul_row_range(Executor& executor, const CpuKernels& kernels, const TensorView& weight, const float* x, float* y,
                             std::size_t y_row_stride, std::size_t token_count, std::size_t row_begin, std::size_t row_end,
                             MatmulWorkspace& workspace, const MatmulEpilogue* epilogue = nullptr) {
  const std::size_t in = static_cast<std::size_t>(weight.row_length());
  LAMINA_ASSERT(in <= workspace.max_in() && token_count <= workspace.max_tokens(), "matmul: workspace too small");
  MatmulTask task;
  task.weight_type = weight.dtype;
  task.weight = static_cast<const std::uint8_t*>(weight.data);
  task.weight_row_stride = static_cast<std::size_t>(weight.rank >= 2 ? weight.stride[static_cast<std::size_t>(weight.rank - 2)]
                                                                     : static_cast<std::int64_t>(row_bytes(weight.dtype, in)));
  task.in = in;
  task.token_count = token_count;
  task.y = y;
  task.y_row_stride = y_row_stride;
  task.dequantize_row = dequantize_row_function(weight.dtype);
  LAMINA_ASSERT(task.dequantize_row != nullptr, "matmul: weight type without a dequantizer");
  task.activation_format = kernels.activation_format(weight.dtype);
  if (task.activation_format == ActivationFormat::f32) {
    task.activations = reinterpret_cast<const std::uint8_t*>(x);
    task.activation_row_stride = in * sizeof(float);
  } else {
    task.activations = workspace.activations();
    task.activation_row_stride = activation_row_bytes(task.activation_format, in);
    auto quantize_token = [&](std::size_t t) {
      kernels.quantize_activations(task.activation_format, x + t * in, workspace.activations() + t * task.activation_row_stride, in);
    };
    // A few tokens take a few microseconds: less than handing them to another thread (a job
    // system's wake-up costs tens of microseconds, on a virtual machine up to milliseconds).
    constexpr std::size_t quantize_here_values = 16384;
    if (token_count * in <= quantize_here_values) {
      for (std::size_t t = 0; t < token_count; ++t) quantize_token(t);
    } else {
      parallel_for(executor, token_count, quantize_token);
    }
  }
  // Tokens [invariant_from, token_count) as a task of their own, batch-invariant. Both tasks
  // run on each chunk of rows in turn, so the second reads the chunk's weights from the cache.
  const std::size_t invariant_from = workspace.invariant_from() < token_count ? workspace.invariant_from() : token_count;
  MatmulTask invariant = task;
  invariant.batch_invariant = true;
  invariant.token_count = token_count - invariant_from;
  invariant.activations += invariant_from * task.activation_row_stride;
  invariant.y += invariant_from * y_row_stride;
  task.token_count = invariant_from;
  // Chunks of at least 16 rows keep scheduling cheap next to the arithmetic.
  const std::size_t rows = row_end - row_begin;
  std::size_t chunk_limit = rows / 16 > 0 ? rows / 16 : 1;
  if (chunk_limit > workspace.chunk_count()) chunk_limit = workspace.chunk_count();
  parallel_chunks(executor, rows, chunk_limit, [&](std::size_t chunk, std::size_t begin, std::size_t end) {
    if (task.token_count > 0) kernels.matmul_rows(task, row_begin + begin, row_begin + end, workspace.chunk_scratch(chunk));
    if (invariant.token_count > 0) kernels.matmul_rows(invariant, row_begin + begin, row_begin + end, workspace.chunk_scratch(chunk));
    if (epilogue != nullptr) epilogue->function(epilogue->context, row_begin + begin, row_begin + end);
  });
}

inline void matmul(Executor& executor, const CpuKernels& kernels, const TensorView& weight, const float* x, float* y,
                   std::size_t token_count, MatmulWorkspace& workspace, const MatmulEpilogue* epilogue = nullptr) {
  const std::size_t out = static_cast<std::size_t>(weight.row_count());
  matmul_row_range(executor, kernels, weight, x, y, out, token_count, 0, out, workspace, epilogue);
}

}  // namespace cpu
LAMINA_NAMESPACE_END
