// Two translation units include everything: a function defined in a header without `inline`
// (or a non-inline variable) is then defined twice and lamina_tests fails to link.
// This file and two_tu_b.cpp each call something, so neither is optimised away.
#include <lamina/lamina.hpp>

#include <doctest/doctest.h>

#include <string>

TEST_CASE("two translation units: A sees the whole library") {
  CHECK(std::string(lamina::dtype_name(lamina::DType::q8_0)) == "q8_0");
  CHECK(lamina::f16_to_f32(lamina::f32_to_f16(0.5f)) == 0.5f);
}
