// lamina/kernels/cpu/instantiate.hpp — compiles the SIMD kernels for one instruction set.
//
// Define LAMINA_CPU_TARGET as a CpuArch value (1 sse2, 2 avx2, 3 avx512) and include this file.
// The kernels are compiled for that instruction set whatever the including file's -m flags: a
// target pragma (GCC, clang) gives every function defined here the set's target attribute,
//   sse2    (x86-64 baseline)
//   avx2    avx2, fma, f16c
//   avx512  avx512f, avx512bw, avx512dq, avx512vl, avx512vnni, avx2, fma, f16c
// so kernels/cpu/dispatch.hpp includes it once per set and lamina.hpp alone holds all three.
// src/lamina_cpu_*.cpp include it too, to compile the kernels once for a whole program (the
// CMake target and the meson dependency build them; see kernels/cpu/kernels.hpp).
//
// Everything defined here lives in lamina::cpu::<instruction set>, and the code calls nothing
// outside that namespace except compiler intrinsics and memcpy/memset: that is the guard
// against the ODR trap (an AVX-512 copy of a shared inline function that the linker keeps for
// the whole program). tests/scripts/test_arch_symbols.sh checks it with nm at -O0 and -O2.
//
// No include guard: a program includes it once per instruction set.

#ifndef LAMINA_CPU_TARGET
#  error "define LAMINA_CPU_TARGET (1 sse2, 2 avx2, 3 avx512) before including lamina/kernels/cpu/instantiate.hpp"
#endif

#include "kernels.hpp"

// Every standard header the kernels use comes before the target pragma, so that none of its
// inline functions is compiled with an instruction set the program's baseline lacks.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#if !defined(__x86_64__) && !defined(_M_X64)
#  error "lamina: the SIMD kernels of instantiate.hpp are for x86-64"
#endif
#include <immintrin.h>

#if LAMINA_CPU_TARGET == 1
#  define LAMINA_CPU_NAMESPACE sse2
#elif LAMINA_CPU_TARGET == 2
#  define LAMINA_CPU_NAMESPACE avx2
#elif LAMINA_CPU_TARGET == 3
#  define LAMINA_CPU_NAMESPACE avx512
#else
#  error "lamina: LAMINA_CPU_TARGET must be 1 (sse2), 2 (avx2) or 3 (avx512)"
#endif

// The target attribute of every function below. (MSVC compiles any intrinsic anywhere.) GCC
// and clang spell the region differently; pragmas take no macros, hence one branch per set.
#if defined(__clang__)
#  if LAMINA_CPU_TARGET == 2
#    pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#  elif LAMINA_CPU_TARGET == 3
#    pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c"))), apply_to = function)
#  else
#    pragma clang attribute push(__attribute__((target("sse2"))), apply_to = function)
#  endif
#elif defined(__GNUC__)
#  pragma GCC push_options
#  if LAMINA_CPU_TARGET == 2
#    pragma GCC target("avx2,fma,f16c")
#  elif LAMINA_CPU_TARGET == 3
#    pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")
#  endif
#endif

// In a kernel translation unit the table is an ordinary (external) function; compiled inline
// into a user's file it is inline.
#ifndef LAMINA_CPU_TABLE_LINKAGE
#  define LAMINA_CPU_TABLE_LINKAGE
#endif

// Small helpers of the kernels' inner loops, inlined whatever the compiler's size heuristics
// say (an out-of-line call that passes vectors through memory costs more than the helper).
#if defined(__GNUC__) || defined(__clang__)
#  define LAMINA_CPU_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#  define LAMINA_CPU_INLINE __forceinline
#else
#  define LAMINA_CPU_INLINE inline
#endif

// GCC 12 reports the AVX-512 intrinsics' own _mm512_undefined_*() placeholders as
// "may be used uninitialized" once they are inlined here (GCC bug 105593); the code is fine.
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#  pragma GCC diagnostic ignored "-Wuninitialized"
#endif

LAMINA_NAMESPACE_BEGIN
namespace cpu {
namespace LAMINA_CPU_NAMESPACE {

inline constexpr CpuArch this_arch = static_cast<CpuArch>(LAMINA_CPU_TARGET);

#include "../../core/half_conversions.inl"
#include "simd/float_batch.inl"
#include "simd/vector_ops.inl"
#include "simd/quant_legacy.inl"
#include "simd/quant_k.inl"
#include "simd/matmul.inl"

LAMINA_CPU_TABLE_LINKAGE const CpuKernels& kernel_table() {
  static const CpuKernels table = [] {
    CpuKernels kernels;
    kernels.arch = this_arch;
    kernels.activation_format = &activation_format;
    kernels.quantize_activations = &quantize_activations;
    kernels.matmul_rows = &matmul_rows;
    kernels.dot = &dot;
    kernels.rms_norm = &rms_norm;
    kernels.silu_mul = &silu_mul;
    kernels.add = &add;
    kernels.scaled_add = &scaled_add;
    kernels.f32_to_f16 = &f32_to_f16_row;
    kernels.dot_f16 = &dot_f16;
    kernels.scaled_add_f16 = &scaled_add_f16;
    kernels.exp_shifted = &exp_shifted;
    kernels.attention_scores = &attention_scores;
    kernels.attention_values = &attention_values;
    return kernels;
  }();
  return table;
}

}  // namespace LAMINA_CPU_NAMESPACE
}  // namespace cpu
LAMINA_NAMESPACE_END

#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic pop
#endif

#if defined(__clang__)
#  pragma clang attribute pop
#elif defined(__GNUC__)
#  pragma GCC pop_options
#endif

#undef LAMINA_CPU_INLINE
#undef LAMINA_CPU_NAMESPACE
#undef LAMINA_CPU_TARGET
