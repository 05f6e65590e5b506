// lamina/text/pre_tokenizer.hpp — byte-level BPE's pre-tokenizers: how a text is split into words.
//
// A pre-tokenizer is a list of split steps (SplitStep), each one of the two hand-written matchers
// below (GPT-2's and Llama 3's patterns) or a SplitRegex; every step splits the pieces of the one
// before it. find_pre_tokenizer_recipe() says which steps, and which of llama.cpp's per-model
// settings, a GGUF tokenizer.ggml.pre value stands for. Internals of text/tokenizer.hpp
// (lamina::detail::text).
#pragma once

#include "../config.hpp"
#include "character_class.hpp"
#include "split_regex.hpp"

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace detail {
namespace text {

// The two hand-written pre-tokenizers (llama.cpp's unicode_regex_split_custom_gpt2 / _llama3):
// both split the code points [begin, end), calling piece(piece_begin, piece_end) for each piece,
// and return where the pieces given out end. With more_text, [begin, end) is only the part of
// the text decoded so far: a piece whose end depends on what follows is not given out (as
// SplitRegex::split does).

// What a matcher reads around `position`: a code point and its classes, or "nothing" past the
// end. Reading past the end while more text follows marks the piece as undecided.
struct MatcherInput {
  const DecodedText& text;
  std::size_t end;
  bool more_text;
  bool undecided = false;

  static constexpr char32_t outside = 0xFFFFFFFF;
  bool has(std::size_t at) {
    if (at < end) return true;
    if (more_text) undecided = true;
    return false;
  }
  char32_t code(std::size_t at) { return has(at) ? text.codepoints[at] : outside; }
  std::uint8_t classes(std::size_t at) { return has(at) ? text.classes[at] : 0; }
  bool is_other(std::size_t at) {  // [^\s\p{L}\p{N}]
    return has(at) && (text.classes[at] & (class_whitespace | class_letter | class_number)) == 0;
  }
};

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// The end of the piece that starts at `position` (< end).
inline std::size_t gpt2_piece_end(MatcherInput& in, std::size_t position) {
  const char32_t c = in.code(position);
  if (c == '\'' && in.has(position + 1)) {  // contractions
    const char32_t next = in.code(position + 1);
    if (next == 's' || next == 't' || next == 'm' || next == 'd') return position + 2;
    if (in.has(position + 2)) {
      const char32_t after = in.code(position + 2);
      if ((next == 'r' && after == 'e') || (next == 'v' && after == 'e') || (next == 'l' && after == 'l')) return position + 3;
    }
  }
  // An optional space, then a run of letters, of numbers, or of other characters.
  const std::size_t first = position + (c == ' ' ? 1 : 0);
  const std::uint8_t first_classes = in.classes(first);
  if (first_classes & class_letter) {
    std::size_t stop = first;
    while (in.classes(stop) & class_letter) ++stop;
    return stop;
  }
  if (first_classes & class_number) {
    std::size_t stop = first;
    while (in.classes(stop) & class_number) ++stop;
    return stop;
  }
  if (in.is_other(first)) {
    std::size_t stop = first;
    while (in.is_other(stop)) ++stop;
    return stop;
  }
  std::size_t whitespace = 0;
  while (in.classes(position + whitespace) & class_whitespace) ++whitespace;
  if (whitespace > 1 && position + whitespace < in.end) return position + whitespace - 1;  // \s+(?!\S): leave the last space to the next word
  if (whitespace > 0) return position + whitespace;
  return position + 1;
}

// Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
inline std::size_t llama3_piece_end(MatcherInput& in, std::size_t position) {
  // Only ASCII letters can lower-case to s, t, r, e, v, m, l, d.
  const auto lower = [](char32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; };
  const char32_t c = in.code(position);
  const std::uint8_t c_classes = in.classes(position);
  if (c == '\'' && in.has(position + 1)) {
    const char32_t next = lower(in.code(position + 1));
    if (next == 's' || next == 't' || next == 'm' || next == 'd') return position + 2;
    if (in.has(position + 2)) {
      const char32_t after = lower(in.code(position + 2));
      if ((next == 'r' && after == 'e') || (next == 'v' && after == 'e') || (next == 'l' && after == 'l')) return position + 3;
    }
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (!(c == '\r' || c == '\n' || (c_classes & class_number))) {
    if ((c_classes & class_letter) || (in.classes(position + 1) & class_letter)) {
      std::size_t stop = position + 1;
      while (in.classes(stop) & class_letter) ++stop;
      return stop;
    }
  }
  // \p{N}{1,3}
  if (c_classes & class_number) {
    std::size_t stop = position;
    while (stop - position < 3 && (in.classes(stop) & class_number)) ++stop;
    return stop;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  const std::size_t first = position + (c == ' ' ? 1 : 0);
  if (in.is_other(first) || (c == ' ' && first >= in.end && !in.more_text)) {
    std::size_t stop = first;
    while (in.is_other(stop)) ++stop;
    while (in.code(stop) == '\r' || in.code(stop) == '\n') ++stop;
    return stop;
  }
  std::size_t whitespace = 0;
  std::size_t after_last_newline = 0;
  while (in.classes(position + whitespace) & class_whitespace) {
    const char32_t w = in.code(position + whitespace);
    if (w == '\r' || w == '\n') after_last_newline = position + whitespace + 1;
    ++whitespace;
  }
  if (after_last_newline > 0) return after_last_newline;  // \s*[\r\n]+
  if (whitespace > 1 && position + whitespace < in.end) return position + whitespace - 1;  // \s+(?!\S)
  if (whitespace > 0) return position + whitespace;
  return position + 1;
}

template <class PieceEnd, class Piece>
std::size_t split_with(PieceEnd&& piece_end_at, const DecodedText& text, std::size_t begin, std::size_t end, bool more_text,
                       Piece&& piece) {
  MatcherInput in{text, end, more_text};
  std::size_t position = begin;
  while (position < end) {
    const std::size_t piece_end = piece_end_at(in, position);
    if (in.undecided) return position;
    piece(position, piece_end);
    position = piece_end;
  }
  return end;
}

template <class Piece>
std::size_t split_gpt2(const DecodedText& text, std::size_t begin, std::size_t end, bool more_text, Piece&& piece) {
  return split_with(gpt2_piece_end, text, begin, end, more_text, piece);
}

template <class Piece>
std::size_t split_llama3(const DecodedText& text, std::size_t begin, std::size_t end, bool more_text, Piece&& piece) {
  return split_with(llama3_piece_end, text, begin, end, more_text, piece);
}

// One pass of a pre-tokenizer: each pass splits every piece of the previous one further.
struct SplitStep {
  enum class Kind : std::uint8_t { gpt2, llama3, regex };
  Kind kind = Kind::regex;
  SplitRegex regex;
};

// What llama.cpp does for one tokenizer.ggml.pre value.
struct PreTokenizerRecipe {
  std::vector<const char*> patterns;  // "gpt2" / "llama3" name the hand-written matchers
  bool ignore_merges = false;         // a word that is a whole token is not merged (Llama 3)
  bool clean_spaces = true;           // llama.cpp's clean_up_tokenization_spaces default
  bool add_bos = false;               // llama.cpp turns BOS on for some (absent tokenizer.ggml.add_bos_token)
  bool no_bos_token = false;          // chatglm: llama.cpp forgets the default BOS id
};

// Names of the two hand-written matchers in PreTokenizerRecipe::patterns; Tokenizer::create()
// (tokenizer.hpp) recognizes them by address, so no regex text can be mistaken for them. They
// are arrays, inline variables: one object, at one address, in the whole program. (A pointer to
// a string literal would not do: each file may hold its own copy of the literal, and the
// create() that compares may come from another file than the recipe it compares.)
inline constexpr char gpt2_pattern[] = "gpt2";
inline constexpr char llama3_pattern[] = "llama3";

// Returns false for a pre-tokenizer lamina does not know.
inline bool find_pre_tokenizer_recipe(const std::string& pre, PreTokenizerRecipe& recipe) {
  const auto is_one_of = [&](std::initializer_list<const char*> names) {
    for (const char* name : names) {
      if (pre == name) return true;
    }
    return false;
  };
  recipe = PreTokenizerRecipe{};
  if (pre.empty() || pre == "default") {
    recipe.patterns = {"[\\p{P}\\$\\+<=>\\^~\\|]+", gpt2_pattern, "\\p{N}+", "[0-9][0-9][0-9]"};
  } else if (is_one_of({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"})) {
    recipe.patterns = {llama3_pattern};
    recipe.ignore_merges = true;
    recipe.add_bos = true;
  } else if (is_one_of({"dbrx", "smaug-bpe"})) {
    recipe.patterns = {llama3_pattern};
  } else if (is_one_of({"chatglm-bpe", "glm4"})) {
    recipe.patterns = {llama3_pattern};
    recipe.no_bos_token = true;
  } else if (pre == "deepseek-llm") {
    recipe.patterns = {
        "[\r\n]",
        "\\s?[A-Za-z\\u00B5\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u01BA\\u01BC-\\u01BF"
        "\\u01C4-\\u0293\\u0295-\\u02AF\\u0370-\\u0373\\u0376\\u0377\\u037B-\\u037D\\u037F\\u0386"
        "\\u0388-\\u038A\\u038C\\u038E-\\u03A1\\u03A3-\\u03F5\\u03F7-\\u0481\\u048A-\\u052F"
        "\\u0531-\\u0556\\u10A0-\\u10C5\\u13A0-\\u13F5\\u13F8-\\u13FD\\u1C90-\\u1CBA\\u1CBD-\\u1CBF"
        "\\u1D00-\\u1D2B\\u1D6B-\\u1D77\\u1D79-\\u1D9A\\u1E00-\\u1F15\\u1F18-\\u1F1D\\u1F20-\\u1F45"
        "\\u1F48-\\u1F4D\\u1F50-\\u1F57\\u1F59\\u1F5B\\u1F5D\\u1F5F-\\u1F7D\\u1F80-\\u1FB4"
        "\\u1FB6-\\u1FBC\\u1FBE\\u1FC2-\\u1FC4\\u1FC6-\\u1FCC\\u1FD0-\\u1FD3\\u1FD6-\\u1FDB"
        "\\u1FE0-\\u1FEC\\u1FF2-\\u1FF4\\u1FF6-\\u1FFC\\u2102\\u2107\\u210A-\\u2113\\u2115"
        "\\u2119-\\u211D\\u2124\\u2126\\u2128\\u212A-\\u212D\\u212F-\\u2134\\u2139\\u213C-\\u213F"
        "\\u2145-\\u2149\\u214E\\u2183\\u2184\\u2C00-\\u2C7B\\u2C7E-\\u2CE4\\u2CEB-\\u2CEE\\u2CF2"
        "\\u2CF3\\uA640-\\uA66D\\uA680-\\uA69B\\uA722-\\uA76F\\uA771-\\uA787\\uA78B-\\uA78E"
        "\\uAB70-\\uABBF\\uFB00-\\uFB06\\uFB13-\\uFB17\\uFF21-\\uFF3A\\uFF41-\\uFF5A"
        "\\u{10400}-\\u{1044F}\\u{104B0}-\\u{104D3}\\u{104D8}-\\u{104FB}\\u{10C80}-\\u{10CB2}"
        "\\u{10CC0}-\\u{10CF2}\\u{118A0}-\\u{118DF}\\u{1E900}-\\u{1E943}]+",
        "\\s?[!-/:-~\\uFF01-\\uFF0F\\uFF1A-\\uFF5E\\u2018-\\u201F\\u3000-\\u3002]+",
        "\\s+$",
        "[\\u4E00-\\u9FA5\\u0800-\\u4E00\\uAC00-\\uD7FF]+",
        "\\p{N}+",
    };
    recipe.clean_spaces = false;
  } else if (pre == "deepseek-coder") {
    recipe.patterns = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\\u4E00-\\u9FA5\\u0800-\\u4E00\\uAC00-\\uD7FF]+", "\\p{N}"};
    recipe.clean_spaces = false;
  } else if (pre == "falcon") {
    recipe.patterns = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", gpt2_pattern, "[0-9][0-9][0-9]"};
  } else if (is_one_of({"starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"})) {
    recipe.patterns = {"\\p{N}", gpt2_pattern};
  } else if (is_one_of({"command-r", "smollm"})) {
    recipe.patterns = {"\\p{N}", gpt2_pattern};
    recipe.clean_spaces = false;
  } else if (is_one_of({"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
                        "modern-bert", "mpt", "olmo", "jais", "exaone4", "jina-v1-en", "jina-v2-code", "roberta-bpe"})) {
    recipe.patterns = {gpt2_pattern};
  } else if (is_one_of({"trillion", "granite-docling"})) {
    recipe.patterns = {gpt2_pattern};
    recipe.clean_spaces = false;
  } else if (is_one_of({"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open"})) {
    recipe.patterns = {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
    recipe.clean_spaces = false;
  } else if (is_one_of({"stablelm2", "megrez"})) {
    recipe.patterns = {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  } else if (is_one_of({"poro-chat", "bloom", "gpt3-finnish"})) {
    recipe.patterns = {" ?[^(\\s|.,!?\\u2026\\u3002\\uFF0C\\u3001\\u0964\\u06D4\\u060C)]+"};
    recipe.clean_spaces = pre != "poro-chat";
  } else if (pre == "viking") {
    recipe.patterns = {" ?[^(\\s|.,!?\\u2026\\u3002\\uFF0C\\u3001\\u0964\\u06D4\\u060C)]+", "\\p{N}"};
    recipe.clean_spaces = false;
  } else {
    return false;
  }
  return true;
}

}  // namespace text
}  // namespace detail
LAMINA_NAMESPACE_END
