// lamina/kernels/cpu/dispatch.hpp — which kernel tables this program contains.
// See kernels/cpu/kernels.hpp for the two ways the tables are built.
#pragma once

#include "../../config.hpp"
#include "kernels.hpp"
#include "scalar.hpp"

#if LAMINA_CPU_DISPATCH

namespace lamina {
namespace cpu {
#  if defined(__x86_64__) || defined(_M_X64)
namespace sse2 { const CpuKernels& kernel_table(); }
namespace avx2 { const CpuKernels& kernel_table(); }
namespace avx512 { const CpuKernels& kernel_table(); }
#  endif

inline const CpuKernels* cpu_kernels_for(CpuArch arch) {
  switch (arch) {
    case CpuArch::scalar: return &scalar::kernel_table();
#  if defined(__x86_64__) || defined(_M_X64)
    case CpuArch::sse2: return &sse2::kernel_table();
    case CpuArch::avx2: return &avx2::kernel_table();
    case CpuArch::avx512: return &avx512::kernel_table();
#  endif
    default: return nullptr;
  }
}
}  // namespace cpu
}  // namespace lamina

#else  // the including file's own instruction set, compiled inline

#  if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
      defined(__AVX512VNNI__) && defined(__FMA__) && defined(__F16C__)
#    define LAMINA_CPU_TARGET 3
#    define LAMINA_DETAIL_INLINE_KERNELS avx512
#  elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#    define LAMINA_CPU_TARGET 2
#    define LAMINA_DETAIL_INLINE_KERNELS avx2
#  elif defined(__x86_64__) || defined(_M_X64)
#    define LAMINA_CPU_TARGET 1
#    define LAMINA_DETAIL_INLINE_KERNELS sse2
#  endif

#  ifdef LAMINA_DETAIL_INLINE_KERNELS
#    define LAMINA_CPU_TABLE_LINKAGE inline
#    include "instantiate.hpp"
#    undef LAMINA_CPU_TABLE_LINKAGE
#  endif

namespace lamina {
namespace cpu {
inline const CpuKernels* cpu_kernels_for(CpuArch arch) {
  if (arch == CpuArch::scalar) return &scalar::kernel_table();
#  ifdef LAMINA_DETAIL_INLINE_KERNELS
  if (arch == LAMINA_DETAIL_INLINE_KERNELS::this_arch) return &LAMINA_DETAIL_INLINE_KERNELS::kernel_table();
#  endif
  return nullptr;
}
}  // namespace cpu
}  // namespace lamina

#  undef LAMINA_DETAIL_INLINE_KERNELS
#endif
