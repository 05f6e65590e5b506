// lamina/core/half.hpp — exact conversions between float and the 16-bit float formats.
//
// IEEE half (F16): 1 sign, 5 exponent, 10 mantissa bits. bfloat16 (BF16): the upper 16 bits of
// an IEEE float. float -> 16 bit rounds to nearest, ties to even; 16 bit -> float is exact.
// Everything is plain integer arithmetic so results are the same on every compiler and CPU.
#pragma once

#include "../config.hpp"

#include <cstdint>
#include <cstring>

LAMINA_NAMESPACE_BEGIN

#include "half_conversions.inl"  // IWYU pragma: export

LAMINA_NAMESPACE_END
