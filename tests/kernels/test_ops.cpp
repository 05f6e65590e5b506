// The scalar reference ops against their definitions.
#include <doctest/doctest.h>
#include <lamina/lamina.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace {

std::vector<float> random_floats(std::size_t count, std::uint32_t seed, float spread = 1.0f) {
  std::mt19937 generator(seed);
  std::vector<float> values(count);
  for (float& value : values) value = (static_cast<float>(generator() % 20001u) / 10000.0f - 1.0f) * spread;
  return values;
}

}  // namespace

TEST_CASE("rms_norm, softmax and silu follow their definitions") {
  const std::vector<float> x = random_floats(37, 3, 4.0f);
  const std::vector<float> weight = random_floats(37, 4);
  std::vector<float> out(37);
  lamina::reference::rms_norm(x.data(), weight.data(), out.data(), x.size(), 1e-5f);
  double mean_square = 0;
  for (float v : x) mean_square += static_cast<double>(v) * v;
  mean_square /= 37;
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(out[i] == doctest::Approx(x[i] / std::sqrt(mean_square + 1e-5) * weight[i]).epsilon(1e-5));

  std::vector<float> probabilities = {1000.0f, 1000.0f, -1000.0f, 999.0f};
  lamina::reference::softmax(probabilities.data(), probabilities.size());
  CHECK(probabilities[0] == doctest::Approx(probabilities[1]));
  CHECK(probabilities[2] == 0.0f);
  CHECK(probabilities[0] + probabilities[1] + probabilities[2] + probabilities[3] == doctest::Approx(1.0));
  CHECK(probabilities[3] / probabilities[0] == doctest::Approx(std::exp(-1.0)));

  CHECK(lamina::reference::silu(0.0f) == 0.0f);
  CHECK(lamina::reference::silu(2.0f) == doctest::Approx(2.0 / (1.0 + std::exp(-2.0))));
}

TEST_CASE("rope rotates pairs by position × base^(-2i/n)") {
  lamina::reference::RopeParams params;
  params.rotary_dimension_count = 8;
  params.frequency_base = 10000.0f;
  const std::vector<float> original = random_floats(2 * 10, 5);  // 2 heads of size 10 (8 rotated, 2 passed through)
  for (lamina::reference::RopeStyle style : {lamina::reference::RopeStyle::interleaved, lamina::reference::RopeStyle::neox}) {
    std::vector<float> rotated = original;
    const float position = 7.0f;
    lamina::reference::rope(rotated.data(), 2, 10, position, params, style);
    for (int head = 0; head < 2; ++head) {
      const float* before = original.data() + head * 10;
      const float* after = rotated.data() + head * 10;
      for (int pair = 0; pair < 4; ++pair) {
        const int a = style == lamina::reference::RopeStyle::interleaved ? 2 * pair : pair;
        const int b = style == lamina::reference::RopeStyle::interleaved ? 2 * pair + 1 : pair + 4;
        const double theta = position * std::pow(10000.0, -2.0 * pair / 8.0);
        CHECK(after[a] == doctest::Approx(before[a] * std::cos(theta) - before[b] * std::sin(theta)).epsilon(1e-4));
        CHECK(after[b] == doctest::Approx(before[a] * std::sin(theta) + before[b] * std::cos(theta)).epsilon(1e-4));
      }
      CHECK(after[8] == before[8]);  // beyond rotary_dimension_count: untouched
      CHECK(after[9] == before[9]);
    }
  }
  // Linear scaling by 4 at position 8 equals no scaling at position 2.
  std::vector<float> scaled = original, plain = original;
  params.frequency_scale = 0.25f;
  lamina::reference::rope(scaled.data(), 2, 10, 8.0f, params, lamina::reference::RopeStyle::neox);
  params.frequency_scale = 1.0f;
  lamina::reference::rope(plain.data(), 2, 10, 2.0f, params, lamina::reference::RopeStyle::neox);
  for (std::size_t i = 0; i < scaled.size(); ++i) CHECK(scaled[i] == doctest::Approx(plain[i]).epsilon(1e-5));
}
