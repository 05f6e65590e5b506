// lamina/text/unicode.hpp — UTF-8 decoding and encoding, Unicode general categories, White_Space.
//
// What the tokenizers need from Unicode, and nothing more:
//   * strict UTF-8 validation (RFC 3629): overlong forms, surrogates, code points above
//     U+10FFFF, truncated sequences and stray continuation bytes are all invalid, and invalid
//     input never reads out of bounds;
//   * the General_Category of a code point (\p{L}, \p{N}, \p{P}, \p{S}, \p{M} in the
//     pre-tokenizer regexes) and the White_Space property (\s).
// The tables come from tools/gen_unicode_tables.py (Debian's unicode-data package), see
// unicode_tables.hpp for the Unicode version.
//
//   std::size_t bad = lamina::unicode::find_invalid_utf8(text);   // npos when valid
//   auto decoded = lamina::unicode::decode_utf8(text, offset);    // {codepoint, length}
//   if (lamina::unicode::is_letter(decoded.codepoint)) ...
#pragma once

#include "../config.hpp"
#include "unicode_tables.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

LAMINA_NAMESPACE_BEGIN
namespace unicode {

inline constexpr char32_t max_codepoint = 0x10FFFF;
inline constexpr char32_t replacement_character = 0xFFFD;

// One code point read from UTF-8. `length` is the number of bytes it took, 0 when the bytes at
// that offset are not valid UTF-8 (then `codepoint` is U+FFFD).
struct DecodedCodepoint {
  char32_t codepoint = replacement_character;
  std::uint32_t length = 0;
};

// Reads the code point that starts at text[offset], validating it completely.
// `offset` must be < text.size().
inline DecodedCodepoint decode_utf8(std::string_view text, std::size_t offset) noexcept {
  const auto byte_at = [&](std::size_t index) { return static_cast<unsigned char>(text[index]); };
  const std::size_t available = text.size() - offset;
  const unsigned char lead = byte_at(offset);
  if (lead < 0x80) return {lead, 1};

  // The lead byte fixes the length and the smallest code point that length may encode (so
  // overlong forms are rejected); 0x80..0xC1 and 0xF5..0xFF never start a sequence.
  std::uint32_t length;
  char32_t codepoint;
  char32_t smallest;
  if (lead >= 0xC2 && lead <= 0xDF) { length = 2; codepoint = lead & 0x1Fu; smallest = 0x80; }
  else if (lead >= 0xE0 && lead <= 0xEF) { length = 3; codepoint = lead & 0x0Fu; smallest = 0x800; }
  else if (lead >= 0xF0 && lead <= 0xF4) { length = 4; codepoint = lead & 0x07u; smallest = 0x10000; }
  else return {};

  if (available < length) return {};
  for (std::uint32_t i = 1; i < length; ++i) {
    const unsigned char continuation = byte_at(offset + i);
    if ((continuation & 0xC0u) != 0x80u) return {};
    codepoint = (codepoint << 6) | (continuation & 0x3Fu);
  }
  if (codepoint < smallest || codepoint > max_codepoint) return {};
  if (codepoint >= 0xD800 && codepoint <= 0xDFFF) return {};  // UTF-16 surrogates are not characters
  return {codepoint, length};
}

// Byte offset of the first invalid UTF-8 sequence in `text`, or std::string_view::npos.
inline std::size_t find_invalid_utf8(std::string_view text) noexcept {
  std::size_t offset = 0;
  while (offset < text.size()) {
    if (static_cast<unsigned char>(text[offset]) < 0x80) {  // ASCII runs are the common case
      ++offset;
      continue;
    }
    const DecodedCodepoint decoded = decode_utf8(text, offset);
    if (decoded.length == 0) return offset;
    offset += decoded.length;
  }
  return std::string_view::npos;
}

inline bool is_valid_utf8(std::string_view text) noexcept {
  return find_invalid_utf8(text) == std::string_view::npos;
}

// Length of a UTF-8 sequence judged by its lead byte alone (1 for bytes that cannot lead).
// Only meaningful on text already known to be valid.
inline std::size_t utf8_sequence_length(unsigned char lead) noexcept {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Reads the code point at text[offset] of text that is known to be valid UTF-8 (no checks).
inline char32_t decode_valid_utf8(std::string_view text, std::size_t offset, std::size_t& length) noexcept {
  const auto byte_at = [&](std::size_t index) { return static_cast<char32_t>(static_cast<unsigned char>(text[index])); };
  const char32_t lead = byte_at(offset);
  if (lead < 0x80) { length = 1; return lead; }
  if (lead < 0xE0) { length = 2; return ((lead & 0x1F) << 6) | (byte_at(offset + 1) & 0x3F); }
  if (lead < 0xF0) {
    length = 3;
    return ((lead & 0x0F) << 12) | ((byte_at(offset + 1) & 0x3F) << 6) | (byte_at(offset + 2) & 0x3F);
  }
  length = 4;
  return ((lead & 0x07) << 18) | ((byte_at(offset + 1) & 0x3F) << 12) | ((byte_at(offset + 2) & 0x3F) << 6) |
         (byte_at(offset + 3) & 0x3F);
}

// Appends the UTF-8 form of `codepoint`; surrogates and values above U+10FFFF become U+FFFD.
inline void append_utf8(std::string& out, char32_t codepoint) {
  if (codepoint > max_codepoint || (codepoint >= 0xD800 && codepoint <= 0xDFFF)) codepoint = replacement_character;
  if (codepoint < 0x80) {
    out.push_back(static_cast<char>(codepoint));
  } else if (codepoint < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (codepoint >> 6)));
    out.push_back(static_cast<char>(0x80 | (codepoint & 0x3F)));
  } else if (codepoint < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (codepoint >> 12)));
    out.push_back(static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (codepoint & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (codepoint >> 18)));
    out.push_back(static_cast<char>(0x80 | ((codepoint >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((codepoint >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (codepoint & 0x3F)));
  }
}

inline std::string to_utf8(char32_t codepoint) {
  std::string out;
  append_utf8(out, codepoint);
  return out;
}

// General_Category by binary search over the generated ranges; values above U+10FFFF are unassigned.
inline GeneralCategory general_category(char32_t codepoint) noexcept {
  namespace tables = detail::unicode_tables;
  if (codepoint > max_codepoint) return GeneralCategory::unassigned;
  constexpr std::size_t count = sizeof(tables::general_category_ranges) / sizeof(tables::general_category_ranges[0]);
  // Find the last range whose first code point is <= codepoint.
  const std::uint32_t key = (static_cast<std::uint32_t>(codepoint) << tables::category_bits) |
                            ((1u << tables::category_bits) - 1);
  std::size_t low = 0, high = count;  // answer in [low, high)
  while (high - low > 1) {
    const std::size_t middle = low + (high - low) / 2;
    if (tables::general_category_ranges[middle] <= key) low = middle;
    else high = middle;
  }
  return static_cast<GeneralCategory>(tables::general_category_ranges[low] & ((1u << tables::category_bits) - 1));
}

inline bool is_letter(GeneralCategory category) noexcept { return category <= GeneralCategory::other_letter; }
inline bool is_mark(GeneralCategory category) noexcept {
  return category >= GeneralCategory::nonspacing_mark && category <= GeneralCategory::enclosing_mark;
}
inline bool is_number(GeneralCategory category) noexcept {
  return category >= GeneralCategory::decimal_number && category <= GeneralCategory::other_number;
}
inline bool is_punctuation(GeneralCategory category) noexcept {
  return category >= GeneralCategory::connector_punctuation && category <= GeneralCategory::other_punctuation;
}
inline bool is_symbol(GeneralCategory category) noexcept {
  return category >= GeneralCategory::math_symbol && category <= GeneralCategory::other_symbol;
}
inline bool is_separator(GeneralCategory category) noexcept {
  return category >= GeneralCategory::space_separator && category <= GeneralCategory::paragraph_separator;
}
// Cc, Cf, Cs, Co and Cn: Unicode's "Other" class (\p{C}).
inline bool is_other(GeneralCategory category) noexcept { return category >= GeneralCategory::control; }

inline bool is_letter(char32_t codepoint) noexcept { return is_letter(general_category(codepoint)); }
inline bool is_mark(char32_t codepoint) noexcept { return is_mark(general_category(codepoint)); }
inline bool is_number(char32_t codepoint) noexcept { return is_number(general_category(codepoint)); }
inline bool is_punctuation(char32_t codepoint) noexcept { return is_punctuation(general_category(codepoint)); }
inline bool is_symbol(char32_t codepoint) noexcept { return is_symbol(general_category(codepoint)); }

// The White_Space property: ASCII \t \n \v \f \r and space, U+0085, U+00A0 and the Unicode spaces.
inline bool is_whitespace(char32_t codepoint) noexcept {
  if (codepoint < 0x80) return codepoint == ' ' || (codepoint >= 0x09 && codepoint <= 0x0D);
  for (const auto& range : detail::unicode_tables::white_space_ranges) {
    if (codepoint < range.first) return false;
    if (codepoint <= range.last) return true;
  }
  return false;
}

// Two-letter abbreviation of a category ("Lu", "Nd" ...), for messages and tests.
inline const char* abbreviation(GeneralCategory category) noexcept {
  static constexpr const char* names[] = {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl",
                                          "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc",
                                          "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"};
  const auto index = static_cast<std::size_t>(category);
  return index < sizeof(names) / sizeof(names[0]) ? names[index] : "??";
}

}  // namespace unicode
LAMINA_NAMESPACE_END
