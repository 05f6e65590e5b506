// lamina/kernels/cpu/simd/quant_legacy_avx2_prompt.inl — the AVX2 kernel for many tokens
// (prompts) for Q4_0, Q4_1, Q5_0 and Q5_1: 8 weight rows per register. Included only by
// quant_legacy_avx2.inl; the driver is legacy_prompt_rows in quant_legacy.inl.
//
// The layout of quant_legacy_avx512_prompt.inl with 8 lanes: a block (32 values) of 8 rows is
// transposed into 8 registers (register k, lane r: the codes of values 4k..4k+3 of row r), and
// each token's activation bytes 4k..4k+3 are broadcast to all lanes. Without VNNI a product
// takes vpmaddubsw (unsigned codes x signed activations, pairs added into int16) and vpmaddwd
// (pairs of int16 into the int32 lane). These formats' codes are small (at most 15 or 31), so
// several vpmaddubsw results add up in int16 first and one vpmaddwd finishes them:
//   4-bit codes: 8 products of pairs, each |15 * 127 * 2| <= 3810, sum <= 30480 < 2^15;
//   5-bit codes: two sums of 4, each <= 4 * 31 * 127 * 2 = 31496 < 2^15.
// Q8_0 and IQ4_NL have codes up to 255 (vpmaddubsw would saturate): they keep the step kernel.
// The code offset comes back out through the accumulator's starting value, as on AVX-512.

inline constexpr std::size_t legacy_prompt_group_rows = 8;
// Tokens interleaved in the inner loop (16 registers: 8 hold the transposed block).
inline constexpr std::size_t legacy_prompt_tile_tokens = 2;
template <class Format>
inline constexpr bool legacy_prompt_supports = Format::weight_type == DType::q4_0 || Format::weight_type == DType::q4_1 ||
                                               Format::weight_type == DType::q5_0 || Format::weight_type == DType::q5_1;
// From two tokens on the transposition pays for itself (measured: 20% faster at 2 tokens, 1.6x
// at 6); one token (decoding) is faster with the step kernel.
template <class Format>
inline constexpr std::size_t legacy_prompt_min_tokens = 2;
// At most this many tokens per pass over the rows (their sums live in the scratch buffer).
inline constexpr std::size_t legacy_prompt_max_tokens = 128;

// Largest code of a format: 31 with a fifth bit, else 15.
template <class Format>
inline constexpr int legacy_largest_code = (Format::weight_type == DType::q5_0 || Format::weight_type == DType::q5_1) ? 31 : 15;

// A block of 8 rows, transposed (see above), with the rows' scales and minimums per lane.
struct LegacyTransposedBlock {
  __m256i codes[8];
  float_batch scale;
  float_batch minimum;  // Q4_1, Q5_1
};

// The 8 rows of a group: row r starts at rows[r] = rows[0] + offsets[r] (a partial group repeats
// its last row).
struct LegacyRowGroup {
  const std::uint8_t* rows[legacy_prompt_group_rows];
  __m256i offsets;  // 32-bit byte offsets from rows[0], for gathers
};

// The group of `rows` (1..8) rows from `first_row`, `stride` bytes apart.
inline LegacyRowGroup make_legacy_row_group(const std::uint8_t* first_row, std::size_t stride, std::size_t rows) {
  LegacyRowGroup group;
  alignas(32) std::int32_t offsets[legacy_prompt_group_rows];
  for (std::size_t r = 0; r < legacy_prompt_group_rows; ++r) {
    const std::size_t source = r < rows ? r : rows - 1;
    group.rows[r] = first_row + source * stride;
    offsets[r] = static_cast<std::int32_t>(source * stride);
  }
  group.offsets = _mm256_load_si256(reinterpret_cast<const __m256i*>(offsets));
  return group;
}

// y[0 .. rows) = the group's sums (8 floats, 32-byte aligned).
inline void store_group_sums(float* y, const float* sums, std::size_t rows) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rows)), lanes);
  _mm256_maskstore_ps(y, valid, _mm256_load_ps(sums));
}

// Dword g of the 16 bytes at rows[r] + at, for r = 0..7: out[g] lane r (a 4 x 4 transpose of
// dwords inside each 128-bit lane, rows 0..3 in the low lane and 4..7 in the high one).
inline void transpose_rows_8x4(const LegacyRowGroup& group, std::size_t at, __m256i (&out)[4]) {
  __m256i pairs[4];  // pairs[j]: low lane row j, high lane row j + 4
  for (std::size_t j = 0; j < 4; ++j) {
    const __m128i low = _mm_loadu_si128(reinterpret_cast<const __m128i*>(group.rows[j] + at));
    const __m128i high = _mm_loadu_si128(reinterpret_cast<const __m128i*>(group.rows[j + 4] + at));
    pairs[j] = _mm256_inserti128_si256(_mm256_castsi128_si256(low), high, 1);
  }
  const __m256i rows_01_low = _mm256_unpacklo_epi32(pairs[0], pairs[1]);   // r0d0 r1d0 r0d1 r1d1
  const __m256i rows_01_high = _mm256_unpackhi_epi32(pairs[0], pairs[1]);  // r0d2 r1d2 r0d3 r1d3
  const __m256i rows_23_low = _mm256_unpacklo_epi32(pairs[2], pairs[3]);
  const __m256i rows_23_high = _mm256_unpackhi_epi32(pairs[2], pairs[3]);
  out[0] = _mm256_unpacklo_epi64(rows_01_low, rows_23_low);  // r0d0 r1d0 r2d0 r3d0
  out[1] = _mm256_unpackhi_epi64(rows_01_low, rows_23_low);
  out[2] = _mm256_unpacklo_epi64(rows_01_high, rows_23_high);
  out[3] = _mm256_unpackhi_epi64(rows_01_high, rows_23_high);
}

// The 32-bit word at rows[r] + at, r = 0..7.
inline __m256i gather_rows(const LegacyRowGroup& group, std::size_t at) {
  return _mm256_i32gather_epi32(reinterpret_cast<const int*>(group.rows[0] + at), group.offsets, 1);
}

// F16 fields in the low (scale) and high (minimum) halves of gathered 32-bit words.
inline float_batch halves_to_float(__m256i halves_in_dwords) {
  const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(halves_in_dwords), _mm256_extracti128_si256(halves_in_dwords, 1));
  return float_batch(_mm256_cvtph_ps(packed));
}
inline float_batch low_halves_to_float(__m256i words) { return halves_to_float(_mm256_and_si256(words, _mm256_set1_epi32(0xffff))); }
inline float_batch high_halves_to_float(__m256i words) { return halves_to_float(_mm256_srli_epi32(words, 16)); }

// Transposed packed nibbles -> codes: register k < 4 holds values 4k..4k+3, k + 4 values 16 + 4k..
inline void split_transposed_nibbles(const __m256i (&packed)[4], LegacyTransposedBlock& block) {
  const __m256i mask = _mm256_set1_epi8(0x0f);
  unroll<4>([&](auto g) {
    block.codes[g] = _mm256_and_si256(packed[g], mask);
    block.codes[g + 4] = _mm256_and_si256(_mm256_srli_epi32(packed[g], 4), mask);
  });
}

// Adds 16 to the codes whose fifth bit is set; `bits` lane r: row r's 32 fifth bits.
inline void add_transposed_fifth_bits(__m256i bits, LegacyTransposedBlock& block) {
  const __m256i sixteen = _mm256_set1_epi8(16);
  const __m256i dword_starts = _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12,  //
                                                0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
  unroll<8>([&](auto k) {
    // Values 4k..4k+3 take bits 4k..4k+3: byte k / 2 of the lane, nibble k % 2. Copy that byte
    // to the lane's four bytes, then keep bit j of that nibble in byte j.
    const __m256i copies = _mm256_shuffle_epi8(bits, _mm256_add_epi8(dword_starts, _mm256_set1_epi8(static_cast<char>(k / 2))));
    const __m256i selectors = _mm256_set1_epi32(k % 2 == 0 ? 0x08040201 : static_cast<int>(0x80402010u));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(copies, selectors), selectors);
    block.codes[k] = _mm256_or_si256(block.codes[k], _mm256_and_si256(set, sixteen));
  });
}

// --- the formats' transposed loads: block `block` of the group's 8 rows ---

inline void load_transposed_block(const LegacyQ4_0&, const LegacyRowGroup& group, std::size_t block, LegacyTransposedBlock& out) {
  const std::size_t at = block * LegacyQ4_0::block_bytes;  // [F16 d][16 nibble bytes]
  __m256i packed[4];
  transpose_rows_8x4(group, at + 2, packed);
  split_transposed_nibbles(packed, out);
  out.scale = low_halves_to_float(gather_rows(group, at));
}

inline void load_transposed_block(const LegacyQ4_1&, const LegacyRowGroup& group, std::size_t block, LegacyTransposedBlock& out) {
  const std::size_t at = block * LegacyQ4_1::block_bytes;  // [F16 d][F16 m][16 nibble bytes]
  __m256i packed[4];
  transpose_rows_8x4(group, at + 4, packed);
  split_transposed_nibbles(packed, out);
  const __m256i header = gather_rows(group, at);
  out.scale = low_halves_to_float(header);
  out.minimum = high_halves_to_float(header);
}

inline void load_transposed_block(const LegacyQ5_0&, const LegacyRowGroup& group, std::size_t block, LegacyTransposedBlock& out) {
  const std::size_t at = block * LegacyQ5_0::block_bytes;  // [F16 d][4 bytes fifth bits][16 nibble bytes]
  __m256i packed[4];
  transpose_rows_8x4(group, at + 6, packed);
  split_transposed_nibbles(packed, out);
  add_transposed_fifth_bits(gather_rows(group, at + 2), out);
  out.scale = low_halves_to_float(gather_rows(group, at));
}

inline void load_transposed_block(const LegacyQ5_1&, const LegacyRowGroup& group, std::size_t block, LegacyTransposedBlock& out) {
  const std::size_t at = block * LegacyQ5_1::block_bytes;  // [F16 d][F16 m][4 bytes fifth bits][16 nibble bytes]
  __m256i packed[4];
  transpose_rows_8x4(group, at + 8, packed);
  split_transposed_nibbles(packed, out);
  add_transposed_fifth_bits(gather_rows(group, at + 4), out);
  const __m256i header = gather_rows(group, at);
  out.scale = low_halves_to_float(header);
  out.minimum = high_halves_to_float(header);
}

// --- token info (as on AVX-512: per token and block, the accumulator's starting value and d_a) ---

template <class Format>
inline void prepare_token_info(const std::uint8_t* blocks, std::size_t block_count, std::int32_t* corrections, float* scales) {
  for (std::size_t block = 0; block < block_count; ++block) {
    const std::uint8_t* bytes = blocks + block * Format::activation_block_bytes;
    scales[block] = _cvtsh_ss(read_u16(bytes));
    if constexpr (Format::has_minimum) {
      const float scaled_sum = _cvtsh_ss(read_u16(bytes + 2));
      std::memcpy(corrections + block, &scaled_sum, 4);
    } else {
      // Sum of the 32 quants: as unsigned bytes (flipped sign bit) through vpsadbw, minus 32 * 128.
      const __m256i flipped = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes + 2)),
                                               _mm256_set1_epi8(static_cast<char>(0x80)));
      const __m256i partial = _mm256_sad_epu8(flipped, _mm256_setzero_si256());  // 4 x 64-bit
      __m128i sum = _mm_add_epi64(_mm256_castsi256_si128(partial), _mm256_extracti128_si256(partial, 1));
      sum = _mm_add_epi64(sum, _mm_unpackhi_epi64(sum, sum));
      corrections[block] = (32 * 128 - _mm_cvtsi128_si32(sum)) * Format::code_offset;
    }
  }
}

// --- the kernel ---

// sums[8 t .. 8 t + 7] += the block's products with tokens t = 0 .. Tokens - 1, whose quants
// start at quants + t * quants_stride and whose token info is corrections[t * info_stride],
// scales[t * info_stride].
template <class Format, std::size_t Tokens>
inline void multiply_transposed_block(const LegacyTransposedBlock& weights, const std::uint8_t* quants, std::size_t quants_stride,
                                      const std::int32_t* corrections, const float* scales, std::size_t info_stride, float* sums) {
  // int16 pair sums of values 0..15 (registers 0..3) and 16..31 (registers 4..7).
  __m256i low[Tokens], high[Tokens];
  const auto products = [&](std::size_t t, std::size_t k, __m256i& low_product, __m256i& high_product) {
    const std::uint8_t* four = quants + t * quants_stride + 4 * k;  // activation bytes 4k .. 4k + 3, and 16 on
    low_product = _mm256_maddubs_epi16(weights.codes[k], _mm256_set1_epi32(static_cast<int>(read_u32(four))));
    high_product = _mm256_maddubs_epi16(weights.codes[k + 4], _mm256_set1_epi32(static_cast<int>(read_u32(four + 16))));
  };
  unroll<Tokens>([&](auto t) { products(t, 0, low[t], high[t]); });
  unroll<3>([&](auto k) {
    unroll<Tokens>([&](auto t) {
      __m256i low_product, high_product;
      products(t, k + 1, low_product, high_product);
      low[t] = _mm256_add_epi16(low[t], low_product);
      high[t] = _mm256_add_epi16(high[t], high_product);
    });
  });
  const __m256i ones = _mm256_set1_epi16(1);
  unroll<Tokens>([&](auto t) {
    __m256i dot = legacy_largest_code<Format> <= 15 ? _mm256_madd_epi16(_mm256_add_epi16(low[t], high[t]), ones)
                                                    : _mm256_add_epi32(_mm256_madd_epi16(low[t], ones), _mm256_madd_epi16(high[t], ones));
    float_batch sum = float_batch::load_aligned(sums + legacy_prompt_group_rows * t);
    if constexpr (Format::has_minimum) {
      float scaled_sum;
      std::memcpy(&scaled_sum, corrections + t * info_stride, 4);
      sum = fma(weights.minimum, float_batch(scaled_sum), sum);
    } else {
      dot = _mm256_add_epi32(dot, _mm256_set1_epi32(corrections[t * info_stride]));
    }
    sum = fma(float_batch(_mm256_cvtepi32_ps(dot)), weights.scale * float_batch(scales[t * info_stride]), sum);
    sum.store_aligned(sums + legacy_prompt_group_rows * t);
  });
}
