// lamina/kernels/cpu/arch.hpp — which instruction sets the CPU kernels are built for, and which
// one this CPU can run.
//
// Each kernel family is compiled once per CpuArch (see kernels/cpu/dispatch.hpp). At run time
// lamina picks the best one the processor supports; the environment variable LAMINA_CPU_ARCH
// (e.g. LAMINA_CPU_ARCH=sse2) or SessionParams::cpu_arch can force a lower one, so tests run
// every path on one machine.
#pragma once

#include "../../config.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#  define LAMINA_DETAIL_X86 1
#  if defined(_MSC_VER) && !defined(__clang__)
#    include <intrin.h>
#  else
#    include <cpuid.h>
#  endif
#else
#  define LAMINA_DETAIL_X86 0
#endif

LAMINA_NAMESPACE_BEGIN

// Ordered from least to most capable within each processor family.
enum class CpuArch : int {
  automatic = -1,  // "the best this CPU supports" (only as a request)
  scalar = 0,      // plain C++; the fallback everywhere
  sse2 = 1,        // every x86-64 processor
  avx2 = 2,        // AVX2 + FMA + F16C (Haswell, Zen 1 and later)
  avx512 = 3,      // AVX-512 F/BW/DQ/VL + VNNI (Ice Lake, Zen 4 and later)
  neon = 4,        // 64-bit ARM
};

inline const char* cpu_arch_name(CpuArch arch) {
  switch (arch) {
    case CpuArch::automatic: return "auto";
    case CpuArch::scalar: return "scalar";
    case CpuArch::sse2: return "sse2";
    case CpuArch::avx2: return "avx2";
    case CpuArch::avx512: return "avx512";
    case CpuArch::neon: return "neon";
  }
  return "unknown";
}

// "sse2" -> CpuArch::sse2; false for an unknown name.
inline bool parse_cpu_arch(const char* name, CpuArch* arch) {
  const CpuArch all[] = {CpuArch::automatic, CpuArch::scalar, CpuArch::sse2, CpuArch::avx2, CpuArch::avx512, CpuArch::neon};
  for (CpuArch candidate : all) {
    if (std::strcmp(name, cpu_arch_name(candidate)) == 0) {
      *arch = candidate;
      return true;
    }
  }
  return false;
}

namespace detail {

#if LAMINA_DETAIL_X86
inline void cpuid(std::uint32_t leaf, std::uint32_t subleaf, std::uint32_t registers[4]) {
#  if defined(_MSC_VER) && !defined(__clang__)
  int values[4];
  __cpuidex(values, static_cast<int>(leaf), static_cast<int>(subleaf));
  for (int i = 0; i < 4; ++i) registers[i] = static_cast<std::uint32_t>(values[i]);
#  else
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(leaf, subleaf, &a, &b, &c, &d)) a = b = c = d = 0;
  registers[0] = a, registers[1] = b, registers[2] = c, registers[3] = d;
#  endif
}

// Which register states the operating system saves on a context switch (XCR0).
inline std::uint64_t os_saved_register_states() {
#  if defined(_MSC_VER) && !defined(__clang__)
  return _xgetbv(0);
#  else
  std::uint32_t low, high;
  __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (static_cast<std::uint64_t>(high) << 32) | low;
#  endif
}
#endif

inline CpuArch detect_best_cpu_arch() {
#if LAMINA_DETAIL_X86
  std::uint32_t leaf1[4], leaf7[4], leaf0[4];
  cpuid(0, 0, leaf0);
  cpuid(1, 0, leaf1);
  const bool has_sse2 = (leaf1[3] >> 26) & 1u;
  if (!has_sse2) return CpuArch::scalar;
  const bool os_uses_xsave = (leaf1[2] >> 27) & 1u;
  if (!os_uses_xsave || leaf0[0] < 7) return CpuArch::sse2;
  const std::uint64_t saved = os_saved_register_states();
  const bool os_saves_ymm = (saved & 0x6u) == 0x6u;            // SSE + AVX state
  const bool os_saves_zmm = (saved & 0xe6u) == 0xe6u;          // + opmask, ZMM upper halves, ZMM16-31
  cpuid(7, 0, leaf7);
  const bool has_fma = (leaf1[2] >> 12) & 1u, has_avx = (leaf1[2] >> 28) & 1u, has_f16c = (leaf1[2] >> 29) & 1u;
  const bool has_avx2 = (leaf7[1] >> 5) & 1u;
  const bool has_avx512 = ((leaf7[1] >> 16) & 1u) && ((leaf7[1] >> 17) & 1u) && ((leaf7[1] >> 30) & 1u) &&
                          ((leaf7[1] >> 31) & 1u) && ((leaf7[2] >> 11) & 1u);  // F, DQ, BW, VL, VNNI
  if (os_saves_zmm && has_avx512 && has_avx2 && has_fma && has_f16c) return CpuArch::avx512;
  if (os_saves_ymm && has_avx && has_avx2 && has_fma && has_f16c) return CpuArch::avx2;
  return CpuArch::sse2;
#elif defined(__aarch64__) || defined(_M_ARM64)
  return CpuArch::neon;
#else
  return CpuArch::scalar;
#endif
}

}  // namespace detail

// The best kernel architecture this processor runs (detected once).
inline CpuArch best_cpu_arch() {
  static const CpuArch best = detail::detect_best_cpu_arch();
  return best;
}

// True when code built for `arch` runs on this processor.
inline bool cpu_supports(CpuArch arch) {
  const CpuArch best = best_cpu_arch();
  if (arch == CpuArch::automatic || arch == CpuArch::scalar) return true;
  if (arch == CpuArch::neon) return best == CpuArch::neon;
  return best != CpuArch::neon && static_cast<int>(arch) <= static_cast<int>(best);
}

LAMINA_NAMESPACE_END

#undef LAMINA_DETAIL_X86
