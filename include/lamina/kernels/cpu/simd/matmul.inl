// lamina/kernels/cpu/simd/matmul.inl — matrix products for one instruction set.
//
// Included by kernels/cpu/instantiate.hpp inside lamina::cpu::<instruction set>, after
// vector_ops.inl; do not include it anywhere else.
//
// The float path: weights as floats (F32 and BF16 read in place or widened, F16 converted with
// F16C, any other type dequantized through task.dequantize_row) times float activations.
//
// One token (decoding, memory bound): the rows one after the other, a single sequential stream
// that the hardware prefetchers follow across pages.
//
// Several tokens (prompts, compute bound): a small GEMM. A panel of gemm_panel_rows weight rows
// (two vector registers' worth) and gemm_k_block columns is converted and stored transposed,
// [k][row], so one aligned load gives the weight of every panel row at column k. The
// micro-kernel then keeps a tile of gemm_panel_rows rows x gemm_tile_tokens tokens of outputs in
// registers and, for each k, multiplies the panel's two registers by each token's activation
// broadcast to all lanes: 2 x Tokens FMAs for 2 loads and Tokens broadcasts, no horizontal sums.
// Every output y[t][o] is one FMA chain over k = 0 .. in - 1 in order, starting from zero (a
// later k-block resumes from the stored partial sum), whatever the panel, tile or chunk holding
// it, so results do not depend on how rows are split between threads.

inline constexpr std::size_t gemm_panel_rows = 2 * float_lanes;
#if LAMINA_CPU_TARGET == 3
inline constexpr std::size_t gemm_tile_tokens = 12;  // 24 accumulators + 2 weights + 1 broadcast of 32 registers
#else
inline constexpr std::size_t gemm_tile_tokens = 6;   // 12 accumulators + 2 weights + 1 broadcast of 16 registers
#endif
inline constexpr std::size_t gemm_k_block = 256;    // a panel: gemm_panel_rows x 256 floats (32 KiB with AVX-512), in L1

// y[t * y_stride + r] (+)= sum_k panel[k][r] * x[t * x_stride + k] for r < gemm_panel_rows,
// t < Tokens, k < k_count; `resume`: add to the partial sums already in y.
template <std::size_t Tokens>
inline void gemm_tile(const float* panel, const float* x, std::size_t x_stride, std::size_t k_count, float* y, std::size_t y_stride,
                      bool resume) {
  float_batch low[Tokens], high[Tokens];
  unroll<Tokens>([&](auto t) {
    low[t] = resume ? float_batch::load_unaligned(y + t * y_stride) : float_batch(0.0f);
    high[t] = resume ? float_batch::load_unaligned(y + t * y_stride + float_lanes) : float_batch(0.0f);
  });
  for (std::size_t k = 0; k < k_count; ++k) {
    const float_batch weights_low = float_batch::load_aligned(panel + k * gemm_panel_rows);
    const float_batch weights_high = float_batch::load_aligned(panel + k * gemm_panel_rows + float_lanes);
    unroll<Tokens>([&](auto t) {
      const float_batch activation(x[t * x_stride + k]);
      low[t] = fma(weights_low, activation, low[t]);
      high[t] = fma(weights_high, activation, high[t]);
    });
  }
  unroll<Tokens>([&](auto t) {
    low[t].store_unaligned(y + t * y_stride);
    high[t].store_unaligned(y + t * y_stride + float_lanes);
  });
}

// Runtime token count (1 .. gemm_tile_tokens) -> the template instance.
template <std::size_t Tokens = gemm_tile_tokens>
inline void gemm_tile_any(std::size_t tokens, const float* panel, const float* x, std::size_t x_stride, std::size_t k_count, float* y,
                          std::size_t y_stride, bool resume) {
  if constexpr (Tokens > 1) {
    if (tokens < Tokens) return gemm_tile_any<Tokens - 1>(tokens, panel, x, x_stride, k_count, y, y_stride, resume);
  }
  gemm_tile<Tokens>(panel, x, x_stride, k_count, y, y_stride, resume);
}

// Widens floats [k_begin, k_begin + k_count) of stored weight row `row` into `out` (F32, F16 and BF16).
inline void widen_weight_columns(DType type, const std::uint8_t* row, std::size_t k_begin, std::size_t k_count, float* out) {
  if (type == DType::f32) {
    std::memcpy(out, reinterpret_cast<const float*>(row) + k_begin, k_count * sizeof(float));
  } else if (type == DType::f16) {
    f16_to_f32_row(reinterpret_cast<const std::uint16_t*>(row) + k_begin, out, k_count);
  } else {
    for (std::size_t k = 0; k < k_count; ++k) out[k] = bf16_to_f32(read_u16(row + 2 * (k_begin + k)));
  }
}

#if LAMINA_CPU_TARGET == 3
// Transposes 16 x 16 floats in registers (v[r][c] -> v[c][r]): swap the off-diagonal 8 x 8
// blocks, then the 4 x 4 blocks inside each, then 2 x 2, then single elements; a swap of
// `Block` pairs register i with i + Block, one two-source permute each way.
template <std::size_t Block>
LAMINA_CPU_INLINE void transpose_round(__m512 (&v)[16]) {
  alignas(64) std::int32_t low_index[16], high_index[16];
  for (std::int32_t lane = 0; lane < 16; ++lane) {
    const bool upper = (lane & static_cast<std::int32_t>(Block)) != 0;
    low_index[lane] = upper ? 16 + lane - static_cast<std::int32_t>(Block) : lane;
    high_index[lane] = upper ? 16 + lane : lane + static_cast<std::int32_t>(Block);
  }
  const __m512i low = _mm512_load_si512(low_index), high = _mm512_load_si512(high_index);
  unroll<16>([&](auto i) {
    if constexpr ((i & Block) == 0) {
      const __m512 first = v[i], second = v[i + Block];
      v[i] = _mm512_permutex2var_ps(first, low, second);
      v[i + Block] = _mm512_permutex2var_ps(first, high, second);
    }
  });
}
#endif

// Fills panel[k][r] = weight[first_row + r][k_begin + k] for r < gemm_panel_rows, k < k_count
// (rows past `rows`: zero). `k_block` columns are taken at a time (all of them for types without
// in-place widening, which `row_values`, room for one row, receives whole).
inline void pack_panel(const MatmulTask& task, std::size_t first_row, std::size_t rows, std::size_t k_begin, std::size_t k_count,
                       std::size_t k_block, float* panel, float* row_values) {
  const bool f32_weights = task.weight_type == DType::f32, f16_weights = task.weight_type == DType::f16;
  const std::size_t element_bytes = f32_weights ? 4 : 2;
  if (f32_weights || f16_weights || task.weight_type == DType::bf16) {
    // The panel's rows are more streams than the hardware prefetchers follow: fetch each row's
    // next k-block (or the next panel's row) into L2 while the tiles of this one run.
    for (std::size_t r = 0; r < rows; ++r) {
      const std::uint8_t* stored = task.weight + (first_row + r) * task.weight_row_stride;
      const std::uint8_t* next = k_begin + k_block < task.in ? stored + (k_begin + k_block) * element_bytes
                                                             : stored + gemm_panel_rows * task.weight_row_stride;
      for (std::size_t line = 0; line < k_block * element_bytes; line += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(next + line), _MM_HINT_T1);
      }
    }
  }
#if LAMINA_CPU_TARGET == 3
  if ((f32_weights || f16_weights) && rows == gemm_panel_rows && k_count % 16 == 0) {
    for (std::size_t half = 0; half < 2; ++half) {
      const std::uint8_t* first = task.weight + (first_row + 16 * half) * task.weight_row_stride + k_begin * element_bytes;
      for (std::size_t k = 0; k < k_count; k += 16) {
        __m512 v[16];
        unroll<16>([&](auto r) {
          const std::uint8_t* columns = first + r * task.weight_row_stride + k * element_bytes;
          v[r] = f16_weights ? _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(columns)))
                             : _mm512_loadu_ps(reinterpret_cast<const float*>(columns));
        });
        transpose_round<8>(v);
        transpose_round<4>(v);
        transpose_round<2>(v);
        transpose_round<1>(v);
        unroll<16>([&](auto c) { _mm512_store_ps(panel + (k + c) * gemm_panel_rows + 16 * half, v[c]); });
      }
    }
    return;
  }
#endif
  for (std::size_t r = 0; r < gemm_panel_rows; ++r) {
    if (r >= rows) {
      for (std::size_t k = 0; k < k_count; ++k) panel[k * gemm_panel_rows + r] = 0.0f;
      continue;
    }
    const std::uint8_t* stored = task.weight + (first_row + r) * task.weight_row_stride;
    if (f32_weights || f16_weights || task.weight_type == DType::bf16) widen_weight_columns(task.weight_type, stored, k_begin, k_count, row_values);
    else task.dequantize_row(stored, row_values, task.in);
    for (std::size_t k = 0; k < k_count; ++k) panel[k * gemm_panel_rows + r] = row_values[k];
  }
}

inline void matmul_rows_float(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  const std::size_t in = task.in;
  const bool f32_weights = task.weight_type == DType::f32;
  const bool f16_weights = task.weight_type == DType::f16;
  if (task.token_count == 1 && !task.batch_invariant && (f32_weights || f16_weights)) {
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
  // Scratch (matmul_scratch_floats(in) = (matmul_scratch_rows + 1) * in + 64 floats, kernels.hpp;
  // gemm_panel_rows <= matmul_scratch_rows): the panel, 64-byte aligned, then one widened row.
  // Types widened in place take the columns a k-block at a time; the others are dequantized a
  // whole row at a time, so their panel spans every column.
  const bool widened_in_place = f32_weights || f16_weights || task.weight_type == DType::bf16;
  const std::size_t k_block = widened_in_place && in > gemm_k_block ? gemm_k_block : in;
  float* panel = scratch + (64 - reinterpret_cast<std::uintptr_t>(scratch) % 64) % 64 / sizeof(float);
  float* row_values = panel + gemm_panel_rows * k_block;
  const std::size_t x_stride = task.activation_row_stride / sizeof(float);
  alignas(64) float edge[gemm_tile_tokens * gemm_panel_rows];  // outputs of a panel cut short by row_end

  for (std::size_t first_row = row_begin; first_row < row_end; first_row += gemm_panel_rows) {
    const std::size_t rows = row_end - first_row < gemm_panel_rows ? row_end - first_row : gemm_panel_rows;
    for (std::size_t k_begin = 0; k_begin < in; k_begin += k_block) {
      const std::size_t k_count = in - k_begin < k_block ? in - k_begin : k_block;
      pack_panel(task, first_row, rows, k_begin, k_count, k_block, panel, row_values);
      const bool resume = k_begin > 0;
      for (std::size_t first_token = 0; first_token < task.token_count; first_token += gemm_tile_tokens) {
        const std::size_t tokens = task.token_count - first_token < gemm_tile_tokens ? task.token_count - first_token : gemm_tile_tokens;
        const float* x = reinterpret_cast<const float*>(task.activations + first_token * task.activation_row_stride) + k_begin;
        float* y = task.y + first_token * task.y_row_stride + first_row;
        if (rows == gemm_panel_rows) {
          gemm_tile_any(tokens, panel, x, x_stride, k_count, y, task.y_row_stride, resume);
          continue;
        }
        // A short panel: work in `edge`, so the outputs of the rows past row_end (another
        // chunk's) are never written.
        for (std::size_t t = 0; t < tokens; ++t) {
          for (std::size_t r = 0; r < gemm_panel_rows; ++r) edge[t * gemm_panel_rows + r] = r < rows && resume ? y[t * task.y_row_stride + r] : 0.0f;
        }
        gemm_tile_any(tokens, panel, x, x_stride, k_count, edge, gemm_panel_rows, resume);
        for (std::size_t t = 0; t < tokens; ++t) std::memcpy(y + t * task.y_row_stride, edge + t * gemm_panel_rows, rows * sizeof(float));
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
