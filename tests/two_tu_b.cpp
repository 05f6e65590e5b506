// The second translation unit of the two-TU check (see two_tu_a.cpp).
#include <lamina/lamina.hpp>

#include <doctest/doctest.h>

TEST_CASE("two translation units: B sees the whole library") {
  lamina::SamplerParams params;
  params.temperature = 0.0f;
  lamina::Result<lamina::Sampler> sampler = lamina::Sampler::create(params, 3);
  REQUIRE(sampler.ok());
  const float logits[3] = {0.0f, 2.0f, 1.0f};
  CHECK(sampler->sample(logits) == 1);
  CHECK(lamina::Result<int>(lamina::fail(lamina::ErrorCode::missing, "x")).error().code == lamina::ErrorCode::missing);
}
