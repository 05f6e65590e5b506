// Tests of lamina/quant: the block layouts (hand-built blocks with known values), byte-exact
// agreement with llama-quantize on the synth-llama models in ../shared, closeness of the
// dequantized weights, round-trip error on random data for every type, row handling (lengths,
// alignment, partial blocks), non-finite input and unsupported types.
#include <lamina/core/dtype.hpp>
#include <lamina/core/half.hpp>
#include <lamina/io/gguf.hpp>
#include <lamina/quant/quant.hpp>

#include <doctest/doctest.h>

#include "../test_support.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

using lamina::DType;
using lamina::ErrorCode;
namespace quant = lamina::quant;

namespace {

// Every block type lamina quantizes, in GGML's id order.
const DType block_types[] = {DType::q4_0, DType::q4_1, DType::q5_0, DType::q5_1, DType::q8_0,
                             DType::q8_1, DType::q2_k, DType::q3_k, DType::q4_k, DType::q5_k,
                             DType::q6_k, DType::q8_k, DType::iq4_nl, DType::iq4_xs};

// Standard normal values from mt19937 (whose output the standard fixes) by Box-Muller, so the
// figures below are the same with every standard library.
std::vector<float> gaussian(std::size_t count, std::uint32_t seed, float sigma = 1.0f) {
  std::mt19937 generator(seed);
  std::vector<float> values(count);
  for (std::size_t i = 0; i < count; i += 2) {
    const double u1 = (static_cast<double>(generator()) + 1.0) / 4294967297.0;  // (0, 1]
    const double u2 = static_cast<double>(generator()) / 4294967296.0;
    const double radius = std::sqrt(-2.0 * std::log(u1));
    values[i] = static_cast<float>(sigma * radius * std::cos(6.283185307179586 * u2));
    if (i + 1 < count) values[i + 1] = static_cast<float>(sigma * radius * std::sin(6.283185307179586 * u2));
  }
  return values;
}

// A std::string, as doctest prints a const char* as a pointer.
std::string name_of(DType type) { return lamina::dtype_name(type); }

std::size_t block_size(DType type) { return lamina::dtype_traits(type).block_size; }
std::size_t block_bytes(DType type) { return lamina::dtype_traits(type).block_bytes; }

std::vector<std::uint8_t> quantized(DType type, const std::vector<float>& values) {
  std::vector<std::uint8_t> bytes(lamina::row_bytes(type, values.size()));
  const lamina::Result<void> result = quant::quantize_row(type, values.data(), bytes.data(), values.size());
  REQUIRE_MESSAGE(result.ok(), result.error().message);
  return bytes;
}

std::vector<float> dequantized(DType type, const void* bytes, std::size_t count) {
  std::vector<float> values(count);
  const lamina::Result<void> result = quant::dequantize_row(type, bytes, values.data(), count);
  REQUIRE_MESSAGE(result.ok(), result.error().message);
  return values;
}

std::size_t differing_blocks(DType type, const std::uint8_t* a, const std::uint8_t* b, std::size_t byte_count) {
  const std::size_t size = block_bytes(type);
  std::size_t differing = 0;
  for (std::size_t offset = 0; offset < byte_count; offset += size) differing += std::memcmp(a + offset, b + offset, size) != 0;
  return differing;
}

double rms(const std::vector<float>& values) {
  double sum = 0.0;
  for (float value : values) sum += static_cast<double>(value) * value;
  return std::sqrt(sum / static_cast<double>(values.size()));
}

double rms_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double difference = static_cast<double>(a[i]) - b[i];
    sum += difference * difference;
  }
  return std::sqrt(sum / static_cast<double>(a.size()));
}

template <class Block>
std::vector<float> decode(const Block& block) {
  std::vector<float> values(quant::BlockTraits<Block>::values);
  quant::dequantize_block(block, values.data());
  return values;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Layouts

TEST_CASE("quant: block structs have GGML's sizes and block lengths") {
  auto check = [](auto tag) {
    using Block = typename decltype(tag)::type;
    const DType type = quant::BlockTraits<Block>::dtype;
    CAPTURE(name_of(type));
    CHECK(sizeof(Block) == block_bytes(type));
    CHECK(quant::BlockTraits<Block>::values == block_size(type));
  };
  for (DType type : block_types) {
    CHECK(quant::can_quantize(type));
    CHECK(quant::can_dequantize(type));
    CHECK(quant::detail::visit_block_type(type, check));
  }
}

TEST_CASE("quant: hand-built blocks decode to the values their layout defines") {
  const std::uint16_t half_of_one = lamina::f32_to_f16(1.0f);
  const std::uint16_t half_of_half = lamina::f32_to_f16(0.5f);

  SUBCASE("Q8_0: scale 0.5, quants 1..32") {
    quant::BlockQ8_0 block{};
    block.scale = half_of_half;
    for (int i = 0; i < 32; ++i) block.quants[i] = static_cast<std::int8_t>(i + 1);
    const std::vector<float> values = decode(block);
    for (int i = 0; i < 32; ++i) CHECK(values[i] == 0.5f * static_cast<float>(i + 1));
  }
  SUBCASE("Q4_0: value j in the low nibble of byte j, value j+16 in the high one, minus 8") {
    quant::BlockQ4_0 block{};
    block.scale = lamina::f32_to_f16(2.0f);
    for (int j = 0; j < 16; ++j) block.nibbles[j] = static_cast<std::uint8_t>(j | ((15 - j) << 4));
    const std::vector<float> values = decode(block);
    for (int j = 0; j < 16; ++j) {
      CHECK(values[j] == 2.0f * static_cast<float>(j - 8));
      CHECK(values[j + 16] == 2.0f * static_cast<float>(15 - j - 8));
    }
  }
  SUBCASE("Q4_1: scale * q + minimum") {
    quant::BlockQ4_1 block{};
    block.scale = lamina::f32_to_f16(0.25f);
    block.minimum = lamina::f32_to_f16(-1.0f);
    for (int j = 0; j < 16; ++j) block.nibbles[j] = static_cast<std::uint8_t>(j | (j << 4));
    const std::vector<float> values = decode(block);
    for (int j = 0; j < 16; ++j) {
      CHECK(values[j] == 0.25f * static_cast<float>(j) - 1.0f);
      CHECK(values[j + 16] == 0.25f * static_cast<float>(j) - 1.0f);
    }
  }
  SUBCASE("Q5_0 and Q5_1: bit i of the 32-bit little-endian high_bits is bit 4 of value i") {
    quant::BlockQ5_0 block{};
    block.scale = half_of_one;
    const std::uint32_t mask = 0x8000ff01u;  // values 0, 8..15 and 31 have bit 4 set
    for (int b = 0; b < 4; ++b) block.high_bits[b] = static_cast<std::uint8_t>(mask >> (8 * b));
    for (int j = 0; j < 16; ++j) block.nibbles[j] = 0x53;  // low nibble 3, high nibble 5
    const std::vector<float> values = decode(block);
    quant::BlockQ5_1 block_with_minimum{};
    block_with_minimum.scale = half_of_one;
    block_with_minimum.minimum = lamina::f32_to_f16(-16.0f);
    std::memcpy(block_with_minimum.high_bits, block.high_bits, 4);
    std::memcpy(block_with_minimum.nibbles, block.nibbles, 16);
    const std::vector<float> values_with_minimum = decode(block_with_minimum);
    for (int i = 0; i < 32; ++i) {
      const int expected = (i < 16 ? 3 : 5) + (((mask >> i) & 1u) ? 16 : 0) - 16;
      CHECK(values[i] == static_cast<float>(expected));
      CHECK(values_with_minimum[i] == static_cast<float>(expected));
    }
  }
  SUBCASE("Q2_K: value 128h + 32p + l is bits 2p of quants[32h + l]; scale low nibble, minimum high") {
    quant::BlockQ2_K block{};
    block.super_scale = half_of_one;
    block.super_min = half_of_half;
    for (int k = 0; k < 16; ++k) block.sub_scales[k] = static_cast<std::uint8_t>((k % 4 + 1) | (1 << 4));
    for (int b = 0; b < 64; ++b) block.quants[b] = 0xe4;  // parts p = 0, 1, 2, 3 hold the codes 0, 1, 2, 3
    const std::vector<float> values = decode(block);
    for (int i = 0; i < 256; ++i) {
      const int part = (i % 128) / 32;
      CHECK(values[i] == static_cast<float>((i / 16) % 4 + 1) * static_cast<float>(part) - 0.5f);
    }
  }
  SUBCASE("Q3_K: 6-bit scales minus 32, bit 2 of value i in bit i/32 of high_bits[i % 32], minus 4") {
    quant::BlockQ3_K block{};
    block.super_scale = half_of_one;
    // Every scale stored as 33 = 0b10'0001: low nibbles 1 in bytes 0..7 (both nibbles),
    // top bits 0b10 at bits 2*(k/4) of bytes 8..11.
    for (int b = 0; b < 8; ++b) block.packed_scales[b] = 0x11;
    for (int b = 8; b < 12; ++b) block.packed_scales[b] = 0xaa;
    for (int b = 0; b < 64; ++b) block.low_bits[b] = 0xe4;
    for (int b = 0; b < 32; ++b) block.high_bits[b] = 0x0f;  // values 0..127 have bit 2 set
    const std::vector<float> values = decode(block);
    for (int i = 0; i < 256; ++i) {
      const int part = (i % 128) / 32;
      CHECK(values[i] == static_cast<float>(part + (i < 128 ? 4 : 0) - 4));
    }
  }
  SUBCASE("Q4_K and Q5_K: 6-bit scales and minimums, nibbles per 64-value chunk, fifth bit k of high_bits") {
    quant::BlockQ4_K block{};
    block.super_scale = half_of_one;
    block.super_min = half_of_half;
    // Sub-block k: scale k + 1, minimum 1 (all below 16, so no top bits).
    for (int k = 0; k < 4; ++k) {
      block.packed_scales[k] = static_cast<std::uint8_t>(k + 1);
      block.packed_scales[k + 4] = 1;
    }
    for (int k = 4; k < 8; ++k) block.packed_scales[k + 4] = static_cast<std::uint8_t>((k + 1) | (1 << 4));
    for (int b = 0; b < 128; ++b) block.nibbles[b] = 0x21;  // first 32 of each chunk: 1, next 32: 2
    const std::vector<float> values = decode(block);
    quant::BlockQ5_K block5{};
    block5.super_scale = block.super_scale;
    block5.super_min = block.super_min;
    std::memcpy(block5.packed_scales, block.packed_scales, 12);
    std::memcpy(block5.nibbles, block.nibbles, 128);
    for (int b = 0; b < 32; ++b) block5.high_bits[b] = 0x55;  // even sub-blocks get + 16
    const std::vector<float> values5 = decode(block5);
    for (int i = 0; i < 256; ++i) {
      const int k = i / 32;
      const int code = k % 2 == 0 ? 1 : 2;
      CHECK(values[i] == static_cast<float>((k + 1) * code) - 0.5f);
      CHECK(values5[i] == static_cast<float>((k + 1) * (code + (k % 2 == 0 ? 16 : 0))) - 0.5f);
    }
  }
  SUBCASE("Q4_K: sub-blocks 4..7 take their top scale bits from bytes 0..7") {
    quant::BlockQ4_K block{};
    block.super_scale = half_of_one;
    block.super_min = half_of_one;
    block.packed_scales[0] = 0xc0;   // sub-block 4 scale bits 4-5 = 3, sub-block 0 scale 0
    block.packed_scales[4] = 0x40;   // sub-block 4 minimum bits 4-5 = 1, sub-block 0 minimum 0
    block.packed_scales[8] = 0x25;   // sub-block 4: scale low 5, minimum low 2
    for (int b = 0; b < 128; ++b) block.nibbles[b] = 0x11;
    const std::vector<float> values = decode(block);
    for (int i = 128; i < 160; ++i) CHECK(values[i] == static_cast<float>(0x35 - 0x12));
    for (int i = 0; i < 32; ++i) CHECK(values[i] == 0.0f);
  }
  SUBCASE("Q6_K: low nibbles in low_bits, top 2 bits in high_bits, int8 sub-scales, minus 32") {
    quant::BlockQ6_K block{};
    block.super_scale = half_of_half;
    for (int k = 0; k < 16; ++k) block.sub_scales[k] = static_cast<std::int8_t>(k - 8);
    for (int b = 0; b < 128; ++b) block.low_bits[b] = static_cast<std::uint8_t>(b % 2 == 0 ? 0x31 : 0x00);
    for (int b = 0; b < 64; ++b) block.high_bits[b] = 0xe4;  // quarter p has top bits p
    const std::vector<float> values = decode(block);
    for (int i = 0; i < 256; ++i) {
      const int half = i / 128;
      const int part = (i % 128) / 32;
      const int l = i % 32;
      const int low_byte_index = 64 * half + 32 * (part % 2) + l;
      const int low = low_byte_index % 2 == 0 ? (part < 2 ? 1 : 3) : 0;
      const int code = low + 16 * part;
      CHECK(values[i] == 0.5f * static_cast<float>(i / 16 - 8) * static_cast<float>(code - 32));
    }
  }
  SUBCASE("Q8_K: F32 scale times int8") {
    quant::BlockQ8_K block{};
    block.scale = 0.25f;
    for (int i = 0; i < 256; ++i) block.quants[i] = static_cast<std::int8_t>(i - 128);
    const std::vector<float> values = decode(block);
    for (int i = 0; i < 256; ++i) CHECK(values[i] == 0.25f * static_cast<float>(i - 128));
  }
  SUBCASE("IQ4_NL and IQ4_XS: indices into the 16 levels; XS sub-scales minus 32") {
    quant::BlockIQ4_NL block{};
    block.scale = half_of_one;
    for (int j = 0; j < 16; ++j) block.indices[j] = static_cast<std::uint8_t>(j | ((15 - j) << 4));
    const std::vector<float> values = decode(block);
    const float levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    for (int j = 0; j < 16; ++j) {
      CHECK(values[j] == levels[j]);
      CHECK(values[j + 16] == levels[15 - j]);
    }

    quant::BlockIQ4_XS block_xs{};
    block_xs.super_scale = half_of_half;
    // Sub-block k stores 28 + k (so k - 4 after the - 32): low nibbles C D E F 0 1 2 3, top bits 1 1 1 1 2 2 2 2.
    const std::uint8_t scales_low[4] = {0xdc, 0xfe, 0x10, 0x32};
    std::memcpy(block_xs.scales_low, scales_low, 4);
    block_xs.scales_high = 0xaa55;
    for (int b = 0; b < 128; ++b) block_xs.indices[b] = 0x98;  // low: level 8 (1), high: level 9 (13)
    const std::vector<float> values_xs = decode(block_xs);
    for (int i = 0; i < 256; ++i) {
      const int k = i / 32;
      CHECK(values_xs[i] == 0.5f * static_cast<float>(k - 4) * (i % 32 < 16 ? 1.0f : 13.0f));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Against llama-quantize

// Each synth-llama-<kind>.gguf was made by llama-quantize (no importance matrix) from the F32
// weights of synth-llama-f32.gguf. Every 2-D tensor of a supported type must come out byte for
// byte the same from lamina's quantizer.
TEST_CASE("quant: quantizing the synth-llama F32 weights gives llama-quantize's bytes") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  lamina::Result<lamina::gguf::File> weights = lamina::gguf::File::open(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  REQUIRE_MESSAGE(weights.ok(), weights.error().message);

  struct Expectation {
    const char* file;
    int tensors_of_main_type;
    DType main_type;
    int q6_k_tensors;  // llama-quantize's mixes give some tensors Q6_K
  };
  const Expectation expectations[] = {
      {"models/synth-llama-q8_0.gguf", 30, DType::q8_0, 0},
      {"models/synth-llama-q4_0.gguf", 29, DType::q4_0, 1},    // output.weight is Q6_K
      {"models/synth-llama-q6_k.gguf", 30, DType::q6_k, 0},
      {"models/synth-llama-q4_k_m.gguf", 25, DType::q4_k, 5},  // output, attn_v and ffn_down of layers 2-3
  };
  for (const Expectation& expectation : expectations) {
    const std::string file_name = expectation.file;
    CAPTURE(file_name);
    LAMINA_REQUIRE_SHARED(expectation.file);
    lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open(lamina_test::shared_path(expectation.file));
    REQUIRE_MESSAGE(file.ok(), file.error().message);
    int compared_main = 0, matched_main = 0, compared_q6_k = 0, matched_q6_k = 0;
    for (const lamina::gguf::TensorInfo& tensor : file->tensors()) {
      if (tensor.shape.size() != 2) continue;
      CAPTURE(tensor.name);
      REQUIRE(quant::can_quantize(tensor.dtype));
      const lamina::gguf::TensorInfo* source = weights->find_tensor(tensor.name);
      REQUIRE(source != nullptr);
      REQUIRE(source->dtype == DType::f32);
      REQUIRE(source->shape == tensor.shape);
      const std::size_t rows = static_cast<std::size_t>(tensor.shape[0]);
      const std::size_t columns = static_cast<std::size_t>(tensor.shape[1]);
      const std::size_t bytes_per_row = lamina::row_bytes(tensor.dtype, columns);
      REQUIRE(tensor.size_bytes == rows * bytes_per_row);

      std::vector<float> row(columns);
      std::vector<std::uint8_t> mine(tensor.size_bytes);
      for (std::size_t r = 0; r < rows; ++r) {
        std::memcpy(row.data(), source->data + r * columns * sizeof(float), columns * sizeof(float));
        REQUIRE(quant::quantize_row(tensor.dtype, row.data(), mine.data() + r * bytes_per_row, columns).ok());
      }
      const std::size_t differing = differing_blocks(tensor.dtype, mine.data(), tensor.data, tensor.size_bytes);
      if (differing != 0) {
        // Diagnose the usual cause: data rounded to F16 before quantizing.
        std::vector<float> via_f16(rows * columns);
        std::memcpy(via_f16.data(), source->data, via_f16.size() * sizeof(float));
        for (float& value : via_f16) value = lamina::f16_to_f32(lamina::f32_to_f16(value));
        const std::vector<std::uint8_t> from_f16 = quantized(tensor.dtype, via_f16);
        FAIL_CHECK(differing << " of " << tensor.size_bytes / block_bytes(tensor.dtype) << " " << name_of(tensor.dtype)
                             << " blocks differ (" << differing_blocks(tensor.dtype, from_f16.data(), tensor.data, tensor.size_bytes)
                             << " when quantizing F16-rounded weights). Built with FP contraction on an FMA target?");
      }
      if (tensor.dtype == expectation.main_type) {
        ++compared_main;
        matched_main += differing == 0;
      } else if (tensor.dtype == DType::q6_k) {
        ++compared_q6_k;
        matched_q6_k += differing == 0;
      } else {
        FAIL_CHECK("unexpected type " << name_of(tensor.dtype));
      }
    }
    MESSAGE(file_name << ": " << matched_main << "/" << compared_main << " " << name_of(expectation.main_type)
                             << " tensors byte-exact, " << matched_q6_k << "/" << compared_q6_k << " q6_K");
    CHECK(compared_main == expectation.tensors_of_main_type);
    CHECK(compared_q6_k == expectation.q6_k_tensors);
    CHECK(matched_main == compared_main);
    CHECK(matched_q6_k == compared_q6_k);
  }
}

TEST_CASE("quant: dequantized synth-llama tensors are close to the F32 weights; Q8_0 re-quantizes to itself") {
  LAMINA_REQUIRE_SHARED("models/synth-llama-f32.gguf");
  lamina::Result<lamina::gguf::File> weights = lamina::gguf::File::open(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  REQUIRE_MESSAGE(weights.ok(), weights.error().message);
  // Relative RMS error (error RMS / weight RMS) each type stays under on these Gaussian-like
  // weights; measured: q8_0 0.0054, q6_K 0.018, q4_K 0.071, q4_0 0.086.
  auto bound = [](DType type) {
    switch (type) {
      case DType::q8_0: return 0.007;
      case DType::q6_k: return 0.022;
      case DType::q4_k: return 0.085;
      case DType::q4_0: return 0.10;
      default: return 0.0;
    }
  };
  for (const char* name : {"models/synth-llama-q8_0.gguf", "models/synth-llama-q4_0.gguf", "models/synth-llama-q6_k.gguf",
                           "models/synth-llama-q4_k_m.gguf"}) {
    const std::string file_name = name;
    CAPTURE(file_name);
    LAMINA_REQUIRE_SHARED(name);
    lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open(lamina_test::shared_path(name));
    REQUIRE_MESSAGE(file.ok(), file.error().message);
    for (const lamina::gguf::TensorInfo& tensor : file->tensors()) {
      if (tensor.shape.size() != 2) continue;
      CAPTURE(tensor.name);
      const std::size_t count = static_cast<std::size_t>(tensor.shape[0] * tensor.shape[1]);
      const std::vector<float> decoded = dequantized(tensor.dtype, tensor.data, count);
      const lamina::gguf::TensorInfo* source = weights->find_tensor(tensor.name);
      REQUIRE(source != nullptr);
      std::vector<float> original(count);
      std::memcpy(original.data(), source->data, count * sizeof(float));
      const double relative_error = rms_difference(decoded, original) / rms(original);
      CAPTURE(relative_error);
      CHECK(relative_error < bound(tensor.dtype));
      CHECK(relative_error > 0.0);

      if (tensor.dtype == DType::q8_0) {
        // Q8_0's largest value decodes to exactly 127 * scale, so quantizing the decoded
        // values finds the same scale and the same quants.
        const std::vector<std::uint8_t> again = quantized(DType::q8_0, decoded);
        CHECK(std::memcmp(again.data(), tensor.data, tensor.size_bytes) == 0);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Random data

TEST_CASE("quant: round-trip error on Gaussian data, for every type") {
  // 256 Ki values ~ N(0, 1). Measured RMS errors (x86-64, any compiler), bound = measured + ~10%:
  struct Bound {
    DType type;
    double measured;
  };
  const Bound bounds[] = {
      {DType::q4_0, 0.08596}, {DType::q4_1, 0.07831}, {DType::q5_0, 0.04280}, {DType::q5_1, 0.03788},
      {DType::q8_0, 0.005356}, {DType::q8_1, 0.005356}, {DType::q2_k, 0.2971}, {DType::q3_k, 0.1508},
      {DType::q4_k, 0.07136}, {DType::q5_k, 0.03613}, {DType::q6_k, 0.01776}, {DType::q8_k, 0.007007},
      {DType::iq4_nl, 0.07628}, {DType::iq4_xs, 0.07686},
  };
  const std::vector<float> values = gaussian(256 * 1024, 42);
  std::string report = "round-trip RMS error on N(0, 1):";
  for (const Bound& bound : bounds) {
    CAPTURE(name_of(bound.type));
    const std::vector<std::uint8_t> bytes = quantized(bound.type, values);
    const std::vector<float> decoded = dequantized(bound.type, bytes.data(), values.size());
    const double error = rms_difference(decoded, values);
    report += " " + name_of(bound.type) + " " + std::to_string(error);
    CHECK(error < bound.measured * 1.1);
    CHECK(error > bound.measured * 0.9);  // a much better figure would mean the data or the test changed
  }
  MESSAGE(report);
}

TEST_CASE("quant: re-quantizing dequantized legacy blocks gives the same bytes") {
  // Q8_0, Q4_0 and Q5_0 map the value of largest magnitude to the end of the grid exactly, so
  // the decoded block has the same scale and quants again. For Q4_1/Q5_1 it holds on this data
  // too (not by construction). Q8_1 stores scale * sum with the unrounded scale, and the
  // K-quants and IQ4 search their scales, so for those it does not hold in general.
  const std::vector<float> values = gaussian(32 * 4096, 7);
  for (DType type : {DType::q8_0, DType::q4_0, DType::q5_0, DType::q4_1, DType::q5_1}) {
    CAPTURE(name_of(type));
    const std::vector<std::uint8_t> bytes = quantized(type, values);
    const std::vector<std::uint8_t> again = quantized(type, dequantized(type, bytes.data(), values.size()));
    CHECK(differing_blocks(type, bytes.data(), again.data(), bytes.size()) == 0);
  }
}

TEST_CASE("quant: zeros quantize to blocks that decode to zeros") {
  for (DType type : block_types) {
    CAPTURE(name_of(type));
    const std::vector<float> zeros(3 * block_size(type), 0.0f);
    const std::vector<float> decoded = dequantized(type, quantized(type, zeros).data(), zeros.size());
    for (float value : decoded) CHECK(value == 0.0f);
  }
}

TEST_CASE("quant: row lengths of 1, 3 and 7 blocks, any alignment, typed and run-time APIs agree") {
  for (DType type : block_types) {
    CAPTURE(name_of(type));
    for (std::size_t blocks : {1u, 3u, 7u}) {
      CAPTURE(blocks);
      const std::size_t count = blocks * block_size(type);
      const std::vector<float> values = gaussian(count, static_cast<std::uint32_t>(blocks), 0.05f);
      const std::vector<std::uint8_t> reference = quantized(type, values);

      // Misaligned source and destination buffers.
      std::vector<std::uint8_t> storage(reference.size() + 1);
      REQUIRE(quant::quantize_row(type, values.data(), storage.data() + 1, count).ok());
      CHECK(std::memcmp(storage.data() + 1, reference.data(), reference.size()) == 0);
      std::vector<float> decoded(count + 1);
      REQUIRE(quant::dequantize_row(type, storage.data() + 1, decoded.data() + 1, count).ok());
      CHECK(std::memcmp(decoded.data() + 1, dequantized(type, reference.data(), count).data(), count * sizeof(float)) == 0);

      // An odd number of rows quantized one by one gives the bytes of one long row.
      if (blocks == 7) {
        std::vector<std::uint8_t> by_rows(reference.size());
        const std::size_t row_values = block_size(type);
        for (std::size_t r = 0; r < blocks; ++r) {
          REQUIRE(quant::quantize_row(type, values.data() + r * row_values, by_rows.data() + r * block_bytes(type), row_values).ok());
        }
        CHECK(by_rows == reference);
      }

      // The compile-time API gives the same bytes and values.
      quant::detail::visit_block_type(type, [&](auto tag) {
        using Block = typename decltype(tag)::type;
        std::vector<std::uint8_t> typed(reference.size());
        quant::quantize_blocks<Block>(values.data(), typed.data(), blocks);
        CHECK(typed == reference);
        std::vector<float> typed_values(count);
        quant::dequantize_blocks<Block>(typed.data(), typed_values.data(), blocks);
        CHECK(std::memcmp(typed_values.data(), decoded.data() + 1, count * sizeof(float)) == 0);
      });
    }
  }
}

TEST_CASE("quant: F32, F16 and BF16 rows convert like lamina's half conversions") {
  const std::vector<float> values = gaussian(10, 3);  // any count: block size 1
  for (DType type : {DType::f32, DType::f16, DType::bf16}) {
    CAPTURE(name_of(type));
    CHECK(quant::can_quantize(type));
    const std::vector<std::uint8_t> bytes = quantized(type, values);
    const std::vector<float> decoded = dequantized(type, bytes.data(), values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      const float expected = type == DType::f32 ? values[i]
                             : type == DType::f16 ? lamina::f16_to_f32(lamina::f32_to_f16(values[i]))
                                                  : lamina::bf16_to_f32(lamina::f32_to_bf16(values[i]));
      CHECK(decoded[i] == expected);
    }
  }
}

TEST_CASE("quant: a count that is not a whole number of blocks, or a null buffer, is invalid_argument") {
  for (DType type : block_types) {
    CAPTURE(name_of(type));
    const std::size_t count = block_size(type) + 1;
    std::vector<float> values(count, 1.0f);
    std::vector<std::uint8_t> bytes(2 * block_bytes(type));
    const lamina::Result<void> quantize = quant::quantize_row(type, values.data(), bytes.data(), count);
    REQUIRE_FALSE(quantize.ok());
    CHECK(quantize.error().code == ErrorCode::invalid_argument);
    CHECK(quantize.error().message.find(name_of(type)) != std::string::npos);
    const lamina::Result<void> dequantize = quant::dequantize_row(type, bytes.data(), values.data(), count);
    REQUIRE_FALSE(dequantize.ok());
    CHECK(dequantize.error().code == ErrorCode::invalid_argument);

    const lamina::Result<void> null_source = quant::dequantize_row(type, nullptr, values.data(), block_size(type));
    REQUIRE_FALSE(null_source.ok());
    CHECK(null_source.error().code == ErrorCode::invalid_argument);
    CHECK(quant::quantize_row(type, nullptr, nullptr, 0).ok());  // nothing to do
  }
}

TEST_CASE("quant: NaN and infinity neither crash nor disturb the other blocks") {
  // What the block holding them decodes to depends on the type (GGML's arithmetic, kept):
  // NaN is usually stored as code 0 and the rest of the block survives; an infinity makes the
  // whole block NaN for most types, while for Q3_K, Q6_K and IQ4_XS the sub-block holding it
  // decodes to zeros (their searches drop a scale they cannot use).
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::max()};
  for (DType type : block_types) {
    CAPTURE(name_of(type));
    const std::size_t size = block_size(type);
    const std::vector<float> clean = gaussian(3 * size, 11);
    const std::vector<std::uint8_t> clean_bytes = quantized(type, clean);
    const std::vector<float> clean_decoded = dequantized(type, clean_bytes.data(), clean.size());
    for (float special : specials) {
      CAPTURE(special);
      for (std::size_t position : {std::size_t{0}, size / 2 + 1, size - 1}) {
        std::vector<float> values = clean;
        values[size + position] = special;  // in the middle block
        const std::vector<std::uint8_t> bytes = quantized(type, values);
        const std::size_t bytes_per_block = block_bytes(type);
        CHECK(std::memcmp(bytes.data(), clean_bytes.data(), bytes_per_block) == 0);
        CHECK(std::memcmp(bytes.data() + 2 * bytes_per_block, clean_bytes.data() + 2 * bytes_per_block, bytes_per_block) == 0);
        const std::vector<float> decoded = dequantized(type, bytes.data(), values.size());
        for (std::size_t i = 0; i < size; ++i) {
          CHECK(decoded[i] == clean_decoded[i]);
          CHECK(decoded[2 * size + i] == clean_decoded[2 * size + i]);
        }
      }
    }
  }
}

TEST_CASE("quant: types without a scalar reference give ErrorCode::unsupported naming the type") {
  struct Case {
    DType type;
    const char* name;
  };
  const Case cases[] = {{DType::iq2_xxs, "iq2_xxs"}, {DType::iq2_xs, "iq2_xs"}, {DType::iq3_xxs, "iq3_xxs"},
                        {DType::iq1_s, "iq1_s"},     {DType::iq3_s, "iq3_s"},   {DType::iq2_s, "iq2_s"},
                        {DType::iq1_m, "iq1_m"},     {DType::tq1_0, "tq1_0"},   {DType::tq2_0, "tq2_0"},
                        {DType::i8, "i8"},           {DType::i32, "i32"},       {DType::f64, "f64"},
                        {static_cast<DType>(4), "type id 4"}, {static_cast<DType>(99), "type id 99"}};
  std::vector<float> values(256, 0.5f);
  std::vector<std::uint8_t> bytes(1024);
  for (const Case& unsupported : cases) {
    const std::string expected_name = unsupported.name;
    CAPTURE(expected_name);
    CHECK_FALSE(quant::can_quantize(unsupported.type));
    CHECK_FALSE(quant::can_dequantize(unsupported.type));
    const lamina::Result<void> dequantize = quant::dequantize_row(unsupported.type, bytes.data(), values.data(), 256);
    REQUIRE_FALSE(dequantize.ok());
    CHECK(dequantize.error().code == ErrorCode::unsupported);
    CHECK(dequantize.error().message.find(unsupported.name) != std::string::npos);
    const lamina::Result<void> quantize = quant::quantize_row(unsupported.type, values.data(), bytes.data(), 256);
    REQUIRE_FALSE(quantize.ok());
    CHECK(quantize.error().code == ErrorCode::unsupported);
    CHECK(quantize.error().message.find(unsupported.name) != std::string::npos);
  }
}
