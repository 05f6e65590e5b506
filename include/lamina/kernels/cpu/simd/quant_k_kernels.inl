// lamina/kernels/cpu/simd/quant_k_kernels.inl — the K-quant matrix-product kernels for one
// instruction set (see quant_k.inl for the arithmetic and the choice of kernel).
//
// Included by quant_k.inl inside lamina::cpu::<instruction set>::k_quants, after
// quant_k_formats.inl; do not include it anywhere else.

// The activation block of token row `activations` for weight block `block`.
inline const std::uint8_t* activation_block(const std::uint8_t* activations, std::size_t block) {
  return activations + block * q8k_block_bytes;
}

// The 4 bytes at `bytes` as one int32 (for broadcasts to every 32-bit lane).
inline std::int32_t load_i32(const std::uint8_t* bytes) {
  std::int32_t value;
  std::memcpy(&value, bytes, sizeof value);
  return value;
}

// True when u8 × s8 pair sums (maddubs) of these codes cannot saturate int16: 2 · code · 127 ≤ 32767.
template <class Format>
inline constexpr bool maddubs_is_exact = 2 * Format::largest_code * 127 <= 32767;

inline std::uint8_t* align_64(float* scratch) {
  const std::uintptr_t address = reinterpret_cast<std::uintptr_t>(scratch);
  return reinterpret_cast<std::uint8_t*>((address + 63) & ~static_cast<std::uintptr_t>(63));
}

#if LAMINA_CPU_TARGET >= 2
// =============================================================================================
// AVX2 and AVX-512: one to four tokens, whole rows.
//
// Per weight block: the codes in value order, one vector per 32 (AVX2) or 64 (AVX-512)
// values, times the activation quants of the same values (maddubs: u8 × s8, adjacent products
// summed to int16), times the scale of each pair's group (madd / dpwssd: int16 × int16, adjacent
// products summed into the int32 lanes of the row's accumulator). The minimum term is one madd of
// the 16 group minimums with the 16 activation group sums.

#  if LAMINA_CPU_TARGET == 3
using int_vector = __m512i;
inline constexpr int int_vector_bytes = 64;
inline int_vector load_int_vector(const std::uint8_t* bytes) { return _mm512_loadu_si512(bytes); }
inline void store_int_vector(std::uint8_t* bytes, int_vector x) { _mm512_storeu_si512(bytes, x); }
template <class Format>
LAMINA_K_QUANTS_INLINE int_vector codes_vector(const std::uint8_t* block, int chunk) { return codes_64<Format>(block, chunk); }
inline __m512 to_float(__m512i x) { return _mm512_cvtepi32_ps(x); }
inline __m512i widen_sums(__m256i x) { return _mm512_zextsi256_si512(x); }  // 8 int32 lanes, the rest 0
#  else
using int_vector = __m256i;
inline constexpr int int_vector_bytes = 32;
inline int_vector load_int_vector(const std::uint8_t* bytes) { return load_256(bytes); }
inline void store_int_vector(std::uint8_t* bytes, int_vector x) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(bytes), x); }
template <class Format>
LAMINA_K_QUANTS_INLINE int_vector codes_vector(const std::uint8_t* block, int chunk) { return codes_32<Format>(block, chunk); }
inline __m256 to_float(__m256i x) { return _mm256_cvtepi32_ps(x); }
inline __m256i widen_sums(__m256i x) { return x; }
#  endif
inline constexpr int chunks_per_block = 256 / int_vector_bytes;

// Codes up to 241 (IQ4_XS) would saturate maddubs. AVX-512 multiplies them with dpbusd into
// int32 lanes of 4 values and scales those; AVX2 uses the signed levels instead (see below).
template <class Format>
inline constexpr bool row_kernel_uses_dpbusd = LAMINA_CPU_TARGET == 3 && !maddubs_is_exact<Format>;
template <class Format>
inline constexpr bool row_kernel_uses_signed_levels = LAMINA_CPU_TARGET == 2 && !maddubs_is_exact<Format>;

// One row's block scales, widened for row_tokens.
struct RowBlockScales {
  int_vector scales;  // AVX-512: the 16 group scales as int16 (int32 for dpbusd); AVX2: the 16 bytes in both halves
  __m256i mins;       // 16 int16 group minimums (offset · scale for mins_from_scales)
};

template <class Format>
LAMINA_K_QUANTS_INLINE RowBlockScales row_block_scales(const std::uint8_t* block) {
  const GroupScaleBytes bytes = Format::group_scale_bytes(block);
  RowBlockScales widened;
  __m256i mins = _mm256_cvtepi8_epi16(bytes.mins);
  if constexpr (Format::mins_from_scales) mins = _mm256_slli_epi16(mins, Format::code_offset_shift);
  widened.mins = mins;
#  if LAMINA_CPU_TARGET == 3
  if constexpr (row_kernel_uses_dpbusd<Format>) {
    widened.scales = _mm512_cvtepi8_epi32(bytes.scales);
  } else {
    widened.scales = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(bytes.scales));
  }
#  else
  widened.scales = _mm256_broadcastsi128_si256(bytes.scales);
#  endif
  return widened;
}

// The scale of each product accumulate_chunk sums for vector `chunk` of the block's codes.
template <class Format>
LAMINA_K_QUANTS_INLINE int_vector chunk_scales(const RowBlockScales& scales, int chunk) {
#  if LAMINA_CPU_TARGET == 3
  if constexpr (row_kernel_uses_dpbusd<Format>) {
    // dpbusd lane i of chunk c sums values 64c + 4i .. 64c + 4i + 3: group 4c + i / 4.
    const int g = 4 * chunk;
    return _mm512_permutexvar_epi32(
        _mm512_setr_epi32(g, g, g, g, g + 1, g + 1, g + 1, g + 1, g + 2, g + 2, g + 2, g + 2, g + 3, g + 3, g + 3, g + 3), scales.scales);
  } else {
    // maddubs pair i of chunk c holds values 64c + 2i, 64c + 2i + 1: group 4c + i / 8.
    const short a = static_cast<short>(4 * chunk), b = static_cast<short>(a + 1), c = static_cast<short>(a + 2),
                d = static_cast<short>(a + 3);
    const __m512i groups = _mm512_set_epi16(d, d, d, d, d, d, d, d, c, c, c, c, c, c, c, c,
                                            b, b, b, b, b, b, b, b, a, a, a, a, a, a, a, a);
    return _mm512_permutexvar_epi16(groups, scales.scales);
  }
#  else
  // maddubs pair i of chunk c holds values 32c + 2i, 32c + 2i + 1: group 2c + i / 8, so the low
  // 128-bit half takes group 2c and the high half 2c + 1. A byte shuffle puts the scale byte in
  // both bytes of each int16 and an arithmetic shift sign-extends it.
  const __m256i select = _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(0x0101 * (2 * chunk + 1))),
                                          _mm_set1_epi16(static_cast<short>(0x0101 * (2 * chunk))));
  return _mm256_srai_epi16(_mm256_shuffle_epi8(scales.scales, select), 8);
#  endif
}

// accumulator + Σ over one chunk of scale_g · code_i · activation_i (int32 lanes).
template <class Format>
LAMINA_K_QUANTS_INLINE int_vector accumulate_chunk(int_vector accumulator, int_vector codes, int_vector activations, int_vector scales) {
#  if LAMINA_CPU_TARGET == 3
  if constexpr (row_kernel_uses_dpbusd<Format>) {
    const __m512i products = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes, activations);
    return _mm512_add_epi32(accumulator, _mm512_mullo_epi32(products, scales));
  } else {
    return _mm512_dpwssd_epi32(accumulator, _mm512_maddubs_epi16(codes, activations), scales);
  }
#  else
  if constexpr (row_kernel_uses_signed_levels<Format>) {
    // level = code − 128 as a signed byte; |level| · (±activation) keeps maddubs within int16.
    // The sum is then over the levels themselves, so the caller drops the minimum term.
    const __m256i levels = _mm256_xor_si256(codes, _mm256_set1_epi8(static_cast<char>(0x80)));
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(levels), _mm256_sign_epi8(activations, levels));
    return _mm256_add_epi32(accumulator, _mm256_madd_epi16(pairs, scales));
  } else {
    return _mm256_add_epi32(accumulator, _mm256_madd_epi16(_mm256_maddubs_epi16(codes, activations), scales));
  }
#  endif
}

// How far ahead of its reads row_tokens asks for weight bytes (into L2). Decoding streams
// the weights from memory once, and the kernel's work per byte leaves too few loads in flight
// for the hardware prefetchers to keep up: on a Zen 5 core, 10 GB/s without, 24 GB/s with (as
// fast as a plain read of the same memory). Rows are contiguous in a weight matrix, so this
// reaches into the next rows; a prefetch past the end of the weights is harmless.
inline constexpr std::size_t decode_prefetch_bytes = 8192;

// Up to this many tokens, row_tokens beats decoding a tile (measured on Zen 5 with 2048 × 2048
// weights; a tile's decoding costs about as much as 2 to 3 tokens).
#  if LAMINA_CPU_TARGET == 3
inline constexpr std::size_t row_kernel_max_tokens = 4;
#  else
inline constexpr std::size_t row_kernel_max_tokens = 2;
#  endif

// out[t · out_stride] = Σ_i weight[i] · activation_t[i] for one weight row and Tokens tokens;
// each block of the row is decoded once for all of them.
// row: the weight row; token_rows[t]: the tokens' Q8_K rows; block_count = in / 256.
template <class Format, int Tokens>
inline void row_tokens(const std::uint8_t* row, const std::uint8_t* const* token_rows, std::size_t block_count, float* out,
                       std::size_t out_stride) {
  float_batch scaled_sums[Tokens], scaled_mins[Tokens];
  LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) scaled_sums[t] = scaled_mins[t] = float_batch(0.0f);
  for (std::size_t b = 0; b < block_count; ++b) {
    const std::uint8_t* block = row + b * Format::block_bytes;
    LAMINA_K_QUANTS_UNROLL for (std::size_t line = 0; line < Format::block_bytes; line += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(block + decode_prefetch_bytes + line), _MM_HINT_T1);
    }
    const RowBlockScales scales = row_block_scales<Format>(block);
    const std::uint8_t* activation[Tokens];
    int_vector sums[Tokens];
    LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) {
      activation[t] = activation_block(token_rows[t], b);
      sums[t] = int_vector{};
    }
    LAMINA_K_QUANTS_UNROLL for (int chunk = 0; chunk < chunks_per_block; ++chunk) {
      const int_vector codes = codes_vector<Format>(block, chunk), scale = chunk_scales<Format>(scales, chunk);
      LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) {
        const int_vector quants = load_int_vector(activation[t] + q8k_quants_offset + chunk * int_vector_bytes);
        sums[t] = accumulate_chunk<Format>(sums[t], codes, quants, scale);
      }
    }
    const float weight_scale = Format::scale(block), weight_min_scale = Format::min_scale(block);
    LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) {
      const float activation_scale = load_f32(activation[t]);
      const float scale = weight_scale * activation_scale;
      if constexpr (row_kernel_uses_signed_levels<Format>) {
        scaled_sums[t] = fma(float_batch(to_float(sums[t])), float_batch(scale), scaled_sums[t]);
      } else {
        const __m256i min_sums = _mm256_madd_epi16(scales.mins, load_256(activation[t] + q8k_sums_offset));
        if constexpr (Format::mins_from_scales) {
          // Dmin = D: subtract the (exact) minimum term before converting.
#  if LAMINA_CPU_TARGET == 3
          sums[t] = _mm512_sub_epi32(sums[t], widen_sums(min_sums));
#  else
          sums[t] = _mm256_sub_epi32(sums[t], min_sums);
#  endif
          scaled_sums[t] = fma(float_batch(to_float(sums[t])), float_batch(scale), scaled_sums[t]);
        } else {
          scaled_sums[t] = fma(float_batch(to_float(sums[t])), float_batch(scale), scaled_sums[t]);
          scaled_mins[t] = fma(float_batch(to_float(widen_sums(min_sums))), float_batch(weight_min_scale * activation_scale),
                                      scaled_mins[t]);
        }
      }
    }
  }
  LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) {
    out[static_cast<std::size_t>(t) * out_stride] = reduce_add(scaled_sums[t]) - reduce_add(scaled_mins[t]);
  }
}

// =============================================================================================
// AVX2 and AVX-512: many tokens, tiles of rows.
//
// A tile of tile_lanes rows (8 for AVX2, 16 for AVX-512: one row per 32-bit lane) is decoded
// once into scratch, block by block, as
//   quads      [64][tile_lanes] × 4 bytes: quad q of lane r = codes 4q .. 4q + 3 of row r
//   scales     [scale_count][tile_lanes] × int32: AVX-512: scale; AVX2: the scale in both int16 halves
//   min_pairs  [8][tile_lanes] × 2 int16: minimums of groups 2j and 2j + 1
//   d, dmin    [tile_lanes] floats
// and then each group of tokens runs over it: for every quad, one vector load serves all the
// tokens, each multiplying it with its own 4 activation bytes broadcast to every lane. Every
// lane does the same operations, so a row's result does not depend on its lane or tile.

// An empty statement that claims to change `x`: the compiler must then compute the additions
// into it in the order written instead of regrouping them into a tree, which needs more registers
// than AVX2 has (GCC's reassociation then spills the partial sums to the stack).
template <class Vector>
inline void keep_in_register(Vector& x) {
#  if defined(__GNUC__) || defined(__clang__)
  __asm__("" : "+x"(x));
#  else
  (void)x;
#  endif
}

#  if LAMINA_CPU_TARGET == 3
inline constexpr int tile_lanes = 16;
inline constexpr int tile_token_group = 8;  // 3 accumulators per token + operands in 32 registers
#  else
inline constexpr int tile_lanes = 8;
inline constexpr int tile_token_group = 4;  // in 16 registers (see keep_in_register)
#  endif

template <class Format>
struct TileLayout {
  static constexpr int scale_count = 256 / Format::values_per_scale;
  static constexpr std::size_t quads_offset = 0;
  static constexpr std::size_t scales_offset = 64 * tile_lanes * 4;
  static constexpr std::size_t min_pairs_offset = scales_offset + scale_count * tile_lanes * 4;
  static constexpr std::size_t d_offset = min_pairs_offset + 8 * tile_lanes * 4;
  static constexpr std::size_t dmin_offset = d_offset + tile_lanes * 4;
  static constexpr std::size_t block_bytes = dmin_offset + tile_lanes * 4;  // a multiple of 64
};

// The transpose of a tile_lanes × tile_lanes matrix of 32-bit elements: on entry lanes[r]
// holds element q of row r in lane q; on exit lanes[q] holds it in lane r. Pairs of rows are
// interleaved (32-bit), then pairs of pairs (64-bit), then 128-bit lanes are exchanged.
inline void transpose_lanes(int_vector lanes[tile_lanes]) {
#  if LAMINA_CPU_TARGET == 3
  __m512i pairs[16], quads[16];
  LAMINA_K_QUANTS_UNROLL for (int i = 0; i < 16; i += 2) {
    pairs[i] = _mm512_unpacklo_epi32(lanes[i], lanes[i + 1]);
    pairs[i + 1] = _mm512_unpackhi_epi32(lanes[i], lanes[i + 1]);
  }
  // quads[4g + k], 128-bit lane L: element 4L + k of rows 4g .. 4g + 3.
  LAMINA_K_QUANTS_UNROLL for (int g = 0; g < 16; g += 4) {
    quads[g] = _mm512_unpacklo_epi64(pairs[g], pairs[g + 2]);
    quads[g + 1] = _mm512_unpackhi_epi64(pairs[g], pairs[g + 2]);
    quads[g + 2] = _mm512_unpacklo_epi64(pairs[g + 1], pairs[g + 3]);
    quads[g + 3] = _mm512_unpackhi_epi64(pairs[g + 1], pairs[g + 3]);
  }
  LAMINA_K_QUANTS_UNROLL for (int k = 0; k < 4; ++k) {
    const __m512i even01 = _mm512_shuffle_i32x4(quads[k], quads[4 + k], 0x88);  // lanes 0, 2 of row groups 0, 1
    const __m512i odd01 = _mm512_shuffle_i32x4(quads[k], quads[4 + k], 0xdd);   // lanes 1, 3
    const __m512i even23 = _mm512_shuffle_i32x4(quads[8 + k], quads[12 + k], 0x88);
    const __m512i odd23 = _mm512_shuffle_i32x4(quads[8 + k], quads[12 + k], 0xdd);
    lanes[k] = _mm512_shuffle_i32x4(even01, even23, 0x88);
    lanes[8 + k] = _mm512_shuffle_i32x4(even01, even23, 0xdd);
    lanes[4 + k] = _mm512_shuffle_i32x4(odd01, odd23, 0x88);
    lanes[12 + k] = _mm512_shuffle_i32x4(odd01, odd23, 0xdd);
  }
#  else
  __m256i pairs[8], quads[8];
  LAMINA_K_QUANTS_UNROLL for (int i = 0; i < 8; i += 2) {
    pairs[i] = _mm256_unpacklo_epi32(lanes[i], lanes[i + 1]);
    pairs[i + 1] = _mm256_unpackhi_epi32(lanes[i], lanes[i + 1]);
  }
  // quads[4g + k], 128-bit lane L: element 4L + k of rows 4g .. 4g + 3.
  LAMINA_K_QUANTS_UNROLL for (int g = 0; g < 8; g += 4) {
    quads[g] = _mm256_unpacklo_epi64(pairs[g], pairs[g + 2]);
    quads[g + 1] = _mm256_unpackhi_epi64(pairs[g], pairs[g + 2]);
    quads[g + 2] = _mm256_unpacklo_epi64(pairs[g + 1], pairs[g + 3]);
    quads[g + 3] = _mm256_unpackhi_epi64(pairs[g + 1], pairs[g + 3]);
  }
  LAMINA_K_QUANTS_UNROLL for (int k = 0; k < 4; ++k) {
    lanes[k] = _mm256_permute2x128_si256(quads[k], quads[4 + k], 0x20);
    lanes[4 + k] = _mm256_permute2x128_si256(quads[k], quads[4 + k], 0x31);
  }
#  endif
}

// 16 bytes of each of the tile's rows as 4 vectors of quads, one lane per row:
//   quads[q], lane r = bytes offset + 4q .. offset + 4q + 3 of row r   (row r at rows + r · row_bytes)
// Each 128-bit lane i of the inputs gathers rows 4i + k (k = 0..3); then the 4x4 transpose of
// 32-bit elements within every 128-bit lane puts row 4i + j in element j of lane i.
inline void transpose_rows_to_quads(const std::uint8_t* rows, std::size_t row_bytes, std::size_t offset, int_vector quads[4]) {
  int_vector gathered[4];
  LAMINA_K_QUANTS_UNROLL for (int k = 0; k < 4; ++k) {
    const std::uint8_t* row = rows + static_cast<std::size_t>(k) * row_bytes + offset;
#  if LAMINA_CPU_TARGET == 3
    __m512i v = _mm512_castsi128_si512(load_128(row));
    v = _mm512_inserti32x4(v, load_128(row + 4 * row_bytes), 1);
    v = _mm512_inserti32x4(v, load_128(row + 8 * row_bytes), 2);
    gathered[k] = _mm512_inserti32x4(v, load_128(row + 12 * row_bytes), 3);
#  else
    gathered[k] = _mm256_inserti128_si256(_mm256_castsi128_si256(load_128(row)), load_128(row + 4 * row_bytes), 1);
#  endif
  }
#  if LAMINA_CPU_TARGET == 3
  const __m512i low01 = _mm512_unpacklo_epi32(gathered[0], gathered[1]), high01 = _mm512_unpackhi_epi32(gathered[0], gathered[1]);
  const __m512i low23 = _mm512_unpacklo_epi32(gathered[2], gathered[3]), high23 = _mm512_unpackhi_epi32(gathered[2], gathered[3]);
  quads[0] = _mm512_unpacklo_epi64(low01, low23);
  quads[1] = _mm512_unpackhi_epi64(low01, low23);
  quads[2] = _mm512_unpacklo_epi64(high01, high23);
  quads[3] = _mm512_unpackhi_epi64(high01, high23);
#  else
  const __m256i low01 = _mm256_unpacklo_epi32(gathered[0], gathered[1]), high01 = _mm256_unpackhi_epi32(gathered[0], gathered[1]);
  const __m256i low23 = _mm256_unpacklo_epi32(gathered[2], gathered[3]), high23 = _mm256_unpackhi_epi32(gathered[2], gathered[3]);
  quads[0] = _mm256_unpacklo_epi64(low01, low23);
  quads[1] = _mm256_unpackhi_epi64(low01, low23);
  quads[2] = _mm256_unpacklo_epi64(high01, high23);
  quads[3] = _mm256_unpackhi_epi64(high01, high23);
#  endif
}

// Byte `k` (0..3) of every 32-bit lane, sign-extended to 32 bits.
inline int_vector lane_byte(int_vector quads, int k) {
  const __m128i up = _mm_cvtsi32_si128(24 - 8 * k);
#  if LAMINA_CPU_TARGET == 3
  return _mm512_srai_epi32(_mm512_sll_epi32(quads, up), 24);
#  else
  return _mm256_srai_epi32(_mm256_sll_epi32(quads, up), 24);
#  endif
}

// Bytes 2·half and 2·half + 1 of every 32-bit lane as two sign-extended int16 (low, high).
inline int_vector lane_byte_pair(int_vector quads, int half) {
#  if LAMINA_CPU_TARGET == 3
  const __m256i pairs = _mm512_cvtepi32_epi16(half ? _mm512_srli_epi32(quads, 16) : quads);  // the two bytes of each lane
  return _mm512_cvtepi8_epi16(pairs);
#  else
  const __m256i even = _mm256_srai_epi16(_mm256_slli_epi16(quads, 8), 8);  // int16: bytes 0 and 2
  const __m256i odd = _mm256_srai_epi16(quads, 8);                        // int16: bytes 1 and 3
  return half ? _mm256_blend_epi16(_mm256_srli_epi32(even, 16), odd, 0xaa) : _mm256_blend_epi16(even, _mm256_slli_epi32(odd, 16), 0xaa);
#  endif
}

// Decodes rows [first_row, first_row + row_count) (row_count <= tile_lanes) of `task` into
// `tile` (TileLayout<Format>::block_bytes per weight block); missing lanes get zeros.
template <class Format>
inline void unpack_tile(const MatmulTask& task, std::size_t first_row, int row_count, std::uint8_t* tile) {
  using Layout = TileLayout<Format>;
  const std::size_t block_count = task.in / 256;
  // The group scales and minimums of one block of every row, before their transposes.
  alignas(16) std::int8_t scales[tile_lanes][16], mins[tile_lanes][16];
  for (std::size_t b = 0; b < block_count; ++b) {
    std::uint8_t* out = tile + b * Layout::block_bytes;
    const std::uint8_t* blocks[tile_lanes];
    for (int r = 0; r < row_count; ++r) {
      blocks[r] = task.weight + (first_row + static_cast<std::size_t>(r)) * task.weight_row_stride + b * Format::block_bytes;
      // The tile reads tile_lanes rows side by side, more streams than the hardware prefetcher
      // follows: ask for each row's bytes two blocks ahead.
      LAMINA_K_QUANTS_UNROLL for (std::size_t line = 0; line < Format::block_bytes; line += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(blocks[r] + 2 * Format::block_bytes + line), _MM_HINT_T0);
      }
    }
    // Codes: one vector of every row (its quads 16c .. or 8c ..), transposed in registers.
    LAMINA_K_QUANTS_UNROLL for (int chunk = 0; chunk < chunks_per_block; ++chunk) {
      int_vector lanes[tile_lanes];
      LAMINA_K_QUANTS_UNROLL for (int r = 0; r < tile_lanes; ++r) lanes[r] = r < row_count ? codes_vector<Format>(blocks[r], chunk) : int_vector{};
      transpose_lanes(lanes);
      LAMINA_K_QUANTS_UNROLL for (int q = 0; q < tile_lanes; ++q) {
        store_int_vector(out + Layout::quads_offset + static_cast<std::size_t>(chunk * tile_lanes + q) * int_vector_bytes, lanes[q]);
      }
    }
    float* d = reinterpret_cast<float*>(out + Layout::d_offset);
    float* dmin = reinterpret_cast<float*>(out + Layout::dmin_offset);
    for (int r = 0; r < tile_lanes; ++r) {
      if (r < row_count) {
        const GroupScaleBytes bytes = Format::group_scale_bytes(blocks[r]);
        _mm_store_si128(reinterpret_cast<__m128i*>(scales[r]), bytes.scales);
        _mm_store_si128(reinterpret_cast<__m128i*>(mins[r]), bytes.mins);
        d[r] = Format::scale(blocks[r]);
        dmin[r] = Format::min_scale(blocks[r]);
      } else {
        _mm_store_si128(reinterpret_cast<__m128i*>(scales[r]), _mm_setzero_si128());
        _mm_store_si128(reinterpret_cast<__m128i*>(mins[r]), _mm_setzero_si128());
        d[r] = dmin[r] = 0.0f;
      }
    }
    int_vector quads[4];
    // Scales: lane r of quads[q] holds the scales of groups 4q .. 4q + 3 of row r.
    transpose_rows_to_quads(reinterpret_cast<const std::uint8_t*>(&scales[0][0]), 16, 0, quads);
    LAMINA_K_QUANTS_UNROLL for (int s = 0; s < Layout::scale_count; ++s) {
      const int group = s * Format::values_per_scale / 16;
      int_vector scale = lane_byte(quads[group / 4], group % 4);
#  if LAMINA_CPU_TARGET == 2
      scale = _mm256_or_si256(_mm256_and_si256(scale, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(scale, 16));  // (s, s) for madd
#  endif
      store_int_vector(out + Layout::scales_offset + static_cast<std::size_t>(s) * int_vector_bytes, scale);
    }
    // Minimums: pair j = groups 2j and 2j + 1, as the int16 pair the activation group sums come in.
    transpose_rows_to_quads(reinterpret_cast<const std::uint8_t*>(&mins[0][0]), 16, 0, quads);
    LAMINA_K_QUANTS_UNROLL for (int j = 0; j < 8; ++j) {
      int_vector pair = lane_byte_pair(quads[j / 2], j % 2);
      if constexpr (Format::mins_from_scales) {
#  if LAMINA_CPU_TARGET == 3
        pair = _mm512_slli_epi16(pair, Format::code_offset_shift);
#  else
        pair = _mm256_slli_epi16(pair, Format::code_offset_shift);
#  endif
      }
      store_int_vector(out + Layout::min_pairs_offset + static_cast<std::size_t>(j) * int_vector_bytes, pair);
    }
  }
}

// y[t · y_stride + r] for Tokens tokens and the rows of one decoded tile.
template <class Format, int Tokens>
inline void tile_tokens(const std::uint8_t* tile, std::size_t block_count, const std::uint8_t* const* token_rows, float* y,
                        std::size_t y_stride, int row_count) {
  using Layout = TileLayout<Format>;
  constexpr int quads_per_scale = Format::values_per_scale / 4;
  float_batch results[Tokens];
  LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) results[t] = float_batch(0.0f);
  for (std::size_t b = 0; b < block_count; ++b) {
    const std::uint8_t* weights = tile + b * Layout::block_bytes;
    const std::uint8_t* activation[Tokens];
    LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) activation[t] = activation_block(token_rows[t], b);
    int_vector sums[Tokens], min_sums[Tokens];
    LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) sums[t] = min_sums[t] = int_vector{};
    for (int s = 0; s < Layout::scale_count; ++s) {
      const int first_quad = s * quads_per_scale;
      const int_vector scale = load_int_vector(weights + Layout::scales_offset + s * int_vector_bytes);
#  if LAMINA_CPU_TARGET == 3
      // dpbusd: every int32 lane += the 4 products of its row's quad with the token's 4 bytes.
      __m512i group[Tokens];
      LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) group[t] = _mm512_setzero_si512();
      LAMINA_K_QUANTS_UNROLL for (int q = first_quad; q < first_quad + quads_per_scale; ++q) {
        const __m512i quad = _mm512_load_si512(weights + Layout::quads_offset + q * 64);
        LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) {
          group[t] = _mm512_dpbusd_epi32(group[t], quad, _mm512_set1_epi32(load_i32(activation[t] + q8k_quants_offset + 4 * q)));
        }
      }
      LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) sums[t] = _mm512_add_epi32(sums[t], _mm512_mullo_epi32(group[t], scale));
#  else
      if constexpr (!maddubs_is_exact<Format>) {
        // Signed levels (IQ4_XS): |level| · (±activation), one quad at a time (see accumulate_chunk).
        LAMINA_K_QUANTS_UNROLL for (int q = first_quad; q < first_quad + quads_per_scale; ++q) {
          const __m256i levels = _mm256_xor_si256(_mm256_load_si256(reinterpret_cast<const __m256i*>(weights + Layout::quads_offset + q * 32)),
                                                  _mm256_set1_epi8(static_cast<char>(0x80)));
          const __m256i magnitudes = _mm256_abs_epi8(levels);
          LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) {
            const __m256i quants = _mm256_set1_epi32(load_i32(activation[t] + q8k_quants_offset + 4 * q));
            const __m256i pairs = _mm256_maddubs_epi16(magnitudes, _mm256_sign_epi8(quants, levels));
            sums[t] = _mm256_add_epi32(sums[t], _mm256_madd_epi16(pairs, scale));
            keep_in_register(sums[t]);
          }
        }
      } else {
        // maddubs gives int16 pair sums; quads_per_int16 of them fit int16 before madd widens.
        constexpr int quads_per_int16 = 32767 / (2 * Format::largest_code * 127) < quads_per_scale
                                            ? 32767 / (2 * Format::largest_code * 127)
                                            : quads_per_scale;
        LAMINA_K_QUANTS_UNROLL for (int run = first_quad; run < first_quad + quads_per_scale; run += quads_per_int16) {
          __m256i pairs[Tokens];
          LAMINA_K_QUANTS_UNROLL for (int q = run; q < run + quads_per_int16; ++q) {
            const __m256i quad = _mm256_load_si256(reinterpret_cast<const __m256i*>(weights + Layout::quads_offset + q * 32));
            LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) {
              const __m256i products = _mm256_maddubs_epi16(quad, _mm256_set1_epi32(load_i32(activation[t] + q8k_quants_offset + 4 * q)));
              pairs[t] = q == run ? products : _mm256_add_epi16(pairs[t], products);
              keep_in_register(pairs[t]);
            }
          }
          LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) sums[t] = _mm256_add_epi32(sums[t], _mm256_madd_epi16(pairs[t], scale));
        }
      }
#  endif
    }
    // Minimum term: pairs of group minimums times pairs of activation group sums.
    constexpr bool has_min_term = LAMINA_CPU_TARGET == 3 || maddubs_is_exact<Format>;
    if constexpr (has_min_term) {
      for (int j = 0; j < 8; ++j) {
        const int_vector min_pair = load_int_vector(weights + Layout::min_pairs_offset + j * int_vector_bytes);
        LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) {
#  if LAMINA_CPU_TARGET == 3
          min_sums[t] = _mm512_dpwssd_epi32(min_sums[t], min_pair, _mm512_set1_epi32(load_i32(activation[t] + q8k_sums_offset + 4 * j)));
#  else
          min_sums[t] = _mm256_add_epi32(min_sums[t], _mm256_madd_epi16(min_pair, _mm256_set1_epi32(load_i32(activation[t] + q8k_sums_offset + 4 * j))));
#  endif
        }
      }
    }
    const float_batch d = float_batch::load_aligned(reinterpret_cast<const float*>(weights + Layout::d_offset));
    const float_batch dmin = float_batch::load_aligned(reinterpret_cast<const float*>(weights + Layout::dmin_offset));
    LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) {
      const float_batch activation_scale(load_f32(activation[t]));
      float_batch block_sum;
      if constexpr (!has_min_term) {
        block_sum = float_batch(to_float(sums[t])) * d;
      } else if constexpr (Format::mins_from_scales) {
#  if LAMINA_CPU_TARGET == 3
        block_sum = float_batch(to_float(_mm512_sub_epi32(sums[t], min_sums[t]))) * d;
#  else
        block_sum = float_batch(to_float(_mm256_sub_epi32(sums[t], min_sums[t]))) * d;
#  endif
      } else {
        block_sum = fnma(float_batch(to_float(min_sums[t])), dmin, float_batch(to_float(sums[t])) * d);
      }
      results[t] = fma(block_sum, activation_scale, results[t]);
    }
  }
  LAMINA_K_QUANTS_UNROLL for (int t = 0; t < Tokens; ++t) {
    float* out = y + static_cast<std::size_t>(t) * y_stride;
    if (row_count == tile_lanes) {
      results[t].store_unaligned(out);
    } else {
#  if LAMINA_CPU_TARGET == 3
      _mm512_mask_storeu_ps(out, static_cast<__mmask16>((1u << row_count) - 1u), results[t]);
#  else
      const __m256i lane_numbers = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      _mm256_maskstore_ps(out, _mm256_cmpgt_epi32(_mm256_set1_epi32(row_count), lane_numbers), results[t]);
#  endif
    }
  }
}

template <class Format>
inline void tile_token_range(const std::uint8_t* tile, const MatmulTask& task, std::size_t first_row, int row_count) {
  const std::size_t block_count = task.in / 256;
  for (std::size_t t = 0; t < task.token_count; t += tile_token_group) {
    const std::size_t remaining = task.token_count - t;
    const int tokens = remaining < static_cast<std::size_t>(tile_token_group) ? static_cast<int>(remaining) : tile_token_group;
    const std::uint8_t* token_rows[tile_token_group];
    for (int k = 0; k < tokens; ++k) token_rows[k] = task.activations + (t + static_cast<std::size_t>(k)) * task.activation_row_stride;
    float* y = task.y + t * task.y_row_stride + first_row;
    switch (tokens) {
      case 1: tile_tokens<Format, 1>(tile, block_count, token_rows, y, task.y_row_stride, row_count); break;
      case 2: tile_tokens<Format, 2>(tile, block_count, token_rows, y, task.y_row_stride, row_count); break;
      case 3: tile_tokens<Format, 3>(tile, block_count, token_rows, y, task.y_row_stride, row_count); break;
#  if LAMINA_CPU_TARGET == 3
      case 4: tile_tokens<Format, 4>(tile, block_count, token_rows, y, task.y_row_stride, row_count); break;
      case 5: tile_tokens<Format, 5>(tile, block_count, token_rows, y, task.y_row_stride, row_count); break;
      case 6: tile_tokens<Format, 6>(tile, block_count, token_rows, y, task.y_row_stride, row_count); break;
      case 7: tile_tokens<Format, 7>(tile, block_count, token_rows, y, task.y_row_stride, row_count); break;
#  endif
      default: tile_tokens<Format, tile_token_group>(tile, block_count, token_rows, y, task.y_row_stride, row_count); break;
    }
  }
}

template <class Format>
inline void matmul_rows(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  const std::size_t block_count = task.in / 256;
  if (task.token_count <= row_kernel_max_tokens && !task.batch_invariant) {
    // Few tokens: whole rows, each block decoded once for all the tokens.
    const std::uint8_t* token_rows[row_kernel_max_tokens];
    for (std::size_t t = 0; t < task.token_count; ++t) token_rows[t] = task.activations + t * task.activation_row_stride;
    for (std::size_t row = row_begin; row < row_end; ++row) {
      const std::uint8_t* weights = task.weight + row * task.weight_row_stride;
      float* y = task.y + row;
      switch (task.token_count) {
        case 1: row_tokens<Format, 1>(weights, token_rows, block_count, y, task.y_row_stride); break;
#  if LAMINA_CPU_TARGET == 3
        case 2: row_tokens<Format, 2>(weights, token_rows, block_count, y, task.y_row_stride); break;
        case 3: row_tokens<Format, 3>(weights, token_rows, block_count, y, task.y_row_stride); break;
        default: row_tokens<Format, 4>(weights, token_rows, block_count, y, task.y_row_stride); break;
#  else
        default: row_tokens<Format, 2>(weights, token_rows, block_count, y, task.y_row_stride); break;
#  endif
      }
    }
    return;
  }
  std::uint8_t* tile = align_64(scratch);
  for (std::size_t row = row_begin; row < row_end; row += tile_lanes) {
    const int row_count = row_end - row < static_cast<std::size_t>(tile_lanes) ? static_cast<int>(row_end - row) : tile_lanes;
    unpack_tile<Format>(task, row, row_count, tile);
    // While this tile meets every token, bring the next tile's rows into L2: decoding a tile
    // reads its rows side by side, which leaves each row's first bytes waiting on memory
    // (a quarter of the decoding time in a whole model) when they come from DRAM.
    const std::size_t next_row_end = row + 2 * tile_lanes < row_end ? row + 2 * tile_lanes : row_end;
    for (std::size_t next = row + tile_lanes; next < next_row_end; ++next) {
      const std::uint8_t* bytes = task.weight + next * task.weight_row_stride;
      for (std::size_t line = 0; line < block_count * Format::block_bytes; line += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(bytes + line), _MM_HINT_T1);
      }
    }
    tile_token_range<Format>(tile, task, row, row_count);
  }
}

#else
// =============================================================================================
// SSE2: rows decoded to int16 (code × group scale, at most 241 · 32 or 63 · 128 in magnitude),
// activations widened to int16 on the fly, products summed in pairs by madd into int32.

// One weight block of one row, decoded.
struct Sse2Block {
  std::int16_t scaled_codes[256];  // code_i · scale_g
  std::int16_t mins[16];           // min_g (offset · scale_g for mins_from_scales)
  float d, dmin;
  float padding[2];
};
static_assert(sizeof(Sse2Block) % 16 == 0, "Sse2Block keeps 16-byte alignment in arrays");

inline constexpr int sse2_row_group = 4;  // rows that share each widened activation vector

inline __m128i widen_low_signed(__m128i bytes) { return _mm_unpacklo_epi8(bytes, _mm_cmplt_epi8(bytes, _mm_setzero_si128())); }
inline __m128i widen_high_signed(__m128i bytes) { return _mm_unpackhi_epi8(bytes, _mm_cmplt_epi8(bytes, _mm_setzero_si128())); }

template <class Format>
inline void unpack_sse2_block(const std::uint8_t* block, Sse2Block& out) {
  const GroupScaleBytes bytes = Format::group_scale_bytes(block);
  alignas(16) std::int8_t scales[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(scales), bytes.scales);
  LAMINA_K_QUANTS_UNROLL for (int piece = 0; piece < 16; ++piece) {
    const __m128i codes = codes_16<Format>(block, piece);
    const __m128i scale = _mm_set1_epi16(scales[piece]);
    _mm_store_si128(reinterpret_cast<__m128i*>(out.scaled_codes + 16 * piece), _mm_mullo_epi16(_mm_unpacklo_epi8(codes, _mm_setzero_si128()), scale));
    _mm_store_si128(reinterpret_cast<__m128i*>(out.scaled_codes + 16 * piece + 8), _mm_mullo_epi16(_mm_unpackhi_epi8(codes, _mm_setzero_si128()), scale));
  }
  __m128i mins_low = widen_low_signed(bytes.mins), mins_high = widen_high_signed(bytes.mins);
  if constexpr (Format::mins_from_scales) {
    mins_low = _mm_slli_epi16(mins_low, Format::code_offset_shift);
    mins_high = _mm_slli_epi16(mins_high, Format::code_offset_shift);
  }
  _mm_store_si128(reinterpret_cast<__m128i*>(out.mins), mins_low);
  _mm_store_si128(reinterpret_cast<__m128i*>(out.mins + 8), mins_high);
  out.d = Format::scale(block);
  out.dmin = Format::min_scale(block);
}

// y[t][r] for all tokens and Rows decoded rows (rows[r]: block_count Sse2Blocks).
template <class Format, int Rows>
inline void sse2_rows(const Sse2Block* const* rows, const MatmulTask& task, std::size_t first_row) {
  const std::size_t block_count = task.in / 256;
  for (std::size_t t = 0; t < task.token_count; ++t) {
    const std::uint8_t* token = task.activations + t * task.activation_row_stride;
    float_batch results[Rows];
    LAMINA_K_QUANTS_UNROLL for (int r = 0; r < Rows; ++r) results[r] = float_batch(0.0f);
    for (std::size_t b = 0; b < block_count; ++b) {
      const std::uint8_t* activation = activation_block(token, b);
      __m128i sums[Rows];
      LAMINA_K_QUANTS_UNROLL for (int r = 0; r < Rows; ++r) sums[r] = _mm_setzero_si128();
      LAMINA_K_QUANTS_UNROLL for (int piece = 0; piece < 16; ++piece) {
        const __m128i quants = load_128(activation + q8k_quants_offset + 16 * piece);
        const __m128i low = widen_low_signed(quants), high = widen_high_signed(quants);
        LAMINA_K_QUANTS_UNROLL for (int r = 0; r < Rows; ++r) {
          const __m128i* codes = reinterpret_cast<const __m128i*>(rows[r][b].scaled_codes + 16 * piece);
          sums[r] = _mm_add_epi32(sums[r], _mm_add_epi32(_mm_madd_epi16(_mm_load_si128(codes), low), _mm_madd_epi16(_mm_load_si128(codes + 1), high)));
        }
      }
      const __m128i group_sums_low = load_128(activation + q8k_sums_offset), group_sums_high = load_128(activation + q8k_sums_offset + 16);
      const float activation_scale = load_f32(activation);
      LAMINA_K_QUANTS_UNROLL for (int r = 0; r < Rows; ++r) {
        const Sse2Block& block = rows[r][b];
        const __m128i* mins = reinterpret_cast<const __m128i*>(block.mins);
        const __m128i min_sums = _mm_add_epi32(_mm_madd_epi16(_mm_load_si128(mins), group_sums_low), _mm_madd_epi16(_mm_load_si128(mins + 1), group_sums_high));
        float_batch block_sum;
        if constexpr (Format::mins_from_scales) {
          block_sum = float_batch(_mm_cvtepi32_ps(_mm_sub_epi32(sums[r], min_sums))) * float_batch(block.d);
        } else {
          block_sum = float_batch(_mm_cvtepi32_ps(sums[r])) * float_batch(block.d) - float_batch(_mm_cvtepi32_ps(min_sums)) * float_batch(block.dmin);
        }
        results[r] = results[r] + block_sum * float_batch(activation_scale);
      }
    }
    LAMINA_K_QUANTS_UNROLL for (int r = 0; r < Rows; ++r) task.y[t * task.y_row_stride + first_row + static_cast<std::size_t>(r)] = reduce_add(results[r]);
  }
}

template <class Format>
inline void matmul_rows(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  const std::size_t block_count = task.in / 256;
  Sse2Block* decoded = reinterpret_cast<Sse2Block*>(align_64(scratch));
  for (std::size_t row = row_begin; row < row_end; row += sse2_row_group) {
    const int row_count = row_end - row < static_cast<std::size_t>(sse2_row_group) ? static_cast<int>(row_end - row) : sse2_row_group;
    const Sse2Block* rows[sse2_row_group];
    for (int r = 0; r < row_count; ++r) {
      Sse2Block* blocks = decoded + static_cast<std::size_t>(r) * block_count;
      const std::uint8_t* weight_row = task.weight + (row + static_cast<std::size_t>(r)) * task.weight_row_stride;
      for (std::size_t b = 0; b < block_count; ++b) unpack_sse2_block<Format>(weight_row + b * Format::block_bytes, blocks[b]);
      rows[r] = blocks;
    }
    switch (row_count) {
      case 1: sse2_rows<Format, 1>(rows, task, row); break;
      case 2: sse2_rows<Format, 2>(rows, task, row); break;
      case 3: sse2_rows<Format, 3>(rows, task, row); break;
      default: sse2_rows<Format, 4>(rows, task, row); break;
    }
  }
}
#endif
