// lamina/text/grammar.hpp — grammar-constrained sampling: GBNF grammars, a pushdown matcher over
// code points, and token masks. Opt-in: lamina.hpp does not include it.
//
//   auto grammar = lamina::Grammar::parse(lamina::json_grammar());      // Result<shared_ptr<const Grammar>>
//   auto trie = lamina::TokenTrie::from_tokenizer(tokenizer);           // once per vocabulary
//   lamina::GrammarConstraint constraint(*grammar, trie);
//   // each step:
//   lamina::Token next = sampler.sample(logits);
//   if (!constraint.allows(next)) {                                     // cheap check first
//     constraint.mask_logits(logits);                                   // disallowed -> -infinity
//     next = sampler.sample(logits);
//   }
//   constraint.accept_token(next);
//
// Syntax (llama.cpp's GBNF): `name ::= alternatives` (one rule per line; newlines are allowed
// after `::=`, after `|` and inside parentheses), `a | b`, sequences, groups `( )`, string
// literals "..." and character classes [a-z] / [^...] with escapes \n \t \r \\ \" \[ \] \-
// \xHH \uHHHH \UHHHHHHHH, `.` (any code point), repetition * + ? {m} {m,} {m,n}, comments `#`.
// The start rule is `root`. Left recursion (direct or through nullable rules) is refused with an
// error naming the rule: the matcher expands rules top-down and would never stop.
//
// Design: every alternative is a flat run of elements (a character set or a rule reference)
// ending in `end`. Repetitions become generated rules (x* is r ::= x r | ""), x{m,n} costs m
// + (n - m) elements, never a product. The matcher keeps a set of stacks; a stack is a chain of
// positions (top = the next character set to match, below = where to return), stored as
// persistent nodes (position, parent) in an arena, so a step pushes one or two nodes and copies
// nothing. Token masks walk a byte trie of the vocabulary together with the stacks: a shared
// prefix is matched once; each (state, byte) step is computed once per walk (states are interned
// by structure), and the masks of the last 4 states are kept, so tokens inside one string cost a
// copy of the mask. Memory: the trie is built once; a walk reuses its buffers, except the small
// hash map of interned states, which allocates a few nodes per walk.
#pragma once

#include "../config.hpp"
#include "../core/result.hpp"
#include "token.hpp"
#include "tokenizer.hpp"
#include "unicode.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

// LAMINA_GRAMMAR_ASSIGN(declaration, expr): `declaration = *expr`, or return expr's Error.
// Local to this header (#undef at the end).
#define LAMINA_GRAMMAR_CONCAT_(a, b) a##b
#define LAMINA_GRAMMAR_CONCAT(a, b) LAMINA_GRAMMAR_CONCAT_(a, b)
#define LAMINA_GRAMMAR_ASSIGN(declaration, expr)                                       \
  auto LAMINA_GRAMMAR_CONCAT(lamina_grammar_result_, __LINE__) = (expr);               \
  if (!LAMINA_GRAMMAR_CONCAT(lamina_grammar_result_, __LINE__))                        \
    return LAMINA_GRAMMAR_CONCAT(lamina_grammar_result_, __LINE__).take_error();        \
  declaration = std::move(*LAMINA_GRAMMAR_CONCAT(lamina_grammar_result_, __LINE__))

LAMINA_NAMESPACE_BEGIN

// Bounds against hostile grammars; exceeding one is an ErrorCode::invalid_argument.
struct GrammarLimits {
  std::size_t max_text_bytes = 1u << 20;     // grammar source size
  std::size_t max_rules = 1u << 16;          // rules, generated ones included
  std::size_t max_elements = 1u << 20;       // elements after expanding repetitions
  std::uint32_t max_repetition = 10000;      // m and n of {m,n}
  int max_nesting = 64;                      // parentheses depth
};

// Bounds on the matcher's work (ambiguous grammars): a step that would exceed them is refused.
struct GrammarMatcherLimits {
  std::size_t max_stacks = 1024;             // parallel stacks after one code point
  std::size_t max_stack_depth = 4096;        // positions in one stack
  std::size_t max_expansions = 1u << 16;     // rule expansions for one code point
};

namespace detail {
namespace grammar {

enum class ElementKind : std::uint8_t { end, character_set, rule_reference };

struct Element {
  ElementKind kind = ElementKind::end;
  std::uint32_t index = 0;  // character set index or rule id
};

// Inclusive code point ranges, sorted and merged; `negated` inverts.
struct CharacterSet {
  std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges;
  bool negated = false;
  std::uint64_t ascii[2] = {0, 0};  // code points 0..127 answered by bit, without the search

  bool contains(std::uint32_t code_point) const {
    if (code_point < 128) return (ascii[code_point >> 6] >> (code_point & 63)) & 1u;
    bool inside = false;
    for (const auto& range : ranges) {
      if (code_point < range.first) break;
      if (code_point <= range.second) { inside = true; break; }
    }
    return inside != negated;
  }
  // Whether some code point in [low, high] is in the set (high >= 128: for cut UTF-8 characters).
  bool intersects(std::uint32_t low, std::uint32_t high) const {
    for (const auto& range : ranges) {
      if (negated) {
        if (range.first <= low && range.second >= high) return false;  // merged: one range covers all or none
      } else if (range.first <= high && range.second >= low) {
        return true;
      }
    }
    return negated;
  }
  void finish() {
    std::sort(ranges.begin(), ranges.end());
    std::vector<std::pair<std::uint32_t, std::uint32_t>> merged;
    for (const auto& range : ranges) {
      if (!merged.empty() && range.first <= merged.back().second + 1) {
        merged.back().second = std::max(merged.back().second, range.second);
      } else {
        merged.push_back(range);
      }
    }
    ranges = std::move(merged);
    ascii[0] = ascii[1] = 0;
    for (std::uint32_t c = 0; c < 128; ++c) {
      bool inside = false;
      for (const auto& range : ranges) inside = inside || (c >= range.first && c <= range.second);
      if (inside != negated) ascii[c >> 6] |= std::uint64_t(1) << (c & 63);
    }
  }
};

class Parser;

}  // namespace grammar
}  // namespace detail

// A parsed grammar: immutable, shared by the matchers that use it.
class Grammar {
 public:
  static Result<std::shared_ptr<const Grammar>> parse(std::string_view text, const GrammarLimits& limits = {});

  std::size_t rule_count() const noexcept { return rule_names_.size(); }
  const std::string& rule_name(std::size_t rule) const { return rule_names_[rule]; }
  std::size_t element_count() const noexcept { return elements_.size(); }
  std::uint32_t root() const noexcept { return root_; }

  // Internal representation, used by GrammarMatcher.
  const std::vector<detail::grammar::Element>& elements() const noexcept { return elements_; }
  const std::vector<detail::grammar::CharacterSet>& character_sets() const noexcept { return sets_; }
  // alternatives(rule): positions in elements() where each alternative starts.
  const std::vector<std::uint32_t>& alternatives(std::uint32_t rule) const { return alternatives_[rule]; }

 private:
  friend class detail::grammar::Parser;
  std::vector<std::string> rule_names_;
  std::vector<std::vector<std::uint32_t>> alternatives_;   // [rule] -> start positions
  std::vector<detail::grammar::Element> elements_;          // every alternative, each ending in `end`
  std::vector<detail::grammar::CharacterSet> sets_;
  std::uint32_t root_ = 0;
};

namespace detail {
namespace grammar {

using Sequence = std::vector<Element>;

class Parser {
 public:
  Parser(std::string_view text, const GrammarLimits& limits) : text_(text), limits_(limits) {}

  Result<std::shared_ptr<const Grammar>> run() {
    if (text_.size() > limits_.max_text_bytes) {
      return fail(ErrorCode::invalid_argument, "grammar of " + std::to_string(text_.size()) + " bytes is over the limit of " +
                                                   std::to_string(limits_.max_text_bytes));
    }
    const std::size_t invalid_at = unicode::find_invalid_utf8(text_);
    if (invalid_at != std::string_view::npos) return error_at(invalid_at, "the grammar is not valid UTF-8");
    skip_space(true);
    while (pos_ < text_.size()) {
      LAMINA_TRY(parse_rule());
      skip_space(true);
    }
    for (std::size_t rule = 0; rule < rule_defined_.size(); ++rule) {
      if (!rule_defined_[rule]) {
        return error_at(rule_first_use_[rule], "undefined rule '" + names_[rule] + "'");
      }
    }
    auto root = ids_.find("root");
    if (root == ids_.end()) return fail(ErrorCode::invalid_argument, "the grammar has no 'root' rule");
    LAMINA_TRY(check_left_recursion());
    // Flatten: alternatives of every rule, each ending in `end`.
    auto grammar = std::make_shared<Grammar>();
    grammar->rule_names_ = names_;
    grammar->alternatives_.resize(rules_.size());
    for (std::size_t rule = 0; rule < rules_.size(); ++rule) {
      for (const Sequence& sequence : rules_[rule]) {
        grammar->alternatives_[rule].push_back(static_cast<std::uint32_t>(grammar->elements_.size()));
        grammar->elements_.insert(grammar->elements_.end(), sequence.begin(), sequence.end());
        grammar->elements_.push_back(Element{});
      }
    }
    grammar->sets_ = std::move(sets_);
    grammar->root_ = root->second;
    return std::shared_ptr<const Grammar>(std::move(grammar));
  }

 private:
  Error error_at(std::size_t pos, const std::string& what) const {
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < pos && i < text_.size(); ++i) {
      const unsigned char byte = static_cast<unsigned char>(text_[i]);
      if (byte == '\n') { ++line; column = 1; }
      else if ((byte & 0xC0) != 0x80) ++column;  // columns count code points
    }
    return fail(ErrorCode::invalid_argument, "line " + std::to_string(line) + ", column " + std::to_string(column) + ": " + what);
  }

  // Spaces, tabs, comments; newlines only where `newlines` (between rules, inside groups).
  void skip_space(bool newlines) {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == ' ' || c == '\t') ++pos_;
      else if (c == '#') { while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_; }
      else if (newlines && (c == '\n' || c == '\r')) ++pos_;
      else break;
    }
  }
  static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  }
  std::string_view parse_name() {
    const std::size_t start = pos_;
    while (pos_ < text_.size() && is_name_char(text_[pos_])) ++pos_;
    return text_.substr(start, pos_ - start);
  }

  Result<std::uint32_t> rule_id(std::string_view name, std::size_t use_pos) {
    auto found = ids_.find(std::string(name));
    if (found != ids_.end()) return found->second;
    return new_rule(std::string(name), use_pos);
  }
  Result<std::uint32_t> new_rule(std::string name, std::size_t use_pos) {
    if (rules_.size() >= limits_.max_rules) {
      return error_at(use_pos, "more than " + std::to_string(limits_.max_rules) + " rules");
    }
    const std::uint32_t id = static_cast<std::uint32_t>(rules_.size());
    ids_.emplace(name, id);
    names_.push_back(std::move(name));
    rules_.emplace_back();
    rule_defined_.push_back(false);
    rule_first_use_.push_back(use_pos);
    return id;
  }
  // A generated rule for a group or a repetition: "<parent>_<n>", defined at once.
  Result<std::uint32_t> generated_rule(std::vector<Sequence> alternatives) {
    std::string name = current_rule_name_ + "_" + std::to_string(rules_.size());
    LAMINA_GRAMMAR_ASSIGN(std::uint32_t id, new_rule(std::move(name), pos_));
    rules_[id] = std::move(alternatives);
    rule_defined_[id] = true;
    return id;
  }
  Result<void> count_elements(std::size_t count) {
    element_total_ += count;
    if (element_total_ > limits_.max_elements) {
      return error_at(pos_, "the grammar expands to more than " + std::to_string(limits_.max_elements) + " elements");
    }
    return success();
  }

  Result<void> parse_rule() {
    const std::size_t name_pos = pos_;
    const std::string_view name = parse_name();
    if (name.empty()) return error_at(pos_, "expected a rule name");
    skip_space(false);
    if (text_.compare(pos_, 3, "::=") != 0) return error_at(pos_, "expected '::=' after rule name '" + std::string(name) + "'");
    pos_ += 3;
    LAMINA_GRAMMAR_ASSIGN(std::uint32_t id, rule_id(name, name_pos));
    if (rule_defined_[id]) return error_at(name_pos, "rule '" + std::string(name) + "' is defined twice");
    rule_defined_[id] = true;
    current_rule_name_ = std::string(name);
    skip_space(true);
    LAMINA_GRAMMAR_ASSIGN(std::vector<Sequence> alternatives, parse_alternatives(0));
    rules_[id] = std::move(alternatives);
    if (pos_ < text_.size() && text_[pos_] != '\n' && text_[pos_] != '\r') {
      return error_at(pos_, std::string("unexpected '") + text_[pos_] + "'");
    }
    return success();
  }

  Result<std::vector<Sequence>> parse_alternatives(int depth) {
    std::vector<Sequence> alternatives;
    for (;;) {
      LAMINA_GRAMMAR_ASSIGN(Sequence sequence, parse_sequence(depth));
      alternatives.push_back(std::move(sequence));
      if (pos_ < text_.size() && text_[pos_] == '|') {
        ++pos_;
        skip_space(true);
        continue;
      }
      return alternatives;
    }
  }

  Result<std::uint32_t> parse_escape() {  // at the backslash
    const std::size_t start = pos_;
    ++pos_;
    if (pos_ >= text_.size()) return error_at(start, "unfinished escape");
    const char c = text_[pos_++];
    int digits = 0;
    switch (c) {
      case 'n': return 0x0Au;
      case 't': return 0x09u;
      case 'r': return 0x0Du;
      case '\\': case '"': case '[': case ']': case '-': case '^': return static_cast<std::uint32_t>(c);
      case 'x': digits = 2; break;
      case 'u': digits = 4; break;
      case 'U': digits = 8; break;
      default: return error_at(start, std::string("unknown escape '\\") + c + "'");
    }
    std::uint32_t value = 0;
    for (int i = 0; i < digits; ++i) {
      if (pos_ >= text_.size()) return error_at(start, "unfinished escape");
      const char h = text_[pos_++];
      const int nibble = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
      if (nibble < 0) return error_at(pos_ - 1, "expected a hexadecimal digit in escape");
      value = (value << 4) | static_cast<std::uint32_t>(nibble);
    }
    if (value > 0x10FFFF) return error_at(start, "escape beyond U+10FFFF");
    return value;
  }
  // One code point of a literal or class (escape or UTF-8), at pos_.
  Result<std::uint32_t> parse_char() {
    if (text_[pos_] == '\\') return parse_escape();
    std::size_t length = 0;
    const char32_t code_point = unicode::decode_valid_utf8(text_, pos_, length);  // checked valid in run()
    pos_ += length;
    return static_cast<std::uint32_t>(code_point);
  }

  std::uint32_t add_set(CharacterSet set) {
    set.finish();
    std::string key(set.negated ? "^" : "+");
    for (const auto& range : set.ranges) key += std::to_string(range.first) + "-" + std::to_string(range.second) + ",";
    auto found = set_ids_.find(key);
    if (found != set_ids_.end()) return found->second;
    const std::uint32_t id = static_cast<std::uint32_t>(sets_.size());
    sets_.push_back(std::move(set));
    set_ids_.emplace(std::move(key), id);
    return id;
  }
  Element single_char(std::uint32_t code_point) {
    CharacterSet set;
    set.ranges.push_back({code_point, code_point});
    return Element{ElementKind::character_set, add_set(std::move(set))};
  }

  Result<Sequence> parse_sequence(int depth) {
    Sequence sequence;
    for (;;) {
      if (pos_ >= text_.size()) break;
      const char c = text_[pos_];
      const std::size_t item_start = sequence.size();
      const std::size_t item_pos = pos_;
      if (c == '"') {
        ++pos_;
        for (;;) {
          if (pos_ >= text_.size() || text_[pos_] == '\n') return error_at(item_pos, "unterminated string literal");
          if (text_[pos_] == '"') { ++pos_; break; }
          LAMINA_GRAMMAR_ASSIGN(std::uint32_t code_point, parse_char());
          sequence.push_back(single_char(code_point));
        }
        if (sequence.size() == item_start) {  // "" matches nothing: no element
          skip_space(depth > 0);
          continue;
        }
      } else if (c == '[') {
        ++pos_;
        CharacterSet set;
        if (pos_ < text_.size() && text_[pos_] == '^') { set.negated = true; ++pos_; }
        for (;;) {
          if (pos_ >= text_.size() || text_[pos_] == '\n') return error_at(item_pos, "unterminated character class");
          if (text_[pos_] == ']') { ++pos_; break; }
          LAMINA_GRAMMAR_ASSIGN(std::uint32_t low, parse_char());
          std::uint32_t high = low;
          if (pos_ + 1 < text_.size() && text_[pos_] == '-' && text_[pos_ + 1] != ']') {
            ++pos_;
            const std::size_t high_pos = pos_;
            LAMINA_GRAMMAR_ASSIGN(std::uint32_t parsed_high, parse_char());
            high = parsed_high;
            if (high < low) return error_at(high_pos, "character range out of order");
          }
          set.ranges.push_back({low, high});
        }
        sequence.push_back(Element{ElementKind::character_set, add_set(std::move(set))});
      } else if (c == '.') {
        ++pos_;
        CharacterSet set;
        set.ranges.push_back({0, 0x10FFFF});
        sequence.push_back(Element{ElementKind::character_set, add_set(std::move(set))});
      } else if (c == '(') {
        if (depth + 1 > limits_.max_nesting) {
          return error_at(pos_, "parentheses nested deeper than " + std::to_string(limits_.max_nesting));
        }
        ++pos_;
        skip_space(true);
        LAMINA_GRAMMAR_ASSIGN(std::vector<Sequence> alternatives, parse_alternatives(depth + 1));
        if (pos_ >= text_.size() || text_[pos_] != ')') return error_at(pos_, "expected ')'");
        ++pos_;
        LAMINA_GRAMMAR_ASSIGN(std::uint32_t group, generated_rule(std::move(alternatives)));
        sequence.push_back(Element{ElementKind::rule_reference, group});
      } else if (is_name_char(c)) {
        const std::size_t saved = pos_;
        const std::string_view name = parse_name();
        // A name followed by ::= starts the next rule (only possible after a newline at depth 0).
        std::size_t look = pos_;
        while (look < text_.size() && (text_[look] == ' ' || text_[look] == '\t')) ++look;
        if (text_.compare(look, 3, "::=") == 0) { pos_ = saved; break; }
        LAMINA_GRAMMAR_ASSIGN(std::uint32_t rule, rule_id(name, saved));
        sequence.push_back(Element{ElementKind::rule_reference, rule});
      } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        return error_at(pos_, std::string("'") + c + "' with nothing to repeat");
      } else {
        break;  // '|', ')', newline, or an error the caller reports
      }
      LAMINA_TRY(count_elements(sequence.size() - item_start));
      skip_space(depth > 0);
      // Postfix repetition applies to the whole item (a literal "abc"* repeats "abc").
      if (pos_ < text_.size() && (text_[pos_] == '*' || text_[pos_] == '+' || text_[pos_] == '?' || text_[pos_] == '{')) {
        std::uint32_t min_count = 0, max_count = 0;
        bool unbounded = false;
        const char op = text_[pos_];
        const std::size_t op_pos = pos_;
        ++pos_;
        if (op == '*') unbounded = true;
        else if (op == '+') { min_count = 1; unbounded = true; }
        else if (op == '?') max_count = 1;
        else {
          LAMINA_GRAMMAR_ASSIGN(std::uint32_t low, parse_count(op_pos));
          min_count = max_count = low;
          skip_space(true);
          if (pos_ < text_.size() && text_[pos_] == ',') {
            ++pos_;
            skip_space(true);
            if (pos_ < text_.size() && text_[pos_] == '}') unbounded = true;
            else {
              LAMINA_GRAMMAR_ASSIGN(std::uint32_t high, parse_count(op_pos));
              max_count = high;
              if (max_count < min_count) return error_at(op_pos, "repetition {m,n} with n < m");
            }
          }
          skip_space(true);
          if (pos_ >= text_.size() || text_[pos_] != '}') return error_at(pos_, "expected '}'");
          ++pos_;
        }
        Sequence item(sequence.begin() + static_cast<std::ptrdiff_t>(item_start), sequence.end());
        sequence.resize(item_start);
        Element repeated = item[0];
        if (item.size() > 1) {
          LAMINA_GRAMMAR_ASSIGN(std::uint32_t wrapped, generated_rule({item}));
          repeated = Element{ElementKind::rule_reference, wrapped};
        }
        LAMINA_TRY(count_elements(min_count + (unbounded ? 2 : 2 * (max_count - min_count))));
        for (std::uint32_t i = 0; i < min_count; ++i) sequence.push_back(repeated);
        if (unbounded) {  // r ::= x r | ""
          LAMINA_GRAMMAR_ASSIGN(std::uint32_t star, generated_rule({}));
          rules_[star] = {Sequence{repeated, Element{ElementKind::rule_reference, star}}, Sequence{}};
          sequence.push_back(Element{ElementKind::rule_reference, star});
        } else if (max_count > min_count) {  // r1 ::= x | "" ; rk ::= x r(k-1) | ""
          LAMINA_GRAMMAR_ASSIGN(std::uint32_t optional, generated_rule({Sequence{repeated}, Sequence{}}));
          for (std::uint32_t k = min_count + 1; k < max_count; ++k) {
            LAMINA_GRAMMAR_ASSIGN(std::uint32_t longer,
                              generated_rule({Sequence{repeated, Element{ElementKind::rule_reference, optional}}, Sequence{}}));
            optional = longer;
          }
          sequence.push_back(Element{ElementKind::rule_reference, optional});
        }
        skip_space(depth > 0);
      }
    }
    return sequence;
  }

  Result<std::uint32_t> parse_count(std::size_t op_pos) {
    skip_space(true);
    const std::size_t start = pos_;
    std::uint64_t value = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      value = value * 10 + static_cast<std::uint64_t>(text_[pos_] - '0');
      if (value > limits_.max_repetition) {
        return error_at(op_pos, "repetition count over the limit of " + std::to_string(limits_.max_repetition));
      }
      ++pos_;
    }
    if (pos_ == start) return error_at(pos_, "expected a number in repetition");
    return static_cast<std::uint32_t>(value);
  }

  // Left recursion: a rule reaching itself before consuming a character. Nullable rules are
  // found first (fixed point), then a depth-first search over "can start with" edges.
  Result<void> check_left_recursion() {
    const std::size_t count = rules_.size();
    std::vector<char> nullable(count, 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (std::size_t rule = 0; rule < count; ++rule) {
        if (nullable[rule]) continue;
        for (const Sequence& sequence : rules_[rule]) {
          bool all = true;
          for (const Element& element : sequence) {
            if (element.kind == ElementKind::character_set || !nullable[element.index]) { all = false; break; }
          }
          if (all) { nullable[rule] = 1; changed = true; break; }
        }
      }
    }
    std::vector<std::vector<std::uint32_t>> starts(count);
    for (std::size_t rule = 0; rule < count; ++rule) {
      for (const Sequence& sequence : rules_[rule]) {
        for (const Element& element : sequence) {
          if (element.kind == ElementKind::character_set) break;
          starts[rule].push_back(element.index);
          if (!nullable[element.index]) break;
        }
      }
    }
    // Iterative DFS (a hostile grammar may chain 65536 rules): 0 new, 1 on the path, 2 done.
    std::vector<char> state(count, 0);
    std::vector<std::pair<std::uint32_t, std::size_t>> path;
    for (std::uint32_t first = 0; first < count; ++first) {
      if (state[first]) continue;
      path.push_back({first, 0});
      state[first] = 1;
      while (!path.empty()) {
        auto& top = path.back();
        if (top.second < starts[top.first].size()) {
          const std::uint32_t next = starts[top.first][top.second++];
          if (state[next] == 1) {
            std::string cycle;
            bool in_cycle = false;
            for (const auto& step : path) {
              if (step.first == next) in_cycle = true;
              if (in_cycle) cycle += names_[step.first] + " -> ";
            }
            cycle += names_[next];
            return fail(ErrorCode::unsupported, "rule '" + names_[next] + "' is left-recursive (" + cycle +
                                                    "); rewrite it with repetition, e.g. list ::= item (\",\" item)*");
          }
          if (state[next] == 0) { state[next] = 1; path.push_back({next, 0}); }
        } else {
          state[top.first] = 2;
          path.pop_back();
        }
      }
    }
    return success();
  }

  std::string_view text_;
  GrammarLimits limits_;
  std::size_t pos_ = 0;
  std::size_t element_total_ = 0;
  std::string current_rule_name_;
  std::unordered_map<std::string, std::uint32_t> ids_;
  std::vector<std::string> names_;
  std::vector<std::vector<Sequence>> rules_;
  std::vector<char> rule_defined_;
  std::vector<std::size_t> rule_first_use_;
  std::vector<CharacterSet> sets_;
  std::unordered_map<std::string, std::uint32_t> set_ids_;
};

}  // namespace grammar
}  // namespace detail

inline Result<std::shared_ptr<const Grammar>> Grammar::parse(std::string_view text, const GrammarLimits& limits) {
  detail::grammar::Parser parser(text, limits);
  return parser.run();
}

// The state of a match: stacks plus a code point cut by a token boundary.
struct GrammarState {
  std::vector<std::int32_t> stacks;    // top node of each stack in the matcher's arena; -1 = empty (complete)
  std::uint32_t partial = 0;           // bits of a code point cut short
  std::uint8_t remaining = 0;          // continuation bytes still expected
  std::uint8_t length = 0;             // the cut code point's total length (overlong check)
};

// A pushdown recognizer: is the text so far a prefix of something the root rule derives?
class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const Grammar> grammar, const GrammarMatcherLimits& limits = {})
      : grammar_(std::move(grammar)), limits_(limits) {
    reset();
  }

  // Back to the start of the root rule.
  void reset() {
    nodes_.clear();
    state_ = GrammarState{};
    overflowed_ = false;
    for (std::uint32_t start : grammar_->alternatives(grammar_->root())) {
      if (!expand(start_node(start, -1), state_.stacks)) break;  // overflowed(): the start is cut short
    }
  }

  // Advances over `bytes` (any cut of UTF-8). On false the state is unchanged.
  bool accept_bytes(std::string_view bytes) {
    GrammarState next;
    if (!advance(state_, bytes, next)) return false;
    state_ = std::move(next);
    if (nodes_.size() > (1u << 16)) compact();
    return true;
  }
  bool accept_token_text(std::string_view token_text) { return accept_bytes(token_text); }

  // Whether accept_bytes(bytes) would succeed; the state is unchanged.
  bool can_accept(std::string_view bytes) const {
    const std::size_t mark = nodes_.size();
    GrammarState next;
    const bool accepted = advance(state_, bytes, next);
    nodes_.resize(mark);
    return accepted;
  }

  // The root rule can end here (and no code point is cut).
  bool is_complete() const { return is_complete(state_); }
  bool is_complete(const GrammarState& state) const {
    if (state.remaining != 0) return false;
    for (std::int32_t top : state.stacks) if (top < 0) return true;
    return false;
  }
  // No continuation at all is possible (cannot happen after successful steps unless the root is empty).
  bool is_dead() const { return state_.stacks.empty(); }
  // A step was refused because the limits on stacks were reached (an ambiguous grammar).
  bool overflowed() const { return overflowed_; }
  std::size_t stack_count() const { return state_.stacks.size(); }

  const GrammarState& state() const { return state_; }
  const Grammar& grammar() const { return *grammar_; }

  // Low level, for the token trie walk: one byte from `in` to `out` (out may be reused storage).
  // Nodes it creates stay until truncate_nodes(mark).
  bool step_byte(const GrammarState& in, unsigned char byte, GrammarState& out) const {
    out.stacks.clear();
    if (in.remaining == 0) {
      if (byte < 0x80) {
        out.partial = 0; out.remaining = 0; out.length = 0;
        return advance_code_point(in.stacks, byte, out.stacks);
      }
      std::uint8_t length = (byte >> 5) == 6 ? 2 : (byte >> 4) == 14 ? 3 : (byte >> 3) == 30 ? 4 : 0;
      if (length == 0 || byte == 0xC0 || byte == 0xC1 || byte > 0xF4) return false;
      out.partial = length == 2 ? (byte & 0x1Fu) : length == 3 ? (byte & 0x0Fu) : (byte & 0x07u);
      out.remaining = static_cast<std::uint8_t>(length - 1);
      out.length = length;
      return keep_stacks_for_prefix(in.stacks, out);
    }
    if ((byte & 0xC0) != 0x80) return false;
    const std::uint32_t value = (in.partial << 6) | (byte & 0x3Fu);
    if (in.remaining > 1) {
      out.partial = value; out.remaining = static_cast<std::uint8_t>(in.remaining - 1); out.length = in.length;
      return keep_stacks_for_prefix(in.stacks, out);
    }
    static const std::uint32_t minimum[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (value < minimum[in.length] || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return false;
    out.partial = 0; out.remaining = 0; out.length = 0;
    return advance_code_point(in.stacks, value, out.stacks);
  }
  // Structural identity of states (positions of every stack down to the bottom): equal states
  // behave the same on any input, whatever node ids they use. For the mask's transition cache.
  std::uint64_t state_hash(const GrammarState& state) const {
    std::uint64_t hash = 0x9E3779B97F4A7C15ull ^ (std::uint64_t(state.partial) << 8) ^ state.remaining;
    for (std::int32_t top : state.stacks) {
      std::uint64_t chain = 0xCBF29CE484222325ull;
      for (std::int32_t id = top; id >= 0; id = nodes_[static_cast<std::size_t>(id)].parent) {
        chain = (chain ^ nodes_[static_cast<std::size_t>(id)].position) * 0x100000001B3ull;
      }
      hash = (hash ^ chain) * 0x9E3779B97F4A7C15ull + 1;
    }
    return hash;
  }
  bool same_state(const GrammarState& a, const GrammarState& b) const {
    if (a.partial != b.partial || a.remaining != b.remaining || a.length != b.length || a.stacks.size() != b.stacks.size()) return false;
    for (std::size_t i = 0; i < a.stacks.size(); ++i) if (!same_stack(a.stacks[i], b.stacks[i])) return false;
    return true;
  }
  // The same identity as a flat list (survives the arena's compaction, unlike node ids):
  // [partial, remaining, length, then per stack: depth, positions from the top down].
  void state_signature(const GrammarState& state, std::vector<std::uint32_t>& out) const {
    out.clear();
    out.push_back(state.partial);
    out.push_back(state.remaining);
    out.push_back(state.length);
    for (std::int32_t top : state.stacks) {
      out.push_back(top < 0 ? 0u : nodes_[static_cast<std::size_t>(top)].depth);
      for (std::int32_t id = top; id >= 0; id = nodes_[static_cast<std::size_t>(id)].parent) out.push_back(nodes_[static_cast<std::size_t>(id)].position);
    }
  }
  std::size_t node_mark() const { return nodes_.size(); }
  void truncate_nodes(std::size_t mark) const { nodes_.resize(mark); }

 private:
  using Element = detail::grammar::Element;
  using ElementKind = detail::grammar::ElementKind;

  // One position of a stack; `parent` is where to return (-1: the bottom).
  struct Node {
    std::uint32_t position;
    std::int32_t parent;
    std::uint32_t depth;
  };

  std::int32_t start_node(std::uint32_t position, std::int32_t parent) const {
    nodes_.push_back(Node{position, parent, parent < 0 ? 1u : nodes_[static_cast<std::size_t>(parent)].depth + 1});
    return static_cast<std::int32_t>(nodes_.size() - 1);
  }

  // A cut UTF-8 character: keeps the stacks whose next set holds some code point starting with
  // the bits so far (so a token ending in a lead byte is allowed only where it can go on).
  bool keep_stacks_for_prefix(const std::vector<std::int32_t>& stacks, GrammarState& out) const {
    const unsigned shift = 6u * out.remaining;
    const std::uint32_t low = out.partial << shift;
    const std::uint32_t high = low | ((std::uint32_t(1) << shift) - 1);
    const auto& elements = grammar_->elements();
    const auto& sets = grammar_->character_sets();
    for (std::int32_t top : stacks) {
      if (top >= 0 && sets[elements[nodes_[static_cast<std::size_t>(top)].position].index].intersects(low, high)) out.stacks.push_back(top);
    }
    return !out.stacks.empty();
  }

  bool advance(const GrammarState& from, std::string_view bytes, GrammarState& to) const {
    if (bytes.empty()) { to = from; return true; }
    GrammarState scratch[2];
    const GrammarState* in = &from;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      GrammarState& out = scratch[i & 1];
      if (!step_byte(*in, static_cast<unsigned char>(bytes[i]), out)) return false;
      in = &out;
    }
    to = *in;
    return true;
  }

  // Matches `code_point` against the top of every stack; survivors move past it and are expanded.
  bool advance_code_point(const std::vector<std::int32_t>& stacks, std::uint32_t code_point, std::vector<std::int32_t>& out) const {
    const auto& elements = grammar_->elements();
    const auto& sets = grammar_->character_sets();
    for (std::int32_t top : stacks) {
      if (top < 0) continue;
      const Node node = nodes_[static_cast<std::size_t>(top)];
      if (!sets[elements[node.position].index].contains(code_point)) continue;
      const std::uint32_t next = node.position + 1;
      const std::int32_t base = elements[next].kind == ElementKind::end ? node.parent : start_node(next, node.parent);
      if (!expand(base, out)) return false;
    }
    return !out.empty();
  }

  // Replaces a stack whose top may be a rule reference by the stacks whose tops are character
  // sets (or the empty stack), appended to `out` without duplicates. Iterative: no recursion depth.
  bool expand(std::int32_t stack, std::vector<std::int32_t>& out) const {
    const auto& elements = grammar_->elements();
    pending_.clear();
    pending_.push_back(stack);
    std::size_t expansions = 0;
    while (!pending_.empty()) {
      const std::int32_t id = pending_.back();
      pending_.pop_back();
      if (id >= 0 && elements[nodes_[static_cast<std::size_t>(id)].position].kind == ElementKind::rule_reference) {
        if (++expansions > limits_.max_expansions) { overflowed_ = true; return false; }
        const Node node = nodes_[static_cast<std::size_t>(id)];
        if (node.depth > limits_.max_stack_depth) { overflowed_ = true; return false; }
        const std::uint32_t next = node.position + 1;
        const std::int32_t return_to = elements[next].kind == ElementKind::end ? node.parent : start_node(next, node.parent);
        const auto& alternatives = grammar_->alternatives(elements[node.position].index);
        for (auto it = alternatives.rbegin(); it != alternatives.rend(); ++it) {
          pending_.push_back(elements[*it].kind == ElementKind::end ? return_to : start_node(*it, return_to));
        }
        continue;
      }
      if (!contains_stack(out, id)) {
        if (out.size() >= limits_.max_stacks) { overflowed_ = true; return false; }
        out.push_back(id);
      }
    }
    return true;
  }

  // Stacks built twice have different node ids: compare positions down to a shared node.
  bool same_stack(std::int32_t a, std::int32_t b) const {
    while (a != b) {
      if (a < 0 || b < 0) return false;
      const Node& first = nodes_[static_cast<std::size_t>(a)];
      const Node& second = nodes_[static_cast<std::size_t>(b)];
      if (first.position != second.position || first.depth != second.depth) return false;
      a = first.parent;
      b = second.parent;
    }
    return true;
  }
  bool contains_stack(const std::vector<std::int32_t>& stacks, std::int32_t id) const {
    for (std::int32_t other : stacks) if (same_stack(other, id)) return true;
    return false;
  }

  // Keeps only the nodes the live stacks reach (the arena grows with each accepted byte).
  void compact() {
    std::vector<Node> kept;
    std::unordered_map<std::int32_t, std::int32_t> renamed;
    std::vector<std::int32_t> chain;
    for (std::int32_t& top : state_.stacks) {
      chain.clear();
      for (std::int32_t id = top; id >= 0 && !renamed.count(id); id = nodes_[static_cast<std::size_t>(id)].parent) chain.push_back(id);
      for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
        Node node = nodes_[static_cast<std::size_t>(*it)];
        if (node.parent >= 0) node.parent = renamed[node.parent];
        kept.push_back(node);
        renamed[*it] = static_cast<std::int32_t>(kept.size() - 1);
      }
      if (top >= 0) top = renamed[top];
    }
    nodes_ = std::move(kept);
  }

  std::shared_ptr<const Grammar> grammar_;
  GrammarMatcherLimits limits_;
  GrammarState state_;
  mutable std::vector<Node> nodes_;             // the arena of stack positions
  mutable std::vector<std::int32_t> pending_;   // expand()'s work list
  mutable bool overflowed_ = false;
};

// A byte trie of every token's text, built once per vocabulary and shared by constraints.
class TokenTrie {
 public:
  // token_texts: [vocab_size] the bytes of each token; an empty text is never allowed.
  // end_of_generation: ids allowed only where the grammar is complete.
  static std::shared_ptr<const TokenTrie> from_texts(std::vector<std::string> token_texts, std::vector<Token> end_of_generation = {}) {
    auto trie = std::make_shared<TokenTrie>();
    trie->texts_ = std::move(token_texts);
    trie->is_end_of_generation_.assign(trie->texts_.size(), 0);
    for (Token token : end_of_generation) {
      if (token >= 0 && static_cast<std::size_t>(token) < trie->texts_.size()) trie->is_end_of_generation_[static_cast<std::size_t>(token)] = 1;
    }
    std::vector<Token> order;
    for (std::size_t id = 0; id < trie->texts_.size(); ++id) {
      if (!trie->is_end_of_generation_[id] && !trie->texts_[id].empty()) order.push_back(static_cast<Token>(id));
      if (trie->is_end_of_generation_[id]) trie->end_of_generation_.push_back(static_cast<Token>(id));
    }
    const auto& texts = trie->texts_;
    std::sort(order.begin(), order.end(), [&](Token a, Token b) {
      return texts[static_cast<std::size_t>(a)] < texts[static_cast<std::size_t>(b)] || (texts[static_cast<std::size_t>(a)] == texts[static_cast<std::size_t>(b)] && a < b);
    });
    trie->nodes_.push_back(Node{});
    trie->build(0, order, 0, order.size(), 0);
    return trie;
  }
  // From a tokenizer: each token's decoded bytes (Tokenizer::piece); control tokens other than
  // end-of-generation ones are never allowed.
  static std::shared_ptr<const TokenTrie> from_tokenizer(const Tokenizer& tokenizer) {
    std::vector<std::string> texts(tokenizer.vocab_size());
    for (std::size_t id = 0; id < texts.size(); ++id) {
      const Token token = static_cast<Token>(id);
      if (!tokenizer.is_control(token)) texts[id] = std::string(tokenizer.piece(token));
    }
    return from_texts(std::move(texts), tokenizer.end_of_generation_tokens());
  }

  std::size_t vocab_size() const noexcept { return texts_.size(); }
  const std::string& text(Token token) const { return texts_[static_cast<std::size_t>(token)]; }
  bool is_end_of_generation(Token token) const { return is_end_of_generation_[static_cast<std::size_t>(token)] != 0; }
  std::size_t node_count() const noexcept { return nodes_.size(); }

 private:
  friend class GrammarConstraint;
  struct Node {
    std::uint32_t first_edge = 0, edge_count = 0;    // into edges_, sorted by byte
    std::uint32_t first_token = 0, token_count = 0;  // into tokens_: tokens whose text ends here
  };
  struct Edge {
    std::uint8_t byte;
    std::uint32_t child;
  };

  // order[begin, end): sorted texts sharing their first `depth` bytes, for node `node`.
  // Recursion depth = the longest token (bytes).
  void build(std::uint32_t node, const std::vector<Token>& order, std::size_t begin, std::size_t end, std::size_t depth) {
    nodes_[node].first_token = static_cast<std::uint32_t>(tokens_.size());
    while (begin < end && texts_[static_cast<std::size_t>(order[begin])].size() == depth) tokens_.push_back(order[begin++]);
    nodes_[node].token_count = static_cast<std::uint32_t>(tokens_.size()) - nodes_[node].first_token;
    std::vector<std::pair<std::uint8_t, std::pair<std::size_t, std::size_t>>> groups;
    for (std::size_t i = begin; i < end;) {
      const std::uint8_t byte = static_cast<std::uint8_t>(texts_[static_cast<std::size_t>(order[i])][depth]);
      std::size_t j = i;
      while (j < end && static_cast<std::uint8_t>(texts_[static_cast<std::size_t>(order[j])][depth]) == byte) ++j;
      groups.push_back({byte, {i, j}});
      i = j;
    }
    nodes_[node].first_edge = static_cast<std::uint32_t>(edges_.size());
    nodes_[node].edge_count = static_cast<std::uint32_t>(groups.size());
    for (const auto& group : groups) {
      edges_.push_back(Edge{group.first, static_cast<std::uint32_t>(nodes_.size())});
      nodes_.push_back(Node{});
    }
    for (std::size_t g = 0; g < groups.size(); ++g) {
      build(edges_[nodes_[node].first_edge + g].child, order, groups[g].second.first, groups[g].second.second, depth + 1);
    }
  }

  std::vector<std::string> texts_;
  std::vector<char> is_end_of_generation_;
  std::vector<Token> end_of_generation_;
  std::vector<Node> nodes_;   // [0] is the root (the empty prefix)
  std::vector<Edge> edges_;
  std::vector<Token> tokens_;
};

// A matcher plus a vocabulary: which tokens may come next, and the sampled token's check.
class GrammarConstraint {
 public:
  GrammarConstraint(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const TokenTrie> trie, const GrammarMatcherLimits& limits = {})
      : matcher_(std::move(grammar), limits), trie_(std::move(trie)), allowed_(trie_->vocab_size(), 0) {}

  // The fast path: can `token` come next? (One token's bytes; no mask.)
  bool allows(Token token) const {
    if (token < 0 || static_cast<std::size_t>(token) >= trie_->vocab_size()) return false;
    if (trie_->is_end_of_generation(token)) return matcher_.is_complete();
    const std::string& text = trie_->text(token);
    return !text.empty() && matcher_.can_accept(text);
  }

  // allowed()[token] = 1 where the token may come next. Walks the trie once, depth first.
  // States met on the way are interned (structurally equal states share an id) and each
  // (state, byte) step is computed once: inside a JSON string almost every byte leads back to
  // the same state, so most trie nodes cost one table look-up.
  // Masks of the last few states are kept: consecutive tokens inside one JSON string, or the
  // strings of sibling values, meet the same state again, and then a mask costs one copy.
  const std::vector<std::uint8_t>& compute_allowed() {
    matcher_.state_signature(matcher_.state(), signature_);
    ++use_clock_;
    for (CachedMask& cached : cache_) {
      if (cached.last_use != 0 && cached.signature == signature_) {
        cached.last_use = use_clock_;
        std::copy(cached.allowed.begin(), cached.allowed.end(), allowed_.begin());
        return allowed_;
      }
    }
    walk_trie();
    if (!cache_.empty()) {
      CachedMask* oldest = &cache_[0];
      for (CachedMask& cached : cache_) if (cached.last_use < oldest->last_use) oldest = &cached;
      oldest->signature.assign(signature_.begin(), signature_.end());
      oldest->allowed.assign(allowed_.begin(), allowed_.end());
      oldest->last_use = use_clock_;
    }
    return allowed_;
  }

  // Number of states whose masks are kept (each costs [vocab_size] bytes); 0 turns the cache off.
  void set_mask_cache_size(std::size_t states) { cache_.assign(states, CachedMask{}); }

 private:
  void walk_trie() {
    std::fill(allowed_.begin(), allowed_.end(), std::uint8_t(0));
    const bool complete = matcher_.is_complete();
    for (Token token : trie_->end_of_generation_) allowed_[static_cast<std::size_t>(token)] = complete ? 1 : 0;
    const std::size_t mark = matcher_.node_mark();
    interned_count_ = 0;
    hash_heads_.clear();
    transitions_.clear();
    intern(matcher_.state());
    frames_.clear();
    frames_.push_back(Frame{0, 0, 0});
    while (!frames_.empty()) {
      Frame& frame = frames_.back();
      const TokenTrie::Node& node = trie_->nodes_[frame.node];
      if (frame.next_edge == node.edge_count) {
        frames_.pop_back();
        continue;
      }
      const TokenTrie::Edge edge = trie_->edges_[node.first_edge + frame.next_edge++];
      const std::size_t slot = static_cast<std::size_t>(frame.state) * 256 + edge.byte;
      std::int32_t next = transitions_[slot];
      if (next == unknown_transition) {
        next = matcher_.step_byte(interned_[static_cast<std::size_t>(frame.state)].state, edge.byte, scratch_) ? intern(scratch_) : dead_transition;
        transitions_[slot] = next;  // intern() may have grown transitions_: index again
      }
      if (next == dead_transition) continue;
      const TokenTrie::Node& child = trie_->nodes_[edge.child];
      for (std::uint32_t i = 0; i < child.token_count; ++i) allowed_[static_cast<std::size_t>(trie_->tokens_[child.first_token + i])] = 1;
      if (child.edge_count != 0) frames_.push_back(Frame{edge.child, 0, next});  // leaves (most nodes) need no frame
    }
    matcher_.truncate_nodes(mark);
  }

 public:
  const std::vector<std::uint8_t>& allowed() const { return allowed_; }

 private:
  struct Frame {
    std::uint32_t node;       // trie node
    std::uint32_t next_edge;  // its next child to try
    std::int32_t state;       // interned state after this node's bytes
  };
  struct InternedState {
    GrammarState state;
    std::uint64_t hash = 0;
    std::int32_t next_same_hash = -1;
  };
  static constexpr std::int32_t unknown_transition = -2, dead_transition = -1;

  // The id of a state structurally equal to `state`, adding it when new.
  std::int32_t intern(const GrammarState& state) {
    const std::uint64_t hash = matcher_.state_hash(state);
    auto head = hash_heads_.find(hash);
    std::int32_t first = head == hash_heads_.end() ? -1 : head->second;
    for (std::int32_t id = first; id >= 0; id = interned_[static_cast<std::size_t>(id)].next_same_hash) {
      if (matcher_.same_state(interned_[static_cast<std::size_t>(id)].state, state)) return id;
    }
    if (interned_.size() <= interned_count_) interned_.emplace_back();
    InternedState& slot = interned_[interned_count_];
    slot.state.stacks.assign(state.stacks.begin(), state.stacks.end());
    slot.state.partial = state.partial;
    slot.state.remaining = state.remaining;
    slot.state.length = state.length;
    slot.hash = hash;
    slot.next_same_hash = first;
    const std::int32_t id = static_cast<std::int32_t>(interned_count_++);
    hash_heads_[hash] = id;
    transitions_.resize(interned_count_ * 256, unknown_transition);
    return id;
  }

 public:

  // logits: [vocab_size]; disallowed tokens become -infinity.
  void mask_logits(float* logits) {
    compute_allowed();
    const float never = -std::numeric_limits<float>::infinity();
    for (std::size_t token = 0; token < allowed_.size(); ++token) if (!allowed_[token]) logits[token] = never;
  }

  // Advances over a chosen token; false (state unchanged) when the grammar does not allow it.
  bool accept_token(Token token) {
    if (!allows(token)) return false;
    if (trie_->is_end_of_generation(token)) return true;
    return matcher_.accept_bytes(trie_->text(token));
  }
  bool is_complete() const { return matcher_.is_complete(); }
  void reset() { matcher_.reset(); }
  GrammarMatcher& matcher() { return matcher_; }
  const GrammarMatcher& matcher() const { return matcher_; }

 private:
  GrammarMatcher matcher_;
  std::shared_ptr<const TokenTrie> trie_;
  std::vector<std::uint8_t> allowed_;     // [vocab_size]
  std::vector<InternedState> interned_;   // states of the current walk (storage reused)
  std::size_t interned_count_ = 0;
  std::unordered_map<std::uint64_t, std::int32_t> hash_heads_;
  std::vector<std::int32_t> transitions_; // [interned state * 256 + byte] -> state, dead or unknown
  GrammarState scratch_;
  struct CachedMask {
    std::vector<std::uint32_t> signature;
    std::vector<std::uint8_t> allowed;    // [vocab_size]
    std::uint64_t last_use = 0;           // 0: empty
  };
  std::vector<CachedMask> cache_ = std::vector<CachedMask>(4);
  std::vector<std::uint32_t> signature_;
  std::uint64_t use_clock_ = 0;
  std::vector<Frame> frames_;            // the trie walk's path
};

// "Any JSON value" (RFC 8259), after llama.cpp's json.gbnf: whitespace between tokens is
// bounded (nothing, one space, or a newline and up to 20 spaces/tabs of indent) so sampling
// cannot spin on whitespace forever. Numbers and strings are unbounded, as in JSON.
inline const char* json_grammar() {
  return R"gbnf(root   ::= value
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x00-\x1F] |
    "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= "-"? ("0" | [1-9] [0-9]*) ("." [0-9]+)? ([eE] [-+]? [0-9]+)? ws

ws ::= | " " | "\n" [ \t]{0,20}
)gbnf";
}

LAMINA_NAMESPACE_END

#undef LAMINA_GRAMMAR_ASSIGN
#undef LAMINA_GRAMMAR_CONCAT
#undef LAMINA_GRAMMAR_CONCAT_
