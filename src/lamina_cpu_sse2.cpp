// The sse2 kernels of lamina, compiled with this instruction set's flags (see
// include/lamina/kernels/cpu/instantiate.hpp). The CMake target and meson dependency add this file.
#define LAMINA_CPU_TARGET 1
#include <lamina/kernels/cpu/instantiate.hpp>
