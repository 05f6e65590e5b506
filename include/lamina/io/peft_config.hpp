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
//
// Hostile configs: loading takes time linear in the config's size, whatever it holds.
//   - each pattern is at most 4096 bytes, repeats at most {1000}, and compiles to at most 20000
//     NFA instructions; all the patterns of one config together to at most 200000;
//   - each pattern is compiled once per load (ModuleMatcher), not once per module;
//   - rank_pattern / alpha_pattern keys without regex syntax (literal text and `.`, the common
//     case: "model.layers.3.self_attn.v_proj") go to a hash index instead of the NFA, so
//     100,000 of them cost a few hash probes per module;
//   - matching every module of one adapter may take at most MatchWork::limit steps (NFA
//     instructions visited, bytes hashed); past it loading stops with ErrorCode::unsupported
//     naming the config key, the module and the pattern.
#pragma once

#include "../config.hpp"
#include "../core/result.hpp"
#include "json_check.hpp"
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
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN
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
  // The rank_pattern / alpha_pattern key that gave rank / alpha; empty when it is r / lora_alpha.
  std::string rank_key;
  std::string alpha_key;
};

// The work of matching module paths against a config's patterns, in steps: one NFA instruction
// visited, one byte of a module path hashed or compared. A step is a few nanoseconds, so the
// default limit bounds matching at well under a second; real adapters need a few thousand steps
// per module.
struct MatchWork {
  std::uint64_t steps = 0;
  std::uint64_t limit = 100000000;
  bool exhausted() const { return steps > limit; }
};

namespace detail {
struct CompiledRules;
}

// A config's patterns compiled once, to answer targets_module / effective_rank_alpha for every
// module of an adapter (load_peft_adapter uses one per load). The free functions below compile
// the config again on every call; use this for more than a handful of modules. Cheap to copy:
// copies share the compiled patterns (immutable) and each counts its own work.
class ModuleMatcher {
 public:
  ModuleMatcher() = default;
  // Compiles the patterns of `config`; `path` names the config file in errors. Errors
  // (ErrorCode::unsupported) name the key and the pattern: syntax lamina does not support, or a
  // pattern past the size limits at the top of this file.
  static Result<ModuleMatcher> compile(const AdapterConfig& config, const std::string& path);

  // As the free functions, but an Error (ErrorCode::unsupported, naming the config key, the
  // module and the pattern) once the work done by this matcher passes work().limit.
  Result<bool> targets_module(const std::string& module_path);
  Result<RankAlpha> effective_rank_alpha(const std::string& module_path);

  const MatchWork& work() const { return work_; }
  void set_work_limit(std::uint64_t steps) { work_.limit = steps; }

 private:
  std::shared_ptr<const detail::CompiledRules> rules_;
  MatchWork work_;
};

// Parses the text of an adapter_config.json; `path` names it in errors. Unknown keys are
// ignored; JSON null counts as absent for optional keys. When `matcher` is not null it receives
// the config's compiled patterns (parsing compiles them anyway, to check them).
Result<AdapterConfig> parse_adapter_config(const std::string& json_text, const std::string& path, ModuleMatcher* matcher = nullptr);
// Reads `directory`/adapter_config.json (at most 16 MB).
Result<AdapterConfig> read_adapter_config(const std::string& directory, ModuleMatcher* matcher = nullptr);

// Whether PEFT puts a LoRA on the module at `module_path` ("model.layers.3.self_attn.q_proj").
// With all_linear the caller must only ask about linear layers (lamina cannot tell from a name);
// every one matches except the output head "lm_head". A pattern that does not compile matches
// nothing (parse_adapter_config refuses such configs).
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
// reports what it does not support; full_match() runs the NFA over the text in
// O(text × program) steps, and stops early when the last byte of the text cannot end a match.
class Regex {
 public:
  static constexpr std::size_t max_pattern_bytes = 4096;
  static constexpr std::size_t max_program = 20000;
  static constexpr int max_repeat = 1000;

  // Returns an empty string on success, else what is wrong with `pattern`.
  std::string compile(const std::string& pattern) { return compile_text(pattern, 0); }

  // PEFT's pattern for a rank_pattern / alpha_pattern key: `(.*\.)?(key)`, fully matched, i.e.
  // the key matches whole trailing components of the path. Errors give positions in `key`.
  std::string compile_component_pattern(const std::string& key) {
    if (key.size() > max_pattern_bytes) return too_long(key.size());
    static const char prefix[] = "(.*\\.)?(";
    return compile_text(prefix + key + ")", sizeof prefix - 1);
  }

  bool compiled() const { return compiled_; }
  // After a failed compile: whether a size limit refused the pattern (not its syntax).
  bool refused_for_size() const { return size_limit_; }
  std::size_t program_size() const { return program_.size(); }

  // Whether the whole of `text` matches. With `work`, adds the steps taken to work->steps and
  // gives up (false, work->exhausted()) once they pass work->limit.
  bool full_match(const std::string& text, MatchWork* work = nullptr) const {
    if (!compiled_) return false;
    const std::uint64_t allowed =
        work == nullptr ? std::numeric_limits<std::uint64_t>::max() : (work->limit > work->steps ? work->limit - work->steps : 0);
    std::uint64_t steps = 1;
    const auto finish = [&](bool matched) {
      if (work != nullptr) work->steps += steps;
      return matched;
    };
    if (!text.empty() && !last_bytes_.test(static_cast<unsigned char>(text.back()))) return finish(false);
    std::vector<int> current, next;
    std::vector<std::size_t> mark(program_.size(), static_cast<std::size_t>(-1));
    std::vector<int> stack;
    steps += program_.size();
    add_thread(current, mark, stack, 0, 0, text.size(), steps);
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (steps > allowed) {
        steps = allowed + 1;  // exhausted: report just past the limit
        return finish(false);
      }
      next.clear();
      const unsigned char byte = static_cast<unsigned char>(text[i]);
      for (const int pc : current) {
        const Instruction& instruction = program_[static_cast<std::size_t>(pc)];
        ++steps;
        if (instruction.op == Op::set && instruction.set.test(byte)) add_thread(next, mark, stack, pc + 1, i + 1, text.size(), steps);
      }
      current.swap(next);
      if (current.empty()) return finish(false);
    }
    for (const int pc : current) {
      if (program_[static_cast<std::size_t>(pc)].op == Op::match) return finish(true);
    }
    return finish(false);
  }

 private:
  static constexpr int max_nesting = 32;
  static constexpr std::size_t max_emit_visits = 4 * max_program;

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

  std::string too_long(std::size_t bytes) {
    size_limit_ = true;
    return "the pattern is " + std::to_string(bytes) + " bytes long, more than lamina accepts (" + std::to_string(max_pattern_bytes) + ")";
  }

  // `reported_offset`: bytes in front of what the user wrote, left out of error positions.
  std::string compile_text(const std::string& pattern, std::size_t reported_offset) {
    pattern_ = pattern;
    position_ = 0;
    reported_offset_ = reported_offset;
    emit_visits_ = 0;
    size_limit_ = false;
    compiled_ = false;
    program_.clear();
    nodes_.clear();
    if (reported_offset == 0 && pattern.size() > max_pattern_bytes) return too_long(pattern.size());
    int root = -1;
    if (!parse_alternation(root, 0)) return error_;
    if (position_ != pattern_.size()) return "unbalanced ')' at position " + std::to_string(position_ - std::min(position_, reported_offset_));
    if (!emit(root, 0)) return error_;
    program_.push_back(Instruction{Op::match, 0, 0, {}});
    nodes_.clear();  // only the program is needed from here on
    nodes_.shrink_to_fit();
    find_last_bytes();
    compiled_ = true;
    return std::string();
  }

  // last_bytes_: the bytes a set instruction can consume just before the match instruction is
  // reached (through splits, jumps and assertions): a text ending in any other byte cannot match.
  // A reverse search over the epsilon edges from the match instruction, O(program).
  void find_last_bytes() {
    const std::size_t size = program_.size();
    std::vector<std::size_t> first_edge(size + 1, 0);  // reverse edges in CSR form: target -> sources
    const auto for_each_edge = [&](auto&& visit) {
      for (std::size_t pc = 0; pc < size; ++pc) {
        const Instruction& instruction = program_[pc];
        switch (instruction.op) {
          case Op::jump: visit(pc, static_cast<std::size_t>(instruction.x)); break;
          case Op::split:
            visit(pc, static_cast<std::size_t>(instruction.x));
            visit(pc, static_cast<std::size_t>(instruction.y));
            break;
          case Op::begin: case Op::end: visit(pc, pc + 1); break;
          case Op::set: case Op::match: break;
        }
      }
    };
    for_each_edge([&](std::size_t, std::size_t target) { ++first_edge[target + 1]; });
    for (std::size_t pc = 0; pc < size; ++pc) first_edge[pc + 1] += first_edge[pc];
    std::vector<std::size_t> sources(first_edge[size]);
    std::vector<std::size_t> filled(first_edge.begin(), first_edge.end() - 1);
    for_each_edge([&](std::size_t source, std::size_t target) { sources[filled[target]++] = source; });
    std::vector<char> reaches_match(size, 0);
    std::vector<std::size_t> pending{size - 1};
    reaches_match[size - 1] = 1;
    while (!pending.empty()) {
      const std::size_t pc = pending.back();
      pending.pop_back();
      for (std::size_t e = first_edge[pc]; e < first_edge[pc + 1]; ++e) {
        if (!reaches_match[sources[e]]) {
          reaches_match[sources[e]] = 1;
          pending.push_back(sources[e]);
        }
      }
    }
    last_bytes_.reset();
    for (std::size_t pc = 0; pc + 1 < size; ++pc) {
      if (program_[pc].op == Op::set && reaches_match[pc + 1]) last_bytes_ |= program_[pc].set;
    }
  }

  // Follows split/jump/assertions from `pc` at text position `at`, adding the set and match
  // instructions reached to `list` (each once per position, thanks to `mark`); one step each.
  void add_thread(std::vector<int>& list, std::vector<std::size_t>& mark, std::vector<int>& stack, int pc, std::size_t at,
                  std::size_t length, std::uint64_t& steps) const {
    stack.clear();
    stack.push_back(pc);
    while (!stack.empty()) {
      const int current = stack.back();
      stack.pop_back();
      ++steps;
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
    // Positions count from the start of what the user wrote (compile_component_pattern adds a prefix).
    const std::size_t at = position_ > reported_offset_ ? position_ - reported_offset_ : 0;
    error_ = what + " at position " + std::to_string(at);
    return false;
  }
  bool size_problem(const std::string& what) {
    size_limit_ = true;
    return problem(what);
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
      if (min > max_repeat || max > max_repeat) return size_problem("a repeat count above " + std::to_string(max_repeat));
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
      error_ = "the pattern is too large once compiled (more than " + std::to_string(max_program) + " NFA instructions)";
      size_limit_ = true;
      return false;
    }
    program_.push_back(std::move(instruction));
    return true;
  }

  // Appends the code of node `index`. Recursion depth is bounded: groups nest at most 32 deep
  // and each group adds at most alternate + concat + repeat levels.
  bool emit(int index, int depth) {
    // Each visit counts, not only each instruction: "((((){1000}){1000}){1000}){1000}" emits
    // nothing but would visit its empty group 10^12 times.
    if (++emit_visits_ > max_emit_visits) {
      error_ = "the pattern is too large once compiled (its repeats expand to more than " + std::to_string(max_emit_visits) + " parts)";
      size_limit_ = true;
      return false;
    }
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
  std::size_t reported_offset_ = 0;
  std::size_t emit_visits_ = 0;
  bool size_limit_ = false;
  std::string error_;
  std::vector<Node> nodes_;  // the parse tree, while compiling
  std::vector<Instruction> program_;
  std::bitset<256> last_bytes_;
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

// Calls visit(start) for every start of a trailing run of components of `path`: 0 and each
// position after a '.'. path.substr(start) == name for one of them exactly when
// ends_with_component(path, name).
template <class Visit>
inline void for_each_component_start(const std::string& path, Visit&& visit) {
  visit(std::size_t{0});
  for (std::size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '.') visit(i + 1);
  }
}

// A rank_pattern / alpha_pattern key without regex syntax: literal bytes, `.` wildcards and
// escaped ASCII punctuation ("\." is a literal dot). `literal` gets one byte per byte the key
// matches, '.' at the wildcards, whose positions go to `wildcards`. False for any other key
// (classes, groups, quantifiers, anchors, \d …): those go to the NFA.
inline bool literal_pattern(const std::string& key, std::string& literal, std::vector<std::size_t>& wildcards) {
  static const char syntax[] = "^$|?*+()[]{}";
  literal.clear();
  wildcards.clear();
  for (std::size_t i = 0; i < key.size(); ++i) {
    const char c = key[i];
    if (c == '.') {
      wildcards.push_back(literal.size());
      literal += '.';
    } else if (c == '\\') {
      if (i + 1 >= key.size()) return false;
      const unsigned char next = static_cast<unsigned char>(key[i + 1]);
      const bool punctuation = next > 0x20 && next < 0x7f && !((next >= '0' && next <= '9') || (next >= 'a' && next <= 'z') ||
                                                               (next >= 'A' && next <= 'Z'));
      if (!punctuation) return false;
      literal += key[++i];
    } else if (c != '\0' && std::strchr(syntax, c) != nullptr) {
      return false;
    } else {
      literal += c;
    }
  }
  return true;
}

// One of rank_pattern / alpha_pattern, compiled: the keys in file order (the first that matches
// wins), the literal ones (literal_pattern) in a hash index, the others as NFAs.
struct PatternTable {
  const char* config_key = "";     // "rank_pattern" or "alpha_pattern", for messages
  std::vector<std::string> keys;   // [key count], in file order
  std::vector<double> values;      // [key count]: the rank or alpha of keys[i]
  // Literal keys of one length whose wildcards sit at the same positions: such a key matches a
  // text of its length exactly when the text, with `wildcards` set to '.', equals its literal
  // form, so one hash probe per group answers for all of them.
  struct LiteralGroup {
    std::vector<std::size_t> wildcards;
    std::unordered_map<std::string, std::size_t> first_key;  // literal form -> smallest index in keys
  };
  std::unordered_map<std::size_t, std::vector<LiteralGroup>> literal_groups;  // by literal length
  struct RegexKey {
    std::size_t index;  // into keys
    Regex regex;        // (.*\.)?(key)
  };
  std::vector<RegexKey> regex_keys;  // by index

  struct FirstMatch {
    std::size_t index;             // into keys; keys.size() when no key matches
    bool out_of_work;
    const std::string* pattern;    // out_of_work: the key being tried, or null (the literal index)
  };

  // PEFT's get_pattern_key: the first key k (file order) for which (.*\.)?(k) fully matches `path`.
  FirstMatch first_match(const std::string& path, MatchWork& work) const {
    std::size_t best = keys.size();
    if (!literal_groups.empty()) {
      // A key matches the text after `start` when the part before it is empty or ends with '.'
      // and holds no newline (`.*` stops at newlines).
      const std::size_t newline = path.find('\n');
      std::string probe;
      bool out_of_work = false;
      for_each_component_start(path, [&](std::size_t start) {
        if (out_of_work || (start > 0 && newline != std::string::npos && newline < start - 1)) return;
        const auto groups = literal_groups.find(path.size() - start);
        ++work.steps;
        if (groups == literal_groups.end()) return;
        for (const LiteralGroup& group : groups->second) {
          work.steps += path.size() - start + 1;
          if (work.exhausted()) {
            out_of_work = true;
            return;
          }
          probe.assign(path, start, std::string::npos);
          bool possible = true;
          for (const std::size_t position : group.wildcards) {
            if (probe[position] == '\n') possible = false;  // `.` matches any byte but a newline
            probe[position] = '.';
          }
          if (!possible) continue;
          const auto found = group.first_key.find(probe);
          if (found != group.first_key.end() && found->second < best) best = found->second;
        }
      });
      if (out_of_work) return FirstMatch{best, true, nullptr};
    }
    for (const RegexKey& key : regex_keys) {
      if (key.index >= best) break;
      const bool matched = key.regex.full_match(path, &work);
      if (work.exhausted()) return FirstMatch{best, true, &keys[key.index]};
      if (matched) return FirstMatch{key.index, false, nullptr};
    }
    return FirstMatch{best, false, nullptr};
  }
};

// Everything ModuleMatcher needs from a config, with its patterns compiled and its lists hashed.
struct CompiledRules {
  std::string path;  // the config file, for messages
  // target_modules / exclude_modules / layers_to_transform / layers_pattern
  bool all_linear = false;
  bool has_target_regex = false, has_exclude_regex = false;
  Regex target_regex, exclude_regex;
  std::unordered_set<std::string> target_names, exclude_names;
  std::vector<Regex> layer_patterns;
  std::unordered_set<int> layers;  // empty: every layer
  // rank_pattern / alpha_pattern
  int r = 8;
  double lora_alpha = 8;
  PatternTable ranks, alphas;

  static constexpr std::size_t max_total_program = 200000;

  enum class Answer { no, yes, out_of_work };

  static Error refused(const std::string& path, const std::string& key, const std::string& pattern, const Regex& regex,
                       const std::string& why) {
    return fail(ErrorCode::unsupported, path + ": key " + lamina::detail::quote_for_message(key) + ": pattern " + lamina::detail::quote_for_message(pattern) + ": " + why +
                                            (regex.refused_for_size() ? " (lamina bounds the size of patterns so that loading stays fast)"
                                                                      : " (lamina supports a subset of Python regular expressions)"));
  }

  // Builds the rules of `config`. strict: an Error for a pattern that does not compile or that
  // passes a size limit (parse_adapter_config, ModuleMatcher::compile); otherwise such a pattern
  // matches nothing (the free functions, for configs built by hand). Only the parts asked for
  // are compiled.
  static Result<std::shared_ptr<CompiledRules>> build(const AdapterConfig& config, const std::string& path, bool strict,
                                                      bool with_targets, bool with_patterns) {
    auto rules = std::make_shared<CompiledRules>();
    rules->path = path;
    std::size_t total_program = 0;
    // Compiles `pattern` into `regex`; false (and `error` set) when strict and it is refused.
    const auto compile = [&](const std::string& key, const std::string& pattern, bool component, Regex& regex, Error& error) {
      const std::string why = component ? regex.compile_component_pattern(pattern) : regex.compile(pattern);
      if (!why.empty()) {
        if (!strict) return true;
        error = refused(path, key, pattern, regex, why);
        return false;
      }
      total_program += regex.program_size();
      if (strict && total_program > max_total_program) {
        error = fail(ErrorCode::unsupported,
                     path + ": key " + lamina::detail::quote_for_message(key) + ": pattern " + lamina::detail::quote_for_message(pattern) + ": the config's patterns compile to more than " +
                         std::to_string(max_total_program) + " NFA instructions in all (this one to " + std::to_string(regex.program_size()) +
                         "); lamina bounds their total so that loading stays fast");
        return false;
      }
      return true;
    };
    Error error;
    if (with_targets) {
      rules->all_linear = config.all_linear;
      if (!config.target_modules_regex.empty()) {
        if (!compile("target_modules", config.target_modules_regex, false, rules->target_regex, error)) return error;
        rules->has_target_regex = true;  // a pattern that did not compile matches nothing
      }
      if (!config.exclude_modules_regex.empty()) {
        if (!compile("exclude_modules", config.exclude_modules_regex, false, rules->exclude_regex, error)) return error;
        rules->has_exclude_regex = true;
      }
      rules->target_names.insert(config.target_modules.begin(), config.target_modules.end());
      rules->exclude_names.insert(config.exclude_modules.begin(), config.exclude_modules.end());
      for (const std::string& pattern : config.layers_patterns) {
        Regex regex;
        if (!compile("layers_pattern", pattern, false, regex, error)) return error;
        if (regex.compiled()) rules->layer_patterns.push_back(std::move(regex));
      }
      rules->layers.insert(config.layers_to_transform.begin(), config.layers_to_transform.end());
    }
    if (with_patterns) {
      rules->r = config.r;
      rules->lora_alpha = config.lora_alpha;
      // Keys in file order, each with its value (a key missing from the map is skipped).
      const auto fill = [&](const char* config_key, const auto& map, const std::vector<std::string>& order, PatternTable& table) {
        table.config_key = config_key;
        const auto add = [&](const std::string& key, double value) {
          table.keys.push_back(key);
          table.values.push_back(value);
        };
        if (order.empty()) {
          for (const auto& entry : map) add(entry.first, static_cast<double>(entry.second));
        } else {
          for (const std::string& key : order) {
            const auto found = map.find(key);
            if (found != map.end()) add(key, static_cast<double>(found->second));
          }
        }
        std::unordered_map<std::string, std::pair<std::size_t, std::size_t>> group_of_shape;  // -> (length, position)
        std::string literal, shape;
        std::vector<std::size_t> wildcards;
        for (std::size_t index = 0; index < table.keys.size(); ++index) {
          const std::string& key = table.keys[index];
          if (key.size() > Regex::max_pattern_bytes) {
            Regex too_long;
            const std::string why = too_long.compile_component_pattern(key);
            if (!strict) continue;
            error = refused(path, config_key, key, too_long, why);
            return false;
          }
          if (literal_pattern(key, literal, wildcards)) {
            // shape: the length and the wildcard positions, e.g. "...x.." for "ab.cd" -> "xx.xx"
            shape.assign(literal.size(), 'x');
            for (const std::size_t position : wildcards) shape[position] = '.';
            auto group = group_of_shape.find(shape);
            if (group == group_of_shape.end()) {
              std::vector<PatternTable::LiteralGroup>& groups = table.literal_groups[literal.size()];
              groups.emplace_back();
              groups.back().wildcards = wildcards;
              group = group_of_shape.emplace(shape, std::make_pair(literal.size(), groups.size() - 1)).first;
            }
            PatternTable::LiteralGroup& target = table.literal_groups[group->second.first][group->second.second];
            target.first_key.emplace(literal, index);  // keeps the first index of equal literal forms
            continue;
          }
          PatternTable::RegexKey entry{index, Regex()};
          if (!compile(config_key, key, true, entry.regex, error)) return false;
          if (entry.regex.compiled()) table.regex_keys.push_back(std::move(entry));
        }
        return true;
      };
      if (!fill("rank_pattern", config.rank_pattern, config.rank_pattern_order, rules->ranks)) return error;
      if (!fill("alpha_pattern", config.alpha_pattern, config.alpha_pattern_order, rules->alphas)) return error;
    }
    return rules;
  }

  // PEFT's layer index of a module path: the first ".<layers_pattern>.<digits>." (default
  // pattern: any one path component), read left to right as Python's lazy `.*?` does. -1 when
  // none; -2 when the work ran out.
  long long layer_index(const std::string& path, MatchWork& work) const {
    const auto digits_at = [&](std::size_t start) -> long long {  // "<digits>." at start, or -1
      std::size_t end = start;
      long long value = 0;
      while (end < path.size() && path[end] >= '0' && path[end] <= '9') {
        if (value < 1000000000000LL) value = value * 10 + (path[end] - '0');
        ++end;
      }
      work.steps += end - start + 1;
      if (end == start || end >= path.size() || path[end] != '.') return -1;
      return value;
    };
    if (layer_patterns.empty()) {
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
    for (const Regex& regex : layer_patterns) {
      // `.*?\.{pattern}\.(\d+)\.`
      for (std::size_t i = 0; i < path.size(); ++i) {
        if (path[i] != '.') continue;
        for (std::size_t k = i + 1; k < path.size(); ++k) {
          if (path[k] != '.') continue;
          const bool matched = regex.full_match(path.substr(i + 1, k - i - 1), &work);
          if (work.exhausted()) return -2;
          if (!matched) continue;
          const long long value = digits_at(k + 1);
          if (value >= 0) return value;
        }
      }
    }
    return -1;
  }

  // `which` gets the config key whose patterns were being matched when the work ran out.
  Answer targets(const std::string& module_path, MatchWork& work, const char** which) const {
    // An index probe for each trailing run of components: ends_with_component for a whole list.
    const auto ends_with_any = [&](const std::unordered_set<std::string>& names) {
      if (names.empty()) return false;
      bool found = false;
      for_each_component_start(module_path, [&](std::size_t start) {
        if (found) return;
        work.steps += module_path.size() - start + 1;
        found = names.count(module_path.substr(start)) != 0;
      });
      return found;
    };
    const auto regex_answer = [&](const Regex& regex, const char* key) {
      const bool matched = regex.full_match(module_path, &work);
      if (work.exhausted()) {
        *which = key;
        return Answer::out_of_work;
      }
      return matched ? Answer::yes : Answer::no;
    };
    // exclude_modules wins over everything.
    if (has_exclude_regex) {
      const Answer excluded = regex_answer(exclude_regex, "exclude_modules");
      if (excluded != Answer::no) return excluded == Answer::yes ? Answer::no : excluded;
    }
    if (ends_with_any(exclude_names)) return Answer::no;
    // A string target_modules is a full match on the whole path, without the layer filter.
    if (has_target_regex) return regex_answer(target_regex, "target_modules");
    bool found = false;
    if (all_linear) {
      found = !ends_with_component(module_path, "lm_head");
    } else {
      if (target_names.count(module_path) != 0) return Answer::yes;  // PEFT: an exact name skips the layer filter
      found = ends_with_any(target_names);
    }
    if (work.exhausted()) {
      *which = "target_modules";
      return Answer::out_of_work;
    }
    if (!found || layers.empty()) return found ? Answer::yes : Answer::no;
    const long long index = layer_index(module_path, work);
    if (index == -2) {
      *which = "layers_pattern";
      return Answer::out_of_work;
    }
    if (index < 0 || index > std::numeric_limits<int>::max()) return Answer::no;
    return layers.count(static_cast<int>(index)) != 0 ? Answer::yes : Answer::no;
  }

  Result<RankAlpha> rank_alpha(const std::string& module_path, MatchWork& work) const {
    RankAlpha result;
    result.rank = r;
    result.alpha = lora_alpha;
    const PatternTable::FirstMatch rank = ranks.first_match(module_path, work);
    if (rank.out_of_work) return out_of_work("rank_pattern", module_path, rank.pattern, work);
    if (rank.index < ranks.keys.size()) {
      result.rank = static_cast<int>(ranks.values[rank.index]);
      result.rank_key = ranks.keys[rank.index];
    }
    const PatternTable::FirstMatch alpha = alphas.first_match(module_path, work);
    if (alpha.out_of_work) return out_of_work("alpha_pattern", module_path, alpha.pattern, work);
    if (alpha.index < alphas.keys.size()) {
      result.alpha = alphas.values[alpha.index];
      result.alpha_key = alphas.keys[alpha.index];
    }
    return result;
  }

  Error out_of_work(const char* key, const std::string& module_path, const std::string* pattern, const MatchWork& work) const {
    return fail(ErrorCode::unsupported, path + ": key " + lamina::detail::quote_for_message(key) + ": matching module " + lamina::detail::quote_for_message(module_path) +
                                            " against its patterns" + (pattern != nullptr ? " (at pattern " + lamina::detail::quote_for_message(*pattern) + ")" : std::string()) +
                                            " passes the limit of " + std::to_string(work.limit) +
                                            " steps for this adapter; lamina bounds this work so that loading stays fast (simplify the patterns)");
  }
};

}  // namespace detail

inline Result<ModuleMatcher> ModuleMatcher::compile(const AdapterConfig& config, const std::string& path) {
  Result<std::shared_ptr<detail::CompiledRules>> rules = detail::CompiledRules::build(config, path, true, true, true);
  if (!rules) return rules.take_error();
  ModuleMatcher matcher;
  matcher.rules_ = std::move(*rules);
  return matcher;
}

inline Result<bool> ModuleMatcher::targets_module(const std::string& module_path) {
  if (rules_ == nullptr) return fail(ErrorCode::invalid_state, "ModuleMatcher: not compiled (use ModuleMatcher::compile)");
  const char* which = "target_modules";
  const detail::CompiledRules::Answer answer = rules_->targets(module_path, work_, &which);
  if (answer == detail::CompiledRules::Answer::out_of_work) return rules_->out_of_work(which, module_path, nullptr, work_);
  return answer == detail::CompiledRules::Answer::yes;
}

inline Result<RankAlpha> ModuleMatcher::effective_rank_alpha(const std::string& module_path) {
  if (rules_ == nullptr) return fail(ErrorCode::invalid_state, "ModuleMatcher: not compiled (use ModuleMatcher::compile)");
  return rules_->rank_alpha(module_path, work_);
}

namespace detail {

inline std::string quote_key(const std::string& key) { return safetensors::detail::quote_name(key); }

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

// The JSON checker of parse_adapter_config's first pass, which also records the keys of the
// top-level rank_pattern / alpha_pattern objects in file order: nlohmann's object keeps its keys
// sorted, and PEFT takes the first matching key in file order. When the file repeats
// "rank_pattern", nlohmann keeps the last object, and so does this.
struct KeyOrderRecorder : lamina::detail::JsonChecker {
  using json = nlohmann::json;
  explicit KeyOrderRecorder(const std::string& name) : lamina::detail::JsonChecker(name) {}
  bool start_object(std::size_t size) {
    ++level;
    if (level == 2) {
      target = pending_rank ? &ranks : pending_alpha ? &alphas : nullptr;
      if (target != nullptr) target->clear();
    }
    return lamina::detail::JsonChecker::start_object(size);
  }
  bool end_object() {
    --level;
    if (level == 1) target = nullptr;
    return lamina::detail::JsonChecker::end_object();
  }
  bool start_array(std::size_t size) {
    ++level;
    return lamina::detail::JsonChecker::start_array(size);
  }
  bool end_array() {
    --level;
    return lamina::detail::JsonChecker::end_array();
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

// `keys` in file order without repeats (a key the JSON object repeats counts at its first place).
inline std::vector<std::string> unique_in_order(std::vector<std::string> keys) {
  std::vector<char> first(keys.size(), 0);
  {
    std::unordered_set<std::string_view> seen;  // views into `keys`, which must not change meanwhile
    seen.reserve(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) first[i] = seen.insert(std::string_view(keys[i])).second ? 1 : 0;
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (!first[i]) continue;
    if (kept != i) keys[kept] = std::move(keys[i]);
    ++kept;
  }
  keys.resize(kept);
  return keys;
}

}  // namespace detail

inline Result<AdapterConfig> parse_adapter_config(const std::string& json_text, const std::string& path, ModuleMatcher* matcher) {
  using json = nlohmann::json;
  detail::KeyOrderRecorder checker(path);
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
    if (!config.layers_patterns.empty()) config.layers_pattern = config.layers_patterns.front();
  }

  // The values here; the keys (patterns) are checked when they are compiled, below. nlohmann's
  // object iterates in sorted order, so each insertion goes at the end of the map: O(1).
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
      config.rank_pattern.emplace_hint(config.rank_pattern.end(), it.key(), rank);
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
      config.alpha_pattern.emplace_hint(config.alpha_pattern.end(), it.key(), alpha);
    }
  }
  // File order, from the first pass; a hash set drops repeats in linear time.
  if (!config.rank_pattern.empty()) config.rank_pattern_order = detail::unique_in_order(std::move(checker.ranks));
  if (!config.alpha_pattern.empty()) config.alpha_pattern_order = detail::unique_in_order(std::move(checker.alphas));

  // Compiling checks every pattern (syntax and size limits), each error naming its key.
  Result<ModuleMatcher> compiled = ModuleMatcher::compile(config, path);
  if (!compiled) return compiled.take_error();
  if (matcher != nullptr) *matcher = std::move(*compiled);
  return config;
}

inline Result<AdapterConfig> read_adapter_config(const std::string& directory, ModuleMatcher* matcher) {
  const std::string path = directory + "/adapter_config.json";
  // A config is a few hundred bytes; read_regular_file refuses a FIFO or device at once.
  Result<std::string> text = read_regular_file(path, std::size_t{16} << 20);
  if (!text) return text.take_error();
  return parse_adapter_config(*text, path, matcher);
}

// The free functions compile what they need on each call, leniently (a pattern that does not
// compile matches nothing), and without a work limit: the caller's config may be built by hand.
inline bool targets_module(const AdapterConfig& config, const std::string& module_path) {
  Result<std::shared_ptr<detail::CompiledRules>> rules = detail::CompiledRules::build(config, std::string(), false, true, false);
  if (!rules) return false;  // not reached: lenient
  MatchWork unlimited;
  unlimited.limit = std::numeric_limits<std::uint64_t>::max() / 2;
  const char* which = nullptr;
  return (*rules)->targets(module_path, unlimited, &which) == detail::CompiledRules::Answer::yes;
}

inline RankAlpha effective_rank_alpha(const AdapterConfig& config, const std::string& module_path) {
  RankAlpha fallback;
  fallback.rank = config.r;
  fallback.alpha = config.lora_alpha;
  Result<std::shared_ptr<detail::CompiledRules>> rules = detail::CompiledRules::build(config, std::string(), false, false, true);
  if (!rules) return fallback;  // not reached: lenient
  MatchWork unlimited;
  unlimited.limit = std::numeric_limits<std::uint64_t>::max() / 2;
  Result<RankAlpha> result = (*rules)->rank_alpha(module_path, unlimited);
  return result ? std::move(*result) : fallback;
}

inline double scaling(const AdapterConfig& config, int rank, double alpha) {
  if (rank <= 0) return 0;
  return config.use_rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

}  // namespace peft
LAMINA_NAMESPACE_END
