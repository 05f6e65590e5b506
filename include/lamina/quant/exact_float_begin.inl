// lamina/quant/exact_float_begin.inl — the start of a quantizer header's code, in which float
// arithmetic is evaluated as written (no FMA contraction; see quant/rounding.hpp for why).
// Include it after the header's own includes and quant/exact_float_end.inl at its end: the
// pair defines LAMINA_DETAIL_NO_FP_CONTRACT for the functions between them and leaves
// nothing behind. No include guard: every quantizer header includes it.

// Clang: contraction off for every expression up to exact_float_end.inl.
#if defined(__clang__) && __clang_major__ >= 13
#  pragma float_control(push)
#  pragma clang fp contract(off)
#endif

// GCC contracts across statements: each quantizer function carries GCC's per-function
// -ffp-contract=off.
#if defined(__GNUC__) && !defined(__clang__)
#  define LAMINA_DETAIL_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#  define LAMINA_DETAIL_NO_FP_CONTRACT
#endif
