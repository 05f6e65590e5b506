#!/usr/bin/python3
"""Generates include/lamina/text/unicode_tables.hpp from Debian's unicode-data package.

    /usr/bin/python3 tools/gen_unicode_tables.py [UNICODE_DATA_DIR] [OUTPUT]

UNICODE_DATA_DIR defaults to /usr/share/unicode (Debian: `apt-get install unicode-data`),
OUTPUT to include/lamina/text/unicode_tables.hpp next to this script's repository root.
The output is committed; run this only when moving to a newer Unicode version.

What it writes, and why that much and no more:
  * the General_Category of every code point as a list of ranges (a range starts where the
    category changes), packed one uint32 per range: (first code point << 5) | category.
    The pre-tokenizer regexes of llama.cpp / Hugging Face ask for \\p{L}, \\p{N}, \\p{P}, \\p{S},
    \\p{M}; a category lookup is a binary search in this table.
  * the White_Space property (PropList.txt) as ranges: what the regexes mean by \\s.
No case mapping or normalization data: none of the supported tokenizers needs them (the
llama3 pattern's case-insensitive contractions only ever compare ASCII letters).
"""

import os
import sys

# Category order matters: each major class (letters, marks, numbers, punctuation, symbols,
# separators, other) is a contiguous block, so "is this a letter" is one range comparison.
CATEGORIES = [
    ("Lu", "uppercase_letter"), ("Ll", "lowercase_letter"), ("Lt", "titlecase_letter"),
    ("Lm", "modifier_letter"), ("Lo", "other_letter"),
    ("Mn", "nonspacing_mark"), ("Mc", "spacing_mark"), ("Me", "enclosing_mark"),
    ("Nd", "decimal_number"), ("Nl", "letter_number"), ("No", "other_number"),
    ("Pc", "connector_punctuation"), ("Pd", "dash_punctuation"), ("Ps", "open_punctuation"),
    ("Pe", "close_punctuation"), ("Pi", "initial_punctuation"), ("Pf", "final_punctuation"),
    ("Po", "other_punctuation"),
    ("Sm", "math_symbol"), ("Sc", "currency_symbol"), ("Sk", "modifier_symbol"), ("So", "other_symbol"),
    ("Zs", "space_separator"), ("Zl", "line_separator"), ("Zp", "paragraph_separator"),
    ("Cc", "control"), ("Cf", "format"), ("Cs", "surrogate"), ("Co", "private_use"),
    ("Cn", "unassigned"),
]
CATEGORY_INDEX = {abbreviation: index for index, (abbreviation, _) in enumerate(CATEGORIES)}
MAX_CODEPOINT = 0x10FFFF
CATEGORY_BITS = 5
assert len(CATEGORIES) <= (1 << CATEGORY_BITS)


def read_unicode_version(data_dir):
    with open(os.path.join(data_dir, "ReadMe.txt"), encoding="utf-8") as readme:
        for line in readme:
            if "for Version" in line:
                return line.split("for Version")[1].split()[0].rstrip(".,")
    return "unknown"


def read_general_categories(data_dir):
    """Returns a list with the category index of every code point 0..MAX_CODEPOINT."""
    categories = [CATEGORY_INDEX["Cn"]] * (MAX_CODEPOINT + 1)  # unlisted code points are unassigned
    range_first = None
    with open(os.path.join(data_dir, "UnicodeData.txt"), encoding="utf-8") as data:
        for line in data:
            fields = line.split(";")
            codepoint, name, category = int(fields[0], 16), fields[1], fields[2]
            if name.endswith(", First>"):  # large blocks (CJK, Hangul, private use) list only their ends
                range_first = codepoint
                continue
            if name.endswith(", Last>"):
                for inside in range(range_first, codepoint + 1):
                    categories[inside] = CATEGORY_INDEX[category]
                range_first = None
                continue
            categories[codepoint] = CATEGORY_INDEX[category]
    return categories


def read_property_ranges(data_dir, file_name, property_name):
    ranges = []
    with open(os.path.join(data_dir, file_name), encoding="utf-8") as data:
        for line in data:
            line = line.split("#")[0].strip()
            if not line:
                continue
            codepoints, name = [part.strip() for part in line.split(";")]
            if name != property_name:
                continue
            first, _, last = codepoints.partition("..")
            ranges.append((int(first, 16), int(last or first, 16)))
    ranges.sort()
    return ranges


def category_ranges(categories):
    """[(first code point, category)] where each entry starts a run of equal categories."""
    ranges = []
    for codepoint, category in enumerate(categories):
        if not ranges or ranges[-1][1] != category:
            ranges.append((codepoint, category))
    return ranges


def format_numbers(values, per_line, width):
    lines = []
    for start in range(0, len(values), per_line):
        lines.append("    " + " ".join(f"0x{value:0{width}X}," for value in values[start:start + per_line]))
    return "\n".join(lines)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    data_dir = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/unicode"
    output = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "include", "lamina", "text",
                                                               "unicode_tables.hpp")
    version = read_unicode_version(data_dir)
    ranges = category_ranges(read_general_categories(data_dir))
    whitespace = read_property_ranges(data_dir, "PropList.txt", "White_Space")

    packed = [(first << CATEGORY_BITS) | category for first, category in ranges]
    enum_lines = "\n".join(f"  {(long_name + ',').ljust(23)} // {abbreviation}" for abbreviation, long_name in CATEGORIES)
    whitespace_lines = "\n".join(f"    {{0x{first:04X}, 0x{last:04X}}}," for first, last in whitespace)

    text = f"""// lamina/text/unicode_tables.hpp — GENERATED, do not edit.
//
// Generated by tools/gen_unicode_tables.py from Debian's unicode-data package
// (Unicode {version}: UnicodeData.txt for General_Category, PropList.txt for White_Space).
// To regenerate: /usr/bin/python3 tools/gen_unicode_tables.py
// Use it through lamina/text/unicode.hpp.
#pragma once

#include <cstdint>

namespace lamina {{
namespace unicode {{

// Unicode General_Category values (UAX #44), numbered so that each major class is one block.
enum class GeneralCategory : std::uint8_t {{
{enum_lines}
}};

}}  // namespace unicode

namespace detail {{
namespace unicode_tables {{

inline constexpr const char* unicode_version = "{version}";
inline constexpr int category_bits = {CATEGORY_BITS};

// {len(packed)} ranges, sorted: entry = (first code point << category_bits) | GeneralCategory.
// A range runs up to the next entry's first code point; the first entry starts at U+0000.
inline constexpr std::uint32_t general_category_ranges[] = {{
{format_numbers(packed, 6, 8)}
}};

// White_Space property (what \\s means in the pre-tokenizer regexes): inclusive ranges.
struct CodepointRange {{
  std::uint32_t first;
  std::uint32_t last;
}};
inline constexpr CodepointRange white_space_ranges[] = {{
{whitespace_lines}
}};

}}  // namespace unicode_tables
}}  // namespace detail
}}  // namespace lamina
"""
    with open(output, "w", encoding="utf-8") as out:
        out.write(text)
    print(f"wrote {output}: {len(packed)} category ranges, {len(whitespace)} White_Space ranges (Unicode {version})")


if __name__ == "__main__":
    main()
