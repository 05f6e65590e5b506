// lamina/text/text_range.hpp — a byte range of a text, shared by the tokenizer (which bytes may hold
// control tokens) and the chat-template renderer (which bytes the template itself wrote).
#pragma once

#include "../config.hpp"

#include <cstddef>

LAMINA_NAMESPACE_BEGIN

// Bytes [begin, end) of a text.
struct TextRange {
  std::size_t begin = 0;
  std::size_t end = 0;
};

LAMINA_NAMESPACE_END
