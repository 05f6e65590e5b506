// lamina/text/character_class.hpp — the character classes (\s, \p{L} ...) the pre-tokenizers test.
//
// One byte of class bits per code point (\s, \p{L}, \p{N}, \p{P}, \p{M}, \p{S}, \d, \w), computed
// once per text into a DecodedText. Non-ASCII code points use their General_Category; ASCII uses
// llama.cpp's fixed lists, which agree with Unicode except that '~' is not in \p{S} (llama.cpp's
// regex rewriting omits it). Internals of text/tokenizer.hpp (lamina::detail::text).
#pragma once

#include "../config.hpp"
#include "unicode.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace detail {
namespace text {

enum CharacterClass : std::uint8_t {
  class_whitespace = 1,   // \s: the White_Space property
  class_letter = 2,       // \p{L}
  class_number = 4,       // \p{N}
  class_punctuation = 8,  // \p{P}
  class_mark = 16,        // \p{M}
  class_symbol = 32,      // \p{S}
  class_ascii_digit = 64,   // \d (ECMAScript: ASCII only)
  class_ascii_word = 128,   // \w (ECMAScript: ASCII only)
};

inline constexpr std::uint8_t ascii_character_class(unsigned c) {
  std::uint8_t bits = 0;
  if (c == ' ' || (c >= 0x09 && c <= 0x0D)) bits |= class_whitespace;
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) bits |= class_letter | class_ascii_word;
  if (c >= '0' && c <= '9') bits |= class_number | class_ascii_digit | class_ascii_word;
  if (c == '_') bits |= class_ascii_word;
  if ((c >= 0x21 && c <= 0x23) || (c >= 0x25 && c <= 0x2A) || (c >= 0x2C && c <= 0x2F) || c == 0x3A || c == 0x3B ||
      c == 0x3F || c == 0x40 || (c >= 0x5B && c <= 0x5D) || c == 0x5F || c == 0x7B || c == 0x7D) {
    bits |= class_punctuation;
  }
  if (c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '`' || c == '|') bits |= class_symbol;
  return bits;
}

struct AsciiClassTable {
  std::uint8_t bits[128];
};
inline constexpr AsciiClassTable make_ascii_class_table() {
  AsciiClassTable table{};
  for (unsigned c = 0; c < 128; ++c) table.bits[c] = ascii_character_class(c);
  return table;
}
inline constexpr AsciiClassTable ascii_class_table = make_ascii_class_table();

inline std::uint8_t character_class(char32_t codepoint) noexcept {
  if (codepoint < 0x80) return ascii_class_table.bits[codepoint];
  if (unicode::is_whitespace(codepoint)) return class_whitespace;
  const unicode::GeneralCategory category = unicode::general_category(codepoint);
  if (unicode::is_letter(category)) return class_letter;
  if (unicode::is_number(category)) return class_number;
  if (unicode::is_punctuation(category)) return class_punctuation;
  if (unicode::is_mark(category)) return class_mark;
  if (unicode::is_symbol(category)) return class_symbol;
  return 0;
}

// A text decoded for pre-tokenization: [count] code points, their classes and byte offsets.
struct DecodedText {
  std::vector<char32_t> codepoints;
  std::vector<std::uint8_t> classes;
  std::vector<std::uint32_t> byte_offsets;  // [count + 1]; the last one is the text size

  void assign(std::string_view text) {
    codepoints.clear();
    classes.clear();
    byte_offsets.clear();
    std::size_t offset = 0;
    while (offset < text.size()) {
      std::size_t length = 1;
      const char32_t codepoint = unicode::decode_valid_utf8(text, offset, length);
      codepoints.push_back(codepoint);
      classes.push_back(character_class(codepoint));
      byte_offsets.push_back(static_cast<std::uint32_t>(offset));
      offset += length;
    }
    byte_offsets.push_back(static_cast<std::uint32_t>(text.size()));
  }
  std::size_t size() const noexcept { return codepoints.size(); }
};

}  // namespace text
}  // namespace detail
LAMINA_NAMESPACE_END
