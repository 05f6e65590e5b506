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

inline constexpr std::size_t legacy_prompt_group_rows = 16;
// Tokens interleaved in the inner loop (their vpdpbusd chains overlap).
inline constexpr std::size_t legacy_prompt_tile_tokens = 4;
// Every format has a transposed kernel here.
template <class Format>
inline constexpr bool legacy_prompt_supports = true;

// Below this many tokens the transposition of the weights costs more than it saves (measured:
// the 4-bit types break even at 4 to 5 tokens, Q5_0/Q5_1 with their fifth bits and Q8_0 with
// its two transpositions at 6 to 8).
template <class Format>
inline constexpr std::size_t legacy_prompt_min_tokens =
    (Format::weight_type == DType::q5_0 || Format::weight_type == DType::q5_1 || Format::weight_type == DType::q8_0) ? 8 : 5;
// At most this many tokens per pass over the rows (their sums live in the scratch buffer).
inline constexpr std::size_t legacy_prompt_max_tokens = 128;

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

// The group of `rows` (1..16) rows from `first_row`, `stride` bytes apart.
inline LegacyRowGroup make_legacy_row_group(const std::uint8_t* first_row, std::size_t stride, std::size_t rows) {
  LegacyRowGroup group;
  alignas(64) std::int32_t offsets[legacy_prompt_group_rows];
  for (std::size_t r = 0; r < legacy_prompt_group_rows; ++r) {
    const std::size_t source = r < rows ? r : rows - 1;
    group.rows[r] = first_row + source * stride;
    offsets[r] = static_cast<std::int32_t>(source * stride);
  }
  group.offsets = _mm512_load_si512(offsets);
  return group;
}

// y[0 .. rows) = the group's sums (16 floats, 64-byte aligned).
inline void store_group_sums(float* y, const float* sums, std::size_t rows) {
  _mm512_mask_storeu_ps(y, _cvtu32_mask16((1u << rows) - 1u), _mm512_load_ps(sums));
}

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
  unroll<4>([&](auto g) {
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
//
// Per token and block: the accumulator's starting value (offset types: -Offset * sum of the 32
// quants; Q8_1: the float s for the minimum term, as bits) and the scale d_a, in two arrays
// [token][block].

// -Offset * (sum of the 32 quants) for 8 consecutive Q8_0 blocks at `blocks`: vpsadbw adds 8
// unsigned bytes (the quants with their sign bit flipped, so each is q + 128), two adds and a
// shuffle finish each block's sum, and the 32 * 128 of the flipped bits comes back out.
template <int Offset>
inline __m256i offset_corrections_8(const std::uint8_t* blocks) {
  constexpr int block_bytes = 34, quants_at = 2;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512i sums[4];  // sums[j]: 64-bit lanes 0..3 partial sums of block 2j, 4..7 of block 2j + 1
  for (int j = 0; j < 4; ++j) {
    const std::uint8_t* first = blocks + (2 * j) * block_bytes + quants_at;
    const __m512i pair = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(first))),
                                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(first + block_bytes)), 1);
    sums[j] = _mm512_sad_epu8(_mm512_xor_si512(pair, flip), _mm512_setzero_si512());
  }
  // 128-bit lanes of `low`: [b0 half 1, b2 half 1], [b0 half 2, b2 half 2], [b1 .., b3 ..],
  // [b1 .., b3 ..] (64-bit sums); `high` the same for b4..b7.
  const __m512i low = _mm512_add_epi64(_mm512_unpacklo_epi64(sums[0], sums[1]), _mm512_unpackhi_epi64(sums[0], sums[1]));
  const __m512i high = _mm512_add_epi64(_mm512_unpacklo_epi64(sums[2], sums[3]), _mm512_unpackhi_epi64(sums[2], sums[3]));
  // [b0, b2, b1, b3, b4, b6, b5, b7] as 64-bit sums of q + 128.
  const __m512i whole = _mm512_add_epi64(_mm512_shuffle_i64x2(low, high, _MM_SHUFFLE(2, 0, 2, 0)),
                                         _mm512_shuffle_i64x2(low, high, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m256i ordered = _mm256_permutevar8x32_epi32(_mm512_cvtepi64_epi32(whole), _mm256_setr_epi32(0, 2, 1, 3, 4, 6, 5, 7));
  // -Offset * (sum - 32 * 128) = (32 * 128 - sum) * Offset, Offset a power of two
  static_assert(Offset == 8 || Offset == 16 || Offset == 128, "the legacy offsets");
  constexpr int shift = Offset == 8 ? 3 : (Offset == 16 ? 4 : 7);
  return _mm256_slli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(32 * 128), ordered), shift);
}

// The token info of the `block_count` Q8_0 / Q8_1 blocks of one token.
template <class Format>
inline void prepare_token_info(const std::uint8_t* blocks, std::size_t block_count, std::int32_t* corrections, float* scales) {
  constexpr std::size_t block_bytes = Format::activation_block_bytes;
  // Each block's first 32-bit word holds d_a (low half) and, for Q8_1, s (high half).
  const __m512i block_offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                   _mm512_set1_epi32(static_cast<int>(block_bytes)));
  for (std::size_t block = 0; block < block_count; block += 16) {
    const std::size_t count = block_count - block < 16 ? block_count - block : 16;
    const __mmask16 valid = _cvtu32_mask16((1u << count) - 1u);
    const __m512i headers = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), valid, block_offsets, blocks + block * block_bytes, 1);
    _mm512_mask_storeu_ps(scales + block, valid, low_halves_to_float(headers));
    if constexpr (Format::has_minimum) {
      _mm512_mask_storeu_ps(corrections + block, valid, high_halves_to_float(headers));
    }
  }
  if constexpr (!Format::has_minimum) {
    std::size_t block = 0;
    for (; block + 8 <= block_count; block += 8) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(corrections + block),
                          offset_corrections_8<Format::code_offset>(blocks + block * block_bytes));
    }
    for (; block < block_count; ++block) {
      const __m256i flipped = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blocks + block * block_bytes + 2)),
                                               _mm256_set1_epi8(static_cast<char>(0x80)));
      const __m256i partial = _mm256_sad_epu8(flipped, _mm256_setzero_si256());  // 4 x 64-bit
      __m128i sum = _mm_add_epi64(_mm256_castsi256_si128(partial), _mm256_extracti128_si256(partial, 1));
      sum = _mm_add_epi64(sum, _mm_unpackhi_epi64(sum, sum));
      corrections[block] = (32 * 128 - _mm_cvtsi128_si32(sum)) * Format::code_offset;
    }
  }
}

// --- the kernel ---

// sums[16 t .. 16 t + 15] += the block's products with tokens t = 0 .. Tokens - 1, whose quants
// start at quants + t * quants_stride and whose token info is corrections[t * info_stride],
// scales[t * info_stride].
template <class Format, std::size_t Tokens>
inline void multiply_transposed_block(const LegacyTransposedBlock& weights, const std::uint8_t* quants, std::size_t quants_stride,
                                      const std::int32_t* corrections, const float* scales, std::size_t info_stride, float* sums) {
  // Each token's 8 vpdpbusd run as two chains of 4 (values 0..15 and 16..31), added at the end:
  // shorter dependency chains keep both multiply pipes busy.
  __m512i dots[Tokens], second_dots[Tokens];
  unroll<Tokens>([&](auto t) {
    dots[t] = Format::has_minimum ? _mm512_setzero_si512() : _mm512_set1_epi32(corrections[t * info_stride]);
    second_dots[t] = _mm512_setzero_si512();
  });
  unroll<4>([&](auto k) {
    unroll<Tokens>([&](auto t) {
      const std::uint8_t* four = quants + t * quants_stride + 4 * k;  // activation bytes 4k .. 4k + 3, and 16 on
      dots[t] = _mm512_dpbusd_epi32(dots[t], weights.codes[k], _mm512_set1_epi32(static_cast<int>(read_u32(four))));
      second_dots[t] = _mm512_dpbusd_epi32(second_dots[t], weights.codes[k + 4], _mm512_set1_epi32(static_cast<int>(read_u32(four + 16))));
    });
  });
  unroll<Tokens>([&](auto t) { dots[t] = _mm512_add_epi32(dots[t], second_dots[t]); });
  unroll<Tokens>([&](auto t) {
    float_batch sum = float_batch::load_aligned(sums + legacy_prompt_group_rows * t);
    if constexpr (Format::has_minimum) {
      float scaled_sum;
      std::memcpy(&scaled_sum, corrections + t * info_stride, 4);
      sum = fma(weights.minimum, float_batch(scaled_sum), sum);
    }
    sum = fma(float_batch(_mm512_cvtepi32_ps(dots[t])), weights.scale * float_batch(scales[t * info_stride]), sum);
    sum.store_aligned(sums + legacy_prompt_group_rows * t);
  });
}

