// bench/bench_support.hpp — what the kernel benchmarks share.
#pragma once

#include <lamina/lamina.hpp>

#include <cstddef>
#include <cstdint>

namespace lamina_bench {

// lamina::cpu::matmul with the activation format forced to F32 when `float_path` is set, so the
// same weights run through the dequantize-then-float kernel.
inline void run_matmul(lamina::Executor& executor, const lamina::cpu::CpuKernels& kernels, const lamina::TensorView& weight,
                const float* x, float* y, std::size_t token_count, lamina::cpu::MatmulWorkspace& workspace, bool float_path) {
  if (!float_path) {
    lamina::cpu::matmul(executor, kernels, weight, x, y, token_count, workspace);
    return;
  }
  const std::size_t in = static_cast<std::size_t>(weight.row_length());
  const std::size_t out = static_cast<std::size_t>(weight.row_count());
  lamina::cpu::MatmulTask task;
  task.weight_type = weight.dtype;
  task.weight = static_cast<const std::uint8_t*>(weight.data);
  task.weight_row_stride = lamina::row_bytes(weight.dtype, in);
  task.in = in;
  task.token_count = token_count;
  task.y = y;
  task.y_row_stride = out;
  task.dequantize_row = lamina::cpu::dequantize_row_function(weight.dtype);
  task.activation_format = lamina::cpu::ActivationFormat::f32;
  task.activations = reinterpret_cast<const std::uint8_t*>(x);
  task.activation_row_stride = in * sizeof(float);
  std::size_t chunk_limit = out / 16 > 0 ? out / 16 : 1;
  if (chunk_limit > lamina::cpu::max_parallel_chunks) chunk_limit = lamina::cpu::max_parallel_chunks;
  lamina::parallel_chunks(executor, out, chunk_limit, [&](std::size_t chunk, std::size_t row_begin, std::size_t row_end) {
    kernels.matmul_rows(task, row_begin, row_end, workspace.chunk_scratch(chunk));
  });
}

}  // namespace lamina_bench
