// lamina/kernels/cpu/dispatch.hpp — the kernel tables this program contains, and the choice of
// one at run time.
//
// On x86-64 a program holds the SSE2, AVX2 and AVX-512 kernels, each compiled for its own
// instruction set (kernels/cpu/instantiate.hpp), whatever flags the program is compiled with:
//   - LAMINA_CPU_DISPATCH=0 (plain `#include <lamina/lamina.hpp>`, no build system): this
//     header compiles all three inline, under target pragmas.
//   - LAMINA_CPU_DISPATCH=1 (the CMake target and the meson dependency): src/lamina_cpu_*.cpp
//     compile them once for the whole program, and this header only declares them; a program
//     of many translation units then compiles the kernels once instead of in each file.
//   - LAMINA_SEPARATE_IMPLEMENTATION=1 (config.hpp): the file that defines LAMINA_IMPLEMENTATION
//     compiles them (unless LAMINA_CPU_DISPATCH=1), and the other files only declare them.
// Elsewhere the scalar table is the only one.
#pragma once

#include "../../config.hpp"
#include "arch.hpp"
#include "kernels.hpp"
#include "scalar.hpp"

#include <cstdlib>

#if defined(__x86_64__) || defined(_M_X64)
#  if LAMINA_CPU_DISPATCH || (LAMINA_SEPARATE_IMPLEMENTATION && !defined(LAMINA_IMPLEMENTATION))
LAMINA_NAMESPACE_BEGIN
namespace cpu {
namespace sse2 { const CpuKernels& kernel_table(); }
namespace avx2 { const CpuKernels& kernel_table(); }
namespace avx512 { const CpuKernels& kernel_table(); }
}  // namespace cpu
LAMINA_NAMESPACE_END
#  else
#    if LAMINA_SEPARATE_IMPLEMENTATION
#      define LAMINA_CPU_TABLE_LINKAGE  // compiled once, here
#    else
#      define LAMINA_CPU_TABLE_LINKAGE inline
#    endif
#    define LAMINA_CPU_TARGET 1
#    include "instantiate.hpp"
#    define LAMINA_CPU_TARGET 2
#    include "instantiate.hpp"
#    define LAMINA_CPU_TARGET 3
#    include "instantiate.hpp"
#    undef LAMINA_CPU_TABLE_LINKAGE
#  endif
#endif

LAMINA_NAMESPACE_BEGIN
namespace cpu {

// The table for `arch` when this program contains it, else nullptr.
inline const CpuKernels* cpu_kernels_for(CpuArch arch) {
  switch (arch) {
    case CpuArch::scalar: return &scalar::kernel_table();
#if defined(__x86_64__) || defined(_M_X64)
    case CpuArch::sse2: return &sse2::kernel_table();
    case CpuArch::avx2: return &avx2::kernel_table();
    case CpuArch::avx512: return &avx512::kernel_table();
#endif
    default: return nullptr;
  }
}

namespace detail {
inline CpuArch requested_cpu_arch_from_environment() {
  const char* name = std::getenv("LAMINA_CPU_ARCH");
  CpuArch arch = CpuArch::automatic;
  if (name != nullptr && *name != '\0' && !parse_cpu_arch(name, &arch)) arch = CpuArch::automatic;
  return arch;
}
}  // namespace detail

// The kernels lamina uses: the most capable table that this program contains, this CPU runs,
// and that is not above `requested` (or, for CpuArch::automatic, above $LAMINA_CPU_ARCH).
inline const CpuKernels& cpu_kernels(CpuArch requested = CpuArch::automatic) {
  if (requested == CpuArch::automatic) requested = detail::requested_cpu_arch_from_environment();
  const CpuArch order[] = {CpuArch::avx512, CpuArch::avx2, CpuArch::neon, CpuArch::sse2};
  for (CpuArch arch : order) {
    if (requested != CpuArch::automatic && static_cast<int>(arch) > static_cast<int>(requested)) continue;
    if (requested != CpuArch::automatic && requested != CpuArch::neon && arch == CpuArch::neon) continue;
    if (!cpu_supports(arch)) continue;
    if (const CpuKernels* kernels = cpu_kernels_for(arch)) return *kernels;
  }
  return *cpu_kernels_for(CpuArch::scalar);
}

}  // namespace cpu
LAMINA_NAMESPACE_END
