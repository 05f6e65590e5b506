// The Vulkan kernels against the scalar reference, on random data and odd shapes: matrix
// products of every weight type (both kernel variants, one token and several token tiles),
// embedding rows, RMSNorm, RoPE and attention. Runs on whatever device the loader finds (CI:
// Mesa's lavapipe) with the validation layer on; any validation error fails the test.
#include "vulkan_support.hpp"

#include <lamina/quant/quant.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace lamina_test;
namespace vk_backend = lamina::vulkan;

namespace {

const lamina::DType weight_types[] = {lamina::DType::f32,  lamina::DType::f16,  lamina::DType::bf16, lamina::DType::q4_0,
                                      lamina::DType::q4_1, lamina::DType::q5_0, lamina::DType::q5_1, lamina::DType::q8_0,
                                      lamina::DType::q2_k, lamina::DType::q3_k, lamina::DType::q4_k, lamina::DType::q5_k,
                                      lamina::DType::q6_k, lamina::DType::iq4_nl, lamina::DType::iq4_xs};

std::vector<float> random_floats(std::size_t count, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(count);
  for (float& value : values) value = normal(generator);
  return values;
}

// A [rows, columns] matrix of `type` made from random floats, and its rows decoded back by
// the scalar reference (what the device must multiply by).
struct TestMatrix {
  std::vector<std::uint8_t> bytes;
  std::vector<float> decoded;  // [rows, columns]
  lamina::TensorView view;
};

TestMatrix make_matrix(lamina::DType type, std::size_t rows, std::size_t columns, std::uint32_t seed) {
  TestMatrix matrix;
  const std::vector<float> values = random_floats(rows * columns, seed);
  const std::size_t row_bytes = lamina::row_bytes(type, columns);
  matrix.bytes.resize(rows * row_bytes);
  matrix.decoded.resize(rows * columns);
  for (std::size_t r = 0; r < rows; ++r) {
    REQUIRE(lamina::quant::quantize_row(type, values.data() + r * columns, matrix.bytes.data() + r * row_bytes, columns).ok());
    REQUIRE(lamina::quant::dequantize_row(type, matrix.bytes.data() + r * row_bytes, matrix.decoded.data() + r * columns, columns).ok());
  }
  matrix.view = lamina::contiguous_view(type, {static_cast<std::int64_t>(rows), static_cast<std::int64_t>(columns)}, matrix.bytes.data());
  return matrix;
}

vk_backend::Buffer device_floats(const vk_backend::Context& context, const std::vector<float>& values) {
  lamina::Result<vk_backend::Buffer> buffer = vk_backend::Buffer::create(context, values.size() * 4, vk_backend::MemoryUse::host, "test data");
  REQUIRE(buffer.ok());
  std::memcpy(buffer->mapped(), values.data(), values.size() * 4);
  return std::move(*buffer);
}

vk_backend::Buffer device_words(const vk_backend::Context& context, const std::vector<std::uint32_t>& values) {
  lamina::Result<vk_backend::Buffer> buffer = vk_backend::Buffer::create(context, values.size() * 4, vk_backend::MemoryUse::host, "test data");
  REQUIRE(buffer.ok());
  std::memcpy(buffer->mapped(), values.data(), values.size() * 4);
  return std::move(*buffer);
}

std::vector<float> read_floats(const vk_backend::Buffer& buffer, std::size_t count) {
  std::vector<float> values(count);
  std::memcpy(values.data(), buffer.mapped(), count * 4);
  return values;
}

// Runs `record` in one submission and waits.
template <class Record>
void run(vk_backend::Recorder& recorder, Record&& record) {
  REQUIRE(recorder.begin().ok());
  record();
  lamina::Result<void> submitted = recorder.submit();
  REQUIRE_MESSAGE(submitted.ok(), (submitted.ok() ? "" : submitted.error().message));
  REQUIRE(recorder.wait().ok());
}

// Columns a row of `type` may have: not a multiple of 64 where the block allows it.
std::size_t odd_columns(lamina::DType type) {
  const std::size_t block = lamina::dtype_traits(type).block_size;
  if (block == 1) return 203;         // floats: not even a whole group of 32
  if (block == 32) return 32 * 7;     // 7 blocks
  return 256 * 3;                     // 3 super-blocks
}

}  // namespace

TEST_CASE("vulkan: matrix products of every weight type match the scalar reference") {
  VulkanFixture& fixture = vulkan_fixture();
  const vk_backend::Context& context = fixture.backend->context();
  std::vector<vk_backend::KernelVariant> variants = {vk_backend::KernelVariant::baseline};
  if (context.info().subgroup_arithmetic) variants.push_back(vk_backend::KernelVariant::subgroup);
  const std::size_t rows = 37;
  for (lamina::DType type : weight_types) {
    CAPTURE(lamina::dtype_name(type));
    const std::size_t columns = odd_columns(type);
    const TestMatrix matrix = make_matrix(type, rows, columns, 7u + static_cast<std::uint32_t>(type));
    lamina::Result<vk_backend::DeviceMatrix> device = vk_backend::DeviceMatrix::upload(context, matrix.view, "test", nullptr);
    REQUIRE(device.ok());
    for (std::size_t tokens : {std::size_t{1}, std::size_t{3}, std::size_t{11}}) {
      CAPTURE(tokens);
      const std::vector<float> x = random_floats(tokens * columns, 99u + static_cast<std::uint32_t>(tokens));
      // The reference: each decoded row against each token's x, in double.
      std::vector<double> expected(tokens * rows);
      double largest = 0;
      for (std::size_t t = 0; t < tokens; ++t) {
        for (std::size_t r = 0; r < rows; ++r) {
          double sum = 0;
          for (std::size_t k = 0; k < columns; ++k) sum += static_cast<double>(matrix.decoded[r * columns + k]) * x[t * columns + k];
          expected[t * rows + r] = sum;
          largest = std::max(largest, std::fabs(sum));
        }
      }
      vk_backend::Buffer x_buffer = device_floats(context, x);
      vk_backend::Buffer y_buffer = device_floats(context, std::vector<float>(tokens * rows, std::nanf("")));
      for (vk_backend::KernelVariant variant : variants) {
        CAPTURE(vk_backend::kernel_variant_name(variant));
        run(*fixture.recorder, [&] {
          vk_backend::kernels::matmul(*fixture.recorder, variant, *device, x_buffer, y_buffer, static_cast<std::uint32_t>(tokens),
                                      static_cast<std::uint32_t>(rows));
        });
        const std::vector<float> y = read_floats(y_buffer, tokens * rows);
        double worst = 0;
        for (std::size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::fabs(y[i] - expected[i]));
        CHECK(worst <= 1e-5 * std::max(1.0, largest) * std::sqrt(static_cast<double>(columns)));
      }
    }
  }
  check_no_validation_errors(fixture);
}

TEST_CASE("vulkan: a matrix larger than one buffer binding is split and still multiplies") {
  // A device context whose bindings are limited to a few rows exercises the split path on any device.
  VulkanFixture& fixture = vulkan_fixture();
  const vk_backend::Context& context = fixture.backend->context();
  const std::size_t rows = 300, columns = 64;
  const TestMatrix matrix = make_matrix(lamina::DType::q8_0, rows, columns, 3);
  // Upload in parts of 128 rows by hand, the way DeviceMatrix::upload splits at maxStorageBufferRange.
  vk_backend::DeviceMatrix device;
  device.type = lamina::DType::q8_0;
  device.rows = rows;
  device.columns = columns;
  device.row_bytes = static_cast<std::uint32_t>(lamina::row_bytes(lamina::DType::q8_0, columns));
  for (std::size_t first = 0; first < rows; first += 128) {
    const std::size_t count = std::min<std::size_t>(128, rows - first);
    lamina::Result<vk_backend::Buffer> part = vk_backend::Buffer::create(context, count * device.row_bytes, vk_backend::MemoryUse::device, "part");
    REQUIRE(part.ok());
    REQUIRE(vk_backend::upload(context, *part, 0, matrix.bytes.data() + first * device.row_bytes, count * device.row_bytes).ok());
    device.parts.push_back(std::move(*part));
    device.part_first_row.push_back(static_cast<std::uint32_t>(first));
    device.part_rows.push_back(static_cast<std::uint32_t>(count));
  }
  const std::vector<float> x = random_floats(2 * columns, 5);
  vk_backend::Buffer x_buffer = device_floats(context, x);
  vk_backend::Buffer y_buffer = device_floats(context, std::vector<float>(2 * rows, 0.0f));
  run(*fixture.recorder, [&] {
    vk_backend::kernels::matmul(*fixture.recorder, vk_backend::KernelVariant::baseline, device, x_buffer, y_buffer, 2, rows);
  });
  const std::vector<float> y = read_floats(y_buffer, 2 * rows);
  for (std::size_t t = 0; t < 2; ++t) {
    for (std::size_t r = 0; r < rows; ++r) {
      double sum = 0;
      for (std::size_t k = 0; k < columns; ++k) sum += static_cast<double>(matrix.decoded[r * columns + k]) * x[t * columns + k];
      REQUIRE(std::fabs(y[t * rows + r] - sum) <= 1e-4);
    }
  }
  check_no_validation_errors(fixture);
}

TEST_CASE("vulkan: embedding rows of every weight type decode like the scalar reference") {
  VulkanFixture& fixture = vulkan_fixture();
  const vk_backend::Context& context = fixture.backend->context();
  for (lamina::DType type : weight_types) {
    CAPTURE(lamina::dtype_name(type));
    const std::size_t rows = 19, columns = odd_columns(type);
    const TestMatrix table = make_matrix(type, rows, columns, 11u + static_cast<std::uint32_t>(type));
    lamina::Result<vk_backend::DeviceMatrix> device = vk_backend::DeviceMatrix::upload(context, table.view, "table", nullptr);
    REQUIRE(device.ok());
    const std::vector<std::uint32_t> tokens = {18, 0, 7, 7, 3};
    vk_backend::Buffer token_buffer = device_words(context, tokens);
    vk_backend::Buffer out = device_floats(context, std::vector<float>(tokens.size() * columns, std::nanf("")));
    run(*fixture.recorder, [&] { vk_backend::kernels::get_rows(*fixture.recorder, *device, token_buffer, out, static_cast<std::uint32_t>(tokens.size())); });
    const std::vector<float> got = read_floats(out, tokens.size() * columns);
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      for (std::size_t k = 0; k < columns; ++k) REQUIRE(got[t * columns + k] == table.decoded[tokens[t] * columns + k]);
    }
  }
  check_no_validation_errors(fixture);
}

TEST_CASE("vulkan: RMSNorm, RoPE and attention match the scalar reference") {
  VulkanFixture& fixture = vulkan_fixture();
  const vk_backend::Context& context = fixture.backend->context();
  vk_backend::Recorder& recorder = *fixture.recorder;

  SUBCASE("rms_norm, with and without gathering rows") {
    const std::size_t rows = 5, columns = 131;
    const std::vector<float> x = random_floats(rows * columns, 1), weight = random_floats(columns, 2);
    const std::vector<std::uint32_t> gather = {4, 1};
    vk_backend::Buffer x_buffer = device_floats(context, x), weight_buffer = device_floats(context, weight);
    vk_backend::Buffer gather_buffer = device_words(context, gather);
    vk_backend::Buffer out = device_floats(context, std::vector<float>(rows * columns, 0.0f));
    vk_backend::Buffer gathered = device_floats(context, std::vector<float>(gather.size() * columns, 0.0f));
    run(recorder, [&] {
      vk_backend::kernels::rms_norm(recorder, x_buffer, weight_buffer, out, rows, columns, 1e-5f);
      vk_backend::kernels::rms_norm(recorder, x_buffer, weight_buffer, gathered, 2, columns, 1e-5f, &gather_buffer);
    });
    std::vector<float> expected(columns);
    const std::vector<float> got = read_floats(out, rows * columns), got_gathered = read_floats(gathered, 2 * columns);
    for (std::size_t r = 0; r < rows; ++r) {
      lamina::reference::rms_norm(x.data() + r * columns, weight.data(), expected.data(), columns, 1e-5f);
      for (std::size_t i = 0; i < columns; ++i) REQUIRE(std::fabs(got[r * columns + i] - expected[i]) <= 1e-5f * (1 + std::fabs(expected[i])));
    }
    for (std::size_t g = 0; g < gather.size(); ++g) {
      lamina::reference::rms_norm(x.data() + gather[g] * columns, weight.data(), expected.data(), columns, 1e-5f);
      for (std::size_t i = 0; i < columns; ++i) REQUIRE(std::fabs(got_gathered[g * columns + i] - expected[i]) <= 1e-5f * (1 + std::fabs(expected[i])));
    }
  }

  SUBCASE("rope, both pairings, partial rotation") {
    const std::size_t tokens = 3, heads = 5, head_size = 12, pairs = 4;  // rotates 8 of 12 dimensions
    for (bool neox : {false, true}) {
      CAPTURE(neox);
      const std::vector<float> x = random_floats(tokens * heads * head_size, 3);
      const std::vector<float> cosines = random_floats(tokens * pairs, 4), sines = random_floats(tokens * pairs, 5);
      vk_backend::Buffer x_buffer = device_floats(context, x), cos_buffer = device_floats(context, cosines), sin_buffer = device_floats(context, sines);
      run(recorder, [&] { vk_backend::kernels::rope(recorder, x_buffer, cos_buffer, sin_buffer, tokens, heads, head_size, pairs, neox); });
      std::vector<float> expected = x;
      for (std::size_t t = 0; t < tokens; ++t) {
        lamina::reference::rope_rotate(expected.data() + t * heads * head_size, heads, head_size, 2 * pairs, cosines.data() + t * pairs,
                                       sines.data() + t * pairs, neox ? lamina::reference::RopeStyle::neox : lamina::reference::RopeStyle::interleaved);
      }
      const std::vector<float> got = read_floats(x_buffer, x.size());
      for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(std::fabs(got[i] - expected[i]) <= 1e-5f * (1 + std::fabs(expected[i])));
    }
  }

  SUBCASE("attention over scattered cells, grouped heads, more cells than one chunk") {
    const std::size_t cells = 300, kv_heads = 2, heads = 6, head_size = 40;  // 3 query heads per KV head
    const std::size_t kv_width = kv_heads * head_size;
    const std::vector<float> keys = random_floats(cells * kv_width, 6), values = random_floats(cells * kv_width, 7);
    // Token 0 sees 1 cell, token 1 sees 150 scattered cells, token 2 sees 257.
    std::vector<std::uint32_t> visible;
    std::vector<std::uint32_t> ranges;
    for (std::size_t count : {std::size_t{1}, std::size_t{150}, std::size_t{257}}) {
      ranges.push_back(static_cast<std::uint32_t>(visible.size()));
      ranges.push_back(static_cast<std::uint32_t>(count));
      for (std::size_t c = 0; c < count; ++c) visible.push_back(static_cast<std::uint32_t>((c * 37 + count) % cells));
    }
    const std::size_t tokens = 3;
    const std::vector<float> query = random_floats(tokens * heads * head_size, 8, 0.5f);
    vk_backend::Buffer q = device_floats(context, query), k = device_floats(context, keys), v = device_floats(context, values);
    vk_backend::Buffer visible_buffer = device_words(context, visible), range_buffer = device_words(context, ranges);
    vk_backend::Buffer out = device_floats(context, std::vector<float>(tokens * heads * head_size, 0.0f));
    run(recorder, [&] {
      vk_backend::kernels::attention(recorder, q, out, visible_buffer, range_buffer, k, v, tokens, heads, kv_heads, head_size);
    });
    const std::vector<float> got = read_floats(out, tokens * heads * head_size);
    for (std::size_t t = 0; t < tokens; ++t) {
      for (std::size_t h = 0; h < heads; ++h) {
        const std::size_t kv_head = h / (heads / kv_heads);
        const std::uint32_t first = ranges[2 * t], count = ranges[2 * t + 1];
        std::vector<double> scores(count);
        double maximum = -1e300;
        for (std::uint32_t c = 0; c < count; ++c) {
          double dot = 0;
          for (std::size_t d = 0; d < head_size; ++d) {
            dot += static_cast<double>(query[(t * heads + h) * head_size + d]) * keys[visible[first + c] * kv_width + kv_head * head_size + d];
          }
          scores[c] = dot / std::sqrt(static_cast<double>(head_size));
          maximum = std::max(maximum, scores[c]);
        }
        double sum = 0;
        for (double& score : scores) sum += (score = std::exp(score - maximum));
        for (std::size_t d = 0; d < head_size; ++d) {
          double expected = 0;
          for (std::uint32_t c = 0; c < count; ++c) expected += scores[c] / sum * values[visible[first + c] * kv_width + kv_head * head_size + d];
          REQUIRE(std::fabs(got[(t * heads + h) * head_size + d] - expected) <= 1e-5);
        }
      }
    }
  }
  check_no_validation_errors(fixture);
}
