// lamina/kernels/cpu/simd/quant_legacy.inl — integer kernels for the 32-value block types
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) against 8-bit activations, for one instruction set.
//
// Included by kernels/cpu/instantiate.hpp inside lamina::cpu::<instruction set>; do not include
// it anywhere else.

// --- activations: float -> Q8_0 / Q8_1 blocks (GGML layout, quant/blocks.hpp) ---
// Scalar definitions for now.
inline void quantize_row_q8_0(const float* x, void* out, std::size_t count) {
  std::uint8_t* bytes = static_cast<std::uint8_t*>(out);
  for (std::size_t block = 0; block < count / 32; ++block, bytes += 34) {
    const float* values = x + block * 32;
    float amax = 0.0f;
    for (std::size_t i = 0; i < 32; ++i) amax = std::fabs(values[i]) > amax ? std::fabs(values[i]) : amax;
    const float scale = amax / 127.0f;
    const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
    const std::uint16_t scale_bits = f32_to_f16(scale);
    std::memcpy(bytes, &scale_bits, 2);
    for (std::size_t i = 0; i < 32; ++i) bytes[2 + i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::nearbyint(values[i] * inverse)));
  }
}

inline void quantize_row_q8_1(const float* x, void* out, std::size_t count) {
  std::uint8_t* bytes = static_cast<std::uint8_t*>(out);
  for (std::size_t block = 0; block < count / 32; ++block, bytes += 36) {
    const float* values = x + block * 32;
    float amax = 0.0f;
    for (std::size_t i = 0; i < 32; ++i) amax = std::fabs(values[i]) > amax ? std::fabs(values[i]) : amax;
    const float scale = amax / 127.0f;
    const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
    int sum = 0;
    for (std::size_t i = 0; i < 32; ++i) {
      const int q = static_cast<int>(std::nearbyint(values[i] * inverse));
      bytes[4 + i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(q));
      sum += q;
    }
    const std::uint16_t scale_bits = f32_to_f16(scale), sum_bits = f32_to_f16(scale * static_cast<float>(sum));
    std::memcpy(bytes, &scale_bits, 2);
    std::memcpy(bytes + 2, &sum_bits, 2);
  }
}


// --- weights ---

// The activation format the integer kernel for `weight_type` takes; false: no integer kernel
// here (the float path runs).
inline bool legacy_activation_format(DType weight_type, ActivationFormat* format) {
  (void)weight_type;
  (void)format;
  return false;
}

// The rows [row_begin, row_end) of `task` when this file has a kernel for its weight type.
inline bool legacy_matmul_rows(const MatmulTask& task, std::size_t row_begin, std::size_t row_end, float* scratch) {
  (void)task, (void)row_begin, (void)row_end, (void)scratch;
  return false;
}
