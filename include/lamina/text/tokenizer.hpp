// lamina/text/tokenizer.hpp — text <-> token ids, exactly as llama.cpp (and Hugging Face) do it.
//
//   lamina::Result<lamina::Tokenizer> tokenizer = lamina::Tokenizer::from_gguf(file);
//   lamina::Result<std::vector<lamina::Token>> ids = tokenizer->encode("Hello world");  // BOS as the model says
//   std::string text = tokenizer->decode(*ids);
//   std::string_view piece = tokenizer->piece(id);   // one token's bytes, no allocation (for streaming)
//
// Two tokenizer families, chosen by the GGUF key tokenizer.ggml.model:
//   "llama"  SentencePiece-style (Llama 1/2, Mistral, Phi-3 ...): spaces become U+2581 "▁", a "▁" is
//            put in front of the text, then adjacent pieces are merged greedily by best vocabulary
//            score; a piece that is no token falls back to its bytes (<0x41> tokens).
//   "gpt2"   byte-level BPE (GPT-2, Llama 3, Qwen2, Falcon, StarCoder ...): a pre-tokenizer splits the
//            text into words with the regexes of the model (tokenizer.ggml.pre), every byte of a
//            word becomes one printable character (GPT-2's byte->unicode table), and the merges
//            (tokenizer.ggml.merges, "a b" per line, best first) are applied by rank.
// Special tokens are cut out of the text first, longest first. By default text is plain, as a
// user typed it: only user-defined tokens are cut out, and "</s>" or "<|im_end|>" in it become
// the tokens of those characters, never a control token (so a chat message cannot end a turn or
// open a system message). EncodeOptions::parse_special also cuts out control tokens: only for
// prompts built from trusted templates. (llama.cpp's common_tokenize and SentencePiece do the same.)
//
// Encoding takes time linear in the text and allocates the returned ids and a scratch whose size
// depends on the longest word, not on the text's length (TokenizerScratch lets a caller reuse
// one); all tables (token and merge hash maps, the decoded piece of every token) are built once
// by create(). Nothing here throws; invalid UTF-8 input is reported with its byte offset.
#pragma once

#include "../config.hpp"
#include "../core/result.hpp"
#include "../io/gguf.hpp"
#include "token.hpp"
#include "unicode.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : std::int32_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,       // <s>, </s>, <|im_end|>: never produced from text unless EncodeOptions::parse_special
  user_defined = 4,  // added tokens: always cut out of the text first, printed as they are
  unused = 5,
  byte = 6,          // SentencePiece byte fallback: "<0x0A>"
};

// Everything a tokenizer is built from: the tokenizer.ggml.* keys of a GGUF file, already resolved
// (read_vocabulary() applies llama.cpp's defaults for absent keys). Build one by hand to make a
// tokenizer without a file.
struct VocabularyData {
  std::string model;  // tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)
  std::string pre;    // tokenizer.ggml.pre: the pre-tokenizer of a "gpt2" model ("" = llama.cpp's "default")
  std::vector<std::string> tokens;      // [vocab_size] token texts, index = id
  std::vector<float> scores;            // [vocab_size] or empty (all 0); SentencePiece merges by best score
  std::vector<TokenType> token_types;   // [vocab_size] or empty (all normal)
  std::vector<std::string> merges;      // BPE merges "left right", best (rank 0) first
  Token bos = -1, eos = -1, unknown = -1, padding = -1, separator = -1;
  Token end_of_turn = -1;     // tokenizer.ggml.eot_token_id; when -1, found by text (<|eot_id|>, <|im_end|> ...)
  Token end_of_message = -1;  // tokenizer.ggml.eom_token_id (<|eom_id|>)
  bool add_bos = false;           // encode() puts BOS first by default
  bool add_eos = false;           // encode() puts EOS last by default
  bool add_space_prefix = true;   // SentencePiece: "Hello" is tokenized as " Hello" (only for model "llama")
  std::string model_name;         // general.name: llama.cpp keys a few per-model quirks on it (Phi-3)
};

// Options of Tokenizer::encode. add_bos / add_eos: -1 as the vocabulary says, 0 never, 1 always.
struct EncodeOptions {
  int add_bos = -1;
  int add_eos = -1;
  // false: the text is plain (what a user typed): "<|im_end|>" in it is those characters.
  // true: control tokens ("<s>", "<|im_end|>") are cut out of the text and become their ids; only
  // for prompts built from trusted templates. User-defined tokens are cut out either way.
  bool parse_special = false;
};

// Options of Tokenizer::decode (llama.cpp's llama_detokenize flags).
struct DecodeOptions {
  bool render_special = false;   // print control/unknown tokens as their text instead of nothing
  bool remove_special = false;   // drop a leading BOS and a trailing EOS when the vocabulary adds them
  bool clean_up_spaces = false;  // " ," -> ",", " 's" -> "'s" ... (Hugging Face's clean_up_tokenization_spaces;
                                 // llama.cpp applies it for most BPE vocabularies, see Tokenizer::cleans_up_spaces)
};

class Tokenizer;

// Reads the tokenizer.ggml.* keys (and general.name) of a GGUF file, with llama.cpp's defaults
// for absent keys. Errors name the file and the key.
Result<VocabularyData> read_vocabulary(const gguf::File& file);

// Splits the contents of a llama.cpp tokenizer test file (ggml-vocab-*.gguf.inp) into its texts:
// cases are separated by "\n__ggml_vocab_test__\n" and the file ends with a separator
// (read exactly as llama.cpp's test-tokenizer-0 does).
std::vector<std::string> split_tokenizer_test_cases(std::string_view file_contents);

// Internals: lamina::detail::text (the tokenizer's own corner of detail).
namespace detail {
namespace text {

// ---------------------------------------------------------------------------------------------
// Hash tables. Both store small integers only, so a Tokenizer can be copied and moved freely.

inline std::uint64_t hash_text(std::string_view text) noexcept {
  std::uint64_t hash = 0x9E3779B97F4A7C15ull ^ (text.size() * 0xD6E8FEB86659FD93ull);
  std::size_t offset = 0;
  for (; offset + 8 <= text.size(); offset += 8) {
    std::uint64_t chunk;
    std::memcpy(&chunk, text.data() + offset, 8);
    hash = (hash ^ chunk) * 0xFF51AFD7ED558CCDull;
    hash ^= hash >> 32;
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, text.data() + offset, text.size() - offset);
  hash = (hash ^ tail) * 0xC4CEB9FE1A85EC53ull;
  hash ^= hash >> 29;
  return hash;
}

// Texts with dense ids 0, 1, 2 ... and an open-addressing index text -> id.
// The tokenizer keeps its tokens here (ids = token ids) followed by texts that only occur in
// merges (intermediate BPE pieces that are not tokens themselves).
class TextTable {
 public:
  std::int32_t find(std::string_view text) const noexcept {
    if (slots_.empty()) return -1;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t slot = hash_text(text) & mask;; slot = (slot + 1) & mask) {
      const std::int32_t id = slots_[slot];
      if (id < 0) return -1;
      if (texts_[static_cast<std::size_t>(id)] == text) return id;
    }
  }
  // Returns the id of `text`, adding it with the next id when absent.
  std::int32_t add(std::string text) {
    const std::int32_t existing = find(text);
    if (existing >= 0) return existing;
    if ((texts_.size() + 1) * 2 > slots_.size()) rehash(slots_.empty() ? 64 : slots_.size() * 2);
    const auto id = static_cast<std::int32_t>(texts_.size());
    texts_.push_back(std::move(text));
    place(id);
    return id;
  }
  void reserve(std::size_t count) {
    texts_.reserve(count);
    std::size_t capacity = 64;
    while (capacity < count * 2) capacity *= 2;
    if (capacity > slots_.size()) rehash(capacity);
  }
  const std::string& text(std::int32_t id) const { return texts_[static_cast<std::size_t>(id)]; }
  std::size_t size() const noexcept { return texts_.size(); }

 private:
  void place(std::int32_t id) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t slot = hash_text(texts_[static_cast<std::size_t>(id)]) & mask;
    while (slots_[slot] >= 0) slot = (slot + 1) & mask;
    slots_[slot] = id;
  }
  void rehash(std::size_t capacity) {
    slots_.assign(capacity, -1);
    for (std::size_t id = 0; id < texts_.size(); ++id) place(static_cast<std::int32_t>(id));
  }
  std::vector<std::string> texts_;
  std::vector<std::int32_t> slots_;  // power-of-two size, at most half full; -1 = empty
};

// BPE merge ranks: (left piece id, right piece id) -> (rank, id of the merged piece).
class MergeTable {
 public:
  struct Merge {
    std::int32_t rank = -1;
    std::int32_t result = -1;
  };
  // Keeps the first (best) rank of a pair listed twice, as llama.cpp does.
  void add(std::int32_t left, std::int32_t right, Merge merge) {
    if ((count_ + 1) * 2 > entries_.size()) rehash(entries_.empty() ? 1024 : entries_.size() * 2);
    if (insert(key_of(left, right), merge)) ++count_;
  }
  Merge find(std::int32_t left, std::int32_t right) const noexcept {
    if (entries_.empty()) return {};
    const std::uint64_t key = key_of(left, right);
    const std::size_t mask = entries_.size() - 1;
    for (std::size_t slot = mix(key) & mask;; slot = (slot + 1) & mask) {
      if (entries_[slot].key == key) return entries_[slot].merge;
      if (entries_[slot].key == empty_key) return {};
    }
  }
  std::size_t size() const noexcept { return count_; }

 private:
  struct Entry {
    std::uint64_t key = ~std::uint64_t{0};
    Merge merge;
  };
  static constexpr std::uint64_t empty_key = ~std::uint64_t{0};
  static std::uint64_t key_of(std::int32_t left, std::int32_t right) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }
  static std::uint64_t mix(std::uint64_t key) noexcept {
    key ^= key >> 33;
    key *= 0xFF51AFD7ED558CCDull;
    key ^= key >> 33;
    return key;
  }
  bool insert(std::uint64_t key, Merge merge) {
    const std::size_t mask = entries_.size() - 1;
    for (std::size_t slot = mix(key) & mask;; slot = (slot + 1) & mask) {
      if (entries_[slot].key == key) return false;
      if (entries_[slot].key == empty_key) {
        entries_[slot].key = key;
        entries_[slot].merge = merge;
        return true;
      }
    }
  }
  void rehash(std::size_t capacity) {
    std::vector<Entry> old(capacity);
    old.swap(entries_);
    for (const Entry& entry : old) {
      if (entry.key != empty_key) insert(entry.key, entry.merge);
    }
  }
  std::vector<Entry> entries_;
  std::size_t count_ = 0;
};

// A byte trie over the special tokens' texts: which of them start at a given byte of a text.
// Built once; the children of a node lie next to each other, sorted by byte, so a step down is
// a binary search (an all-user-defined vocabulary puts tens of thousands of texts here, and a
// node such as "t" has a hundred children).
class SpecialTokenTrie {
 public:
  // Text i gets the value i. Empty texts are left out (they would occur everywhere).
  void build(const std::vector<std::string_view>& texts) {
    nodes_.assign(1, Node{});
    root_children_.fill(-1);
    std::vector<std::int32_t> order;  // the non-empty texts, sorted: a prefix comes before its extensions
    for (std::size_t i = 0; i < texts.size(); ++i) {
      if (!texts[i].empty()) order.push_back(static_cast<std::int32_t>(i));
    }
    std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
      return texts[static_cast<std::size_t>(a)] < texts[static_cast<std::size_t>(b)];
    });
    const auto byte_at = [&](std::size_t sorted, std::size_t depth) {
      return static_cast<unsigned char>(texts[static_cast<std::size_t>(order[sorted])][depth]);
    };
    // Depth first with an explicit stack (a vocabulary may hold a very long text). A node stands
    // for the texts order[first, last), which share its `depth` first bytes.
    struct Pending {
      std::int32_t node;
      std::size_t first, last, depth;
    };
    std::vector<Pending> pending{{0, 0, order.size(), 0}};
    while (!pending.empty()) {
      const Pending current = pending.back();
      pending.pop_back();
      std::size_t first = current.first;
      if (first < current.last && texts[static_cast<std::size_t>(order[first])].size() == current.depth) {
        nodes_[static_cast<std::size_t>(current.node)].value = order[first++];
      }
      const auto first_child = static_cast<std::int32_t>(nodes_.size());
      while (first < current.last) {
        const unsigned char byte = byte_at(first, current.depth);
        std::size_t group_end = first + 1;
        while (group_end < current.last && byte_at(group_end, current.depth) == byte) ++group_end;
        Node child;
        child.byte = byte;
        pending.push_back({static_cast<std::int32_t>(nodes_.size()), first, group_end, current.depth + 1});
        nodes_.push_back(child);
        first = group_end;
      }
      Node& node = nodes_[static_cast<std::size_t>(current.node)];
      node.first_child = first_child;
      node.child_count = static_cast<std::uint16_t>(nodes_.size() - static_cast<std::size_t>(first_child));
    }
    const Node& root = nodes_[0];
    for (std::int32_t child = root.first_child; child < root.first_child + root.child_count; ++child) {
      root_children_[nodes_[static_cast<std::size_t>(child)].byte] = child;
    }
  }

  // Calls found(value, length) for each text that starts at text[start], shortest first.
  // Returns the bytes it looked at.
  template <class Found>
  std::size_t for_each_at(std::string_view text, std::size_t start, Found&& found) const {
    std::int32_t node = root_children_[static_cast<unsigned char>(text[start])];
    std::size_t position = start + 1;
    std::size_t looked_at = 1;
    while (node >= 0) {
      const Node& current = nodes_[static_cast<std::size_t>(node)];
      if (current.value >= 0) found(current.value, position - start);
      if (position >= text.size() || current.child_count == 0) break;
      node = find_child(current, static_cast<unsigned char>(text[position++]));
      ++looked_at;
    }
    return looked_at;
  }

 private:
  struct Node {
    std::int32_t first_child = 0;   // children: nodes_[first_child, first_child + child_count), by byte
    std::uint16_t child_count = 0;  // up to 256
    unsigned char byte = 0;         // the byte leading here from the parent
    std::int32_t value = -1;        // the text ending here, or -1
  };
  std::int32_t find_child(const Node& parent, unsigned char byte) const noexcept {
    std::int32_t low = parent.first_child, high = parent.first_child + parent.child_count;
    while (low < high) {
      const std::int32_t middle = low + (high - low) / 2;
      if (nodes_[static_cast<std::size_t>(middle)].byte < byte) low = middle + 1;
      else high = middle;
    }
    return low < parent.first_child + parent.child_count && nodes_[static_cast<std::size_t>(low)].byte == byte ? low : -1;
  }
  std::vector<Node> nodes_;
  std::array<std::int32_t, 256> root_children_ = filled_root();
  static std::array<std::int32_t, 256> filled_root() {
    std::array<std::int32_t, 256> children{};
    children.fill(-1);
    return children;
  }
};

// ---------------------------------------------------------------------------------------------
// GPT-2's byte-level alphabet: every byte maps to one printable code point, so that BPE pieces
// are printable strings. Printable Latin-1 bytes map to themselves; the other 68 bytes (controls,
// space, DEL, NBSP, soft hyphen) map to U+0100, U+0101 ... in byte order. " " becomes "Ġ" (U+0120).

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

// ---------------------------------------------------------------------------------------------
// Character classes the pre-tokenizers test, one byte per code point, computed once per text.
// Non-ASCII code points use their General_Category; ASCII uses llama.cpp's fixed lists, which
// agree with Unicode except that '~' is not in \p{S} (llama.cpp's regex rewriting omits it).

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

// ---------------------------------------------------------------------------------------------
// A small backtracking regex engine with ECMAScript semantics (what llama.cpp runs through
// std::regex), for the pre-tokenizer patterns that have no hand-written matcher.
//
// Supported: alternation, (?:...) and (...) groups (nothing is captured), (?=...) and (?!...),
// ^ and $ (text start/end), quantifiers * + ? {n} {n,} {n,m} (greedy or lazy), classes with
// ranges and negation, \s \S \d \D \w \W \r \n \t \f \v \xHH \uHHHH \u{HHHHH}, escaped punctuation,
// and \p{L} \p{N} \p{P} \p{S} \p{M} (\p{Lu} etc. mean \p{L}, as in llama.cpp). lamina writes its
// patterns' non-ASCII characters as \u escapes, so the source stays ASCII (and no editor can
// normalize them into other code points).
//
// Matching follows llama.cpp exactly, including how it feeds std::regex: a pattern that uses a
// \p{...} class sees every non-ASCII code point only through its class (it cannot match a
// non-ASCII literal), and a non-ASCII White_Space character is seen as '\v' by every pattern.
// Failed (instruction, position) states are remembered, so a split takes time linear in the
// text (times the pattern size) even where plain backtracking would be quadratic ("\s+$").

struct CharacterSet {
  std::vector<std::pair<char32_t, char32_t>> ranges;  // sorted, inclusive, on the code seen (see above)
  std::uint8_t classes = 0;          // matches a code point having any of these classes
  std::uint8_t negated_classes = 0;  // matches a code point lacking any of these classes (\S, \D, \W)
  bool negated = false;              // [^...]

  bool matches(char32_t code, std::uint8_t code_classes) const noexcept {
    bool hit = (code_classes & classes) != 0 || (~code_classes & negated_classes) != 0;
    if (!hit && !ranges.empty()) {
      // Last range starting at or before `code`.
      auto after = std::upper_bound(ranges.begin(), ranges.end(), code,
                                    [](char32_t value, const std::pair<char32_t, char32_t>& range) { return value < range.first; });
      hit = after != ranges.begin() && code <= (after - 1)->second;
    }
    return hit != negated;
  }
  void normalize() {
    std::sort(ranges.begin(), ranges.end());
    std::vector<std::pair<char32_t, char32_t>> merged;
    for (const auto& range : ranges) {
      if (!merged.empty() && range.first <= merged.back().second + 1) {
        merged.back().second = std::max(merged.back().second, range.second);
      } else {
        merged.push_back(range);
      }
    }
    ranges.swap(merged);
  }
};

class SplitRegex {
 public:
  // Compiles `pattern` (UTF-8). Errors are ErrorCode::unsupported and quote the pattern.
  static Result<SplitRegex> compile(std::string_view pattern);

  // Splits the code points [begin, end) of `text` like llama.cpp's unicode_regex_split_stl: every
  // match and every stretch between matches becomes one piece; appends the piece lengths.
  struct Scratch {
    std::vector<std::uint64_t> failed;  // bit per (position, instruction): known not to reach a match
    std::vector<std::pair<std::int32_t, std::uint32_t>> stack;  // pending alternatives (instruction, position)
    std::uint64_t steps = 0;  // instructions run, for tests that check the work is linear in the text
  };
  void split(const DecodedText& text, std::size_t begin, std::size_t end, std::vector<std::uint32_t>& pieces,
             Scratch& scratch) const {
    split(text, begin, end, false, scratch, [&](std::size_t piece_begin, std::size_t piece_end) {
      pieces.push_back(static_cast<std::uint32_t>(piece_end - piece_begin));
    });
  }
  // The same, calling piece(piece_begin, piece_end) for each piece. With more_text, `end` is not
  // the end of the text being split but of the part decoded so far: the split stops before the
  // first piece that depends on what follows, and returns where the pieces given out end (with
  // more_text false it returns `end`).
  template <class Piece>
  std::size_t split(const DecodedText& text, std::size_t begin, std::size_t end, bool more_text, Scratch& scratch,
                    Piece&& piece) const;

 private:
  enum class Op : std::uint8_t { character_set, split, jump, lookahead, negative_lookahead, assert_start, assert_end, match };
  struct Instruction {
    Op op = Op::match;
    std::int32_t first = 0;   // character_set: set index; split: preferred target; jump/lookahead: target
    std::int32_t second = 0;  // split: the other target
  };
  struct Node {
    enum class Kind : std::uint8_t { empty, character_set, concat, alternation, repeat, lookahead, negative_lookahead, start, end };
    Kind kind = Kind::empty;
    std::int32_t set = -1;
    std::int32_t min = 0, max = 0;  // repeat: max -1 = unbounded
    bool greedy = true;
    std::vector<std::int32_t> children;
  };
  class Parser;
  friend class Parser;

  bool nullable(std::int32_t node) const;
  bool emit(std::int32_t node);
  static constexpr std::int64_t needs_more_text = -2;  // run(): the answer depends on text past `end`
  std::int64_t run(std::int32_t start_instruction, std::uint32_t start_position, const DecodedText& text,
                   std::size_t begin, std::size_t end, bool more_text, Scratch& scratch, bool remember_failures) const;
  char32_t code_seen(const DecodedText& text, std::size_t position) const noexcept {
    const char32_t codepoint = text.codepoints[position];
    if (codepoint < 0x80) return codepoint;
    if (text.classes[position] & class_whitespace) return 0x0B;  // llama.cpp's whitespace stand-in
    return uses_categories_ ? 0x110000 : codepoint;             // beyond every range a pattern can hold
  }

  std::vector<Node> nodes_;
  std::vector<CharacterSet> sets_;
  std::vector<Instruction> program_;
  bool uses_categories_ = false;
  std::string pattern_;
};

class SplitRegex::Parser {
 public:
  Parser(SplitRegex& regex, std::vector<char32_t> pattern) : regex_(regex), pattern_(std::move(pattern)) {}

  std::int32_t parse() {
    const std::int32_t node = parse_alternation();
    if (node >= 0 && position_ != pattern_.size()) return fail("unexpected ')'");
    return node;
  }
  const std::string& error() const { return error_; }

 private:
  std::int32_t fail(const char* message) {
    if (error_.empty()) error_ = std::string(message) + " at character " + std::to_string(position_);
    return -1;
  }
  bool failed(const char* message) {  // the same, for the functions that answer true/false
    fail(message);
    return false;
  }
  bool at_end() const { return position_ >= pattern_.size(); }
  char32_t peek(std::size_t ahead = 0) const {
    return position_ + ahead < pattern_.size() ? pattern_[position_ + ahead] : 0;
  }
  std::int32_t add_node(Node node) {
    regex_.nodes_.push_back(std::move(node));
    return static_cast<std::int32_t>(regex_.nodes_.size() - 1);
  }
  std::int32_t add_set(CharacterSet set) {
    set.normalize();
    regex_.sets_.push_back(std::move(set));
    Node node;
    node.kind = Node::Kind::character_set;
    node.set = static_cast<std::int32_t>(regex_.sets_.size() - 1);
    return add_node(std::move(node));
  }

  std::int32_t parse_alternation() {
    Node alternation;
    alternation.kind = Node::Kind::alternation;
    for (;;) {
      const std::int32_t branch = parse_concat();
      if (branch < 0) return -1;
      alternation.children.push_back(branch);
      if (peek() != '|' || at_end()) break;
      ++position_;
    }
    if (alternation.children.size() == 1) return alternation.children[0];
    return add_node(std::move(alternation));
  }

  std::int32_t parse_concat() {
    Node concat;
    concat.kind = Node::Kind::concat;
    while (!at_end() && peek() != '|' && peek() != ')') {
      const std::int32_t item = parse_repeat();
      if (item < 0) return -1;
      concat.children.push_back(item);
    }
    if (concat.children.size() == 1) return concat.children[0];
    if (concat.children.empty()) return add_node(Node{});
    return add_node(std::move(concat));
  }

  bool parse_number(std::int32_t& value) {
    if (at_end() || peek() < '0' || peek() > '9') return false;
    value = 0;
    while (!at_end() && peek() >= '0' && peek() <= '9') {
      value = value * 10 + static_cast<std::int32_t>(peek() - '0');
      if (value > 100000) return false;
      ++position_;
    }
    return true;
  }

  std::int32_t parse_repeat() {
    const std::int32_t atom = parse_atom();
    if (atom < 0) return -1;
    std::int32_t min = 0, max = 0;
    const char32_t next = peek();
    if (at_end()) return atom;
    if (next == '*') { min = 0; max = -1; ++position_; }
    else if (next == '+') { min = 1; max = -1; ++position_; }
    else if (next == '?') { min = 0; max = 1; ++position_; }
    else if (next == '{' && peek(1) >= '0' && peek(1) <= '9') {
      ++position_;
      if (!parse_number(min)) return fail("bad repeat count");
      max = min;
      if (peek() == ',') {
        ++position_;
        if (peek() == '}') max = -1;
        else if (!parse_number(max) || max < min) return fail("bad repeat count");
      }
      if (peek() != '}') return fail("missing '}'");
      ++position_;
    } else {
      return atom;
    }
    Node repeat;
    repeat.kind = Node::Kind::repeat;
    repeat.min = min;
    repeat.max = max;
    if (!at_end() && peek() == '?') {  // lazy
      repeat.greedy = false;
      ++position_;
    }
    repeat.children.push_back(atom);
    return add_node(std::move(repeat));
  }

  std::int32_t parse_atom() {
    const char32_t c = peek();
    ++position_;
    switch (c) {
      case '(': {
        Node::Kind kind = Node::Kind::concat;  // a plain group
        if (peek() == '?') {
          if (peek(1) == ':') kind = Node::Kind::concat;
          else if (peek(1) == '=') kind = Node::Kind::lookahead;
          else if (peek(1) == '!') kind = Node::Kind::negative_lookahead;
          else return fail("unsupported group (only (?: (?= (?! are)");
          position_ += 2;
        }
        const std::int32_t inner = parse_alternation();
        if (inner < 0) return -1;
        if (peek() != ')' || at_end()) return fail("missing ')'");
        ++position_;
        if (kind == Node::Kind::concat) return inner;
        Node group;
        group.kind = kind;
        group.children.push_back(inner);
        return add_node(std::move(group));
      }
      case '[': return parse_class();
      case '.': {
        CharacterSet set;
        set.negated = true;
        set.ranges = {{'\n', '\n'}, {'\r', '\r'}};
        return add_set(std::move(set));
      }
      case '^': { Node node; node.kind = Node::Kind::start; return add_node(std::move(node)); }
      case '$': { Node node; node.kind = Node::Kind::end; return add_node(std::move(node)); }
      case '\\': {
        CharacterSet set;
        if (!parse_escape(set)) return -1;
        return add_set(std::move(set));
      }
      case '*': case '+': case '?': case '{': case ')': case '|':
        return fail("misplaced metacharacter");
      default: {
        CharacterSet set;
        set.ranges.push_back({c, c});
        return add_set(std::move(set));
      }
    }
  }

  // Reads a hexadecimal number of exactly `digits` digits.
  bool parse_hex(int digits, char32_t& value) {
    value = 0;
    for (int i = 0; i < digits; ++i) {
      const char32_t d = peek();
      int nibble;
      if (d >= '0' && d <= '9') nibble = static_cast<int>(d - '0');
      else if (d >= 'a' && d <= 'f') nibble = static_cast<int>(d - 'a' + 10);
      else if (d >= 'A' && d <= 'F') nibble = static_cast<int>(d - 'A' + 10);
      else return false;
      value = value * 16 + static_cast<char32_t>(nibble);
      ++position_;
    }
    return true;
  }

  // After a backslash: adds what the escape matches to `set`. `literal` receives the character
  // when the escape is a single character (so it can start or end a range), else stays -1.
  bool parse_escape(CharacterSet& set, std::int64_t* literal = nullptr) {
    if (at_end()) return failed("pattern ends with '\\'");
    const char32_t c = peek();
    ++position_;
    char32_t single = c;
    switch (c) {
      case 's': set.classes |= class_whitespace; return true;
      case 'S': set.negated_classes |= class_whitespace; return true;
      case 'd': set.classes |= class_ascii_digit; return true;
      case 'D': set.negated_classes |= class_ascii_digit; return true;
      case 'w': set.classes |= class_ascii_word; return true;
      case 'W': set.negated_classes |= class_ascii_word; return true;
      case 'p': case 'P': {
        if (peek() != '{') return failed("expected '{' after \\p");
        std::string name;
        ++position_;
        while (!at_end() && peek() != '}' && name.size() < 16) name.push_back(static_cast<char>(peek() & 0x7F)), ++position_;
        if (peek() != '}') return failed("unterminated \\p{");
        ++position_;
        std::uint8_t bits;
        if (name == "L" || name == "Lu" || name == "Ll" || name == "Lt" || name == "Lm" || name == "Lo") bits = class_letter;
        else if (name == "N") bits = class_number;
        else if (name == "P") bits = class_punctuation;
        else if (name == "S") bits = class_symbol;
        else if (name == "M") bits = class_mark;
        else return failed("unsupported Unicode class");
        if (c == 'p') set.classes |= bits;
        else set.negated_classes |= bits;
        return true;
      }
      case 'r': single = '\r'; break;
      case 'n': single = '\n'; break;
      case 't': single = '\t'; break;
      case 'f': single = '\f'; break;
      case 'v': single = '\v'; break;
      case '0': single = 0; break;
      case 'x': if (!parse_hex(2, single)) return failed("bad \\x escape"); break;
      case 'u':  // \uHHHH, or \u{H...} for any code point
        if (peek() == '{') {
          ++position_;
          single = 0;
          int digits = 0;
          for (char32_t digit = 0; peek() != '}' && digits < 6 && parse_hex(1, digit); ++digits) single = single * 16 + digit;
          if (digits == 0 || peek() != '}' || single > unicode::max_codepoint) return failed("bad \\u{} escape");
          ++position_;
        } else if (!parse_hex(4, single)) {
          return failed("bad \\u escape");
        }
        break;
      default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
          return failed("unsupported escape");  // \b, \B, back-references ...
        }
        break;  // escaped punctuation stands for itself
    }
    set.ranges.push_back({single, single});
    if (literal != nullptr) *literal = single;
    return true;
  }

  std::int32_t parse_class() {
    CharacterSet set;
    if (peek() == '^') {
      set.negated = true;
      ++position_;
    }
    while (!at_end() && peek() != ']') {  // (ECMAScript: "[]" is an empty class)
      std::int64_t low = -1;
      if (peek() == '\\') {
        ++position_;
        if (!parse_escape(set, &low)) return -1;
      } else {
        low = peek();
        ++position_;
        set.ranges.push_back({static_cast<char32_t>(low), static_cast<char32_t>(low)});
      }
      // A range "a-b" (a '-' first, last or after a class escape is literal).
      if (low >= 0 && peek() == '-' && peek(1) != ']' && position_ + 1 < pattern_.size()) {
        ++position_;
        std::int64_t high = -1;
        if (peek() == '\\') {
          ++position_;
          CharacterSet ignored;
          if (!parse_escape(ignored, &high)) return -1;
          if (high < 0) return fail("class escape as the end of a range");
        } else {
          high = peek();
          ++position_;
        }
        if (high < low) return fail("range out of order");
        set.ranges.back().second = static_cast<char32_t>(high);
      }
    }
    if (at_end()) return fail("missing ']'");
    ++position_;  // ']'
    return add_set(std::move(set));
  }

  SplitRegex& regex_;
  std::vector<char32_t> pattern_;
  std::size_t position_ = 0;
  std::string error_;
};

inline bool SplitRegex::nullable(std::int32_t index) const {
  const Node& node = nodes_[static_cast<std::size_t>(index)];
  switch (node.kind) {
    case Node::Kind::character_set: return false;
    case Node::Kind::concat:
      for (std::int32_t child : node.children) {
        if (!nullable(child)) return false;
      }
      return true;
    case Node::Kind::alternation:
      for (std::int32_t child : node.children) {
        if (nullable(child)) return true;
      }
      return false;
    case Node::Kind::repeat: return node.min == 0 || nullable(node.children[0]);
    default: return true;  // empty, lookarounds, anchors consume nothing
  }
}

// Appends the instructions of `index` to program_; false when the program grows too large
// (a pattern like x{1,100000}).
inline bool SplitRegex::emit(std::int32_t index) {
  constexpr std::size_t max_program_size = 20000;
  if (program_.size() > max_program_size) return false;
  const Node& node = nodes_[static_cast<std::size_t>(index)];
  const auto here = [&] { return static_cast<std::int32_t>(program_.size()); };
  switch (node.kind) {
    case Node::Kind::empty: return true;
    case Node::Kind::character_set: program_.push_back({Op::character_set, node.set, 0}); return true;
    case Node::Kind::concat:
      for (std::int32_t child : node.children) {
        if (!emit(child)) return false;
      }
      return true;
    case Node::Kind::alternation: {
      // split(first branch, next split) ... ; every branch jumps to the end.
      std::vector<std::size_t> jumps_to_end;
      for (std::size_t i = 0; i + 1 < node.children.size(); ++i) {
        const std::size_t split = program_.size();
        program_.push_back({Op::split, here() + 1, 0});
        if (!emit(node.children[i])) return false;
        jumps_to_end.push_back(program_.size());
        program_.push_back({Op::jump, 0, 0});
        program_[split].second = here();
      }
      if (!emit(node.children.back())) return false;
      for (std::size_t jump : jumps_to_end) program_[jump].first = here();
      return true;
    }
    case Node::Kind::repeat: {
      const std::int32_t body = node.children[0];
      for (std::int32_t i = 0; i < node.min; ++i) {
        if (!emit(body)) return false;
      }
      if (node.max < 0) {  // loop: split(body, exit); body; jump loop
        const std::size_t loop = program_.size();
        program_.push_back({Op::split, 0, 0});
        if (!emit(body)) return false;
        program_.push_back({Op::jump, static_cast<std::int32_t>(loop), 0});
        const std::int32_t exit = here();
        program_[loop].first = node.greedy ? static_cast<std::int32_t>(loop) + 1 : exit;
        program_[loop].second = node.greedy ? exit : static_cast<std::int32_t>(loop) + 1;
        return true;
      }
      std::vector<std::size_t> optional_splits;  // each optional copy may be skipped to the end
      for (std::int32_t i = node.min; i < node.max; ++i) {
        optional_splits.push_back(program_.size());
        program_.push_back({Op::split, 0, 0});
        if (!emit(body)) return false;
      }
      const std::int32_t exit = here();
      for (std::size_t split : optional_splits) {
        program_[split].first = node.greedy ? static_cast<std::int32_t>(split) + 1 : exit;
        program_[split].second = node.greedy ? exit : static_cast<std::int32_t>(split) + 1;
      }
      return true;
    }
    case Node::Kind::lookahead:
    case Node::Kind::negative_lookahead: {
      // lookahead(body); jump over; body; match
      const std::size_t at = program_.size();
      program_.push_back({node.kind == Node::Kind::lookahead ? Op::lookahead : Op::negative_lookahead,
                          static_cast<std::int32_t>(at) + 2, 0});
      program_.push_back({Op::jump, 0, 0});
      if (!emit(node.children[0])) return false;
      program_.push_back({Op::match, 0, 0});
      program_[at + 1].first = here();
      return true;
    }
    case Node::Kind::start: program_.push_back({Op::assert_start, 0, 0}); return true;
    case Node::Kind::end: program_.push_back({Op::assert_end, 0, 0}); return true;
  }
  return false;
}

inline Result<SplitRegex> SplitRegex::compile(std::string_view pattern) {
  SplitRegex regex;
  regex.pattern_ = std::string(pattern);
  const auto failure = [&](const std::string& why) {
    return fail(ErrorCode::unsupported, "pre-tokenizer regex '" + std::string(pattern) + "': " + why);
  };
  const std::size_t bad = unicode::find_invalid_utf8(pattern);
  if (bad != std::string_view::npos) return failure("invalid UTF-8 at byte " + std::to_string(bad));
  std::vector<char32_t> codepoints;
  for (std::size_t offset = 0; offset < pattern.size();) {
    const unicode::DecodedCodepoint decoded = unicode::decode_utf8(pattern, offset);
    codepoints.push_back(decoded.codepoint);
    offset += decoded.length;
  }
  // llama.cpp runs a pattern that names a Unicode class on "collapsed" text (see code_seen).
  for (const char* name : {"\\p{N}", "\\p{L}", "\\p{P}", "\\p{M}", "\\p{S}", "\\p{Lu}", "\\p{Ll}", "\\p{Lt}", "\\p{Lm}", "\\p{Lo}"}) {
    if (pattern.find(name) != std::string_view::npos) regex.uses_categories_ = true;
  }
  if (regex.uses_categories_) {
    for (char32_t codepoint : codepoints) {
      if (codepoint >= 0x80) return failure("non-ASCII characters together with \\p{...} classes");
    }
  }
  Parser parser(regex, std::move(codepoints));
  const std::int32_t root = parser.parse();
  if (root < 0) return failure(parser.error());
  for (std::size_t i = 0; i < regex.nodes_.size(); ++i) {
    const Node& node = regex.nodes_[i];
    if (node.kind == Node::Kind::repeat && node.max < 0 && regex.nullable(node.children[0])) {
      return failure("an unbounded repetition of something that can match nothing");
    }
  }
  if (!regex.emit(root)) return failure("the pattern expands to too many instructions");
  regex.program_.push_back({Op::match, 0, 0});
  return regex;
}

// Runs the program from `start_instruction` at `start_position`; returns the end of the first
// match in ECMAScript priority order, or -1. `remember_failures` is off inside lookaheads.
// With more_text, a character test at `end` cannot be answered: the run gives up with
// needs_more_text (an end-of-text test there is answered: false).
inline std::int64_t SplitRegex::run(std::int32_t start_instruction, std::uint32_t start_position, const DecodedText& text,
                                    std::size_t begin, std::size_t end, bool more_text, Scratch& scratch,
                                    bool remember_failures) const {
  const std::size_t program_size = program_.size();
  const std::size_t base = scratch.stack.size();
  scratch.stack.push_back({start_instruction, start_position});
  while (scratch.stack.size() > base) {
    std::int32_t instruction = scratch.stack.back().first;
    std::uint32_t position = scratch.stack.back().second;
    scratch.stack.pop_back();
    for (bool alive = true; alive;) {
      ++scratch.steps;
      if (remember_failures) {
        const std::size_t bit = (position - begin) * program_size + static_cast<std::size_t>(instruction);
        std::uint64_t& word = scratch.failed[bit / 64];
        const std::uint64_t mask = std::uint64_t{1} << (bit % 64);
        if (word & mask) break;  // explored before: leads to no match
        word |= mask;
      }
      const Instruction& current = program_[static_cast<std::size_t>(instruction)];
      switch (current.op) {
        case Op::character_set:
          if (position >= end && more_text) {
            scratch.stack.resize(base);
            return needs_more_text;
          }
          if (position < end && sets_[static_cast<std::size_t>(current.first)].matches(code_seen(text, position), text.classes[position])) {
            ++instruction;
            ++position;
          } else {
            alive = false;
          }
          break;
        case Op::split:
          scratch.stack.push_back({current.second, position});
          instruction = current.first;
          break;
        case Op::jump: instruction = current.first; break;
        case Op::lookahead:
        case Op::negative_lookahead: {
          const std::int64_t found = run(current.first, position, text, begin, end, more_text, scratch, false);
          if (found == needs_more_text) {
            scratch.stack.resize(base);
            return needs_more_text;
          }
          if ((found >= 0) == (current.op == Op::lookahead)) ++instruction;
          else alive = false;
          break;
        }
        case Op::assert_start:
          if (position == begin) ++instruction;
          else alive = false;
          break;
        case Op::assert_end:
          if (position == end && !more_text) ++instruction;
          else alive = false;
          break;
        case Op::match:
          scratch.stack.resize(base);
          return position;
      }
    }
  }
  return -1;
}

template <class Piece>
std::size_t SplitRegex::split(const DecodedText& text, std::size_t begin, std::size_t end, bool more_text, Scratch& scratch,
                              Piece&& piece) const {
  const std::size_t program_size = program_.size();
  const std::size_t bits = (end - begin + 1) * program_size;
  scratch.failed.assign((bits + 63) / 64, 0);
  std::size_t unmatched_from = begin;  // start of the text not yet given to a piece
  std::size_t search = begin;
  while (search < end) {
    std::size_t match_begin = search;
    std::int64_t match_end = -1;
    for (; match_begin < end; ++match_begin) {
      match_end = run(0, static_cast<std::uint32_t>(match_begin), text, begin, end, more_text, scratch, true);
      if (match_end == needs_more_text) return unmatched_from;
      if (match_end > static_cast<std::int64_t>(match_begin)) break;  // empty matches make no piece
      match_end = -1;
    }
    if (match_end < 0) break;
    if (match_begin > unmatched_from) piece(unmatched_from, match_begin);
    piece(match_begin, static_cast<std::size_t>(match_end));
    unmatched_from = search = static_cast<std::size_t>(match_end);
    // The states of the successful path at the match end were marked but did not fail; the next
    // search starts there, so forget that column.
    for (std::size_t instruction = 0; instruction < program_size; ++instruction) {
      const std::size_t bit = (search - begin) * program_size + instruction;
      scratch.failed[bit / 64] &= ~(std::uint64_t{1} << (bit % 64));
    }
  }
  if (more_text) return unmatched_from;  // the stretch without a match may go on past `end`
  if (end > unmatched_from) piece(unmatched_from, end);
  return end;
}

// ---------------------------------------------------------------------------------------------
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

// Names of the two hand-written matchers in PreTokenizerRecipe::patterns; create() recognizes
// them by address, so no regex text can be mistaken for them.
inline constexpr const char* gpt2_pattern = "gpt2";
inline constexpr const char* llama3_pattern = "llama3";

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

// Token attributes as llama.cpp keeps them (a type plus what the loader adds).
enum TokenAttribute : std::uint8_t {
  attribute_normal = 1,
  attribute_unknown = 2,
  attribute_control = 4,
  attribute_user_defined = 8,
  attribute_unused = 16,
  attribute_byte = 32,
  attribute_strip_left = 64,   // a special token swallows the whitespace before it
  attribute_strip_right = 128, // ... and after it
};

inline std::uint8_t attributes_of(TokenType type) {
  switch (type) {
    case TokenType::normal: return attribute_normal;
    case TokenType::unknown: return attribute_unknown;
    case TokenType::control: return attribute_control;
    case TokenType::user_defined: return attribute_user_defined;
    case TokenType::unused: return attribute_unused;
    case TokenType::byte: return attribute_byte;
    case TokenType::undefined: break;
  }
  return 0;
}

// C's isspace() in the "C" locale, which llama.cpp uses to strip around special tokens.
inline bool is_c_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// A piece of the text after cutting out special tokens: either raw text or one token.
struct Fragment {
  Token token = -1;  // -1: raw text
  std::uint32_t offset = 0;
  std::uint32_t length = 0;
};

// Scratch memory of encode(). Every part is sized by one window, chunk or word of the text,
// never by the whole text (see cut_special_tokens, encode_bpe_fragment, encode_sentencepiece).
struct EncodeScratch {
  // Cutting special tokens, one window of the text at a time.
  std::vector<std::uint64_t> occurrences;  // (index in special_tokens_ << 32) | byte offset in the window
  enum : std::uint8_t { byte_text = 0, byte_cut = 1, byte_stripped = 2 };
  std::vector<std::uint8_t> window_bytes;  // [window size] what each byte became
  struct Cut {
    std::uint32_t start, length;  // bytes of the window
    Token token;
  };
  std::vector<Cut> cuts;
  // Byte-level BPE: the decoded window of a fragment; a regex scratch per split step (a step runs
  // while the one before it is half way through its own piece).
  DecodedText decoded;
  std::vector<SplitRegex::Scratch> regex;
  // Merging one word (BPE) or one chunk (SentencePiece).
  std::string word;  // byte-level encoded (BPE) or with spaces escaped (SentencePiece)
  struct Symbol {
    std::int32_t previous, next;
    std::uint32_t begin, length;  // bytes of `word`
    std::int32_t id;              // BPE: id in the text table (-1: none)
  };
  std::vector<Symbol> symbols;
  struct BpeCandidate {  // merging symbol `left` with the one after it (checked against the ids when taken)
    std::int32_t rank;   // lower first
    std::int32_t left;
    std::int32_t left_id, right_id, result;
  };
  std::vector<BpeCandidate> bpe_heap;
  struct SentencePieceCandidate {  // merging symbol `left` with the one after it into `length` bytes
    float score;                   // the merged token's; higher first
    std::int32_t left;
    std::uint32_t length;
  };
  std::vector<SentencePieceCandidate> sentencepiece_heap;
  std::uint64_t work = 0;  // steps of the last encode (see TokenizerScratch::last_work)

  std::size_t capacity_bytes() const noexcept {
    std::size_t bytes = occurrences.capacity() * sizeof(std::uint64_t) + window_bytes.capacity() + cuts.capacity() * sizeof(Cut) +
                        decoded.codepoints.capacity() * sizeof(char32_t) + decoded.classes.capacity() +
                        decoded.byte_offsets.capacity() * sizeof(std::uint32_t) + regex.capacity() * sizeof(SplitRegex::Scratch) +
                        word.capacity() + symbols.capacity() * sizeof(Symbol) + bpe_heap.capacity() * sizeof(BpeCandidate) +
                        sentencepiece_heap.capacity() * sizeof(SentencePieceCandidate);
    for (const SplitRegex::Scratch& step : regex) {
      bytes += step.failed.capacity() * sizeof(std::uint64_t) + step.stack.capacity() * sizeof(step.stack[0]);
    }
    return bytes;
  }
};

// SentencePiece text is merged in chunks of about this many bytes (cut where no merge can cross).
inline constexpr std::size_t sentencepiece_chunk_bytes = 256;
// Byte-level BPE decodes a fragment this many bytes at a time to begin with.
inline constexpr std::size_t first_window_bytes = 64 * 1024;

}  // namespace text
}  // namespace detail

// Scratch memory for Tokenizer::encode_into. Passing the same one to every call makes encoding
// allocate nothing but the ids once it has grown; how large it grows depends on the text's
// longest word (or longest run that no safe place cuts), not on the text's length.
class TokenizerScratch {
 public:
  // Bytes it holds now.
  std::size_t capacity_bytes() const noexcept { return scratch_.capacity_bytes(); }
  // Steps of the last encode (bytes looked at while finding special tokens, regex instructions,
  // merge candidates ...). Tests check that it grows linearly with the text.
  std::uint64_t last_work() const noexcept { return scratch_.work; }

 private:
  friend class Tokenizer;
  detail::text::EncodeScratch scratch_;
};

class Tokenizer {
 public:
  using EncodeOptions = lamina::EncodeOptions;
  using DecodeOptions = lamina::DecodeOptions;

  // Builds every table (token and merge hash maps, special-token trie, decoded pieces).
  // Errors: an unknown tokenizer.ggml.model or .pre (ErrorCode::unsupported), inconsistent
  // arrays, duplicate tokens, ids out of range (ErrorCode::invalid_format).
  static Result<Tokenizer> create(VocabularyData vocabulary);
  // read_vocabulary() + create(); errors name the file.
  static Result<Tokenizer> from_gguf(const gguf::File& file);

  // Text -> ids. The text must be valid UTF-8 (else ErrorCode::invalid_argument with the byte
  // offset). The text is plain unless options.parse_special: see EncodeOptions. Allocates the
  // result and a scratch that depends on the longest word, not on the text's length; time is
  // linear in the text.
  Result<std::vector<Token>> encode(std::string_view text, const EncodeOptions& options = EncodeOptions()) const {
    std::vector<Token> tokens;
    LAMINA_TRY(encode_into(text, tokens, options));
    return tokens;
  }
  // Same, appending to `tokens` (which is left unchanged on error).
  Result<void> encode_into(std::string_view text, std::vector<Token>& tokens,
                           const EncodeOptions& options = EncodeOptions()) const {
    TokenizerScratch scratch;
    return encode_into(text, tokens, options, scratch);
  }
  // Same, with the caller's scratch: reused from call to call, encoding allocates nothing but
  // the growth of `tokens` once the scratch has grown.
  Result<void> encode_into(std::string_view text, std::vector<Token>& tokens, const EncodeOptions& options,
                           TokenizerScratch& scratch) const;

  // The bytes one token stands for: SentencePiece "▁" -> " ", <0x0A> -> "\n", byte-level BPE
  // characters -> their bytes, user-defined tokens as written, control and unknown tokens ""
  // unless render_special. Ids outside the vocabulary give "". A piece may be an incomplete
  // UTF-8 sequence (byte tokens): concatenate before printing. No allocation.
  std::string_view piece(Token token, bool render_special = false) const noexcept;
  std::string token_to_piece(Token token, bool render_special = false) const {
    return std::string(piece(token, render_special));
  }
  // Ids -> text, as llama.cpp's llama_detokenize: with the SentencePiece space prefix, the
  // space the encoder put before the first word is removed from the first token's piece (so
  // decode(encode(text, no BOS)) == text; after a BOS the space stays, as in llama.cpp).
  std::string decode(const Token* tokens, std::size_t count, const DecodeOptions& options = DecodeOptions()) const;
  std::string decode(const std::vector<Token>& tokens, const DecodeOptions& options = DecodeOptions()) const {
    return decode(tokens.data(), tokens.size(), options);
  }

  std::size_t vocab_size() const noexcept { return vocab_size_; }
  // Bytes of the longest piece (special tokens rendered): what one token adds to a text at most.
  std::size_t longest_piece() const noexcept { return longest_piece_; }
  Token bos() const noexcept { return bos_; }
  Token eos() const noexcept { return eos_; }
  Token end_of_turn() const noexcept { return end_of_turn_; }
  Token unknown() const noexcept { return unknown_; }
  Token padding() const noexcept { return padding_; }
  Token separator() const noexcept { return separator_; }
  Token end_of_message() const noexcept { return end_of_message_; }
  bool adds_bos() const noexcept { return add_bos_; }
  bool adds_eos() const noexcept { return add_eos_; }
  bool adds_space_prefix() const noexcept { return add_space_prefix_; }
  // EOS, EOT, EOM and every token llama.cpp treats as ending a generation (<|im_end|>, <|eot_id|> ...).
  bool is_end_of_generation(Token token) const noexcept {
    return std::binary_search(end_of_generation_.begin(), end_of_generation_.end(), token);
  }
  const std::vector<Token>& end_of_generation_tokens() const noexcept { return end_of_generation_; }
  // Control or unknown: printed only with render_special.
  bool is_control(Token token) const noexcept {
    return in_vocabulary(token) && (attributes_[static_cast<std::size_t>(token)] & (detail::text::attribute_control | detail::text::attribute_unknown)) != 0;
  }
  TokenType type(Token token) const noexcept {
    return in_vocabulary(token) ? types_[static_cast<std::size_t>(token)] : TokenType::undefined;
  }
  const std::string& text(Token token) const {
    static const std::string none;
    return in_vocabulary(token) ? texts_.text(token) : none;
  }
  float score(Token token) const noexcept { return in_vocabulary(token) ? scores_[static_cast<std::size_t>(token)] : 0.0f; }
  // The id whose text is exactly `text`, or -1.
  Token find(std::string_view text) const noexcept {
    const std::int32_t id = texts_.find(text);
    return id >= 0 && static_cast<std::size_t>(id) < vocab_size_ ? id : -1;
  }
  const std::string& model() const noexcept { return model_; }
  const std::string& pre_tokenizer() const noexcept { return pre_; }
  // What llama.cpp does by default when detokenizing (DecodeOptions::clean_up_spaces).
  bool cleans_up_spaces() const noexcept { return clean_spaces_; }

 private:
  enum class Algorithm : std::uint8_t { sentencepiece, byte_level_bpe };

  Tokenizer() = default;  // only create() makes tokenizers: an empty one could not encode
  bool in_vocabulary(Token token) const noexcept { return token >= 0 && static_cast<std::size_t>(token) < vocab_size_; }
  template <class FragmentSink>
  void cut_special_tokens(std::string_view text, bool parse_special, detail::text::EncodeScratch& scratch,
                          FragmentSink&& fragment) const;
  void encode_sentencepiece(std::string_view text, bool space_prefix, std::vector<Token>& tokens,
                            detail::text::EncodeScratch& scratch) const;
  void encode_sentencepiece_chunk(std::string_view chunk, std::vector<Token>& tokens, detail::text::EncodeScratch& scratch) const;
  void encode_bpe_fragment(std::string_view text, std::vector<Token>& tokens, detail::text::EncodeScratch& scratch) const;
  std::size_t split_and_encode(std::size_t step, std::string_view window, std::size_t begin, std::size_t end, bool more_text,
                               std::vector<Token>& tokens, detail::text::EncodeScratch& scratch) const;
  void encode_bpe_word(std::string_view word, std::vector<Token>& tokens, detail::text::EncodeScratch& scratch) const;
  // Whether the byte `second` follows the byte `first` somewhere inside a token's text.
  bool bytes_adjacent_in_a_token(unsigned char first, unsigned char second) const noexcept {
    const std::size_t pair = static_cast<std::size_t>(first) << 8 | second;
    return (byte_pairs_in_tokens_[pair / 64] >> (pair % 64)) & 1u;
  }
  std::string make_piece(Token token) const;

  Algorithm algorithm_ = Algorithm::sentencepiece;
  std::string model_;
  std::string pre_;
  std::size_t vocab_size_ = 0;
  detail::text::TextTable texts_;  // ids [0, vocab_size): the tokens; beyond: pieces that only occur in merges
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::vector<std::uint8_t> attributes_;  // detail::text::TokenAttribute bits
  detail::text::MergeTable merges_;
  std::vector<detail::text::SplitStep> split_steps_;
  bool ignore_merges_ = false;
  bool clean_spaces_ = false;
  Token bos_ = -1, eos_ = -1, end_of_turn_ = -1, end_of_message_ = -1, unknown_ = -1, padding_ = -1, separator_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
  std::vector<Token> special_tokens_;  // control, user-defined and unknown tokens, longest text first
  detail::text::SpecialTokenTrie special_trie_;  // value: index in special_tokens_
  bool specials_strip_whitespace_ = false;  // some special token has attribute_strip_left / _right
  // [65536 bits] bit (a << 8 | b): the byte b follows the byte a inside some token's text
  // (SentencePiece: no merge crosses a place where the two bytes around it have no bit).
  std::vector<std::uint64_t> byte_pairs_in_tokens_;
  std::vector<Token> end_of_generation_;   // sorted
  std::array<std::int32_t, 256> byte_piece_id_{};         // BPE: text-table id of each byte's character
  std::array<Token, 256> single_byte_token_{};            // the token whose text is that one byte
  std::array<Token, 256> byte_fallback_token_{};          // SentencePiece: <0xXX>, else the one-byte token
  std::string pieces_;                                    // every token's piece (render_special), concatenated
  std::vector<std::uint32_t> piece_offsets_;              // [vocab_size + 1] into pieces_
  std::size_t longest_piece_ = 0;                         // bytes of the longest piece
};

// ---------------------------------------------------------------------------------------------
// Implementation.

inline std::vector<std::string> split_tokenizer_test_cases(std::string_view file_contents) {
  static constexpr std::string_view separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> cases;
  std::size_t position = 0;
  while (position < file_contents.size()) {
    const std::size_t next = file_contents.find(separator, position);
    if (next == std::string_view::npos) {
      cases.emplace_back(file_contents.substr(position));
      break;
    }
    cases.emplace_back(file_contents.substr(position, next - position));
    position = next + separator.size();
  }
  return cases;
}

inline Result<Tokenizer> Tokenizer::create(VocabularyData vocabulary) {
  Tokenizer tokenizer;
  const std::size_t count = vocabulary.tokens.size();
  const auto invalid = [](const std::string& message) { return fail(ErrorCode::invalid_format, "tokenizer: " + message); };
  if (count == 0) return invalid("the vocabulary has no tokens");
  if (count > static_cast<std::size_t>(INT32_MAX / 2)) return invalid("the vocabulary is too large");
  if (!vocabulary.scores.empty() && vocabulary.scores.size() < count) {
    return invalid(std::to_string(vocabulary.scores.size()) + " scores for " + std::to_string(count) + " tokens");
  }
  if (!vocabulary.token_types.empty() && vocabulary.token_types.size() < count) {
    return invalid(std::to_string(vocabulary.token_types.size()) + " token types for " + std::to_string(count) + " tokens");
  }

  tokenizer.model_ = vocabulary.model;
  tokenizer.pre_ = vocabulary.pre;
  tokenizer.vocab_size_ = count;
  detail::text::PreTokenizerRecipe recipe;
  if (vocabulary.model == "llama") {
    tokenizer.algorithm_ = Algorithm::sentencepiece;
    tokenizer.add_space_prefix_ = vocabulary.add_space_prefix;
    tokenizer.clean_spaces_ = false;
  } else if (vocabulary.model == "gpt2") {
    tokenizer.algorithm_ = Algorithm::byte_level_bpe;
    if (!detail::text::find_pre_tokenizer_recipe(vocabulary.pre, recipe)) {
      return fail(ErrorCode::unsupported, "tokenizer: pre-tokenizer '" + vocabulary.pre +
                                              "' (tokenizer.ggml.pre) is not supported by lamina");
    }
    // Byte-level BPE keeps spaces as they are. (llama.cpp reads tokenizer.ggml.add_space_prefix
    // for BPE too, but only lets it strip a space when decoding; lamina ignores it there.)
    tokenizer.add_space_prefix_ = false;
    tokenizer.ignore_merges_ = recipe.ignore_merges;
    tokenizer.clean_spaces_ = recipe.clean_spaces;
    for (const char* pattern : recipe.patterns) {
      detail::text::SplitStep step;
      if (pattern == detail::text::gpt2_pattern) {
        step.kind = detail::text::SplitStep::Kind::gpt2;
      } else if (pattern == detail::text::llama3_pattern) {
        step.kind = detail::text::SplitStep::Kind::llama3;
      } else {
        Result<detail::text::SplitRegex> regex = detail::text::SplitRegex::compile(pattern);
        if (!regex) return regex.take_error();
        step.regex = std::move(*regex);
      }
      tokenizer.split_steps_.push_back(std::move(step));
    }
  } else {
    return fail(ErrorCode::unsupported, "tokenizer: tokenizer model '" + vocabulary.model +
                                            "' (tokenizer.ggml.model) is not supported; lamina reads 'llama' "
                                            "(SentencePiece) and 'gpt2' (byte-level BPE)");
  }

  // Tokens, with llama.cpp's name for empty ones (so that they cannot match text).
  tokenizer.texts_.reserve(count + vocabulary.merges.size());
  for (std::size_t id = 0; id < count; ++id) {
    std::string text = std::move(vocabulary.tokens[id]);
    if (text.empty()) text = "[EMPTY_" + std::to_string(id) + "]";
    const std::int32_t added = tokenizer.texts_.add(text);
    if (static_cast<std::size_t>(added) != id) {
      return invalid("duplicate token '" + text + "' (ids " + std::to_string(added) + " and " + std::to_string(id) + ")");
    }
  }
  tokenizer.scores_ = std::move(vocabulary.scores);
  tokenizer.scores_.resize(count, 0.0f);
  tokenizer.types_ = std::move(vocabulary.token_types);
  tokenizer.types_.resize(count, TokenType::normal);
  tokenizer.attributes_.resize(count);
  for (std::size_t id = 0; id < count; ++id) tokenizer.attributes_[id] = detail::text::attributes_of(tokenizer.types_[id]);

  if (tokenizer.algorithm_ == Algorithm::byte_level_bpe) {
    if (vocabulary.merges.empty()) return invalid("a 'gpt2' tokenizer needs merges (tokenizer.ggml.merges)");
    for (std::size_t rank = 0; rank < vocabulary.merges.size(); ++rank) {
      const std::string& merge = vocabulary.merges[rank];
      const std::size_t space = merge.find(' ', 1);  // llama.cpp: the first space after the first byte
      if (space == std::string::npos) continue;       // malformed: can never apply
      const std::int32_t left = tokenizer.texts_.add(merge.substr(0, space));
      const std::int32_t right = tokenizer.texts_.add(merge.substr(space + 1));
      const std::int32_t result = tokenizer.texts_.add(merge.substr(0, space) + merge.substr(space + 1));
      tokenizer.merges_.add(left, right, {static_cast<std::int32_t>(rank), result});
    }
  }

  // Special ids.
  const auto check_id = [&](Token id, const char* what) -> Result<void> {
    if (id < -1 || (id >= 0 && static_cast<std::size_t>(id) >= count)) {
      return invalid(std::string(what) + " id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(count));
    }
    return success();
  };
  LAMINA_TRY(check_id(vocabulary.bos, "BOS"));
  LAMINA_TRY(check_id(vocabulary.eos, "EOS"));
  LAMINA_TRY(check_id(vocabulary.unknown, "unknown-token"));
  LAMINA_TRY(check_id(vocabulary.padding, "padding"));
  LAMINA_TRY(check_id(vocabulary.separator, "separator"));
  LAMINA_TRY(check_id(vocabulary.end_of_turn, "end-of-turn"));
  LAMINA_TRY(check_id(vocabulary.end_of_message, "end-of-message"));
  tokenizer.bos_ = vocabulary.bos;
  tokenizer.eos_ = vocabulary.eos;
  tokenizer.unknown_ = vocabulary.unknown;
  tokenizer.padding_ = vocabulary.padding;
  tokenizer.separator_ = vocabulary.separator;
  tokenizer.end_of_turn_ = vocabulary.end_of_turn;
  tokenizer.end_of_message_ = vocabulary.end_of_message;
  tokenizer.add_bos_ = vocabulary.add_bos;
  tokenizer.add_eos_ = vocabulary.add_eos;
  if (tokenizer.add_bos_ && tokenizer.bos_ < 0) return invalid("add_bos is set, but there is no BOS token");
  if (tokenizer.add_eos_ && tokenizer.eos_ < 0) return invalid("add_eos is set, but there is no EOS token");

  // End of generation, found by text as llama.cpp does; such tokens become control tokens.
  const auto mark_control = [&](Token id) { tokenizer.attributes_[static_cast<std::size_t>(id)] |= detail::text::attribute_control; };
  if (tokenizer.end_of_turn_ < 0) {
    for (const char* text : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
                             "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C" ">", "<end_of_utterance>"}) {
      const Token id = tokenizer.find(text);
      if (id >= 0) {
        tokenizer.end_of_turn_ = id;
        break;
      }
    }
  }
  if (tokenizer.end_of_message_ < 0) tokenizer.end_of_message_ = tokenizer.find("<|eom_id|>");
  for (const char* text : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
                           "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>",
                           "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C" ">"}) {
    const Token id = tokenizer.find(text);
    if (id >= 0) tokenizer.end_of_generation_.push_back(id);
  }
  for (Token id : {tokenizer.end_of_turn_, tokenizer.end_of_message_}) {
    if (id >= 0) tokenizer.end_of_generation_.push_back(id);
  }
  for (Token id : tokenizer.end_of_generation_) mark_control(id);
  if (tokenizer.eos_ >= 0) tokenizer.end_of_generation_.push_back(tokenizer.eos_);
  std::sort(tokenizer.end_of_generation_.begin(), tokenizer.end_of_generation_.end());
  tokenizer.end_of_generation_.erase(std::unique(tokenizer.end_of_generation_.begin(), tokenizer.end_of_generation_.end()),
                                     tokenizer.end_of_generation_.end());

  // Special tokens: cut out of the text before tokenizing, longest first.
  for (std::size_t id = 0; id < count; ++id) {
    if (tokenizer.attributes_[id] & (detail::text::attribute_control | detail::text::attribute_user_defined | detail::text::attribute_unknown)) {
      tokenizer.special_tokens_.push_back(static_cast<Token>(id));
    }
  }
  std::stable_sort(tokenizer.special_tokens_.begin(), tokenizer.special_tokens_.end(), [&](Token a, Token b) {
    return tokenizer.texts_.text(a).size() > tokenizer.texts_.text(b).size();
  });
  // llama.cpp's per-model quirks: Phi-3's special tokens swallow the whitespace after them.
  std::string lower_name = vocabulary.model_name;
  for (char& c : lower_name) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  if (tokenizer.pre_.find("jina-v2-de") != std::string::npos || tokenizer.pre_.find("jina-v2-es") != std::string::npos ||
      tokenizer.pre_.find("jina-v2-code") != std::string::npos) {
    const Token mask = tokenizer.find("<mask>");
    if (mask >= 0) tokenizer.attributes_[static_cast<std::size_t>(mask)] |= detail::text::attribute_strip_left;
  } else if (lower_name.find("phi-3") != std::string::npos || lower_name.find("phi3") != std::string::npos) {
    for (Token id : tokenizer.special_tokens_) tokenizer.attributes_[static_cast<std::size_t>(id)] |= detail::text::attribute_strip_right;
    const Token end_of_sequence = tokenizer.find("</s>");
    if (end_of_sequence >= 0) tokenizer.attributes_[static_cast<std::size_t>(end_of_sequence)] |= detail::text::attribute_strip_right;
    for (const char* text : {"<unk>", "<s>", "<|endoftext|>"}) {
      const Token id = tokenizer.find(text);
      if (id >= 0) tokenizer.attributes_[static_cast<std::size_t>(id)] &= static_cast<std::uint8_t>(~detail::text::attribute_strip_right);
    }
  }
  std::vector<std::string_view> special_texts;
  special_texts.reserve(tokenizer.special_tokens_.size());
  for (Token id : tokenizer.special_tokens_) {
    special_texts.push_back(tokenizer.texts_.text(id));
    const std::uint8_t strips = detail::text::attribute_strip_left | detail::text::attribute_strip_right;
    if (tokenizer.attributes_[static_cast<std::size_t>(id)] & strips) tokenizer.specials_strip_whitespace_ = true;
  }
  tokenizer.special_trie_.build(special_texts);
  tokenizer.byte_pairs_in_tokens_.assign(65536 / 64, 0);
  for (std::size_t id = 0; id < count; ++id) {
    const std::string& text = tokenizer.texts_.text(static_cast<Token>(id));
    for (std::size_t i = 1; i < text.size(); ++i) {
      const std::size_t pair = static_cast<std::size_t>(static_cast<unsigned char>(text[i - 1])) << 8 | static_cast<unsigned char>(text[i]);
      tokenizer.byte_pairs_in_tokens_[pair / 64] |= std::uint64_t{1} << (pair % 64);
    }
  }

  // Byte tables.
  for (unsigned byte = 0; byte < 256; ++byte) {
    std::string character;
    detail::text::append_byte_level(character, static_cast<unsigned char>(byte));
    tokenizer.byte_piece_id_[byte] = tokenizer.texts_.find(character);
    const Token single = tokenizer.find(std::string(1, static_cast<char>(byte)));
    tokenizer.single_byte_token_[byte] = single;
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", byte);
    const Token fallback = tokenizer.find(hex);
    tokenizer.byte_fallback_token_[byte] = fallback >= 0 ? fallback : single;
  }

  // Every token's piece, decoded once.
  tokenizer.piece_offsets_.reserve(count + 1);
  tokenizer.piece_offsets_.push_back(0);
  for (std::size_t id = 0; id < count; ++id) {
    tokenizer.pieces_ += tokenizer.make_piece(static_cast<Token>(id));
    if (tokenizer.pieces_.size() > UINT32_MAX) return invalid("the token texts are too long");
    tokenizer.piece_offsets_.push_back(static_cast<std::uint32_t>(tokenizer.pieces_.size()));
    tokenizer.longest_piece_ = std::max<std::size_t>(tokenizer.longest_piece_, tokenizer.piece_offsets_[id + 1] - tokenizer.piece_offsets_[id]);
  }
  return tokenizer;
}

// The piece of a token with special tokens rendered (llama.cpp's token_to_piece(special=true)).
inline std::string Tokenizer::make_piece(Token token) const {
  const std::uint8_t attributes = attributes_[static_cast<std::size_t>(token)];
  const std::string& text = texts_.text(token);
  if (attributes & (detail::text::attribute_control | detail::text::attribute_unknown | detail::text::attribute_user_defined)) return text;
  if (attributes & detail::text::attribute_normal) {
    std::string piece;
    if (algorithm_ == Algorithm::sentencepiece) {
      // "▁" (U+2581, E2 96 81) stands for a space.
      for (std::size_t i = 0; i < text.size(); ++i) {
        if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
          piece.push_back(' ');
          i += 2;
        } else {
          piece.push_back(text[i]);
        }
      }
      return piece;
    }
    // Byte-level: each character is one byte. A character outside GPT-2's alphabet (a token
    // added by hand) is kept as its UTF-8 (llama.cpp prints an "[UNK_BYTE_...]" marker instead).
    for (std::size_t offset = 0; offset < text.size();) {
      const unicode::DecodedCodepoint decoded = unicode::decode_utf8(text, offset);
      if (decoded.length == 0) {  // invalid UTF-8 in the vocabulary: keep the byte
        piece.push_back(text[offset++]);
        continue;
      }
      const int byte = detail::text::byte_of_byte_level_codepoint(decoded.codepoint);
      if (byte >= 0) piece.push_back(static_cast<char>(byte));
      else piece.append(text, offset, decoded.length);
      offset += decoded.length;
    }
    return piece;
  }
  if (attributes & detail::text::attribute_byte) {
    // "<0xAB>" -> the byte 0xAB.
    if (text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>') {
      int value = 0;
      for (std::size_t i = 3; i < 5; ++i) {
        const char c = text[i];
        const int nibble = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (nibble < 0) return text;
        value = value * 16 + nibble;
      }
      return std::string(1, static_cast<char>(value));
    }
    return text;
  }
  return std::string();  // undefined and unused tokens print nothing (as in llama.cpp)
}

inline std::string_view Tokenizer::piece(Token token, bool render_special) const noexcept {
  if (!in_vocabulary(token)) return std::string_view();
  const auto index = static_cast<std::size_t>(token);
  if (!render_special && (attributes_[index] & (detail::text::attribute_control | detail::text::attribute_unknown))) return std::string_view();
  return std::string_view(pieces_).substr(piece_offsets_[index], piece_offsets_[index + 1] - piece_offsets_[index]);
}

inline std::string Tokenizer::decode(const Token* tokens, std::size_t count, const DecodeOptions& options) const {
  std::string text;
  bool remove_space = add_space_prefix_;
  if (options.remove_special && add_bos_ && count > 0 && tokens[0] == bos_) {
    remove_space = false;  // (llama.cpp keeps the space then)
    ++tokens;
    --count;
  }
  if (options.remove_special && add_eos_ && count > 0 && tokens[count - 1] == eos_) --count;
  for (std::size_t i = 0; i < count; ++i) {
    std::string_view token_piece = piece(tokens[i], options.render_special);
    if (remove_space && !token_piece.empty() && token_piece[0] == ' ') token_piece.remove_prefix(1);
    remove_space = false;
    text.append(token_piece.data(), token_piece.size());
  }
  if (options.clean_up_spaces && !text.empty()) {
    // llama.cpp's three passes, in order.
    std::string cleaned;
    cleaned.reserve(text.size());
    cleaned.push_back(text[0]);
    for (std::size_t i = 1; i < text.size(); ++i) {  // " ?", " !", " .", " ,"
      const char c = text[i];
      if (text[i - 1] == ' ' && (c == '?' || c == '!' || c == '.' || c == ',')) cleaned.pop_back();
      cleaned.push_back(c);
    }
    text.swap(cleaned);
    cleaned.clear();
    cleaned.push_back(text[0]);
    for (std::size_t i = 1; i < text.size(); ++i) {  // " ' " -> "'"
      const char c = text[i];
      if (c == '\'' && i + 1 < text.size() && text[i - 1] == ' ' && text[i + 1] == ' ') {
        cleaned.pop_back();
        cleaned.push_back(c);
        ++i;  // drop the following space
        continue;
      }
      cleaned.push_back(c);
    }
    text.swap(cleaned);
    cleaned.clear();
    cleaned.push_back(text[0]);
    for (std::size_t i = 1; i < text.size(); ++i) {  // " 's", " 'm", " 're", " 've" lose their space
      const char c = text[i];
      if (text[i - 1] == ' ' && c == '\'' && i + 1 < text.size()) {
        const char next = text[i + 1];
        const bool short_form = next == 's' || next == 'm';
        const bool long_form = i + 2 < text.size() && ((next == 'r' && text[i + 2] == 'e') || (next == 'v' && text[i + 2] == 'e'));
        if (short_form || long_form) cleaned.pop_back();
      }
      cleaned.push_back(c);
    }
    text.swap(cleaned);
  }
  return text;
}

// llama.cpp's tokenizer_st_partition: for each special token, longest first (equal lengths: lower
// id first), every occurrence in the fragments still raw text, leftmost first, becomes a token
// fragment. Calls fragment(Fragment) for the fragments, in order.
//
// Done in one pass, with the same result. Taking the tokens one after the other and each at
// its occurrences left to right is taking all occurrences in the order (special token, start)
// and keeping each that overlaps nothing kept before (nor the whitespace a kept one stripped).
// Occurrences only matter to each other when they overlap, so the text is cut into windows that
// no occurrence crosses (and, when some token strips whitespace, between two bytes that are not
// whitespace), and each window is settled alone as soon as it ends. Time: one trie walk per
// byte; memory: one window. (llama.cpp's way costs a pass over the text per special token that
// occurs: with thousands of user-defined tokens a long text took minutes.)
template <class FragmentSink>
void Tokenizer::cut_special_tokens(std::string_view text, bool parse_special, detail::text::EncodeScratch& scratch,
                                   FragmentSink&& fragment) const {
  using detail::text::EncodeScratch;
  using detail::text::Fragment;
  if (text.empty()) return;
  if (special_tokens_.empty()) {
    fragment(Fragment{-1, 0, static_cast<std::uint32_t>(text.size())});
    return;
  }
  // Raw text is held back until a token or the end: a fragment of text can span many windows.
  Fragment held{-1, 0, 0};
  const auto add_text = [&](std::size_t offset, std::size_t length) {
    if (length == 0) return;
    if (held.length > 0 && held.offset + held.length == offset) {
      held.length += static_cast<std::uint32_t>(length);
      return;
    }
    if (held.length > 0) fragment(held);
    held = Fragment{-1, static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(length)};
  };
  const auto add_token = [&](Token token) {
    if (held.length > 0) fragment(held);
    held.length = 0;
    fragment(Fragment{token, 0, 0});
  };

  std::vector<std::uint64_t>& occurrences = scratch.occurrences;
  std::vector<std::uint8_t>& window_bytes = scratch.window_bytes;
  std::vector<EncodeScratch::Cut>& cuts = scratch.cuts;
  // Settles the window [begin, end) from its occurrences.
  const auto settle = [&](std::size_t begin, std::size_t end) {
    const std::size_t size = end - begin;
    std::sort(occurrences.begin(), occurrences.end());  // by special token (longest first), then start
    window_bytes.assign(size, EncodeScratch::byte_text);
    cuts.clear();
    for (const std::uint64_t occurrence : occurrences) {
      const Token special = special_tokens_[static_cast<std::size_t>(occurrence >> 32)];
      const auto start = static_cast<std::size_t>(occurrence & 0xFFFFFFFFu);
      const std::size_t length = texts_.text(special).size();
      // Everything kept so far is at least as long as this occurrence (longest first), so what
      // overlaps it covers its first or its last byte.
      if (window_bytes[start] != EncodeScratch::byte_text || window_bytes[start + length - 1] != EncodeScratch::byte_text) continue;
      std::fill(window_bytes.begin() + static_cast<std::ptrdiff_t>(start), window_bytes.begin() + static_cast<std::ptrdiff_t>(start + length),
                EncodeScratch::byte_cut);
      const std::uint8_t attributes = attributes_[static_cast<std::size_t>(special)];
      if (attributes & detail::text::attribute_strip_left) {
        for (std::size_t at = start; at > 0 && window_bytes[at - 1] == EncodeScratch::byte_text && detail::text::is_c_space(text[begin + at - 1]); --at) {
          window_bytes[at - 1] = EncodeScratch::byte_stripped;
        }
      }
      if (attributes & detail::text::attribute_strip_right) {
        for (std::size_t at = start + length; at < size && window_bytes[at] == EncodeScratch::byte_text && detail::text::is_c_space(text[begin + at]); ++at) {
          window_bytes[at] = EncodeScratch::byte_stripped;
        }
      }
      cuts.push_back({static_cast<std::uint32_t>(start), static_cast<std::uint32_t>(length), special});
    }
    std::sort(cuts.begin(), cuts.end(), [](const EncodeScratch::Cut& a, const EncodeScratch::Cut& b) { return a.start < b.start; });
    // Between two cuts: whitespace the first stripped, text, whitespace the second stripped.
    std::size_t at = 0;
    const auto add_text_before = [&](std::size_t stop) {
      while (at < stop && window_bytes[at] == EncodeScratch::byte_stripped) ++at;
      std::size_t text_end = at;
      while (text_end < stop && window_bytes[text_end] == EncodeScratch::byte_text) ++text_end;
      add_text(begin + at, text_end - at);
    };
    for (const EncodeScratch::Cut& cut : cuts) {
      add_text_before(cut.start);
      add_token(cut.token);
      at = cut.start + cut.length;
    }
    add_text_before(size);
    scratch.work += occurrences.size() + size;
  };

  occurrences.clear();
  std::size_t window_start = 0;
  std::size_t reach = 0;  // end of the furthest occurrence found so far
  for (std::size_t position = 0;; ++position) {
    const bool at_end = position == text.size();
    bool window_ends = at_end || reach <= position;
    if (window_ends && !at_end && specials_strip_whitespace_) {  // stripping never crosses a window's edge
      window_ends = !detail::text::is_c_space(text[position]) && (position == 0 || !detail::text::is_c_space(text[position - 1]));
    }
    if (window_ends && position > window_start) {
      if (occurrences.empty()) add_text(window_start, position - window_start);
      else settle(window_start, position);
      occurrences.clear();
      window_start = position;
    }
    if (at_end) break;
    scratch.work += special_trie_.for_each_at(text, position, [&](std::int32_t index, std::size_t length) {
      const Token special = special_tokens_[static_cast<std::size_t>(index)];
      const std::uint8_t attributes = attributes_[static_cast<std::size_t>(special)];
      if (!parse_special && (attributes & (detail::text::attribute_control | detail::text::attribute_unknown))) return;
      occurrences.push_back(static_cast<std::uint64_t>(index) << 32 | (position - window_start));
      reach = std::max(reach, position + length);
    });
  }
  if (held.length > 0) fragment(held);
}

inline Result<void> Tokenizer::encode_into(std::string_view text, std::vector<Token>& tokens, const EncodeOptions& options,
                                           TokenizerScratch& scratch) const {
  const std::size_t invalid_at = unicode::find_invalid_utf8(text);
  if (invalid_at != std::string_view::npos) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned>(static_cast<unsigned char>(text[invalid_at])));
    return fail(ErrorCode::invalid_argument, "encode: the text is not valid UTF-8: byte " + std::string(byte) +
                                                 " at byte offset " + std::to_string(invalid_at));
  }
  if (text.size() > UINT32_MAX / 2) return fail(ErrorCode::invalid_argument, "encode: the text is larger than 2 GiB");
  const bool add_bos = options.add_bos < 0 ? add_bos_ : options.add_bos != 0;
  const bool add_eos = options.add_eos < 0 ? add_eos_ : options.add_eos != 0;
  if (add_bos && bos_ < 0) return fail(ErrorCode::invalid_argument, "encode: BOS asked for, but the vocabulary has none");
  if (add_eos && eos_ < 0) return fail(ErrorCode::invalid_argument, "encode: EOS asked for, but the vocabulary has none");

  detail::text::EncodeScratch& work = scratch.scratch_;
  work.work = 0;
  if (work.regex.size() < split_steps_.size()) work.regex.resize(split_steps_.size());
  for (detail::text::SplitRegex::Scratch& step : work.regex) step.steps = 0;
  if (add_bos) tokens.push_back(bos_);
  bool previous_was_special = true;  // SentencePiece: a space prefix before the first text
  cut_special_tokens(text, options.parse_special, work, [&](const detail::text::Fragment& fragment) {
    if (fragment.token >= 0) {
      tokens.push_back(fragment.token);
      previous_was_special = true;
      return;
    }
    const std::string_view fragment_text = text.substr(fragment.offset, fragment.length);
    if (algorithm_ == Algorithm::sentencepiece) {
      encode_sentencepiece(fragment_text, add_space_prefix_ && previous_was_special, tokens, work);
    } else {
      encode_bpe_fragment(fragment_text, tokens, work);
    }
    previous_was_special = false;
  });
  if (add_eos) tokens.push_back(eos_);
  for (const detail::text::SplitRegex::Scratch& step : work.regex) work.work += step.steps;
  return success();
}

// llama.cpp's SPM tokenizer on one fragment, chunk by chunk. A merge joins two pieces into a
// token, so no merge crosses a place where the byte before and the byte after are next to each
// other in no token's text: chunks end at such places once they hold sentencepiece_chunk_bytes
// (in English text nearly every space is one). The result is that of merging the whole fragment
// at once, with a small merge heap instead of one as large as the text.
inline void Tokenizer::encode_sentencepiece(std::string_view text, bool space_prefix, std::vector<Token>& tokens,
                                            detail::text::EncodeScratch& scratch) const {
  std::string& chunk = scratch.word;
  chunk.clear();
  if (space_prefix) chunk += "\xE2\x96\x81";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    const unsigned char first_byte = c == ' ' ? 0xE2 : byte;  // a space becomes "▁" (E2 96 81)
    if (chunk.size() >= detail::text::sentencepiece_chunk_bytes && (byte & 0xC0) != 0x80 &&
        !bytes_adjacent_in_a_token(static_cast<unsigned char>(chunk.back()), first_byte)) {
      encode_sentencepiece_chunk(chunk, tokens, scratch);
      chunk.clear();
    }
    if (c == ' ') chunk += "\xE2\x96\x81";
    else chunk.push_back(c);
  }
  encode_sentencepiece_chunk(chunk, tokens, scratch);
}

// Start from single characters and keep merging the adjacent pair whose concatenation is the
// token with the best score (leftmost first among equals).
inline void Tokenizer::encode_sentencepiece_chunk(std::string_view chunk, std::vector<Token>& tokens,
                                                  detail::text::EncodeScratch& scratch) const {
  using Symbol = detail::text::EncodeScratch::Symbol;
  using Candidate = detail::text::EncodeScratch::SentencePieceCandidate;
  std::vector<Symbol>& symbols = scratch.symbols;
  symbols.clear();
  for (std::size_t offset = 0; offset < chunk.size();) {
    const std::size_t length = std::min(unicode::utf8_sequence_length(static_cast<unsigned char>(chunk[offset])), chunk.size() - offset);
    const auto index = static_cast<std::int32_t>(symbols.size());
    symbols.push_back({index - 1, offset + length < chunk.size() ? index + 1 : -1, static_cast<std::uint32_t>(offset),
                       static_cast<std::uint32_t>(length), -1});
    offset += length;
  }
  std::vector<Candidate>& heap = scratch.sentencepiece_heap;
  heap.clear();
  const auto lower_priority = [](const Candidate& a, const Candidate& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  const auto consider = [&](std::int32_t left, std::int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[static_cast<std::size_t>(left)];
    const Symbol& r = symbols[static_cast<std::size_t>(right)];
    const Token merged = find(chunk.substr(l.begin, l.length + r.length));
    if (merged < 0) return;
    heap.push_back({scores_[static_cast<std::size_t>(merged)], left, l.length + r.length});
    std::push_heap(heap.begin(), heap.end(), lower_priority);
  };
  for (std::size_t i = 1; i < symbols.size(); ++i) consider(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower_priority);
    const Candidate best = heap.back();
    heap.pop_back();
    ++scratch.work;
    Symbol& left = symbols[static_cast<std::size_t>(best.left)];
    // Outdated when the left symbol was merged into the one before it, or either side grew
    // since (the pair it was made for no longer has best.length bytes).
    if (left.length == 0 || left.next < 0) continue;
    Symbol& right = symbols[static_cast<std::size_t>(left.next)];
    if (left.length + right.length != best.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].previous = best.left;
    consider(left.previous, best.left);
    consider(best.left, left.next);
  }
  scratch.work += symbols.size();
  for (std::int32_t index = symbols.empty() ? -1 : 0; index >= 0; index = symbols[static_cast<std::size_t>(index)].next) {
    const Symbol& symbol = symbols[static_cast<std::size_t>(index)];
    const std::string_view piece_text = chunk.substr(symbol.begin, symbol.length);
    const Token token = find(piece_text);
    if (token >= 0) {
      tokens.push_back(token);
      continue;
    }
    // Not a token: its bytes (<0xXX>), or the unknown token when the vocabulary has no byte tokens.
    bool all_bytes = true;
    for (const char c : piece_text) all_bytes = all_bytes && byte_fallback_token_[static_cast<unsigned char>(c)] >= 0;
    if (all_bytes) {
      for (const char c : piece_text) tokens.push_back(byte_fallback_token_[static_cast<unsigned char>(c)]);
    } else if (unknown_ >= 0) {
      tokens.push_back(unknown_);
    }
  }
}

// Byte-level BPE on one raw-text fragment: pre-tokenize into words, then merge each word.
// The fragment is decoded a window at a time (first_window_bytes to begin with): the first
// split step runs on the window and stops before the first piece whose end depends on text past
// it. The pieces it gave out are final, since the regexes and matchers saw what they would
// see in the whole fragment; each goes through the later steps and is merged at once, and the
// next window starts after the last one. A piece longer than the window doubles it.
inline void Tokenizer::encode_bpe_fragment(std::string_view text, std::vector<Token>& tokens, detail::text::EncodeScratch& scratch) const {
  if (split_steps_.empty()) {
    encode_bpe_word(text, tokens, scratch);
    return;
  }
  detail::text::DecodedText& decoded = scratch.decoded;
  std::size_t window_bytes = detail::text::first_window_bytes;
  std::size_t done = 0;  // bytes of `text` whose words are encoded
  while (done < text.size()) {
    std::size_t window_end = text.size() - done > window_bytes ? done + window_bytes : text.size();
    while (window_end < text.size() && (static_cast<unsigned char>(text[window_end]) & 0xC0) == 0x80) ++window_end;
    const std::string_view window = text.substr(done, window_end - done);
    decoded.assign(window);
    scratch.work += decoded.size();
    const bool more_text = window_end < text.size();
    const std::size_t split_end = split_and_encode(0, window, 0, decoded.size(), more_text, tokens, scratch);
    if (!more_text) break;
    if (split_end == 0) window_bytes *= 2;
    else done += decoded.byte_offsets[split_end];
  }
}

// Split step `step` on the code points [begin, end) of the decoded window; each piece goes
// through the steps after it, and the pieces of the last step are merged as words. Returns
// where the pieces given out end (see SplitRegex::split for more_text).
inline std::size_t Tokenizer::split_and_encode(std::size_t step, std::string_view window, std::size_t begin, std::size_t end,
                                               bool more_text, std::vector<Token>& tokens, detail::text::EncodeScratch& scratch) const {
  const detail::text::DecodedText& decoded = scratch.decoded;
  if (step == split_steps_.size()) {
    const std::size_t first_byte = decoded.byte_offsets[begin];
    const std::size_t end_byte = decoded.byte_offsets[end];
    if (end_byte > first_byte) encode_bpe_word(window.substr(first_byte, end_byte - first_byte), tokens, scratch);
    return end;
  }
  const auto piece = [&](std::size_t piece_begin, std::size_t piece_end) {
    split_and_encode(step + 1, window, piece_begin, piece_end, false, tokens, scratch);
  };
  const detail::text::SplitStep& split = split_steps_[step];
  switch (split.kind) {
    case detail::text::SplitStep::Kind::gpt2: return detail::text::split_gpt2(decoded, begin, end, more_text, piece);
    case detail::text::SplitStep::Kind::llama3: return detail::text::split_llama3(decoded, begin, end, more_text, piece);
    case detail::text::SplitStep::Kind::regex: return split.regex.split(decoded, begin, end, more_text, scratch.regex[step], piece);
  }
  return end;
}

// llama.cpp's BPE session on one word: bytes -> byte-level characters, then apply the merge
// with the best rank among adjacent pairs (leftmost first among equals) until none applies.
inline void Tokenizer::encode_bpe_word(std::string_view word, std::vector<Token>& tokens, detail::text::EncodeScratch& scratch) const {
  std::string& encoded = scratch.word;
  encoded.clear();
  using Symbol = detail::text::EncodeScratch::Symbol;
  using Candidate = detail::text::EncodeScratch::BpeCandidate;
  std::vector<Symbol>& symbols = scratch.symbols;
  symbols.clear();
  for (const char c : word) {
    const auto byte = static_cast<unsigned char>(c);
    const auto index = static_cast<std::int32_t>(symbols.size());
    const std::size_t begin = encoded.size();
    detail::text::append_byte_level(encoded, byte);
    symbols.push_back({index - 1, index + 1, static_cast<std::uint32_t>(begin), static_cast<std::uint32_t>(encoded.size() - begin),
                       byte_piece_id_[byte]});
  }
  symbols.back().next = -1;
  scratch.work += symbols.size();
  if (ignore_merges_) {  // Llama 3: a word that is a token stays whole
    const Token whole = find(encoded);
    if (whole >= 0) {
      tokens.push_back(whole);
      return;
    }
  }
  std::vector<Candidate>& heap = scratch.bpe_heap;
  heap.clear();
  const auto lower_priority = [](const Candidate& a, const Candidate& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  const auto consider = [&](std::int32_t left, std::int32_t right) {
    if (left < 0 || right < 0) return;
    const std::int32_t left_id = symbols[static_cast<std::size_t>(left)].id;
    const std::int32_t right_id = symbols[static_cast<std::size_t>(right)].id;
    if (left_id < 0 || right_id < 0) return;
    const detail::text::MergeTable::Merge merge = merges_.find(left_id, right_id);
    if (merge.rank < 0) return;
    heap.push_back({merge.rank, left, left_id, right_id, merge.result});
    std::push_heap(heap.begin(), heap.end(), lower_priority);
  };
  for (std::size_t i = 1; i < symbols.size(); ++i) consider(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower_priority);
    const Candidate best = heap.back();
    heap.pop_back();
    ++scratch.work;
    Symbol& left = symbols[static_cast<std::size_t>(best.left)];
    // Outdated when either side was merged since: the left one vanished or became another piece
    // (its next is then another symbol too), or the right one became another piece.
    if (left.length == 0 || left.id != best.left_id || left.next < 0) continue;
    Symbol& right = symbols[static_cast<std::size_t>(left.next)];
    if (right.id != best.right_id) continue;
    left.length += right.length;
    left.id = best.result;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].previous = best.left;
    consider(left.previous, best.left);
    consider(best.left, left.next);
  }
  for (std::int32_t index = 0; index >= 0; index = symbols[static_cast<std::size_t>(index)].next) {
    const Symbol& symbol = symbols[static_cast<std::size_t>(index)];
    if (symbol.id >= 0 && static_cast<std::size_t>(symbol.id) < vocab_size_) {
      tokens.push_back(symbol.id);
      continue;
    }
    // A piece that is no token: llama.cpp looks up each byte of its text alone.
    for (std::uint32_t i = 0; i < symbol.length; ++i) {
      const Token single = single_byte_token_[static_cast<unsigned char>(encoded[symbol.begin + i])];
      if (single >= 0) tokens.push_back(single);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GGUF.

inline Result<VocabularyData> read_vocabulary(const gguf::File& file) {
  using gguf::ValueType;
  VocabularyData vocabulary;
  const auto bad_type = [&](const std::string& key, const char* expected) {
    return fail(ErrorCode::type_mismatch, file.name() + ": key '" + key + "' should be " + expected);
  };

  Result<std::string> model = file.get_string("tokenizer.ggml.model");
  if (!model) return model.take_error();
  vocabulary.model = *model;
  Result<std::string> pre = file.get_string_or("tokenizer.ggml.pre", "");
  if (!pre) return pre.take_error();
  vocabulary.pre = *pre;
  Result<std::string> name = file.get_string_or("general.name", "");
  if (name) vocabulary.model_name = *name;

  Result<std::vector<std::string>> tokens = file.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) return tokens.take_error();
  vocabulary.tokens = std::move(*tokens);
  const std::size_t count = vocabulary.tokens.size();

  // Scores are float32, or int32 in a few converted files (llama.cpp accepts both).
  if (const gguf::Value* scores = file.find("tokenizer.ggml.scores")) {
    if (scores->type != ValueType::array ||
        (scores->element_type != ValueType::float32 && scores->element_type != ValueType::int32)) {
      return bad_type("tokenizer.ggml.scores", "an array of float32 or int32");
    }
    if (scores->elements.size() < count) {
      return fail(ErrorCode::invalid_format, file.name() + ": tokenizer.ggml.scores has " + std::to_string(scores->elements.size()) +
                                                 " entries for " + std::to_string(count) + " tokens");
    }
    vocabulary.scores.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      const gguf::Value& score = scores->elements[i];
      vocabulary.scores.push_back(scores->element_type == ValueType::float32 ? static_cast<float>(score.float_value)
                                                                            : static_cast<float>(score.signed_value));
    }
  }
  if (file.contains("tokenizer.ggml.token_type")) {
    Result<std::vector<std::int32_t>> types = file.get_i32_array("tokenizer.ggml.token_type");
    if (!types) return types.take_error();
    if (types->size() < count) {
      return fail(ErrorCode::invalid_format, file.name() + ": tokenizer.ggml.token_type has " + std::to_string(types->size()) +
                                                 " entries for " + std::to_string(count) + " tokens");
    }
    vocabulary.token_types.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      const std::int32_t type = (*types)[i];
      vocabulary.token_types.push_back(type >= 0 && type <= 6 ? static_cast<TokenType>(type) : TokenType::undefined);
    }
  }
  if (file.contains("tokenizer.ggml.merges")) {
    Result<std::vector<std::string>> merges = file.get_string_array("tokenizer.ggml.merges");
    if (!merges) return merges.take_error();
    vocabulary.merges = std::move(*merges);
  }

  // llama.cpp's defaults per tokenizer family (they apply when the keys are absent).
  if (vocabulary.model == "llama") {
    vocabulary.bos = 1;
    vocabulary.eos = 2;
    vocabulary.unknown = 0;
    vocabulary.add_bos = true;
    vocabulary.add_space_prefix = true;
  } else if (vocabulary.model == "gpt2") {
    vocabulary.bos = 11;
    vocabulary.eos = 11;
    vocabulary.add_space_prefix = false;
    detail::text::PreTokenizerRecipe recipe;
    if (detail::text::find_pre_tokenizer_recipe(vocabulary.pre, recipe)) {
      vocabulary.add_bos = recipe.add_bos;
      if (recipe.no_bos_token) vocabulary.bos = -1;
    }
  }
  if (vocabulary.model == "llama") {  // llama.cpp reads this key for SentencePiece only
    Result<bool> space_prefix = file.get_bool_or("tokenizer.ggml.add_space_prefix", vocabulary.add_space_prefix);
    if (!space_prefix) return space_prefix.take_error();
    vocabulary.add_space_prefix = *space_prefix;
  }
  const struct {
    const char* key;
    Token* id;
  } special_ids[] = {
      {"tokenizer.ggml.bos_token_id", &vocabulary.bos},
      {"tokenizer.ggml.eos_token_id", &vocabulary.eos},
      {"tokenizer.ggml.eot_token_id", &vocabulary.end_of_turn},
      {"tokenizer.ggml.eom_token_id", &vocabulary.end_of_message},
      {"tokenizer.ggml.unknown_token_id", &vocabulary.unknown},
      {"tokenizer.ggml.seperator_token_id", &vocabulary.separator},  // (sic: llama.cpp's spelling)
      {"tokenizer.ggml.padding_token_id", &vocabulary.padding},
  };
  for (const auto& special : special_ids) {
    // A default outside the vocabulary is dropped; a stored id outside it is ignored (llama.cpp warns).
    if (*special.id >= 0 && static_cast<std::size_t>(*special.id) >= count) *special.id = -1;
    const gguf::Value* value = file.find(special.key);
    if (value == nullptr) continue;
    std::int64_t id;
    switch (value->type) {
      case ValueType::uint8: case ValueType::uint16: case ValueType::uint32: case ValueType::uint64:
        id = value->unsigned_value > static_cast<std::uint64_t>(INT32_MAX) ? -1 : static_cast<std::int64_t>(value->unsigned_value);
        break;
      case ValueType::int8: case ValueType::int16: case ValueType::int32: case ValueType::int64:
        id = value->signed_value;
        break;
      default:
        return bad_type(special.key, "an integer");
    }
    if (id >= 0 && static_cast<std::size_t>(id) < count) *special.id = static_cast<Token>(id);
  }
  Result<bool> add_bos = file.get_bool_or("tokenizer.ggml.add_bos_token", vocabulary.add_bos);
  if (!add_bos) return add_bos.take_error();
  vocabulary.add_bos = *add_bos;
  Result<bool> add_eos = file.get_bool_or("tokenizer.ggml.add_eos_token", vocabulary.add_eos);
  if (!add_eos) return add_eos.take_error();
  vocabulary.add_eos = *add_eos;
  return vocabulary;
}

inline Result<Tokenizer> Tokenizer::from_gguf(const gguf::File& file) {
  Result<VocabularyData> vocabulary = read_vocabulary(file);
  if (!vocabulary) return vocabulary.take_error();
  Result<Tokenizer> tokenizer = create(std::move(*vocabulary));
  if (!tokenizer) return tokenizer.take_error().with_context(file.name());
  return tokenizer;
}

LAMINA_NAMESPACE_END
