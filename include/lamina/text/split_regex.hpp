// lamina/text/split_regex.hpp — SplitRegex, the regex engine of the pre-tokenizers.
//
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
//
// Internals of text/tokenizer.hpp (lamina::detail::text).
#pragma once

#include "../config.hpp"
#include "../core/result.hpp"
#include "character_class.hpp"
#include "unicode.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace detail {
namespace text {

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

}  // namespace text
}  // namespace detail
LAMINA_NAMESPACE_END
