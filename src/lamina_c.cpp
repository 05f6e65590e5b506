// liblamina_c: lamina's C API (include/lamina/lamina.h), compiled once into a shared library.
// The CMake target lamina_c and meson's lamina_c build it with hidden visibility and
// src/lamina_c.map, so that it exports the lamina_* functions and nothing of the C++ library
// inside it; tests/c/lamina_c.symbols is the list, which tests/c/check_symbols.sh checks.
#define LAMINA_C_IMPLEMENTATION
#include <lamina/lamina.h>
