// lamina/text/byte_alphabet.hpp — GPT-2's byte-level alphabet: each byte as one printable code point.
//
// Byte-level BPE (tokenizer.ggml.model "gpt2") maps every byte of a word to one printable code
// point, so that BPE pieces are printable strings. Printable Latin-1 bytes map to themselves; the
// other 68 bytes (controls, space, DEL, NBSP, soft hyphen) map to U+0100, U+0101 ... in byte
// order. " " becomes "Ġ" (U+0120). Internals of text/tokenizer.hpp (lamina::detail::text).
#pragma once

#include "../config.hpp"
#include "unicode.hpp"

#include <cstdint>
#include <string>

LAMINA_NAMESPACE_BEGIN
namespace detail {
namespace text {

inline constexpr bool byte_is_printable_latin1(unsigned byte) {
  return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
}

struct ByteLevelAlphabet {
  char32_t codepoint_of_byte[256];
  std::uint8_t byte_of_shifted[68];  // byte whose code point is U+0100 + index
};

inline constexpr ByteLevelAlphabet make_byte_level_alphabet() {
  ByteLevelAlphabet alphabet{};
  unsigned shifted = 0;
  for (unsigned byte = 0; byte < 256; ++byte) {
    if (byte_is_printable_latin1(byte)) {
      alphabet.codepoint_of_byte[byte] = byte;
    } else {
      alphabet.codepoint_of_byte[byte] = 0x100 + shifted;
      alphabet.byte_of_shifted[shifted] = static_cast<std::uint8_t>(byte);
      ++shifted;
    }
  }
  return alphabet;
}

inline constexpr ByteLevelAlphabet byte_level_alphabet = make_byte_level_alphabet();

// Byte of a byte-level character, or -1 when the code point is not in the alphabet.
inline int byte_of_byte_level_codepoint(char32_t codepoint) noexcept {
  if (codepoint < 0x100) return byte_is_printable_latin1(codepoint) ? static_cast<int>(codepoint) : -1;
  if (codepoint < 0x100 + 68) return byte_level_alphabet.byte_of_shifted[codepoint - 0x100];
  return -1;
}

inline void append_byte_level(std::string& out, unsigned char byte) {
  unicode::append_utf8(out, byte_level_alphabet.codepoint_of_byte[byte]);
}

}  // namespace text
}  // namespace detail
LAMINA_NAMESPACE_END
