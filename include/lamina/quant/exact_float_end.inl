// lamina/quant/exact_float_end.inl — the end of a quantizer header's exact-float code (see
// quant/exact_float_begin.inl).
#if defined(__clang__) && __clang_major__ >= 13
#  pragma float_control(pop)
#endif
#undef LAMINA_DETAIL_NO_FP_CONTRACT
