// lamina/kernels/cpu/instantiate.hpp — compiles the SIMD kernels for one instruction set.
//
// Define LAMINA_CPU_TARGET as a CpuArch value (1 sse2, 2 avx2, 3 avx512) and include this file
// in a translation unit compiled with that instruction set's flags:
//   sse2    (x86-64 baseline)
//   avx2    -mavx2 -mfma -mf16c
//   avx512  -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c
// src/lamina_cpu_*.cpp do exactly that (the CMake target and the meson dependency build them);
// without them, kernels/cpu/dispatch.hpp includes this file for the including file's own flags.
//
// Everything defined here lives in lamina::cpu::<instruction set>, and the code calls nothing
// outside that namespace except compiler builtins, intrinsics and xsimd's arch-tagged templates:
// that is the guard against the ODR trap (see kernels/cpu/kernels.hpp).
//
// No include guard: a program may include it once per instruction set.

#ifndef LAMINA_CPU_TARGET
#  error "define LAMINA_CPU_TARGET (1 sse2, 2 avx2, 3 avx512) before including lamina/kernels/cpu/instantiate.hpp"
#endif

#include "kernels.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include <xsimd/xsimd.hpp>
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#  include <immintrin.h>
#endif

#if LAMINA_CPU_TARGET == 1
#  if !defined(__SSE2__) && !defined(_M_X64)
#    error "lamina: the sse2 kernels need SSE2"
#  endif
#  define LAMINA_CPU_NAMESPACE sse2
#  define LAMINA_CPU_XSIMD_ARCH xsimd::sse2
#elif LAMINA_CPU_TARGET == 2
#  if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#    error "lamina: compile the avx2 kernels with -mavx2 -mfma -mf16c"
#  endif
#  define LAMINA_CPU_NAMESPACE avx2
#  define LAMINA_CPU_XSIMD_ARCH xsimd::fma3<xsimd::avx2>
#elif LAMINA_CPU_TARGET == 3
#  if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512DQ__) || !defined(__AVX512VL__) || \
      !defined(__AVX512VNNI__) || !defined(__FMA__) || !defined(__F16C__)
#    error "lamina: compile the avx512 kernels with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c"
#  endif
#  define LAMINA_CPU_NAMESPACE avx512
#  define LAMINA_CPU_XSIMD_ARCH xsimd::avx512bw
#else
#  error "lamina: LAMINA_CPU_TARGET must be 1 (sse2), 2 (avx2) or 3 (avx512)"
#endif

// In a kernel translation unit the table is an ordinary (external) function; compiled inline
// into a user's file it is inline.
#ifndef LAMINA_CPU_TABLE_LINKAGE
#  define LAMINA_CPU_TABLE_LINKAGE
#endif

// Small helpers of the kernels' inner loops, inlined whatever the compiler's size heuristics
// say (an out-of-line call that passes vectors through memory costs more than the helper).
#ifndef LAMINA_CPU_INLINE
#  if defined(__GNUC__) || defined(__clang__)
#    define LAMINA_CPU_INLINE inline __attribute__((always_inline))
#  elif defined(_MSC_VER)
#    define LAMINA_CPU_INLINE __forceinline
#  else
#    define LAMINA_CPU_INLINE inline
#  endif
#endif

// GCC 12 reports the AVX-512 intrinsics' own _mm512_undefined_*() placeholders as
// "may be used uninitialized" once they are inlined here (GCC bug 105593); the code is fine.
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#  pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace lamina {
namespace cpu {
namespace LAMINA_CPU_NAMESPACE {

using simd_arch = LAMINA_CPU_XSIMD_ARCH;
inline constexpr CpuArch this_arch = static_cast<CpuArch>(LAMINA_CPU_TARGET);

#include "../../core/half_conversions.inl"
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
    kernels.attention = &attention;
    return kernels;
  }();
  return table;
}

}  // namespace LAMINA_CPU_NAMESPACE
}  // namespace cpu
}  // namespace lamina

#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic pop
#endif

#undef LAMINA_CPU_NAMESPACE
#undef LAMINA_CPU_XSIMD_ARCH
#undef LAMINA_CPU_TARGET
