// lamina/kernels/cpu/matmul.hpp — the CPU matrix products of the forward pass.
//
// y[t][o] = sum_i weight[o][i] * x[t][i]   (x: [token_count, in], weight: [out, in], y: [token_count, out])
//
// Work is split over output rows. Each row of the weight is read (and converted to float when
// stored as F16/BF16) once and multiplied with a tile of tokens while it is hot in cache: for a
// prompt this is matrix × matrix work, for one decoded token matrix × vector. A row's result
// never depends on how rows are split, so results are identical for any thread count.
#pragma once

#include "../../core/executor.hpp"
#include "../../core/tensor.hpp"
#include "../reference.hpp"

#include <cstddef>
#include <cstdint>

namespace lamina {
namespace cpu {

// Float dot product with eight independent partial sums (lets the compiler use vector registers
// without reassociating a single sum). The summation order is fixed, so results are reproducible.
inline float dot(const float* a, const float* b, std::size_t count) {
  float partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    for (std::size_t lane = 0; lane < 8; ++lane) partial[lane] += a[i + lane] * b[i + lane];
  }
  for (; i < count; ++i) partial[i % 8] += a[i] * b[i];
  return ((partial[0] + partial[4]) + (partial[1] + partial[5])) + ((partial[2] + partial[6]) + (partial[3] + partial[7]));
}

// Upper bound on the chunks a matmul or attention is split into; also the number of scratch
// rows a caller provides (see MatmulScratch).
inline constexpr std::size_t max_parallel_chunks = 64;

// Per-chunk scratch: `max_parallel_chunks` rows of `row_capacity` floats.
struct MatmulScratch {
  float* rows = nullptr;
  std::size_t row_capacity = 0;
  float* row(std::size_t chunk) const { return rows + chunk * row_capacity; }
};

inline void matmul(Executor& executor, const TensorView& weight, const float* x, float* y, std::size_t token_count,
                   const MatmulScratch& scratch) {
  const std::size_t in = static_cast<std::size_t>(weight.row_length());
  const std::size_t out = static_cast<std::size_t>(weight.row_count());
  LAMINA_ASSERT(weight.dtype == DType::f32 || in <= scratch.row_capacity, "matmul: scratch row too small");
  // Tokens are processed in tiles so a tile of x stays in L2 while the weight rows stream by.
  constexpr std::size_t token_tile = 32;
  // Chunks of at least 16 rows keep the scheduling cost negligible next to the arithmetic.
  std::size_t chunk_limit = out / 16 > 0 ? out / 16 : 1;
  if (chunk_limit > max_parallel_chunks) chunk_limit = max_parallel_chunks;
  parallel_chunks(executor, out, chunk_limit, [&](std::size_t chunk, std::size_t row_begin, std::size_t row_end) {
    float* converted = scratch.row(chunk);
    for (std::size_t tile = 0; tile < token_count; tile += token_tile) {
      const std::size_t tile_end = tile + token_tile < token_count ? tile + token_tile : token_count;
      for (std::size_t o = row_begin; o < row_end; ++o) {
        const float* weight_row;
        if (weight.dtype == DType::f32) {
          weight_row = reinterpret_cast<const float*>(weight.row(static_cast<std::int64_t>(o)));
        } else {
          reference::row_to_f32(weight.dtype, weight.row(static_cast<std::int64_t>(o)), converted, in);
          weight_row = converted;
        }
        for (std::size_t t = tile; t < tile_end; ++t) y[t * out + o] = dot(weight_row, x + t * in, in);
      }
    }
  });
}

}  // namespace cpu
}  // namespace lamina
