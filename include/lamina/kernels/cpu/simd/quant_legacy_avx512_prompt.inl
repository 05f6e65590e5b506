// lamina/kernels/cpu/simd/quant_legacy_avx512_prompt.inl — the AVX-512 kernel for many tokens
// (prompts): 16 weight rows per register. Included only by quant_legacy_avx512.inl.
//
// Why a second kernel: in the step kernel every 64 values of every (row, token) pair need a
// conversion, a scale product and an FMA next to their one vpdpbusd, and those share the two
// multiply pipes with it, so the float work costs more than the integer work. Here a 32-bit
// lane holds one weight row instead:
//   - a block (32 values) of 16 rows is transposed once into 8 registers: register k, lane r =
//     the codes of values 4k..4k+3 of row r (unsigned codes, as in the step kernel);
//   - each token's activation bytes 4k..4k+3 are broadcast from its Q8_0/Q8_1 block in memory
//     to all 16 lanes, so 8 vpdpbusd leave 16 complete block dot products, one per row;
//   - one conversion, one scale product and one FMA then serve 16 (row, token) pairs.
// The transposed block stays in registers while it meets every token of a block of tokens,
// whose sums are kept in the scratch buffer (16 floats per token: one per row).
//
// The code offset (Q4_0: 8, Q5_0: 16, Q8_0 and IQ4_NL: 128) comes back out through the
// accumulator's starting value, -Offset * (sum of the token's 32 quants), which is the same
// for all 16 lanes; the sums are computed once per token and block ("token info").

#ifndef LEGACY_TT
#define LEGACY_TT 4
#define LEGACY_SPLIT 1
#endif
inline constexpr std::size_t legacy_prompt_group_rows = 16;
// Below this many tokens the transposition of the weights costs more than it saves.
inline constexpr std::size_t legacy_prompt_min_tokens = 4;
// At most this many tokens per pass over the rows (their sums live in the scratch buffer).
inline constexpr std::size_t legacy_prompt_max_tokens = 128;

// What the kernel needs of one block of one token, prepared once per pass.
struct LegacyTokenInfo {
  std::int32_t correction;  // offset types: -Offset * sum of the 32 quants; Q8_1: the bits of s (float)
  float scale;              // d_a
};

// A block of 16 rows, transposed (see above), with the rows' scales and minimums per lane.
struct LegacyTransposedBlock {
  __m512i codes[8];
  float_batch scale;
  float_batch minimum;  // Q4_1, Q5_1
};

// The 16 rows of a group: row r starts at rows[r] = rows[0] + offsets[r] (a partial group repeats
// its last row).
struct LegacyRowGroup {
  const std::uint8_t* rows[legacy_prompt_group_rows];
  __m512i offsets;  // 32-bit byte offsets from rows[0], for gathers
};

// Dword g of the 16 bytes at rows[r] + at, for r = 0..15: out[g] lane r.
inline void transpose_rows_16x4(const LegacyRowGroup& group, std::size_t at, __m512i (&out)[4]) {
  __m512i quads[4];  // quads[q]: 128-bit lane j = the 16 bytes of row 4q + j
  for (std::size_t q = 0; q < 4; ++q) {
    const auto load = [&](std::size_t r) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(group.rows[4 * q + r] + at)); };
    __m512i quad = _mm512_castsi128_si512(load(0));
    quad = _mm512_inserti32x4(quad, load(1), 1);
    quad = _mm512_inserti32x4(quad, load(2), 2);
    quads[q] = _mm512_inserti32x4(quad, load(3), 3);
  }
  // Rows 0..7 of two quads: lanes 0..7 = dword g of rows 0..7, lanes 8..15 = dword g + 1
  // (vpermt2d numbers the first source's dwords 0..15 and the second's 16..31).
  alignas(64) std::int32_t first_pair[16], second_pair[16];
  for (int lane = 0; lane < 16; ++lane) {
    const int row = lane % 8, dword = lane / 8;
    first_pair[lane] = (row / 4) * 16 + (row % 4) * 4 + dword;
    second_pair[lane] = first_pair[lane] + 2;
  }
  const __m512i first_index = _mm512_load_si512(first_pair), second_index = _mm512_load_si512(second_pair);
  const __m512i low_01 = _mm512_permutex2var_epi32(quads[0], first_index, quads[1]);
  const __m512i low_23 = _mm512_permutex2var_epi32(quads[2], first_index, quads[3]);
  const __m512i high_01 = _mm512_permutex2var_epi32(quads[0], second_index, quads[1]);
  const __m512i high_23 = _mm512_permutex2var_epi32(quads[2], second_index, quads[3]);
  out[0] = _mm512_shuffle_i64x2(low_01, low_23, _MM_SHUFFLE(1, 0, 1, 0));
  out[1] = _mm512_shuffle_i64x2(low_01, low_23, _MM_SHUFFLE(3, 2, 3, 2));
  out[2] = _mm512_shuffle_i64x2(high_01, high_23, _MM_SHUFFLE(1, 0, 1, 0));
  out[3] = _mm512_shuffle_i64x2(high_01, high_23, _MM_SHUFFLE(3, 2, 3, 2));
}

// The 32-bit word at rows[r] + at, r = 0..15.
inline __m512i gather_rows(const LegacyRowGroup& group, std::size_t at) {
  return _mm512_i32gather_epi32(group.offsets, group.rows[0] + at, 1);
}

// Transposed packed nibbles -> codes: register k < 4 holds values 4k..4k+3 (low nibbles of
// bytes 4k..4k+3), register k + 4 values 16 + 4k.. (their high nibbles).
inline void split_transposed_nibbles(const __m512i (&packed)[4], LegacyTransposedBlock& block) {
  const __m512i mask = _mm512_set1_epi8(0x0f);
  legacy_unroll<4>([&](auto g) {
    block.codes[g] = _mm512_and_si512(packed[g], mask);
    block.codes[g + 4] = _mm512_and_si512(_mm512_srli_epi32(packed[g], 4), mask);
  });
}

// F16 fields in the low (scale) and high (minimum) halves of gathered 32-bit words.
inline float_batch low_halves_to_float(__m512i words) { return float_batch(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(words))); }
inline float_batch high_halves_to_float(__m512i words) {
  return float_batch(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(words, 16))));
}

// Adds 16 to the codes whose fifth bit is set; `bits` lane r: row r's 32 fifth bits.
inline void add_transposed_fifth_bits(__m512i bits, LegacyTransposedBlock& block) {
  const __m512i sixteen = _mm512_set1_epi8(16);
  const __m512i dword_starts = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12));
  for (std::size_t k = 0; k < 8; ++k) {
    // Values 4k..4k+3 take bits 4k..4k+3: byte k / 2 of the lane, nibble k % 2. Copy that byte
    // to the lane's four bytes, then test bit j of that nibble in byte j.
    const __m512i copies = _mm512_shuffle_epi8(bits, _mm512_add_epi8(dword_starts, _mm512_set1_epi8(static_cast<char>(k / 2))));
    const __m512i selectors = _mm512_set1_epi32(k % 2 == 0 ? 0x08040201 : static_cast<int>(0x80402010u));
    const __mmask64 set = _mm512_test_epi8_mask(copies, selectors);
    block.codes[k] = _mm512_mask_add_epi8(block.codes[k], set, block.codes[k], sixteen);
  }
}

// --- the formats' transposed loads: block `block` of the group's 16 rows ---

template <class Format>
inline void load_transposed_block(const Format&, const LegacyRowGroup& group, std::size_t block, LegacyTransposedBlock& out);

// Q4_0 [F16 d][16 nibble bytes]
inline void load_transposed_block(const LegacyQ4_0&, const LegacyRowGroup& group, std::size_t block, LegacyTransposedBlock& out) {
  const std::size_t at = block * LegacyQ4_0::block_bytes;
  __m512i packed[4];
  transpose_rows_16x4(group, at + 2, packed);
  split_transposed_nibbles(packed, out);
  out.scale = low_halves_to_float(gather_rows(group, at));
}

// Q4_1 [F16 d][F16 m][16 nibble bytes]
inline void load_transposed_block(const LegacyQ4_1&, const LegacyRowGroup& group, std::size_t block, LegacyTransposedBlock& out) {
  const std::size_t at = block * LegacyQ4_1::block_bytes;
  __m512i packed[4];
  transpose_rows_16x4(group, at + 4, packed);
  split_transposed_nibbles(packed, out);
  const __m512i header = gather_rows(group, at);
  out.scale = low_halves_to_float(header);
  out.minimum = high_halves_to_float(header);
}

// Q5_0 [F16 d][4 bytes fifth bits][16 nibble bytes]
inline void load_transposed_block(const LegacyQ5_0&, const LegacyRowGroup& group, std::size_t block, LegacyTransposedBlock& out) {
  const std::size_t at = block * LegacyQ5_0::block_bytes;
  __m512i packed[4];
  transpose_rows_16x4(group, at + 6, packed);
  split_transposed_nibbles(packed, out);
  add_transposed_fifth_bits(gather_rows(group, at + 2), out);
  out.scale = low_halves_to_float(gather_rows(group, at));
}

// Q5_1 [F16 d][F16 m][4 bytes fifth bits][16 nibble bytes]
inline void load_transposed_block(const LegacyQ5_1&, const LegacyRowGroup& group, std::size_t block, LegacyTransposedBlock& out) {
  const std::size_t at = block * LegacyQ5_1::block_bytes;
  __m512i packed[4];
  transpose_rows_16x4(group, at + 8, packed);
  split_transposed_nibbles(packed, out);
  add_transposed_fifth_bits(gather_rows(group, at + 4), out);
  const __m512i header = gather_rows(group, at);
  out.scale = low_halves_to_float(header);
  out.minimum = high_halves_to_float(header);
}

// IQ4_NL [F16 d][16 index bytes]: codes = level + 128.
inline void load_transposed_block(const LegacyIQ4_NL& format, const LegacyRowGroup& group, std::size_t block, LegacyTransposedBlock& out) {
  const std::size_t at = block * LegacyIQ4_NL::block_bytes;
  __m512i packed[4];
  transpose_rows_16x4(group, at + 2, packed);
  split_transposed_nibbles(packed, out);
  for (__m512i& codes : out.codes) codes = _mm512_shuffle_epi8(format.levels, codes);
  out.scale = low_halves_to_float(gather_rows(group, at));
}

// Q8_0 [F16 d][32 int8]: codes = q + 128.
inline void load_transposed_block(const LegacyQ8_0&, const LegacyRowGroup& group, std::size_t block, LegacyTransposedBlock& out) {
  const std::size_t at = block * LegacyQ8_0::block_bytes;
  __m512i first[4], second[4];
  transpose_rows_16x4(group, at + 2, first);
  transpose_rows_16x4(group, at + 18, second);
  const __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
  for (std::size_t g = 0; g < 4; ++g) {
    out.codes[g] = _mm512_xor_si512(first[g], sign);
    out.codes[g + 4] = _mm512_xor_si512(second[g], sign);
  }
  out.scale = low_halves_to_float(gather_rows(group, at));
}

// --- token info ---

// info[b] for the `block_count` Q8_0 / Q8_1 blocks of one token.
template <class Format>
inline void prepare_token_info(const std::uint8_t* blocks, std::size_t block_count, LegacyTokenInfo* info) {
  constexpr std::size_t block_bytes = Format::activation_block_bytes;
  for (std::size_t block = 0; block < block_count; ++block) {
    const std::uint8_t* bytes = blocks + block * block_bytes;
    info[block].scale = _cvtsh_ss(read_u16(bytes));
    if constexpr (Format::has_minimum) {
      const float scaled_sum = _cvtsh_ss(read_u16(bytes + 2));
      std::memcpy(&info[block].correction, &scaled_sum, 4);
    } else {
      // Sum of the 32 quants: as unsigned bytes (flipped sign bit) through vpsadbw, minus 32 * 128.
      const __m256i flipped = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes + 2)),
                                               _mm256_set1_epi8(static_cast<char>(0x80)));
      const __m256i partial = _mm256_sad_epu8(flipped, _mm256_setzero_si256());  // 4 x 64-bit
      __m128i sum = _mm_add_epi64(_mm256_castsi256_si128(partial), _mm256_extracti128_si256(partial, 1));
      sum = _mm_add_epi64(sum, _mm_unpackhi_epi64(sum, sum));
      info[block].correction = -Format::code_offset * (_mm_cvtsi128_si32(sum) - 32 * 128);
    }
  }
}

// --- the kernel ---

// sums[16 t .. 16 t + 15] += the block's products with tokens t = 0 .. Tokens - 1, whose quants
// start at quants + t * quants_stride and whose info is info[t * info_stride].
template <class Format, std::size_t Tokens>
inline void multiply_transposed_block(const LegacyTransposedBlock& weights, const std::uint8_t* quants, std::size_t quants_stride,
                                      const LegacyTokenInfo* info, std::size_t info_stride, float* sums) {
  __m512i dots[Tokens];
#if LEGACY_SPLIT
  __m512i second_dots[Tokens];
#endif
  legacy_unroll<Tokens>([&](auto t) {
    dots[t] = Format::has_minimum ? _mm512_setzero_si512() : _mm512_set1_epi32(info[t * info_stride].correction);
#if LEGACY_SPLIT
    second_dots[t] = _mm512_setzero_si512();
#endif
  });
#if LEGACY_SPLIT
  legacy_unroll<4>([&](auto k) {
    legacy_unroll<Tokens>([&](auto t) {
      const std::uint8_t* four = quants + t * quants_stride + 4 * k;  // activation bytes 4k .. 4k + 3
      dots[t] = _mm512_dpbusd_epi32(dots[t], weights.codes[k], _mm512_set1_epi32(static_cast<int>(read_u32(four))));
      second_dots[t] = _mm512_dpbusd_epi32(second_dots[t], weights.codes[k + 4], _mm512_set1_epi32(static_cast<int>(read_u32(four + 16))));
    });
  });
  legacy_unroll<Tokens>([&](auto t) { dots[t] = _mm512_add_epi32(dots[t], second_dots[t]); });
#else
  legacy_unroll<8>([&](auto k) {
    legacy_unroll<Tokens>([&](auto t) {
      const std::uint8_t* four = quants + t * quants_stride + 4 * k;  // activation bytes 4k .. 4k + 3
      dots[t] = _mm512_dpbusd_epi32(dots[t], weights.codes[k], _mm512_set1_epi32(static_cast<int>(read_u32(four))));
    });
  });
#endif
  legacy_unroll<Tokens>([&](auto t) {
    float_batch sum = float_batch::load_aligned(sums + 16 * t);
    if constexpr (Format::has_minimum) {
      float scaled_sum;
      std::memcpy(&scaled_sum, &info[t * info_stride].correction, 4);
      sum = xsimd::fma(weights.minimum, float_batch(scaled_sum), sum);
    }
    sum = xsimd::fma(float_batch(_mm512_cvtepi32_ps(dots[t])), weights.scale * float_batch(info[t * info_stride].scale), sum);
    sum.store_aligned(sums + 16 * t);
  });
}

// Rows [row_begin, row_end) of `task` with the transposed kernel; false when it does not apply
// (too few tokens).
template <class Format>
inline bool legacy_prompt_rows(const Format& format, const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  if (task.token_count < legacy_prompt_min_tokens) return false;
  const std::size_t block_count = task.in / 32;
  // Scratch (8 * in + 64 floats, see quant_legacy.inl): per token 16 float sums (64 bytes,
  // 64-byte aligned) and block_count LegacyTokenInfo.
  const std::uintptr_t address = reinterpret_cast<std::uintptr_t>(scratch);
  std::uint8_t* aligned = reinterpret_cast<std::uint8_t*>(scratch) + ((64 - address % 64) % 64);
  const std::size_t usable_bytes = (8 * task.in + 64) * sizeof(float) - 64;
  std::size_t token_block = usable_bytes / (64 + block_count * sizeof(LegacyTokenInfo));
  if (token_block > legacy_prompt_max_tokens) token_block = legacy_prompt_max_tokens;
  float* sums = reinterpret_cast<float*>(aligned);
  LegacyTokenInfo* info = reinterpret_cast<LegacyTokenInfo*>(aligned + token_block * 64);

  for (std::size_t first_token = 0; first_token < task.token_count; first_token += token_block) {
    const std::size_t tokens = task.token_count - first_token < token_block ? task.token_count - first_token : token_block;
    for (std::size_t t = 0; t < tokens; ++t) {
      prepare_token_info<Format>(task.activations + (first_token + t) * task.activation_row_stride, block_count, info + t * block_count);
    }
    for (std::size_t row = row_begin; row < row_end; row += legacy_prompt_group_rows) {
      const std::size_t rows = row_end - row < legacy_prompt_group_rows ? row_end - row : legacy_prompt_group_rows;
      LegacyRowGroup group;
      alignas(64) std::int32_t offsets[legacy_prompt_group_rows];
      for (std::size_t r = 0; r < legacy_prompt_group_rows; ++r) {
        const std::size_t source = r < rows ? r : rows - 1;
        group.rows[r] = task.weight + (row + source) * task.weight_row_stride;
        offsets[r] = static_cast<std::int32_t>(source * task.weight_row_stride);
      }
      group.offsets = _mm512_load_si512(offsets);
      for (std::size_t t = 0; t < tokens; ++t) float_batch(0.0f).store_aligned(sums + 16 * t);

      for (std::size_t block = 0; block < block_count; ++block) {
        LegacyTransposedBlock weights;
        load_transposed_block(format, group, block, weights);
        const std::size_t stride = task.activation_row_stride;
        const std::uint8_t* quants =
            task.activations + first_token * stride + block * Format::activation_block_bytes + Format::activation_quants_at;
        const LegacyTokenInfo* token_info = info + block;
        float* token_sums = sums;
        std::size_t t = 0;
        for (; t + LEGACY_TT <= tokens; t += LEGACY_TT, quants += LEGACY_TT * stride, token_info += LEGACY_TT * block_count, token_sums += LEGACY_TT * 16) {
          multiply_transposed_block<Format, LEGACY_TT>(weights, quants, stride, token_info, block_count, token_sums);
        }
        for (; t < tokens; ++t, quants += stride, token_info += block_count, token_sums += 16) {
          multiply_transposed_block<Format, 1>(weights, quants, stride, token_info, block_count, token_sums);
        }
      }

      const __mmask16 valid = _cvtu32_mask16((1u << rows) - 1u);
      for (std::size_t t = 0; t < tokens; ++t) {
        _mm512_mask_storeu_ps(task.y + (first_token + t) * task.y_row_stride + row, valid, _mm512_load_ps(sums + 16 * t));
      }
    }
  }
  return true;
}
