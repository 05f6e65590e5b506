// The avx512 kernels of lamina, compiled once for the whole program (see
// include/lamina/kernels/cpu/dispatch.hpp); the target pragmas of
// include/lamina/kernels/cpu/instantiate.hpp choose the instruction set, so this file needs no
// -m flags. The CMake target and the meson dependency add it, and set LAMINA_CPU_DISPATCH=1
// for every file of the program, as here (it is part of lamina's ABI namespace: config.hpp).
#undef LAMINA_CPU_DISPATCH
#define LAMINA_CPU_DISPATCH 1
#define LAMINA_CPU_TARGET 3
#include <lamina/kernels/cpu/instantiate.hpp>
