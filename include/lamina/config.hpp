// lamina/config.hpp — the version and every configuration knob, in one place.
//
// Each LAMINA_* knob is always defined, as 0 or 1, so `#if LAMINA_X` is never a typo that
// silently reads as 0. To change a knob, define it before the first lamina include (or on the
// compiler command line); a definition you provide is used as it is.
#pragma once

#define LAMINA_VERSION_MAJOR 0
#define LAMINA_VERSION_MINOR 1
#define LAMINA_VERSION_PATCH 0
#define LAMINA_VERSION_STRING "0.1.0"

// LAMINA_ENABLE_ASSERTS: check internal invariants (shapes passed between lamina's own
// functions). Programmer errors only; bad input is always reported through lamina::Result.
// Default: on unless NDEBUG.
#ifndef LAMINA_ENABLE_ASSERTS
#  ifdef NDEBUG
#    define LAMINA_ENABLE_ASSERTS 0
#  else
#    define LAMINA_ENABLE_ASSERTS 1
#  endif
#endif

// LAMINA_THREADS: 1 to build the built-in thread pool (std::thread). With 0, the built-in
// executor runs everything on the calling thread; a host may still plug in its own.
#ifndef LAMINA_THREADS
#  define LAMINA_THREADS 1
#endif

// LAMINA_CPU_DISPATCH: 1 when the program links lamina's compiled kernel files
// (src/lamina_cpu_*.cpp; the CMake target lamina::lamina and the meson dependency add them and
// set this), so the SIMD kernels are compiled once per program. 0: lamina.hpp compiles them in
// the including file. Either way every instruction set is there and one is picked at run time.
#ifndef LAMINA_CPU_DISPATCH
#  define LAMINA_CPU_DISPATCH 0
#endif

// LAMINA_SEPARATE_IMPLEMENTATION: 1 to compile lamina's heavy functions (loading, the forward
// pass, the session, the tokenizer, generation, the kernel tables) in one file of the program
// instead of in every file that calls them, as stb's libraries do. Every file of the program
// sets it (on the command line); the headers then only declare those functions, and exactly one
// file defines LAMINA_IMPLEMENTATION before its first lamina include to compile them:
//   // lamina_implementation.cpp
//   #define LAMINA_IMPLEMENTATION
//   #include <lamina/lamina.hpp>
// Default 0: every function is inline and compiled where it is called (header-only).
// Defining LAMINA_IMPLEMENTATION sets it to 1 unless it is defined.
#ifndef LAMINA_SEPARATE_IMPLEMENTATION
#  ifdef LAMINA_IMPLEMENTATION
#    define LAMINA_SEPARATE_IMPLEMENTATION 1
#  else
#    define LAMINA_SEPARATE_IMPLEMENTATION 0
#  endif
#endif
#if defined(LAMINA_IMPLEMENTATION) && !LAMINA_SEPARATE_IMPLEMENTATION
#  error "LAMINA_IMPLEMENTATION compiles the functions that LAMINA_SEPARATE_IMPLEMENTATION=1 leaves out; it is 0 here"
#endif

// The ABI namespace. lamina's names live in an inline namespace of lamina named after the
// version and the knobs that change code or class layouts: lamina::abi_v0_1_0_a1_t1_d0_s0::Session
// for version 0.1.0 with LAMINA_ENABLE_ASSERTS 1, LAMINA_THREADS 1, LAMINA_CPU_DISPATCH 0 and
// LAMINA_SEPARATE_IMPLEMENTATION 0. Programs still write lamina::Session. Two files compiled
// with different knobs then use different names, so a program that passes lamina's objects from
// one to the other fails to link instead of mixing two layouts or two bodies of one inline
// function. Keep the knobs the same in every file of a program, lamina's kernel files
// (src/lamina_cpu_*.cpp) included.
// LAMINA_NAMESPACE_BEGIN / LAMINA_NAMESPACE_END open and close it in lamina's headers.
#if LAMINA_ENABLE_ASSERTS && LAMINA_THREADS && LAMINA_CPU_DISPATCH && LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a1_t1_d1_s1
#elif LAMINA_ENABLE_ASSERTS && LAMINA_THREADS && !LAMINA_CPU_DISPATCH && LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a1_t1_d0_s1
#elif LAMINA_ENABLE_ASSERTS && !LAMINA_THREADS && LAMINA_CPU_DISPATCH && LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a1_t0_d1_s1
#elif LAMINA_ENABLE_ASSERTS && !LAMINA_THREADS && !LAMINA_CPU_DISPATCH && LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a1_t0_d0_s1
#elif !LAMINA_ENABLE_ASSERTS && LAMINA_THREADS && LAMINA_CPU_DISPATCH && LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a0_t1_d1_s1
#elif !LAMINA_ENABLE_ASSERTS && LAMINA_THREADS && !LAMINA_CPU_DISPATCH && LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a0_t1_d0_s1
#elif !LAMINA_ENABLE_ASSERTS && !LAMINA_THREADS && LAMINA_CPU_DISPATCH && LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a0_t0_d1_s1
#elif !LAMINA_ENABLE_ASSERTS && !LAMINA_THREADS && !LAMINA_CPU_DISPATCH && LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a0_t0_d0_s1
#elif LAMINA_ENABLE_ASSERTS && LAMINA_THREADS && LAMINA_CPU_DISPATCH && !LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a1_t1_d1_s0
#elif LAMINA_ENABLE_ASSERTS && LAMINA_THREADS && !LAMINA_CPU_DISPATCH && !LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a1_t1_d0_s0
#elif LAMINA_ENABLE_ASSERTS && !LAMINA_THREADS && LAMINA_CPU_DISPATCH && !LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a1_t0_d1_s0
#elif LAMINA_ENABLE_ASSERTS && !LAMINA_THREADS && !LAMINA_CPU_DISPATCH && !LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a1_t0_d0_s0
#elif !LAMINA_ENABLE_ASSERTS && LAMINA_THREADS && LAMINA_CPU_DISPATCH && !LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a0_t1_d1_s0
#elif !LAMINA_ENABLE_ASSERTS && LAMINA_THREADS && !LAMINA_CPU_DISPATCH && !LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a0_t1_d0_s0
#elif !LAMINA_ENABLE_ASSERTS && !LAMINA_THREADS && LAMINA_CPU_DISPATCH && !LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a0_t0_d1_s0
#elif !LAMINA_ENABLE_ASSERTS && !LAMINA_THREADS && !LAMINA_CPU_DISPATCH && !LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_ABI_NAMESPACE abi_v0_1_0_a0_t0_d0_s0
#endif
#define LAMINA_NAMESPACE_BEGIN \
  namespace lamina {           \
  inline namespace LAMINA_ABI_NAMESPACE {
#define LAMINA_NAMESPACE_END \
  }                          \
  }

// LAMINA_WINDOWS: 1 when compiling for Windows (memory mapping through CreateFileMapping).
#ifndef LAMINA_WINDOWS
#  if defined(_WIN32)
#    define LAMINA_WINDOWS 1
#  else
#    define LAMINA_WINDOWS 0
#  endif
#endif

// LAMINA_ASSERT(condition, message): called on a broken internal invariant. The default prints
// the message with file and line to stderr and aborts; an embedder can define its own (for
// example to route into the engine's crash reporter) before including lamina.
#ifndef LAMINA_ASSERT
#  if LAMINA_ENABLE_ASSERTS
#    include <cstdio>
#    include <cstdlib>
#    define LAMINA_ASSERT(condition, message)                                                   \
      do {                                                                                      \
        if (!(condition)) {                                                                     \
          std::fprintf(stderr, "lamina: assertion failed at %s:%d: %s (%s)\n", __FILE__,        \
                       __LINE__, message, #condition);                                          \
          std::abort();                                                                         \
        }                                                                                       \
      } while (0)
#  else
#    define LAMINA_ASSERT(condition, message) ((void)0)
#  endif
#endif
