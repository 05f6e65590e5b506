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
// Two kernels share the work (legacy_matmul_rows, for one chunk of output rows):
//   - The step kernel (legacy_tile; decoding, and every token count on SSE2): each token's
//     Q8_0/Q8_1 blocks are first "prepared" into the scratch buffer as register-ready steps
//     (quants, a per-lane correction, the scale spread over the lanes; a step is what one
//     register holds: 64 values with AVX-512, 32 with AVX2 and SSE2). Tiles of
//     legacy_tile_rows rows x legacy_tile_tokens tokens then unpack each row's step once
//     (nibbles, fifth bits, codebook) for all the tile's tokens. Decoding streams each weight
//     row once, with software prefetches.
//   - The transposed kernel (legacy_prompt_rows; prompts on AVX-512 and AVX2): a block of 16
//     (AVX-512) or 8 (AVX2) rows is transposed so that a vector lane holds one row, and each
//     token's activation bytes are broadcast to all lanes: the float work (convert, scale, FMA)
//     is then shared by 16 or 8 (row, token) pairs instead of being paid for each. See
//     quant_legacy_avx512_prompt.inl.
// Which kernel runs depends only on the weight type and the token count, and every (row, token)
// output is computed by the same sequence of operations whatever tile or row group holds it (a
// partial one repeats its last row or token and drops the copies): results never depend on how
// rows are split between threads.
//
// The scratch buffer of a chunk holds matmul_scratch_floats(in) = 8 * in + 64 floats
// (kernels.hpp; not called from here: arch code calls nothing outside its namespace).

// --- activations: float -> Q8_0 / Q8_1 blocks (GGML layout, quant/blocks.hpp) ---
//
// GGML's quantize_row_q8_0_ref / quantize_row_q8_1_ref, byte for byte (the scalar reference is
// quant::quantize_block(values, BlockQ8_0&)): d = amax / 127, q = roundf(x * (1 / d)) with ties
// away from zero, Q8_1's s = F16(d * sum q) with the unrounded d. Non-finite input gives what
// the reference gives: NaN -> 0, values beyond the int8 range clamped.

// The integer part of `value` (|value| < 2^31), rounding toward zero.
inline float_batch truncate_toward_zero(float_batch value) {
#if LAMINA_CPU_TARGET == 3
  return float_batch(_mm512_roundscale_ps(value, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
#elif LAMINA_CPU_TARGET == 2
  return float_batch(_mm256_round_ps(value, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
#else
  return float_batch(_mm_cvtepi32_ps(_mm_cvttps_epi32(value)));  // SSE2 has no rounding instruction
#endif
}

// The largest lane of `value` (x86 max semantics: a NaN lane may or may not win).
inline float largest_lane(float_batch value) {
#if LAMINA_CPU_TARGET == 3
  const __m256 half = _mm256_max_ps(_mm512_castps512_ps256(value), _mm512_extractf32x8_ps(value, 1));
  __m128 quarter = _mm_max_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
#elif LAMINA_CPU_TARGET == 2
  __m128 quarter = _mm_max_ps(_mm256_castps256_ps128(value), _mm256_extractf128_ps(value, 1));
#else
  __m128 quarter = value;
#endif
  quarter = _mm_max_ps(quarter, _mm_movehl_ps(quarter, quarter));
  quarter = _mm_max_ss(quarter, _mm_shuffle_ps(quarter, quarter, 1));
  return _mm_cvtss_f32(quarter);
}

// F32 -> F16 bits, round to nearest even (what f32_to_f16 computes), in hardware where there is F16C.
inline std::uint16_t scale_to_f16(float scale) {
#if LAMINA_CPU_TARGET >= 2
  return static_cast<std::uint16_t>(_mm_cvtsi128_si32(_mm_cvtps_ph(_mm_set_ss(scale), _MM_FROUND_TO_NEAREST_INT)));
#else
  return f32_to_f16(scale);
#endif
}

// Quantizes 32 floats to int8 `quants` and returns the (unrounded) scale; with WantSum also
// the sum of the quants through `quant_sum`.
template <bool WantSum>
inline float quantize_block_to_int8(const float* x, std::int8_t* quants, int* quant_sum) {
  constexpr std::size_t batches = 32 / float_lanes;
  float_batch values[batches];
  float_batch magnitude(0.0f);
  for (std::size_t k = 0; k < batches; ++k) {
    values[k] = float_batch::load_unaligned(x + k * float_lanes);
    magnitude = max(magnitude, abs(values[k]));
  }
  const float scale = largest_lane(magnitude) / 127;
  const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;

  float_batch rounded[batches];
  for (std::size_t k = 0; k < batches; ++k) {
    float_batch value = values[k] * float_batch(inverse);
    value = select(isnan(value), float_batch(0.0f), value);  // NaN -> 0, as the reference
    // Clamping first is the same as clamping the rounded value, and keeps the conversions exact.
    value = min(max(value, float_batch(-128.0f)), float_batch(127.0f));
    // roundf: ties away from zero.
    const float_batch truncated = truncate_toward_zero(value), fraction = value - truncated;
    rounded[k] = truncated + select(fraction >= float_batch(0.5f), float_batch(1.0f), float_batch(0.0f)) -
                 select(fraction <= float_batch(-0.5f), float_batch(1.0f), float_batch(0.0f));
  }
  if (WantSum) {
    float_batch sum = rounded[0];
    for (std::size_t k = 1; k < batches; ++k) sum += rounded[k];
    *quant_sum = static_cast<int>(reduce_add(sum));  // small integers: exact
  }

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
    const float scale = quantize_block_to_int8<false>(x + block * 32, reinterpret_cast<std::int8_t*>(bytes + 2), nullptr);
    const std::uint16_t scale_bits = scale_to_f16(scale);
    std::memcpy(bytes, &scale_bits, 2);
  }
}

// [count / 32 blocks of 36 bytes]: F16 scale, F16 scale * sum of quants, 32 int8 quants.
inline void quantize_row_q8_1(const float* x, void* out, std::size_t count) {
  std::uint8_t* bytes = static_cast<std::uint8_t*>(out);
  for (std::size_t block = 0; block < count / 32; ++block, bytes += 36) {
    int sum = 0;
    const float scale = quantize_block_to_int8<true>(x + block * 32, reinterpret_cast<std::int8_t*>(bytes + 4), &sum);
    const std::uint16_t scale_bits = scale_to_f16(scale), sum_bits = scale_to_f16(static_cast<float>(sum) * scale);
    std::memcpy(bytes, &scale_bits, 2);
    std::memcpy(bytes + 2, &sum_bits, 2);
  }
}

// --- weights ---

// What every instruction set needs to know of a weight block type. `Offset`: the weight's
// integers q_i as unsigned codes q_i + Offset in [0, 255] (Q4_0's nibbles: Offset 8; Q8_0's
// int8 quants with the sign bit flipped: Offset 128), which is what vpdpbusd / vpmaddubsw
// multiply; the kernels that use codes take Offset * sum a_i back out. Types with a minimum
// (Q4_1, Q5_1) take Q8_1 activations.
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

// The chunk's scratch from its first 64-byte boundary on, and how many bytes of it are usable.
inline std::uint8_t* legacy_aligned_scratch(float* scratch, std::size_t in, std::size_t* usable_bytes) {
  const std::uintptr_t address = reinterpret_cast<std::uintptr_t>(scratch);
  *usable_bytes = (8 * in + 64) * sizeof(float) - 64;  // 8 * in + 64 floats, less the alignment
  return reinterpret_cast<std::uint8_t*>(scratch) + ((64 - address % 64) % 64);
}

// Per instruction set: for the step kernel legacy_step_blocks, legacy_step_bytes, the tile
// sizes, LegacyWeightStep, LegacyTokenStep, load_legacy_token_step,
// prepare_legacy_activations<Format>, the format structs LegacyQ4_0 … LegacyIQ4_NL (each with
// load<Blocks>(bytes)) and legacy_multiply_add<Format>; for the transposed kernel (AVX-512,
// AVX2) legacy_prompt_supports / _min_tokens / _max_tokens / _group_rows / _tile_tokens,
// LegacyRowGroup, make_legacy_row_group, LegacyTransposedBlock, load_transposed_block,
// prepare_token_info<Format>, multiply_transposed_block<Format, Tokens> and store_group_sums.
#if LAMINA_CPU_TARGET == 3
#  include "quant_legacy_avx512.inl"
#elif LAMINA_CPU_TARGET == 2
#  include "quant_legacy_avx2.inl"
#else
#  include "quant_legacy_sse2.inl"
#endif

// How far ahead of its reads a tile asks for weight bytes (measured on Zen 5). Several rows side
// by side: 256 bytes into L1 (128 to 1024 all do well). One row (decoding): 8 KiB into L2; the
// kernel's few loads in flight leave the hardware prefetchers behind (Q8_0: 35 -> 46 tokens/s
// on llama-1b with 2 threads). Rows are contiguous, so this reaches into the next rows.
inline constexpr std::size_t legacy_prefetch_distance = 256;
inline constexpr std::size_t legacy_decode_prefetch_distance = 8192;

// Tokens prepared at a time (their steps stay in L2 while all row tiles pass over them).
inline constexpr std::size_t legacy_token_block = 2 * legacy_tile_tokens;

// One step (legacy_step_blocks blocks, or `Blocks` < that at the end of a row) of a tile:
// every row is unpacked once, then meets every token.
template <class Format, std::size_t Rows, std::size_t Tokens, std::size_t Blocks>
inline void legacy_tile_step(const Format& format, const std::uint8_t* const* weight_rows, const std::uint8_t* const* token_steps,
                             std::size_t step, float_batch (&sums)[Rows][Tokens]) {
  LegacyWeightStep weights[Rows];
  unroll<Rows>([&](auto r) {
    const std::uint8_t* blocks = weight_rows[r] + step * legacy_step_blocks * Format::block_bytes;
    // The hardware prefetchers lose track of Rows interleaved streams and fall behind a single
    // one (Q4_0 decoding: 3x faster with this). A prefetch never faults, even past the end.
    if (Rows == 1) _mm_prefetch(reinterpret_cast<const char*>(blocks + legacy_decode_prefetch_distance), _MM_HINT_T1);
    else _mm_prefetch(reinterpret_cast<const char*>(blocks + legacy_prefetch_distance), _MM_HINT_T0);
    weights[r] = format.template load<Blocks>(blocks);
  });
  unroll<Tokens>([&](auto t) {
    const LegacyTokenStep token = load_legacy_token_step(token_steps[t] + step * legacy_step_bytes);
    unroll<Rows>([&](auto r) { sums[r][t] = legacy_multiply_add<Format>(weights[r], token, sums[r][t]); });
  });
}

// results[r][t] = dot(weight row r, token t) for a tile. weight_rows: Rows pointers to rows of
// `block_count` blocks; token_steps: Tokens pointers to prepared tokens.
template <class Format, std::size_t Rows, std::size_t Tokens>
inline void legacy_tile(const Format& format, const std::uint8_t* const* weight_rows, const std::uint8_t* const* token_steps,
                        std::size_t block_count, float (&results)[Rows][Tokens]) {
  float_batch sums[Rows][Tokens];
  unroll<Rows>([&](auto r) { unroll<Tokens>([&](auto t) { sums[r][t] = float_batch(0.0f); }); });
  const std::size_t full_steps = block_count / legacy_step_blocks;
  for (std::size_t step = 0; step < full_steps; ++step) {
    legacy_tile_step<Format, Rows, Tokens, legacy_step_blocks>(format, weight_rows, token_steps, step, sums);
  }
  if (legacy_step_blocks > 1 && block_count % legacy_step_blocks != 0) {  // an odd block at the end (AVX-512)
    legacy_tile_step<Format, Rows, Tokens, 1>(format, weight_rows, token_steps, full_steps, sums);
  }
  unroll<Rows>([&](auto r) {
    unroll<Tokens>([&](auto t) { results[r][t] = reduce_add(sums[r][t]); });
  });
}

// --- many tokens: the transposed kernel (AVX-512 and AVX2; see quant_legacy_avx512_prompt.inl) ---

// Bytes of activation rows a pass of the transposed kernel should keep to (half of a 1 MB L2).
inline constexpr std::size_t legacy_prompt_activation_bytes = 512 * 1024;

#if LAMINA_CPU_TARGET >= 2
// Rows [row_begin, row_end) of `task` with the transposed kernel; false when it does not apply
// (a format without one, or too few tokens).
template <class Format>
inline bool legacy_prompt_rows(const Format& format, const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  if constexpr (!legacy_prompt_supports<Format>) {
    (void)format, (void)task, (void)row_begin, (void)row_end, (void)scratch;
    return false;
  } else {
    if (task.token_count < legacy_prompt_min_tokens<Format> && !task.batch_invariant) return false;
    const std::size_t block_count = task.in / 32;
    // Scratch, per token of a pass: the group's sums (one float per row, 64-byte aligned) and the
    // token info (block_count corrections and scales). At least 1 token fits: 8 * in + 64 floats.
    constexpr std::size_t sums_bytes = legacy_prompt_group_rows * sizeof(float);
    std::size_t usable_bytes = 0;
    std::uint8_t* aligned = legacy_aligned_scratch(scratch, task.in, &usable_bytes);
    std::size_t token_block = usable_bytes / (sums_bytes + block_count * 8);
    if (token_block > legacy_prompt_max_tokens) token_block = legacy_prompt_max_tokens;
    // Each row group reads the pass's activation rows again: keep them in L2 (10% faster for
    // in = 8192 on Zen 5), but not at the cost of very short passes.
    std::size_t fitting_tokens = legacy_prompt_activation_bytes / task.activation_row_stride;
    if (fitting_tokens < 16) fitting_tokens = 16;
    if (token_block > fitting_tokens) token_block = fitting_tokens;
    float* sums = reinterpret_cast<float*>(aligned);
    std::int32_t* corrections = reinterpret_cast<std::int32_t*>(aligned + token_block * sums_bytes);
    float* scales = reinterpret_cast<float*>(corrections + token_block * block_count);

    for (std::size_t first_token = 0; first_token < task.token_count; first_token += token_block) {
      const std::size_t tokens = task.token_count - first_token < token_block ? task.token_count - first_token : token_block;
      for (std::size_t t = 0; t < tokens; ++t) {
        prepare_token_info<Format>(task.activations + (first_token + t) * task.activation_row_stride, block_count,
                                   corrections + t * block_count, scales + t * block_count);
      }
      for (std::size_t row = row_begin; row < row_end; row += legacy_prompt_group_rows) {
        const std::size_t rows = row_end - row < legacy_prompt_group_rows ? row_end - row : legacy_prompt_group_rows;
        const LegacyRowGroup group = make_legacy_row_group(task.weight + row * task.weight_row_stride, task.weight_row_stride, rows);
        for (std::size_t t = 0; t < tokens * legacy_prompt_group_rows; t += float_lanes) float_batch(0.0f).store_aligned(sums + t);

        for (std::size_t block = 0; block < block_count; ++block) {
          // The group's rows are more streams than the hardware prefetchers follow; each block
          // takes long enough (all the tokens) for a prefetch two blocks ahead to arrive in time.
          for (std::size_t r = 0; r < legacy_prompt_group_rows; ++r) {
            _mm_prefetch(reinterpret_cast<const char*>(group.rows[r] + (block + 2) * Format::block_bytes), _MM_HINT_T0);
          }
          LegacyTransposedBlock weights;
          load_transposed_block(format, group, block, weights);
          // Token t of this pass: quants at quants + t * stride, info at [t * block_count], sums at
          // sums + t * legacy_prompt_group_rows.
          const std::size_t stride = task.activation_row_stride;
          const std::uint8_t* quants =
              task.activations + first_token * stride + block * Format::activation_block_bytes + Format::activation_quants_at;
          constexpr std::size_t tile = legacy_prompt_tile_tokens;
          std::size_t t = 0;
          for (; t + tile <= tokens; t += tile) {
            multiply_transposed_block<Format, tile>(weights, quants + t * stride, stride, corrections + t * block_count + block,
                                                    scales + t * block_count + block, block_count, sums + t * legacy_prompt_group_rows);
          }
          for (; t < tokens; ++t) {
            multiply_transposed_block<Format, 1>(weights, quants + t * stride, stride, corrections + t * block_count + block,
                                                 scales + t * block_count + block, block_count, sums + t * legacy_prompt_group_rows);
          }
        }
        for (std::size_t t = 0; t < tokens; ++t) {
          store_group_sums(task.y + (first_token + t) * task.y_row_stride + row, sums + t * legacy_prompt_group_rows, rows);
        }
      }
    }
    return true;
  }
}
#else
template <class Format>
inline bool legacy_prompt_rows(const Format&, const MatmulTask&, std::size_t, std::size_t, float*) {
  return false;  // SSE2: the step kernel runs for every token count
}
#endif

// Rows [row_begin, row_end) of `task` for weight type Format::weight_type.
template <class Format>
inline void legacy_matmul_rows_as(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  const Format format;
  if (legacy_prompt_rows(format, task, row_begin, row_end, scratch)) return;
  const std::size_t block_count = task.in / 32;
  const std::size_t prepared_token_bytes = (block_count + legacy_step_blocks - 1) / legacy_step_blocks * legacy_step_bytes;

  // Scratch: the prepared steps of a block of tokens, 64-byte aligned. At least one token fits:
  // a prepared token takes 3 bytes per value plus at most one padded step, the scratch 32.
  std::size_t usable_bytes = 0;
  std::uint8_t* prepared = legacy_aligned_scratch(scratch, task.in, &usable_bytes);
  std::size_t token_block = usable_bytes / prepared_token_bytes;
  if (token_block > legacy_token_block) token_block = legacy_token_block;

  for (std::size_t first_token = 0; first_token < task.token_count; first_token += token_block) {
    const std::size_t tokens = task.token_count - first_token < token_block ? task.token_count - first_token : token_block;
    for (std::size_t k = 0; k < tokens; ++k) {
      prepare_legacy_activations<Format>(task.activations + (first_token + k) * task.activation_row_stride, block_count,
                                         prepared + k * prepared_token_bytes);
    }
    if (tokens == 1) {
      // Decoding: one row after another, a single sequential stream the hardware prefetchers
      // follow (several rows side by side are separate streams they lose track of).
      const std::uint8_t* token_steps[1] = {prepared};
      for (std::size_t row = row_begin; row < row_end; ++row) {
        const std::uint8_t* weight_rows[1] = {task.weight + row * task.weight_row_stride};
        float results[1][1];
        legacy_tile<Format, 1, 1>(format, weight_rows, token_steps, block_count, results);
        task.y[first_token * task.y_row_stride + row] = results[0][0];
      }
      continue;
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
