// lamina/text/token.hpp — the token id type, shared by the tokenizer, the sampler and the model.
#pragma once

#include "../config.hpp"

#include <cstdint>

LAMINA_NAMESPACE_BEGIN

// A vocabulary index, as stored in GGUF (`tokenizer.ggml.tokens` order). Signed so that -1 can
// mean "no token" where a function documents it.
using Token = std::int32_t;

LAMINA_NAMESPACE_END
