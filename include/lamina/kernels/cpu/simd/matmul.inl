// lamina/kernels/cpu/simd/matmul.inl — matrix products for one instruction set.
//
// Included by kernels/cpu/instantiate.hpp inside lamina::cpu::<instruction set>, after
// vector_ops.inl; do not include it anywhere else.
//
// The float path: weight rows as floats (F32 used in place, F16 converted with F16C, any other
// type dequantized through task.dequantize_row) multiplied with float activations. One token:
// one row at a time, streaming. Several: tiles of
// tile_rows × tile_tokens dot products, so each weight vector loaded meets several tokens and
// each activation vector several rows. Every (row, token) result is computed by the same
// sequence of operations whatever the tiling, so results do not depend on how rows are split
// between threads.

inline constexpr std::size_t tile_rows = 4;
#if LAMINA_CPU_TARGET == 3
inline constexpr std::size_t tile_tokens = 4;  // 16 accumulators + 5 operands of 32 registers
#else
inline constexpr std::size_t tile_tokens = 2;  // 8 accumulators + 3 operands of 16 registers
#endif

// y[t * y_stride + r] = dot(weight_rows[r], token_rows[t]) for r < Rows, t < Tokens.
template <std::size_t Rows, std::size_t Tokens>
inline void dot_tile(const float* const* weight_rows, const float* const* token_rows, std::size_t count, float* y,
                     std::size_t y_stride) {
  float_batch accumulator[Rows][Tokens];
  for (std::size_t r = 0; r < Rows; ++r)
    for (std::size_t t = 0; t < Tokens; ++t) accumulator[r][t] = float_batch(0.0f);
  std::size_t i = 0;
  for (; i + float_lanes <= count; i += float_lanes) {
    float_batch tokens[Tokens];
    for (std::size_t t = 0; t < Tokens; ++t) tokens[t] = float_batch::load_unaligned(token_rows[t] + i);
    for (std::size_t r = 0; r < Rows; ++r) {
      const float_batch weights = float_batch::load_unaligned(weight_rows[r] + i);
      for (std::size_t t = 0; t < Tokens; ++t) accumulator[r][t] = xsimd::fma(weights, tokens[t], accumulator[r][t]);
    }
  }
  for (std::size_t r = 0; r < Rows; ++r) {
    for (std::size_t t = 0; t < Tokens; ++t) {
      float sum = xsimd::hadd(accumulator[r][t]);
      for (std::size_t j = i; j < count; ++j) sum += weight_rows[r][j] * token_rows[t][j];
      y[t * y_stride + r] = sum;
    }
  }
}

// Runtime tile size -> the template instance (Rows in 1..tile_rows, Tokens in 1..tile_tokens).
template <std::size_t Rows>
inline void dot_tile_rows(std::size_t tokens, const float* const* weight_rows, const float* const* token_rows, std::size_t count,
                          float* y, std::size_t y_stride) {
  switch (tokens) {
    case 1: dot_tile<Rows, 1>(weight_rows, token_rows, count, y, y_stride); return;
    case 2: dot_tile<Rows, 2>(weight_rows, token_rows, count, y, y_stride); return;
#if LAMINA_CPU_TARGET == 3
    case 3: dot_tile<Rows, 3>(weight_rows, token_rows, count, y, y_stride); return;
    case 4: dot_tile<Rows, 4>(weight_rows, token_rows, count, y, y_stride); return;
#endif
    default: return;
  }
}

inline void dot_tile_any(std::size_t rows, std::size_t tokens, const float* const* weight_rows, const float* const* token_rows,
                         std::size_t count, float* y, std::size_t y_stride) {
  switch (rows) {
    case 1: dot_tile_rows<1>(tokens, weight_rows, token_rows, count, y, y_stride); return;
    case 2: dot_tile_rows<2>(tokens, weight_rows, token_rows, count, y, y_stride); return;
    case 3: dot_tile_rows<3>(tokens, weight_rows, token_rows, count, y, y_stride); return;
    case 4: dot_tile_rows<4>(tokens, weight_rows, token_rows, count, y, y_stride); return;
    default: return;
  }
}

inline void matmul_rows_float(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  const std::size_t in = task.in;
  const bool f32_weights = task.weight_type == DType::f32;
  const bool f16_weights = task.weight_type == DType::f16;
  if (task.token_count == 1 && (f32_weights || f16_weights)) {
    // Decoding is memory bound: read the rows one after the other as a single sequential
    // stream, which the hardware prefetchers follow across pages (several rows read side by
    // side are separate streams that each stop at a page boundary: half the bandwidth).
    const float* token = reinterpret_cast<const float*>(task.activations);
    for (std::size_t row = row_begin; row < row_end; ++row) {
      const std::uint8_t* stored = task.weight + row * task.weight_row_stride;
      task.y[row] = f16_weights ? dot_f16(reinterpret_cast<const std::uint16_t*>(stored), token, in)
                                : dot(reinterpret_cast<const float*>(stored), token, in);
    }
    return;
  }
  // Several tokens: take the rows a block at a time (matmul_scratch_rows rows, converted to
  // float once, kept in L2), and run every token through the block in tiles, so each weight is
  // read from memory once per matrix product.
  for (std::size_t block = row_begin; block < row_end; block += matmul_scratch_rows) {
    const std::size_t block_end = block + matmul_scratch_rows < row_end ? block + matmul_scratch_rows : row_end;
    const float* block_rows[matmul_scratch_rows];
    for (std::size_t row = block; row < block_end; ++row) {
      const std::uint8_t* stored = task.weight + row * task.weight_row_stride;
      if (f32_weights) {
        block_rows[row - block] = reinterpret_cast<const float*>(stored);
        continue;
      }
      float* converted = scratch + (row - block) * in;
      if (f16_weights) f16_to_f32_row(reinterpret_cast<const std::uint16_t*>(stored), converted, in);
      else task.dequantize_row(stored, converted, in);
      block_rows[row - block] = converted;
    }
    for (std::size_t t = 0; t < task.token_count; t += tile_tokens) {
      const std::size_t tokens = task.token_count - t < tile_tokens ? task.token_count - t : tile_tokens;
      const float* token_rows[tile_tokens];
      for (std::size_t k = 0; k < tokens; ++k) {
        token_rows[k] = reinterpret_cast<const float*>(task.activations + (t + k) * task.activation_row_stride);
      }
      for (std::size_t row = block; row < block_end; row += tile_rows) {
        const std::size_t rows = block_end - row < tile_rows ? block_end - row : tile_rows;
        dot_tile_any(rows, tokens, block_rows + (row - block), token_rows, in, task.y + t * task.y_row_stride + row, task.y_row_stride);
      }
    }
  }
}

// --- the entry points in the kernel table ---
//
// Quantized weight types with an integer kernel for this instruction set take 8-bit
// activations (quant_legacy.inl: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL; quant_k.inl: the
// K-quants and IQ4_XS); everything else goes through the float path above.

inline ActivationFormat activation_format(DType weight_type) {
  ActivationFormat format = ActivationFormat::f32;
  if (legacy_activation_format(weight_type, &format)) return format;
  if (k_quant_activation_format(weight_type, &format)) return format;
  return ActivationFormat::f32;
}

inline void quantize_activations(ActivationFormat format, const float* x, void* out, std::size_t count) {
  switch (format) {
    case ActivationFormat::f32: std::memcpy(out, x, count * sizeof(float)); return;
    case ActivationFormat::q8_0: quantize_row_q8_0(x, out, count); return;
    case ActivationFormat::q8_1: quantize_row_q8_1(x, out, count); return;
    case ActivationFormat::q8_k: quantize_row_q8_k(x, out, count); return;
  }
}

inline void matmul_rows(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  if (task.activation_format != ActivationFormat::f32) {
    if (legacy_matmul_rows(task, row_begin, row_end, scratch)) return;
    if (k_quant_matmul_rows(task, row_begin, row_end, scratch)) return;
  }
  matmul_rows_float(task, row_begin, row_end, scratch);
}
