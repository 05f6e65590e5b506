// The avx2 kernels of lamina, compiled once for the whole program (see
// include/lamina/kernels/cpu/dispatch.hpp); the target pragmas of
// include/lamina/kernels/cpu/instantiate.hpp choose the instruction set, so this file needs no
// -m flags. The CMake target and the meson dependency add it.
#define LAMINA_CPU_TARGET 2
#include <lamina/kernels/cpu/instantiate.hpp>
