// lamina/io/peft_config.hpp — a PEFT LoRA adapter's adapter_config.json, and PEFT's rules for
// which modules it targets and with which rank and alpha.
//
// NOT part of the umbrella header: this file includes nlohmann/json (through
// lamina/io/safetensors.hpp, whose JSON helpers it shares), and lamina/lamina.hpp stays free of JSON.
//
//   lamina::Result<lamina::peft::AdapterConfig> config = lamina::peft::read_adapter_config("lora-e-peft");
//   if (!config) return config.take_error();
//   if (lamina::peft::targets_module(*config, "model.layers.3.self_attn.v_proj")) {
//     lamina::peft::RankAlpha ra = lamina::peft::effective_rank_alpha(*config, "model.layers.3.self_attn.v_proj");
//     double scale = lamina::peft::scaling(*config, ra.rank, ra.alpha);  // alpha / r, or alpha / sqrt(r) (rsLoRA)
//   }
//
// The rules follow PEFT (huggingface/peft, src/peft/tuners/tuners_utils.py
// check_target_module_exists, src/peft/utils/other.py get_pattern_key). Module paths are those of
// the base model, e.g. "model.layers.3.self_attn.q_proj" (PEFT's tensor names add
// "base_model.model." in front and ".lora_A.weight" behind).
//
// Regular expressions: PEFT uses Python's `re` for a string target_modules / exclude_modules
// (full match), for rank_pattern / alpha_pattern keys and for layers_pattern. std::regex would
// abort on a bad pattern without exceptions, and backtracks without bound, so lamina has its own
// small matcher (detail::Regex): a Thompson NFA, linear in the length of the text, that supports
// literals, `.`, classes `[a-z_]` / `[^.]`, the escapes \d \D \w \W \s \S \. (and other escaped
// punctuation), groups `(...)` `(?:...)` `(?P<name>...)`, `|`, the quantifiers * + ? {n} {n,}
// {n,m} (lazy forms too: for a yes/no full match they are the same), and ^ $ \A \Z. Anything else
// (backreferences, lookaround, \b, inline flags, possessive quantifiers) is rejected by
// parse_adapter_config with ErrorCode::unsupported naming the key. Matching is byte-wise; module
// paths are ASCII.
#pragma once

#include "../core/result.hpp"
#include "safetensors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bitset>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace lamina {
namespace peft {

struct AdapterConfig {
  std::string peft_type;  // always "LORA" after parsing
  int r = 8;
  double lora_alpha = 8;
  bool use_rslora = false;
  bool use_dora = false;
  bool fan_in_fan_out = false;  // the base layer stores its weight transposed (GPT-2 Conv1D)
  bool all_linear = false;      // target_modules == "all-linear"
  std::vector<std::string> target_modules;  // a list: a module matches an entry or ends with "." + entry
  std::string target_modules_regex;         // a string other than "all-linear": a full-match regex
  std::vector<std::string> exclude_modules;  // same rules as target_modules; checked first
  std::string exclude_modules_regex;
  std::vector<int> layers_to_transform;  // empty: every layer (PEFT allows an int or a list)
  std::string layers_pattern;            // the first (usually only) entry of layers_patterns
  std::vector<std::string> layers_patterns;  // PEFT allows a string or a list; regexes
  std::map<std::string, int> rank_pattern;      // pattern -> rank
  std::map<std::string, double> alpha_pattern;  // pattern -> alpha
  // The keys of rank_pattern / alpha_pattern in file order: PEFT takes the first key that matches,
  // in the JSON object's order. When empty (a config built by hand), the maps' order is used.
  std::vector<std::string> rank_pattern_order;
  std::vector<std::string> alpha_pattern_order;
  std::string base_model_name_or_path;
};

struct RankAlpha {
  int rank = 0;
  double alpha = 0;
};

// Parses the text of an adapter_config.json; `path` names it in errors. Unknown keys are
// ignored; JSON null counts as absent for optional keys.
Result<AdapterConfig> parse_adapter_config(const std::string& json_text, const std::string& path);
// Reads `directory`/adapter_config.json.
Result<AdapterConfig> read_adapter_config(const std::string& directory);

// Whether PEFT puts a LoRA on the module at `module_path` ("model.layers.3.self_attn.q_proj").
// With all_linear the caller must only ask about linear layers (lamina cannot tell from a name);
// every one matches except the output head "lm_head".
bool targets_module(const AdapterConfig& config, const std::string& module_path);
// The rank and alpha of the LoRA on `module_path`: the first rank_pattern / alpha_pattern key k
// (in file order) for which `(.*\.)?(k)` fully matches the path, else r / lora_alpha.
RankAlpha effective_rank_alpha(const AdapterConfig& config, const std::string& module_path);
// The factor applied to B·A: alpha / rank, or alpha / sqrt(rank) with use_rslora.
double scaling(const AdapterConfig& config, int rank, double alpha);

// ---------------------------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------------------------

namespace detail {

// A small regular-expression matcher (see the top of the file for the syntax). compile()
// reports what it does not support; full_match() runs the NFA over the text in O(text × program).
class Regex {
 public:
  // Returns an empty string on success, else what is wrong with `pattern`.
  std::string compile(const std::string& pattern) {
    pattern_ = pattern;
    position_ = 0;
    program_.clear();
    nodes_.clear();
    if (pattern.size() > max_pattern_bytes) return "the pattern is longer than " + std::to_string(max_pattern_bytes) + " bytes";
    int root = -1;
    if (!parse_alternation(root, 0)) return error_;
    if (position_ != pattern_.size()) return "unbalanced ')' at position " + std::to_string(position_);
    if (!emit(root, 0)) return error_;
    program_.push_back(Instruction{Op::match, 0, 0, {}});
    compiled_ = true;
    return std::string();
  }

  bool full_match(const std::string& text) const {
    if (!compiled_) return false;
    std::vector<int> current, next;
    std::vector<std::size_t> mark(program_.size(), static_cast<std::size_t>(-1));
    std::vector<int> stack;
    add_thread(current, mark, stack, 0, 0, text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
      next.clear();
      const unsigned char byte = static_cast<unsigned char>(text[i]);
      for (const int pc : current) {
        const Instruction& instruction = program_[static_cast<std::size_t>(pc)];
        if (instruction.op == Op::set && instruction.set.test(byte)) add_thread(next, mark, stack, pc + 1, i + 1, text.size());
      }
      current.swap(next);
      if (current.empty()) return false;
    }
    for (const int pc : current) {
      if (program_[static_cast<std::size_t>(pc)].op == Op::match) return true;
    }
    return false;
  }

 private:
  static constexpr std::size_t max_pattern_bytes = 4096;
  static constexpr int max_nesting = 32;
  static constexpr std::size_t max_program = 20000;
  static constexpr int max_repeat = 1000;

  enum class Op { set, split, jump, begin, end, match };
  struct Instruction {
    Op op;
    int x;  // split: first choice; jump: target
    int y;  // split: second choice
    std::bitset<256> set;
  };
  enum class Kind { set, concat, alternate, repeat, begin, end };
  struct Node {
    Kind kind;
    std::bitset<256> set;
    std::vector<int> children;
    int min = 0, max = 0;  // repeat; max -1: unbounded
  };

  // Follows split/jump/assertions from `pc` at text position `at`, adding the set and match
  // instructions reached to `list` (each once per position, thanks to `mark`).
  void add_thread(std::vector<int>& list, std::vector<std::size_t>& mark, std::vector<int>& stack, int pc, std::size_t at,
                  std::size_t length) const {
    stack.clear();
    stack.push_back(pc);
    while (!stack.empty()) {
      const int current = stack.back();
      stack.pop_back();
      if (mark[static_cast<std::size_t>(current)] == at) continue;
      mark[static_cast<std::size_t>(current)] = at;
      const Instruction& instruction = program_[static_cast<std::size_t>(current)];
      switch (instruction.op) {
        case Op::set: case Op::match: list.push_back(current); break;
        case Op::jump: stack.push_back(instruction.x); break;
        case Op::split: stack.push_back(instruction.y); stack.push_back(instruction.x); break;
        case Op::begin: if (at == 0) stack.push_back(current + 1); break;
        case Op::end: if (at == length) stack.push_back(current + 1); break;
      }
    }
  }

  bool problem(const std::string& what) {
    error_ = what + " at position " + std::to_string(position_);
    return false;
  }
  bool at_end() const { return position_ >= pattern_.size(); }
  char peek() const { return pattern_[position_]; }

  int add_node(Node node) {
    nodes_.push_back(std::move(node));
    return static_cast<int>(nodes_.size() - 1);
  }
  int set_node(const std::bitset<256>& set) {
    Node node{Kind::set, set, {}, 0, 0};
    return add_node(std::move(node));
  }

  bool parse_alternation(int& out, int depth) {
    if (depth > max_nesting) return problem("groups nested more than " + std::to_string(max_nesting) + " deep");
    std::vector<int> branches;
    int branch = -1;
    if (!parse_concat(branch, depth)) return false;
    branches.push_back(branch);
    while (!at_end() && peek() == '|') {
      ++position_;
      if (!parse_concat(branch, depth)) return false;
      branches.push_back(branch);
    }
    if (branches.size() == 1) {
      out = branches[0];
    } else {
      Node node{Kind::alternate, {}, std::move(branches), 0, 0};
      out = add_node(std::move(node));
    }
    return true;
  }

  bool parse_concat(int& out, int depth) {
    Node node{Kind::concat, {}, {}, 0, 0};
    while (!at_end() && peek() != '|' && peek() != ')') {
      int atom = -1;
      if (!parse_atom(atom, depth)) return false;
      if (!parse_quantifiers(atom)) return false;
      node.children.push_back(atom);
    }
    out = add_node(std::move(node));
    return true;
  }

  // {n}, {n,}, {n,m}, {,m} at position_: true and the bounds when it is one; Python reads any
  // other '{' as a literal.
  bool read_braces(int& min, int& max, std::size_t& after) const {
    std::size_t i = position_ + 1;
    const auto number = [&](long& value) {
      const std::size_t start = i;
      value = 0;
      while (i < pattern_.size() && pattern_[i] >= '0' && pattern_[i] <= '9' && i - start < 9) value = value * 10 + (pattern_[i++] - '0');
      return i > start;
    };
    long low = 0, high = -1;
    const bool has_low = number(low);
    if (i < pattern_.size() && pattern_[i] == '}') {
      if (!has_low) return false;
      min = max = static_cast<int>(std::min<long>(low, max_repeat + 1));
      after = i + 1;
      return true;
    }
    if (i >= pattern_.size() || pattern_[i] != ',') return false;
    ++i;
    const bool has_high = number(high);
    if (i >= pattern_.size() || pattern_[i] != '}') return false;
    min = static_cast<int>(std::min<long>(low, max_repeat + 1));
    max = has_high ? static_cast<int>(std::min<long>(high, max_repeat + 1)) : -1;
    after = i + 1;
    return true;
  }

  bool parse_quantifiers(int& atom) {
    bool quantified = false;
    while (!at_end()) {
      int min = 0, max = 0;
      std::size_t after = position_ + 1;
      const char c = peek();
      if (c == '*') { min = 0; max = -1; }
      else if (c == '+') { min = 1; max = -1; }
      else if (c == '?') { min = 0; max = 1; }
      else if (c == '{') {
        if (!read_braces(min, max, after)) return true;  // a literal '{', read as the next atom
      } else {
        return true;
      }
      if (quantified) return problem("multiple repeat (possessive quantifiers are not supported)");
      if (min > max_repeat || max > max_repeat) return problem("a repeat count above " + std::to_string(max_repeat));
      if (max != -1 && max < min) return problem("a repeat {n,m} with m < n");
      const Kind kind = nodes_[static_cast<std::size_t>(atom)].kind;
      if (kind == Kind::begin || kind == Kind::end) return problem("a repeated anchor");
      position_ = after;
      if (!at_end() && peek() == '?') ++position_;  // lazy: the same yes/no answer
      Node node{Kind::repeat, {}, {atom}, min, max};
      atom = add_node(std::move(node));
      quantified = true;
    }
    return true;
  }

  static std::bitset<256> range(int first, int last) {
    std::bitset<256> set;
    for (int c = first; c <= last; ++c) set.set(static_cast<std::size_t>(c));
    return set;
  }
  static std::bitset<256> digits() { return range('0', '9'); }
  static std::bitset<256> word() { return range('0', '9') | range('a', 'z') | range('A', 'Z') | range('_', '_'); }
  static std::bitset<256> space() {
    std::bitset<256> set;
    for (const char c : {' ', '\t', '\n', '\r', '\f', '\v'}) set.set(static_cast<unsigned char>(c));
    return set;
  }

  // An escape after '\\' (position_ at the escaped character) as a set; `anchor` set for \A \Z.
  bool parse_escape(std::bitset<256>& set, int& anchor, bool in_class) {
    anchor = 0;
    if (at_end()) return problem("a trailing backslash");
    const char c = peek();
    ++position_;
    switch (c) {
      case 'd': set = digits(); return true;
      case 'D': set = ~digits(); return true;
      case 'w': set = word(); return true;
      case 'W': set = ~word(); return true;
      case 's': set = space(); return true;
      case 'S': set = ~space(); return true;
      case 'n': set = range('\n', '\n'); return true;
      case 't': set = range('\t', '\t'); return true;
      case 'r': set = range('\r', '\r'); return true;
      case 'f': set = range('\f', '\f'); return true;
      case 'v': set = range('\v', '\v'); return true;
      case 'A': if (!in_class) { anchor = 1; return true; } break;
      case 'Z': if (!in_class) { anchor = 2; return true; } break;
      default: break;
    }
    const unsigned char byte = static_cast<unsigned char>(c);
    if ((byte >= 'a' && byte <= 'z') || (byte >= 'A' && byte <= 'Z') || (byte >= '0' && byte <= '9')) {
      --position_;
      return problem(std::string("the escape \\") + c + " (not supported)");
    }
    set = range(byte, byte);  // escaped punctuation or a non-ASCII byte: itself
    return true;
  }

  bool parse_class(int& out) {
    ++position_;  // '['
    bool negate = false;
    if (!at_end() && peek() == '^') {
      negate = true;
      ++position_;
    }
    std::bitset<256> set;
    bool first = true;
    while (true) {
      if (at_end()) return problem("an unterminated character class");
      char c = peek();
      if (c == ']' && !first) {
        ++position_;
        break;
      }
      first = false;
      std::bitset<256> item;
      int low = -1;
      ++position_;
      if (c == '\\') {
        int anchor = 0;
        if (!parse_escape(item, anchor, true)) return false;
        if (item.count() == 1) {
          for (int k = 0; k < 256; ++k) if (item.test(static_cast<std::size_t>(k))) low = k;
        }
      } else {
        low = static_cast<unsigned char>(c);
        item = range(low, low);
      }
      // A range a-b (a '-' before ']' is a literal).
      if (low >= 0 && position_ + 1 < pattern_.size() && peek() == '-' && pattern_[position_ + 1] != ']') {
        ++position_;
        c = peek();
        ++position_;
        int high = static_cast<unsigned char>(c);
        if (c == '\\') {
          std::bitset<256> escaped;
          int anchor = 0;
          if (!parse_escape(escaped, anchor, true)) return false;
          if (escaped.count() != 1) return problem("a class escape as the end of a range");
          for (int k = 0; k < 256; ++k) if (escaped.test(static_cast<std::size_t>(k))) high = k;
        }
        if (high < low) return problem("a bad character range");
        item = range(low, high);
      }
      set |= item;
    }
    out = set_node(negate ? ~set : set);
    return true;
  }

  bool parse_atom(int& out, int depth) {
    const char c = peek();
    switch (c) {
      case '(': {
        ++position_;
        if (!at_end() && peek() == '?') {
          if (position_ + 1 < pattern_.size() && pattern_[position_ + 1] == ':') {
            position_ += 2;
          } else if (pattern_.compare(position_, 3, "?P<") == 0) {
            const std::size_t close = pattern_.find('>', position_ + 3);
            if (close == std::string::npos) return problem("an unterminated group name");
            position_ = close + 1;
          } else {
            return problem("the group syntax (?… (lookaround, flags, references: not supported)");
          }
        }
        if (!parse_alternation(out, depth + 1)) return false;
        if (at_end() || peek() != ')') return problem("a missing ')'");
        ++position_;
        return true;
      }
      case '[': return parse_class(out);
      case '.':
        ++position_;
        out = set_node(~range('\n', '\n'));
        return true;
      case '^': case '$': {
        ++position_;
        Node node{c == '^' ? Kind::begin : Kind::end, {}, {}, 0, 0};
        out = add_node(std::move(node));
        return true;
      }
      case '*': case '+': case '?': return problem("nothing to repeat");
      case '\\': {
        ++position_;
        std::bitset<256> set;
        int anchor = 0;
        if (!parse_escape(set, anchor, false)) return false;
        if (anchor != 0) {
          Node node{anchor == 1 ? Kind::begin : Kind::end, {}, {}, 0, 0};
          out = add_node(std::move(node));
        } else {
          out = set_node(set);
        }
        return true;
      }
      default:
        ++position_;
        out = set_node(range(static_cast<unsigned char>(c), static_cast<unsigned char>(c)));
        return true;
    }
  }

  int here() const { return static_cast<int>(program_.size()); }
  bool push(Instruction instruction) {
    if (program_.size() >= max_program) {
      error_ = "the pattern is too large once compiled (more than " + std::to_string(max_program) + " steps)";
      return false;
    }
    program_.push_back(std::move(instruction));
    return true;
  }

  // Appends the code of node `index`. Recursion depth is bounded: groups nest at most 32 deep
  // and each group adds at most alternate + concat + repeat levels.
  bool emit(int index, int depth) {
    const Node& node = nodes_[static_cast<std::size_t>(index)];
    switch (node.kind) {
      case Kind::set: return push(Instruction{Op::set, 0, 0, node.set});
      case Kind::begin: return push(Instruction{Op::begin, 0, 0, {}});
      case Kind::end: return push(Instruction{Op::end, 0, 0, {}});
      case Kind::concat:
        for (const int child : node.children) {
          if (!emit(child, depth + 1)) return false;
        }
        return true;
      case Kind::alternate: {
        // split L1, next; L1: a; jump end; next: split L2, next2; … last: z; end:
        std::vector<std::size_t> jumps;
        for (std::size_t b = 0; b < node.children.size(); ++b) {
          const bool last = b + 1 == node.children.size();
          std::size_t split = 0;
          if (!last) {
            split = program_.size();
            if (!push(Instruction{Op::split, here() + 1, 0, {}})) return false;
          }
          if (!emit(node.children[b], depth + 1)) return false;
          if (!last) {
            jumps.push_back(program_.size());
            if (!push(Instruction{Op::jump, 0, 0, {}})) return false;
            program_[split].y = here();
          }
        }
        for (const std::size_t jump : jumps) program_[jump].x = here();
        return true;
      }
      case Kind::repeat: {
        const int child = node.children[0];
        for (int k = 0; k < node.min; ++k) {
          if (!emit(child, depth + 1)) return false;
        }
        if (node.max == -1) {
          // loop: split body, out; body; jump loop
          const int loop = here();
          if (!push(Instruction{Op::split, loop + 1, 0, {}})) return false;
          if (!emit(child, depth + 1)) return false;
          if (!push(Instruction{Op::jump, loop, 0, {}})) return false;
          program_[static_cast<std::size_t>(loop)].y = here();
          return true;
        }
        std::vector<std::size_t> splits;
        for (int k = node.min; k < node.max; ++k) {
          splits.push_back(program_.size());
          if (!push(Instruction{Op::split, here() + 1, 0, {}})) return false;
          if (!emit(child, depth + 1)) return false;
        }
        for (const std::size_t split : splits) program_[split].y = here();
        return true;
      }
    }
    return false;
  }

  std::string pattern_;
  std::size_t position_ = 0;
  std::string error_;
  std::vector<Node> nodes_;
  std::vector<Instruction> program_;
  bool compiled_ = false;
};

// True when `pattern` (fully) matches `text`; a pattern that does not compile matches nothing
// (parse_adapter_config has already refused such configs).
inline bool regex_full_match(const std::string& pattern, const std::string& text) {
  Regex regex;
  if (!regex.compile(pattern).empty()) return false;
  return regex.full_match(text);
}

inline bool ends_with_component(const std::string& path, const std::string& name) {
  if (path == name) return true;
  return path.size() > name.size() && path.compare(path.size() - name.size(), name.size(), name) == 0 &&
         path[path.size() - name.size() - 1] == '.';
}

// PEFT's layer index of a module path: the first ".<layers_pattern>.<digits>." (default pattern:
// any one path component), read left to right as Python's lazy `.*?` does. -1 when none.
inline long long layer_index(const AdapterConfig& config, const std::string& path) {
  const auto digits_at = [&](std::size_t start) -> long long {  // "<digits>." at start, or -1
    std::size_t end = start;
    long long value = 0;
    while (end < path.size() && path[end] >= '0' && path[end] <= '9') {
      if (value < 1000000000000LL) value = value * 10 + (path[end] - '0');
      ++end;
    }
    if (end == start || end >= path.size() || path[end] != '.') return -1;
    return value;
  };
  const std::vector<std::string>& patterns = config.layers_patterns;
  if (patterns.empty()) {
    // `.*?\.[^.]*\.(\d+)\.`
    for (std::size_t i = 0; i < path.size(); ++i) {
      if (path[i] != '.') continue;
      const std::size_t next = path.find('.', i + 1);
      if (next == std::string::npos) break;
      const long long value = digits_at(next + 1);
      if (value >= 0) return value;
    }
    return -1;
  }
  for (const std::string& pattern : patterns) {
    // `.*?\.{pattern}\.(\d+)\.`
    Regex regex;
    if (!regex.compile(pattern).empty()) continue;
    for (std::size_t i = 0; i < path.size(); ++i) {
      if (path[i] != '.') continue;
      for (std::size_t k = i + 1; k < path.size(); ++k) {
        if (path[k] != '.') continue;
        if (!regex.full_match(path.substr(i + 1, k - i - 1))) continue;
        const long long value = digits_at(k + 1);
        if (value >= 0) return value;
      }
    }
  }
  return -1;
}

inline std::string quote_key(const std::string& key) { return safetensors::detail::quote_name(key); }

// A SAX pass before nlohmann builds its DOM: it bounds the nesting depth (the DOM and lamina's
// reading of it are then shallow) and turns a parse error into a message with a byte offset.
class JsonChecker {
 public:
  using json = nlohmann::json;
  explicit JsonChecker(const std::string& path) : path_(path) {}
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const json::string_t&) { return true; }
  bool string(json::string_t&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool start_object(std::size_t) { return enter(); }
  bool key(json::string_t&) { return true; }
  bool end_object() { return --depth_, true; }
  bool start_array(std::size_t) { return enter(); }
  bool end_array() { return --depth_, true; }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& error) {
    error_ = path_ + ": at byte " + std::to_string(position > 0 ? position - 1 : 0) + ": invalid JSON: " +
             safetensors::detail::short_json_error(error.what());
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  bool enter() {
    if (++depth_ <= 32) return true;
    error_ = path_ + ": JSON nested more than 32 levels deep";
    return false;
  }
  const std::string& path_;
  int depth_ = 0;
  std::string error_;
};

// Reads the keys of an adapter config, each error naming the file and key.
class ConfigReader {
 public:
  using json = nlohmann::json;
  ConfigReader(const json& root, const std::string& path) : root_(root), path_(path) {}

  Error problem(ErrorCode code, const std::string& key, const std::string& what) const {
    return fail(code, path_ + ": key " + quote_key(key) + ": " + what);
  }
  static const char* type_name(const json& value) {
    if (value.is_null()) return "null";
    if (value.is_boolean()) return "a boolean";
    if (value.is_number_integer()) return "an integer";
    if (value.is_number()) return "a number";
    if (value.is_string()) return "a string";
    if (value.is_array()) return "an array";
    if (value.is_object()) return "an object";
    return "binary data";
  }
  // The value of `key`, or nullptr when absent or null.
  const json* find(const std::string& key) const {
    const auto found = root_.find(key);
    if (found == root_.end() || found->is_null()) return nullptr;
    return &*found;
  }

  Result<void> read_bool(const std::string& key, bool& out) const {
    const json* value = find(key);
    if (value == nullptr) return success();
    if (!value->is_boolean()) return problem(ErrorCode::type_mismatch, key, std::string("expected a boolean, found ") + type_name(*value));
    out = value->get<bool>();
    return success();
  }
  Result<void> read_string(const std::string& key, std::string& out) const {
    const json* value = find(key);
    if (value == nullptr) return success();
    if (!value->is_string()) return problem(ErrorCode::type_mismatch, key, std::string("expected a string, found ") + type_name(*value));
    out = value->get_ref<const std::string&>();
    return success();
  }
  // A positive int (ranks, layer indices >= 0 with `minimum` 0).
  static bool to_int(const json& value, long long minimum, int& out) {
    if (!value.is_number_integer()) return false;
    if (value.is_number_unsigned()) {
      const std::uint64_t number = value.get<std::uint64_t>();
      if (number > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) return false;
      out = static_cast<int>(number);
    } else {
      const std::int64_t number = value.get<std::int64_t>();
      if (number < std::numeric_limits<int>::min() || number > std::numeric_limits<int>::max()) return false;
      out = static_cast<int>(number);
    }
    return out >= minimum;
  }
  static bool to_double(const json& value, double& out) {
    if (!value.is_number()) return false;
    out = value.get<double>();
    return std::isfinite(out);
  }

  // A regex from the config: empty string when it compiles, else the error.
  Result<void> check_regex(const std::string& key, const std::string& pattern) const {
    Regex regex;
    const std::string why = regex.compile(pattern);
    if (why.empty()) return success();
    return problem(ErrorCode::unsupported, key, "pattern " + quote_key(pattern) + ": " + why +
                                                    " (lamina supports a subset of Python regular expressions)");
  }

  // target_modules / exclude_modules: a list of names, or a string (a regex; "all-linear").
  Result<void> read_modules(const std::string& key, std::vector<std::string>& list, std::string& regex, bool* all_linear) const {
    const json* value = find(key);
    if (value == nullptr) return success();
    if (value->is_string()) {
      const std::string& text = value->get_ref<const std::string&>();
      if (all_linear != nullptr && text == "all-linear") {
        *all_linear = true;
        return success();
      }
      LAMINA_TRY(check_regex(key, text));
      regex = text;
      return success();
    }
    if (!value->is_array()) {
      return problem(ErrorCode::type_mismatch, key, std::string("expected a list of module names or a string, found ") + type_name(*value));
    }
    for (std::size_t i = 0; i < value->size(); ++i) {
      const json& element = (*value)[i];
      if (!element.is_string()) {
        return problem(ErrorCode::type_mismatch, key, "element " + std::to_string(i) + ": expected a string, found " + type_name(element));
      }
      list.push_back(element.get_ref<const std::string&>());
    }
    return success();
  }

 private:
  const json& root_;
  const std::string& path_;
};

}  // namespace detail

inline Result<AdapterConfig> parse_adapter_config(const std::string& json_text, const std::string& path) {
  using json = nlohmann::json;
  detail::JsonChecker checker(path);
  if (!json::sax_parse(json_text.begin(), json_text.end(), &checker, json::input_format_t::json, true, false)) {
    return fail(ErrorCode::invalid_format, checker.error());
  }
  const json root = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return fail(ErrorCode::invalid_format, path + ": invalid JSON");  // not reached: checked above
  if (!root.is_object()) {
    return fail(ErrorCode::invalid_format, path + ": expected a JSON object, found " + detail::ConfigReader::type_name(root));
  }
  const detail::ConfigReader reader(root, path);
  AdapterConfig config;

  const json* peft_type = reader.find("peft_type");
  if (peft_type == nullptr) return reader.problem(ErrorCode::missing, "peft_type", "missing (expected \"LORA\")");
  LAMINA_TRY(reader.read_string("peft_type", config.peft_type));
  if (config.peft_type != "LORA") {
    return reader.problem(ErrorCode::unsupported, "peft_type",
                          "adapter type " + detail::quote_key(config.peft_type) + " is not supported (lamina reads LORA adapters)");
  }

  const json* r = reader.find("r");
  if (r == nullptr) return reader.problem(ErrorCode::missing, "r", "missing");
  if (!detail::ConfigReader::to_int(*r, 1, config.r)) {
    return reader.problem(ErrorCode::invalid_format, "r", "expected a positive integer rank, found " +
                                                              (r->is_number() ? r->dump() : std::string(detail::ConfigReader::type_name(*r))));
  }
  if (const json* alpha = reader.find("lora_alpha")) {
    if (!detail::ConfigReader::to_double(*alpha, config.lora_alpha)) {
      return reader.problem(ErrorCode::type_mismatch, "lora_alpha", std::string("expected a finite number, found ") +
                                                                        detail::ConfigReader::type_name(*alpha));
    }
  } else {
    config.lora_alpha = 8;  // PEFT's default
  }
  LAMINA_TRY(reader.read_bool("use_rslora", config.use_rslora));
  LAMINA_TRY(reader.read_bool("use_dora", config.use_dora));
  LAMINA_TRY(reader.read_bool("fan_in_fan_out", config.fan_in_fan_out));
  LAMINA_TRY(reader.read_string("base_model_name_or_path", config.base_model_name_or_path));

  if (reader.find("target_modules") == nullptr) {
    return reader.problem(ErrorCode::missing, "target_modules", "missing (lamina needs the list of adapted modules)");
  }
  LAMINA_TRY(reader.read_modules("target_modules", config.target_modules, config.target_modules_regex, &config.all_linear));
  LAMINA_TRY(reader.read_modules("exclude_modules", config.exclude_modules, config.exclude_modules_regex, nullptr));

  if (const json* layers = reader.find("layers_to_transform")) {
    int index = 0;
    if (layers->is_array()) {
      for (std::size_t i = 0; i < layers->size(); ++i) {
        if (!detail::ConfigReader::to_int((*layers)[i], 0, index)) {
          return reader.problem(ErrorCode::type_mismatch, "layers_to_transform",
                                "element " + std::to_string(i) + ": expected a layer index (an integer >= 0)");
        }
        config.layers_to_transform.push_back(index);
      }
    } else if (detail::ConfigReader::to_int(*layers, 0, index)) {
      config.layers_to_transform.push_back(index);
    } else {
      return reader.problem(ErrorCode::type_mismatch, "layers_to_transform",
                            std::string("expected a layer index or a list of them, found ") + detail::ConfigReader::type_name(*layers));
    }
  }
  if (const json* pattern = reader.find("layers_pattern")) {
    if (pattern->is_string()) {
      if (!pattern->get_ref<const std::string&>().empty()) config.layers_patterns.push_back(pattern->get<std::string>());
    } else if (pattern->is_array()) {
      for (std::size_t i = 0; i < pattern->size(); ++i) {
        if (!(*pattern)[i].is_string()) {
          return reader.problem(ErrorCode::type_mismatch, "layers_pattern", "element " + std::to_string(i) + ": expected a string");
        }
        config.layers_patterns.push_back((*pattern)[i].get<std::string>());
      }
    } else {
      return reader.problem(ErrorCode::type_mismatch, "layers_pattern",
                            std::string("expected a string or a list of strings, found ") + detail::ConfigReader::type_name(*pattern));
    }
    for (const std::string& entry : config.layers_patterns) LAMINA_TRY(reader.check_regex("layers_pattern", entry));
    if (!config.layers_patterns.empty()) config.layers_pattern = config.layers_patterns.front();
  }

  if (const json* ranks = reader.find("rank_pattern")) {
    if (!ranks->is_object()) {
      return reader.problem(ErrorCode::type_mismatch, "rank_pattern", std::string("expected an object, found ") + detail::ConfigReader::type_name(*ranks));
    }
    for (auto it = ranks->begin(); it != ranks->end(); ++it) {
      int rank = 0;
      if (!detail::ConfigReader::to_int(it.value(), 1, rank)) {
        return reader.problem(ErrorCode::invalid_format, "rank_pattern", "pattern " + detail::quote_key(it.key()) +
                                                                              ": expected a positive integer rank");
      }
      LAMINA_TRY(reader.check_regex("rank_pattern", "(.*\\.)?(" + it.key() + ")"));
      config.rank_pattern[it.key()] = rank;
    }
  }
  if (const json* alphas = reader.find("alpha_pattern")) {
    if (!alphas->is_object()) {
      return reader.problem(ErrorCode::type_mismatch, "alpha_pattern", std::string("expected an object, found ") + detail::ConfigReader::type_name(*alphas));
    }
    for (auto it = alphas->begin(); it != alphas->end(); ++it) {
      double alpha = 0;
      if (!detail::ConfigReader::to_double(it.value(), alpha)) {
        return reader.problem(ErrorCode::type_mismatch, "alpha_pattern", "pattern " + detail::quote_key(it.key()) +
                                                                              ": expected a finite number");
      }
      LAMINA_TRY(reader.check_regex("alpha_pattern", "(.*\\.)?(" + it.key() + ")"));
      config.alpha_pattern[it.key()] = alpha;
    }
  }
  // nlohmann's object keeps keys sorted, not in file order; PEFT uses file order. Recover it
  // with a SAX pass that records the keys of the two pattern objects.
  struct KeyOrder : detail::JsonChecker {
    using json = nlohmann::json;
    explicit KeyOrder(const std::string& name) : detail::JsonChecker(name) {}
    bool start_object(std::size_t size) {
      ++level;
      if (level == 2) target = pending_rank ? &ranks : pending_alpha ? &alphas : nullptr;
      return detail::JsonChecker::start_object(size);
    }
    bool end_object() {
      --level;
      if (level == 1) target = nullptr;
      return detail::JsonChecker::end_object();
    }
    bool start_array(std::size_t size) {
      ++level;
      return detail::JsonChecker::start_array(size);
    }
    bool end_array() {
      --level;
      return detail::JsonChecker::end_array();
    }
    bool key(json::string_t& key) {
      if (level == 1) {
        pending_rank = key == "rank_pattern";
        pending_alpha = key == "alpha_pattern";
      } else if (level == 2 && target != nullptr) {
        target->push_back(key);
      }
      return true;
    }
    int level = 0;
    bool pending_rank = false, pending_alpha = false;
    std::vector<std::string>* target = nullptr;
    std::vector<std::string> ranks, alphas;
  };
  KeyOrder order(path);
  if (!config.rank_pattern.empty() || !config.alpha_pattern.empty()) {
    if (json::sax_parse(json_text.begin(), json_text.end(), &order, json::input_format_t::json, true, false)) {
      // With duplicate keys (nlohmann keeps the last value) the first position counts; harmless.
      for (const std::string& key : order.ranks) {
        if (config.rank_pattern.count(key) != 0 &&
            std::find(config.rank_pattern_order.begin(), config.rank_pattern_order.end(), key) == config.rank_pattern_order.end()) {
          config.rank_pattern_order.push_back(key);
        }
      }
      for (const std::string& key : order.alphas) {
        if (config.alpha_pattern.count(key) != 0 &&
            std::find(config.alpha_pattern_order.begin(), config.alpha_pattern_order.end(), key) == config.alpha_pattern_order.end()) {
          config.alpha_pattern_order.push_back(key);
        }
      }
    }
  }
  return config;
}

inline Result<AdapterConfig> read_adapter_config(const std::string& directory) {
  const std::string path = directory + "/adapter_config.json";
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return fail(ErrorCode::io, path + ": cannot open file: " + std::strerror(errno));
  std::string text;
  char buffer[65536];
  std::size_t got = 0;
  constexpr std::size_t max_bytes = 16u << 20;  // a config is a few hundred bytes
  while ((got = std::fread(buffer, 1, sizeof buffer, file)) > 0) {
    text.append(buffer, got);
    if (text.size() > max_bytes) {
      std::fclose(file);
      return fail(ErrorCode::unsupported, path + ": larger than " + std::to_string(max_bytes) + " bytes; not an adapter config");
    }
  }
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) return fail(ErrorCode::io, path + ": cannot read file");
  return parse_adapter_config(text, path);
}

inline bool targets_module(const AdapterConfig& config, const std::string& module_path) {
  // exclude_modules wins over everything.
  if (!config.exclude_modules_regex.empty() && detail::regex_full_match(config.exclude_modules_regex, module_path)) return false;
  for (const std::string& name : config.exclude_modules) {
    if (detail::ends_with_component(module_path, name)) return false;
  }
  // A string target_modules is a full match on the whole path, without the layer filter.
  if (!config.target_modules_regex.empty()) return detail::regex_full_match(config.target_modules_regex, module_path);
  bool found = false;
  if (config.all_linear) {
    found = !detail::ends_with_component(module_path, "lm_head");
  } else {
    for (const std::string& name : config.target_modules) {
      if (module_path == name) return true;  // PEFT: an exact name skips the layer filter
    }
    for (const std::string& name : config.target_modules) {
      if (detail::ends_with_component(module_path, name)) found = true;
    }
  }
  if (!found || config.layers_to_transform.empty()) return found;
  const long long index = detail::layer_index(config, module_path);
  if (index < 0) return false;
  for (const int layer : config.layers_to_transform) {
    if (layer == index) return true;
  }
  return false;
}

inline RankAlpha effective_rank_alpha(const AdapterConfig& config, const std::string& module_path) {
  RankAlpha result{config.r, config.lora_alpha};
  const auto matches = [&](const std::string& key) { return detail::regex_full_match("(.*\\.)?(" + key + ")", module_path); };
  // rank
  std::vector<std::string> keys = config.rank_pattern_order;
  if (keys.empty()) for (const auto& entry : config.rank_pattern) keys.push_back(entry.first);
  for (const std::string& key : keys) {
    const auto found = config.rank_pattern.find(key);
    if (found != config.rank_pattern.end() && matches(key)) {
      result.rank = found->second;
      break;
    }
  }
  keys = config.alpha_pattern_order;
  if (keys.empty()) for (const auto& entry : config.alpha_pattern) keys.push_back(entry.first);
  for (const std::string& key : keys) {
    const auto found = config.alpha_pattern.find(key);
    if (found != config.alpha_pattern.end() && matches(key)) {
      result.alpha = found->second;
      break;
    }
  }
  return result;
}

inline double scaling(const AdapterConfig& config, int rank, double alpha) {
  if (rank <= 0) return 0;
  return config.use_rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

}  // namespace peft
}  // namespace lamina
