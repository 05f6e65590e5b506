// lamina/kernels/cpu/simd/quant_k.inl — integer kernels for the 256-value block types
// (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS) against Q8_K activations, for one instruction set.
//
// Included by kernels/cpu/instantiate.hpp inside lamina::cpu::<instruction set>; do not include
// it anywhere else.

// --- activations: float -> Q8_K blocks (GGML layout, quant/blocks.hpp) ---
// Scalar definition for now.
inline void quantize_row_q8_k(const float* x, void* out, std::size_t count) {
  std::uint8_t* bytes = static_cast<std::uint8_t*>(out);
  for (std::size_t block = 0; block < count / 256; ++block, bytes += 292) {
    const float* values = x + block * 256;
    float amax = 0.0f, max_value = 0.0f;
    for (std::size_t i = 0; i < 256; ++i) {
      if (std::fabs(values[i]) > amax) {
        amax = std::fabs(values[i]);
        max_value = values[i];
      }
    }
    std::int8_t quants[256];
    std::int16_t sums[16];
    float scale = 0.0f;
    if (amax == 0.0f) {
      for (std::size_t i = 0; i < 256; ++i) quants[i] = 0;
    } else {
      const float inverse = -127.0f / max_value;
      for (std::size_t i = 0; i < 256; ++i) {
        const int q = static_cast<int>(std::nearbyint(inverse * values[i]));
        quants[i] = static_cast<std::int8_t>(q > 127 ? 127 : q);
      }
      scale = 1.0f / inverse;
    }
    for (std::size_t group = 0; group < 16; ++group) {
      int sum = 0;
      for (std::size_t i = 0; i < 16; ++i) sum += quants[group * 16 + i];
      sums[group] = static_cast<std::int16_t>(sum);
    }
    std::memcpy(bytes, &scale, 4);
    std::memcpy(bytes + 4, quants, 256);
    std::memcpy(bytes + 260, sums, 32);
  }
}

// --- weights ---

// The activation format the integer kernel for `weight_type` takes; false: no integer kernel
// here (the float path runs).
inline bool k_quant_activation_format(DType weight_type, ActivationFormat* format) {
  (void)weight_type;
  (void)format;
  return false;
}

// The rows [row_begin, row_end) of `task` when this file has a kernel for its weight type.
inline bool k_quant_matmul_rows(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  (void)task, (void)row_begin, (void)row_end, (void)scratch;
  return false;
}
