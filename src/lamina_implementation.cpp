// lamina's heavy functions (loading, the forward pass, the session, the tokenizer, generation,
// the adapters), compiled once for the whole program: the file that defines
// LAMINA_IMPLEMENTATION (config.hpp, core/definitions_begin.inl). CMake's
// LAMINA_SEPARATE_IMPLEMENTATION=ON and meson's -Dseparate_implementation=true build it into a
// static library and set LAMINA_SEPARATE_IMPLEMENTATION=1 for every file of the program (it is
// part of lamina's ABI namespace).
#define LAMINA_IMPLEMENTATION
#include <lamina/lamina.hpp>
#include <lamina/adapters/combine.hpp>
#if __has_include(<nlohmann/json.hpp>)  // adapters/peft.hpp reads adapter_config.json with it
#  include <lamina/adapters/peft.hpp>
#endif
