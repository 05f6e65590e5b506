// lamina/kernels/cpu/simd/quant_legacy.inl — integer kernels for the 32-value block types
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) against 8-bit activations, for one instruction set.
//
// Included by kernels/cpu/instantiate.hpp inside lamina::cpu::<instruction set>; do not include
// it anywhere else. The instruction-set specific pieces are in quant_legacy_{sse2,avx2,avx512}.inl,
// included from here only.
//
// The arithmetic (GGML's): activations are quantized per block of 32 to int8 quants a_i with an
// F16 scale d_a (Q8_0; Q8_1 adds s = d_a * sum a_i). A weight block holds small integers q_i
// with an F16 scale d_w (and for Q4_1/Q5_1 an F16 minimum m_w), so one block's dot product is
//   Q4_0, Q5_0, Q8_0, IQ4_NL:  d_w * d_a * sum q_i a_i                 (q_i signed)
//   Q4_1, Q5_1:                d_w * d_a * sum q_i a_i  +  m_w * s     (q_i >= 0)
// The sum over 32 int8 products is exact in int32, then turned into float and multiplied by
// the two scales; the float sums run in vector lanes and are added up once per output.
//
// How the work is laid out (matmul_rows for one chunk of output rows):
//   1. "Prepare" a block of tokens into the scratch buffer: each token's Q8_0/Q8_1 blocks become
//      register-ready steps (quants, the per-lane correction, the scale spread over the lanes),
//      so the inner loop does no unpacking on the activation side. A step is what one vector
//      register holds: 64 values with AVX-512, 32 with AVX2 and SSE2.
//   2. Compute tiles of legacy_tile_rows weight rows x legacy_tile_tokens tokens: per step each
//      weight row is unpacked once (nibbles, fifth bits, codebook) and meets every token of the
//      tile, and each prepared token step meets every row. Prompts are compute bound, so this
//      reuse is what counts; decoding (one token) streams each weight row once.
//   3. Results never depend on how rows are split between threads: every (row, token) output
//      is computed by the same sequence of operations whatever tile holds it (a partial tile
//      repeats its last row or token and drops the copies).

// --- activations: float -> Q8_0 / Q8_1 blocks (GGML layout, quant/blocks.hpp) ---
//
// GGML's quantize_row_q8_0_ref / quantize_row_q8_1_ref, byte for byte (the scalar reference is
// quant::quantize_block(values, BlockQ8_0&)): d = amax / 127, q = roundf(x * (1 / d)) with ties
// away from zero, Q8_1's s = F16(d * sum q) with the unrounded d. Non-finite input gives what
// the reference gives: NaN -> 0, values beyond the int8 range clamped.

// The integer part of `value` (|value| < 2^31), through the truncating conversion.
inline float_batch truncate_toward_zero(float_batch value) {
#if LAMINA_CPU_TARGET == 3
  return float_batch(_mm512_cvtepi32_ps(_mm512_cvttps_epi32(value)));
#elif LAMINA_CPU_TARGET == 2
  return float_batch(_mm256_cvtepi32_ps(_mm256_cvttps_epi32(value)));
#else
  return float_batch(_mm_cvtepi32_ps(_mm_cvttps_epi32(value)));
#endif
}

// Quantizes 32 floats to int8 `quants`; returns the (unrounded) scale and, through
// `quant_sum`, the sum of the quants.
inline float quantize_block_to_int8(const float* x, std::int8_t* quants, int* quant_sum) {
  constexpr std::size_t batches = 32 / float_lanes;
  float_batch values[batches];
  float_batch magnitude(0.0f);
  for (std::size_t k = 0; k < batches; ++k) {
    values[k] = float_batch::load_unaligned(x + k * float_lanes);
    magnitude = xsimd::max(magnitude, xsimd::abs(values[k]));
  }
  alignas(64) float lanes[float_lanes];
  magnitude.store_aligned(lanes);
  float largest = 0.0f;
  for (std::size_t lane = 0; lane < float_lanes; ++lane) largest = largest > lanes[lane] ? largest : lanes[lane];
  const float scale = largest / 127;
  const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;

  float_batch rounded[batches];
  float_batch sum(0.0f);
  for (std::size_t k = 0; k < batches; ++k) {
    float_batch value = values[k] * float_batch(inverse);
    value = xsimd::select(xsimd::isnan(value), float_batch(0.0f), value);  // NaN -> 0, as the reference
    // Clamping first is the same as clamping the rounded value, and keeps the conversions exact.
    value = xsimd::min(xsimd::max(value, float_batch(-128.0f)), float_batch(127.0f));
    // roundf: ties away from zero.
    const float_batch truncated = truncate_toward_zero(value), fraction = value - truncated;
    value = truncated + xsimd::select(fraction >= float_batch(0.5f), float_batch(1.0f), float_batch(0.0f)) -
            xsimd::select(fraction <= float_batch(-0.5f), float_batch(1.0f), float_batch(0.0f));
    rounded[k] = value;
    sum += value;  // small integers: exact
  }
  *quant_sum = static_cast<int>(xsimd::hadd(sum));

  // The integral floats to int8 (the conversion is exact, the packing cannot saturate).
#if LAMINA_CPU_TARGET == 3
  for (std::size_t k = 0; k < batches; ++k) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(quants + 16 * k), _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(rounded[k])));
  }
#elif LAMINA_CPU_TARGET == 2
  // packs work inside 128-bit lanes: [a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7] -> permute.
  const __m256i ab = _mm256_packs_epi32(_mm256_cvttps_epi32(rounded[0]), _mm256_cvttps_epi32(rounded[1]));
  const __m256i cd = _mm256_packs_epi32(_mm256_cvttps_epi32(rounded[2]), _mm256_cvttps_epi32(rounded[3]));
  const __m256i packed = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(quants), packed);
#else
  for (std::size_t half = 0; half < 2; ++half) {
    const float_batch* four = rounded + 4 * half;
    const __m128i low = _mm_packs_epi32(_mm_cvttps_epi32(four[0]), _mm_cvttps_epi32(four[1]));
    const __m128i high = _mm_packs_epi32(_mm_cvttps_epi32(four[2]), _mm_cvttps_epi32(four[3]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(quants + 16 * half), _mm_packs_epi16(low, high));
  }
#endif
  return scale;
}

// [count / 32 blocks of 34 bytes]: F16 scale, 32 int8 quants.
inline void quantize_row_q8_0(const float* x, void* out, std::size_t count) {
  std::uint8_t* bytes = static_cast<std::uint8_t*>(out);
  for (std::size_t block = 0; block < count / 32; ++block, bytes += 34) {
    int sum = 0;
    const float scale = quantize_block_to_int8(x + block * 32, reinterpret_cast<std::int8_t*>(bytes + 2), &sum);
    const std::uint16_t scale_bits = f32_to_f16(scale);
    std::memcpy(bytes, &scale_bits, 2);
  }
}

// [count / 32 blocks of 36 bytes]: F16 scale, F16 scale * sum of quants, 32 int8 quants.
inline void quantize_row_q8_1(const float* x, void* out, std::size_t count) {
  std::uint8_t* bytes = static_cast<std::uint8_t*>(out);
  for (std::size_t block = 0; block < count / 32; ++block, bytes += 36) {
    int sum = 0;
    const float scale = quantize_block_to_int8(x + block * 32, reinterpret_cast<std::int8_t*>(bytes + 4), &sum);
    const std::uint16_t scale_bits = f32_to_f16(scale), sum_bits = f32_to_f16(static_cast<float>(sum) * scale);
    std::memcpy(bytes, &scale_bits, 2);
    std::memcpy(bytes + 2, &sum_bits, 2);
  }
}

// --- weights ---

// What every instruction set needs to know of a weight block type. `Offset`: the weight's
// integers q_i are stored as codes q_i + Offset in [0, 255] (Q4_0's nibbles: Offset 8; Q8_0's
// int8 quants read as unsigned: Offset 128); the AVX-512 kernel multiplies the codes and takes
// Offset * sum a_i back out. Types with a minimum (Q4_1, Q5_1) take Q8_1 activations.
template <DType Type, std::size_t BlockBytes, int Offset, bool HasMinimum>
struct LegacyFormatTraits {
  static constexpr DType weight_type = Type;
  static constexpr std::size_t block_bytes = BlockBytes;
  static constexpr int code_offset = Offset;
  static constexpr bool has_minimum = HasMinimum;
  static constexpr ActivationFormat activation_format = HasMinimum ? ActivationFormat::q8_1 : ActivationFormat::q8_0;
  // Activation block: Q8_0 = F16 scale, 32 quants; Q8_1 = F16 scale, F16 scaled sum, 32 quants.
  static constexpr std::size_t activation_block_bytes = HasMinimum ? 36 : 34;
  static constexpr std::size_t activation_quants_at = HasMinimum ? 4 : 2;
};

// The levels of IQ4_NL (GGML: kvalues_iq4nl; quant/iq4.hpp has the same table), a copy of our
// own: arch code reads nothing outside its namespace.
alignas(16) inline constexpr std::int8_t legacy_iq4_nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                                      1,    13,   25,  38,  53,  69,  89,  113};

inline std::uint16_t read_u16(const std::uint8_t* bytes) {
  std::uint16_t value;
  std::memcpy(&value, bytes, sizeof value);
  return value;
}

inline std::uint32_t read_u32(const std::uint8_t* bytes) {
  std::uint32_t value;
  std::memcpy(&value, bytes, sizeof value);
  return value;
}

// Loops over tile rows, tokens and registers are unrolled at compile time (body(LegacyIndex<i>()) for each
// i), so that the accumulators and unpacked rows live in registers: compilers at -O2 keep
// loops over small arrays rolled, and the arrays then in memory.
template <std::size_t Index>
struct LegacyIndex {
  constexpr operator std::size_t() const { return Index; }
};
template <std::size_t Index, std::size_t Count>
struct LegacyUnroll {
  template <class Body>
  static void run(Body& body) {
    body(LegacyIndex<Index>());
    LegacyUnroll<Index + 1, Count>::run(body);
  }
};
template <std::size_t Count>
struct LegacyUnroll<Count, Count> {
  template <class Body>
  static void run(Body&) {}
};
template <std::size_t Count, class Body>
inline void legacy_unroll(Body&& body) {
  LegacyUnroll<0, Count>::run(body);
}

// Per instruction set: legacy_step_blocks, legacy_step_bytes, the tile sizes, LegacyWeightStep,
// LegacyTokenStep, load_legacy_token_step, prepare_legacy_activations<Format>, the format
// structs LegacyQ4_0 … LegacyIQ4_NL (each with load<Blocks>(bytes)) and
// legacy_multiply_add<Format>.
#if LAMINA_CPU_TARGET == 3
#  include "quant_legacy_avx512.inl"
#elif LAMINA_CPU_TARGET == 2
#  include "quant_legacy_avx2.inl"
#else
#  include "quant_legacy_sse2.inl"
#endif

// Tokens prepared at a time (their steps stay in L2 while all row tiles pass over them).
inline constexpr std::size_t legacy_token_block = 2 * legacy_tile_tokens;

// One step (legacy_step_blocks blocks, or `Blocks` < that at the end of a row) of a tile:
// every row is unpacked once, then meets every token.
template <class Format, std::size_t Rows, std::size_t Tokens, std::size_t Blocks>
inline void legacy_tile_step(const Format& format, const std::uint8_t* const* weight_rows, const std::uint8_t* const* token_steps,
                             std::size_t step, float_batch (&sums)[Rows][Tokens]) {
  LegacyWeightStep weights[Rows];
  legacy_unroll<Rows>([&](auto r) {
    weights[r] = format.template load<Blocks>(weight_rows[r] + step * legacy_step_blocks * Format::block_bytes);
  });
  legacy_unroll<Tokens>([&](auto t) {
    const LegacyTokenStep token = load_legacy_token_step(token_steps[t] + step * legacy_step_bytes);
    legacy_unroll<Rows>([&](auto r) { sums[r][t] = legacy_multiply_add<Format>(weights[r], token, sums[r][t]); });
  });
}

// results[r][t] = dot(weight row r, token t) for a tile. weight_rows: Rows pointers to rows of
// `block_count` blocks; token_steps: Tokens pointers to prepared tokens.
template <class Format, std::size_t Rows, std::size_t Tokens>
inline void legacy_tile(const Format& format, const std::uint8_t* const* weight_rows, const std::uint8_t* const* token_steps,
                        std::size_t block_count, float (&results)[Rows][Tokens]) {
  float_batch sums[Rows][Tokens];
  legacy_unroll<Rows>([&](auto r) { legacy_unroll<Tokens>([&](auto t) { sums[r][t] = float_batch(0.0f); }); });
  const std::size_t full_steps = block_count / legacy_step_blocks;
  for (std::size_t step = 0; step < full_steps; ++step) {
    legacy_tile_step<Format, Rows, Tokens, legacy_step_blocks>(format, weight_rows, token_steps, step, sums);
  }
  if (legacy_step_blocks > 1 && block_count % legacy_step_blocks != 0) {  // an odd block at the end (AVX-512)
    legacy_tile_step<Format, Rows, Tokens, 1>(format, weight_rows, token_steps, full_steps, sums);
  }
  legacy_unroll<Rows>([&](auto r) {
    legacy_unroll<Tokens>([&](auto t) { results[r][t] = xsimd::hadd(sums[r][t]); });
  });
}

// Rows [row_begin, row_end) of `task` for weight type Format::weight_type.
template <class Format>
inline void legacy_matmul_rows_as(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  const Format format;
  if (legacy_prompt_rows(format, task, row_begin, row_end, scratch)) return;
  const std::size_t block_count = task.in / 32;
  const std::size_t prepared_token_bytes = (block_count + legacy_step_blocks - 1) / legacy_step_blocks * legacy_step_bytes;

  // The scratch holds matmul_scratch_floats(in) = 8 * in + 64 floats (kernels.hpp; not called:
  // arch code calls nothing outside its namespace). Prepared steps start 64-byte aligned.
  const std::uintptr_t address = reinterpret_cast<std::uintptr_t>(scratch);
  std::uint8_t* prepared = reinterpret_cast<std::uint8_t*>(scratch) + ((64 - address % 64) % 64);
  const std::size_t usable_bytes = (8 * task.in + 64) * sizeof(float) - 64;
  std::size_t token_block = usable_bytes / prepared_token_bytes;
  if (token_block > legacy_token_block) token_block = legacy_token_block;
  // 8 * in + 64 floats always hold at least one prepared token (3 bytes per value at most, plus
  // one padded step).

  for (std::size_t first_token = 0; first_token < task.token_count; first_token += token_block) {
    const std::size_t tokens = task.token_count - first_token < token_block ? task.token_count - first_token : token_block;
    for (std::size_t k = 0; k < tokens; ++k) {
      prepare_legacy_activations<Format>(task.activations + (first_token + k) * task.activation_row_stride, block_count,
                                         prepared + k * prepared_token_bytes);
    }
    for (std::size_t row = row_begin; row < row_end; row += legacy_tile_rows) {
      const std::size_t rows = row_end - row < legacy_tile_rows ? row_end - row : legacy_tile_rows;
      const std::uint8_t* weight_rows[legacy_tile_rows];
      for (std::size_t r = 0; r < legacy_tile_rows; ++r) {
        weight_rows[r] = task.weight + (row + (r < rows ? r : rows - 1)) * task.weight_row_stride;
      }
      for (std::size_t t = 0; t < tokens; t += legacy_tile_tokens) {
        const std::size_t tile_tokens = tokens - t < legacy_tile_tokens ? tokens - t : legacy_tile_tokens;
        float* y = task.y + (first_token + t) * task.y_row_stride + row;
        if (tile_tokens == 1) {  // decoding, or the last token of a block
          const std::uint8_t* token_steps[1] = {prepared + t * prepared_token_bytes};
          float results[legacy_tile_rows][1];
          legacy_tile<Format, legacy_tile_rows, 1>(format, weight_rows, token_steps, block_count, results);
          for (std::size_t r = 0; r < rows; ++r) y[r] = results[r][0];
        } else {
          const std::uint8_t* token_steps[legacy_tile_tokens];
          for (std::size_t k = 0; k < legacy_tile_tokens; ++k) {
            token_steps[k] = prepared + (t + (k < tile_tokens ? k : tile_tokens - 1)) * prepared_token_bytes;
          }
          float results[legacy_tile_rows][legacy_tile_tokens];
          legacy_tile<Format, legacy_tile_rows, legacy_tile_tokens>(format, weight_rows, token_steps, block_count, results);
          for (std::size_t k = 0; k < tile_tokens; ++k)
            for (std::size_t r = 0; r < rows; ++r) y[k * task.y_row_stride + r] = results[r][k];
        }
      }
    }
  }
}

// The activation format the integer kernel for `weight_type` takes; false: no integer kernel
// here (the float path runs).
inline bool legacy_activation_format(DType weight_type, ActivationFormat* format) {
  switch (weight_type) {
    case DType::q4_0: *format = LegacyQ4_0::activation_format; return true;
    case DType::q4_1: *format = LegacyQ4_1::activation_format; return true;
    case DType::q5_0: *format = LegacyQ5_0::activation_format; return true;
    case DType::q5_1: *format = LegacyQ5_1::activation_format; return true;
    case DType::q8_0: *format = LegacyQ8_0::activation_format; return true;
    case DType::iq4_nl: *format = LegacyIQ4_NL::activation_format; return true;
    default: return false;
  }
}

// The rows [row_begin, row_end) of `task` when this file has a kernel for its weight type (and
// the activations came in the format it asked for).
inline bool legacy_matmul_rows(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  ActivationFormat wanted = ActivationFormat::f32;
  if (!legacy_activation_format(task.weight_type, &wanted) || task.activation_format != wanted || task.in % 32 != 0) return false;
  switch (task.weight_type) {
    case DType::q4_0: legacy_matmul_rows_as<LegacyQ4_0>(task, row_begin, row_end, scratch); return true;
    case DType::q4_1: legacy_matmul_rows_as<LegacyQ4_1>(task, row_begin, row_end, scratch); return true;
    case DType::q5_0: legacy_matmul_rows_as<LegacyQ5_0>(task, row_begin, row_end, scratch); return true;
    case DType::q5_1: legacy_matmul_rows_as<LegacyQ5_1>(task, row_begin, row_end, scratch); return true;
    case DType::q8_0: legacy_matmul_rows_as<LegacyQ8_0>(task, row_begin, row_end, scratch); return true;
    case DType::iq4_nl: legacy_matmul_rows_as<LegacyIQ4_NL>(task, row_begin, row_end, scratch); return true;
    default: return false;
  }
}
