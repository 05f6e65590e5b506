// Tests of lamina/text/grammar.hpp: the GBNF parser (every construct, errors with line and
// column, left recursion, hostile grammars), the matcher (JSON against nlohmann::json), and
// token masks against brute force on a real vocabulary.
#include <lamina/io/gguf.hpp>
#include <lamina/text/grammar.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "../test_support.hpp"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace {

using lamina::Grammar;
using lamina::GrammarConstraint;
using lamina::GrammarMatcher;
using lamina::TokenTrie;

std::shared_ptr<const Grammar> parse_ok(const std::string& text) {
  auto grammar = Grammar::parse(text);
  if (!grammar) FAIL_CHECK(grammar.error().message << "\n in grammar:\n" << text);
  REQUIRE(grammar);
  return *grammar;
}

// Whole-text match: accepted and complete.
bool matches(const std::shared_ptr<const Grammar>& grammar, const std::string& text) {
  GrammarMatcher matcher(grammar);
  return matcher.accept_bytes(text) && matcher.is_complete();
}

// Same, fed one byte at a time (cuts every UTF-8 character).
bool matches_bytewise(const std::shared_ptr<const Grammar>& grammar, const std::string& text) {
  GrammarMatcher matcher(grammar);
  for (char c : text) {
    if (!matcher.accept_bytes(std::string(1, c))) return false;
  }
  return matcher.is_complete();
}

std::string parse_error(const std::string& text, const lamina::GrammarLimits& limits = {}) {
  auto grammar = Grammar::parse(text, limits);
  if (grammar) return "";
  return grammar.error().message;
}

}  // namespace

TEST_CASE("grammar: literals, sequences, alternatives, groups") {
  auto g = parse_ok("root ::= \"ab\" \"c\" | \"x\" (\"y\" | \"z\")");
  CHECK(matches(g, "abc"));
  CHECK(matches(g, "xy"));
  CHECK(matches(g, "xz"));
  CHECK_FALSE(matches(g, "ab"));
  CHECK_FALSE(matches(g, "xyz"));
  CHECK_FALSE(matches(g, ""));
  GrammarMatcher matcher(g);
  CHECK(matcher.accept_bytes("ab"));
  CHECK_FALSE(matcher.is_complete());
  CHECK_FALSE(matcher.can_accept("x"));
  CHECK(matcher.can_accept("c"));
  CHECK_FALSE(matcher.accept_bytes("cd"));  // refused: state unchanged
  CHECK(matcher.accept_bytes("c"));
  CHECK(matcher.is_complete());
  matcher.reset();
  CHECK(matcher.accept_bytes("x"));
}

TEST_CASE("grammar: rule references, comments, newlines in groups") {
  auto g = parse_ok(
      "# a comment line\n"
      "root ::= greeting \" \" name   # trailing comment\n"
      "\n"
      "greeting ::= \"hi\" | \"hello\"\n"
      "name ::= (\n"
      "    \"bob\" |   # inside a group\n"
      "    \"alice\"\n"
      "  )\n");
  CHECK(matches(g, "hi bob"));
  CHECK(matches(g, "hello alice"));
  CHECK_FALSE(matches(g, "hello  alice"));
  CHECK(g->rule_count() >= 3);
}

TEST_CASE("grammar: escapes in literals and classes, UTF-8") {
  auto g = parse_ok("root ::= \"\\n\\t\\r\\\\\\\"\\x41\\u00e9\\U0001F600\" [\\x30-\\x39\\]\\-] \"é😀\"");
  CHECK(matches(g, "\n\t\r\\\"A\xC3\xA9\xF0\x9F\x98\x80" "5\xC3\xA9\xF0\x9F\x98\x80"));
  CHECK(matches(g, "\n\t\r\\\"A\xC3\xA9\xF0\x9F\x98\x80]\xC3\xA9\xF0\x9F\x98\x80"));
  CHECK(matches(g, "\n\t\r\\\"A\xC3\xA9\xF0\x9F\x98\x80-\xC3\xA9\xF0\x9F\x98\x80"));
  CHECK_FALSE(matches(g, "\n\t\r\\\"A\xC3\xA9\xF0\x9F\x98\x80x\xC3\xA9\xF0\x9F\x98\x80"));
  CHECK(matches_bytewise(g, "\n\t\r\\\"A\xC3\xA9\xF0\x9F\x98\x80-\xC3\xA9\xF0\x9F\x98\x80"));
}

TEST_CASE("grammar: character classes, negation, any character") {
  auto g = parse_ok("root ::= [a-cx] [^a-z0-9] . [α-ω]");
  CHECK(matches(g, "a!zβ"));
  CHECK(matches(g, "xA\xE4\xB8\xADω"));
  CHECK_FALSE(matches(g, "aa!β"));
  CHECK_FALSE(matches(g, "d!zβ"));
  CHECK_FALSE(matches(g, "a!zb"));
  CHECK(matches_bytewise(g, "c\xE2\x82\xAC\xF0\x9F\x98\x80\xCE\xB1"));
  // invalid UTF-8 never matches `.`
  CHECK_FALSE(matches(g, "a!\xFF\xCE\xB1"));
  CHECK_FALSE(matches(g, "a!\xC0\xAF\xCE\xB1"));     // overlong
  CHECK_FALSE(matches(g, "a!\xED\xA0\x80\xCE\xB1"));  // surrogate
}

TEST_CASE("grammar: repetition * + ? {m} {m,} {m,n}") {
  auto star = parse_ok("root ::= \"ab\"* \"c\"");
  CHECK(matches(star, "c"));
  CHECK(matches(star, "ababc"));
  CHECK_FALSE(matches(star, "abac"));
  auto plus = parse_ok("root ::= [0-9]+");
  CHECK(matches(plus, "0123"));
  CHECK_FALSE(matches(plus, ""));
  auto optional = parse_ok("root ::= \"-\"? [0-9]");
  CHECK(matches(optional, "-1"));
  CHECK(matches(optional, "1"));
  CHECK_FALSE(matches(optional, "--1"));
  auto exact = parse_ok("root ::= [a]{3}");
  CHECK(matches(exact, "aaa"));
  CHECK_FALSE(matches(exact, "aa"));
  CHECK_FALSE(matches(exact, "aaaa"));
  auto at_least = parse_ok("root ::= (\"x\" | \"y\"){2,}");
  CHECK_FALSE(matches(at_least, "x"));
  CHECK(matches(at_least, "xy"));
  CHECK(matches(at_least, "xyxyyx"));
  auto range = parse_ok("root ::= \"a\"{2,4} \"b\"{0,1} \"c\"{ 1 , 2 }");
  CHECK_FALSE(matches(range, "ac"));
  CHECK(matches(range, "aac"));
  CHECK(matches(range, "aaaabcc"));
  CHECK_FALSE(matches(range, "aaaaac"));
  CHECK_FALSE(matches(range, "aabbc"));
  CHECK_FALSE(matches(range, "aaccc"));
  // a large bounded repetition is linear in size, not expanded into a product
  auto large = parse_ok("root ::= (\"x\" [a-w]{0,1000}){0,1000}");
  CHECK(large->element_count() < 20000);
  std::string long_text;
  for (int i = 0; i < 1000; ++i) long_text += "xqq";
  CHECK(matches(large, long_text));
  CHECK_FALSE(matches(large, long_text + "x"));
}

TEST_CASE("grammar: empty alternatives and nullable rules") {
  auto g = parse_ok("root ::= a b \"!\"\na ::= | \"a\"\nb ::= \"b\" |");
  CHECK(matches(g, "!"));
  CHECK(matches(g, "ab!"));
  CHECK(matches(g, "b!"));
  CHECK(matches(g, "a!"));
  CHECK_FALSE(matches(g, "ba!"));
  // right recursion runs in constant stack depth (the tail call pops)
  auto right = parse_ok("root ::= \"a\" root | \"b\"");
  CHECK(matches(right, std::string(100000, 'a') + "b"));
  auto nested = parse_ok("root ::= \"(\" root \")\" | \"x\"");
  CHECK(matches(nested, "((((x))))"));
  CHECK_FALSE(matches(nested, "((((x)))"));
}

TEST_CASE("grammar: syntax errors give line and column") {
  struct Case {
    const char* text;
    const char* expected;
  };
  const Case cases[] = {
      {"root ::= \"abc", "line 1, column 10: unterminated string literal"},
      {"root ::= [abc", "line 1, column 10: unterminated character class"},
      {"root ::= (\"a\"", "line 1, column 14: expected ')'"},
      {"root ::= \"a\")", "line 1, column 13: unexpected ')'"},
      {"root ::= \"a\"\nx = \"b\"", "line 2, column 3: expected '::='"},
      {"root ::= \"a\"\n::= \"b\"", "line 2, column 1: expected a rule name"},
      {"root ::= *", "line 1, column 10: '*' with nothing to repeat"},
      {"root ::= \"a\"{2,1}", "line 1, column 13: repetition {m,n} with n < m"},
      {"root ::= \"a\"{x}", "line 1, column 14: expected a number"},
      {"root ::= \"a\"{2", "line 1, column 15: expected '}'"},
      {"root ::= \"\\q\"", "line 1, column 11: unknown escape '\\q'"},
      {"root ::= \"\\x4\"", "line 1, column 14: expected a hexadecimal digit"},
      {"root ::= [z-a]", "line 1, column 13: character range out of order"},
      {"root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule 'root' is defined twice"},
      {"root ::= \"a\"\n\n  foo ::= bar", "line 3, column 11: undefined rule 'bar'"},
      {"root ::= \"a\" \xFF", "line 1, column 14: the grammar is not valid UTF-8"},
      {"root ::= \"é\" ]", "line 1, column 14: unexpected ']'"},
  };
  for (const Case& test : cases) {
    CAPTURE(test.text);
    const std::string message = parse_error(test.text);
    CHECK(message.find(test.expected) != std::string::npos);
    if (message.find(test.expected) == std::string::npos) MESSAGE(message);
  }
  CHECK(parse_error("start ::= \"a\"").find("no 'root' rule") != std::string::npos);
  CHECK(parse_error("").find("no 'root' rule") != std::string::npos);
}

TEST_CASE("grammar: left recursion is refused, naming the rule") {
  CHECK(parse_error("root ::= root \"a\" | \"b\"").find("rule 'root' is left-recursive") != std::string::npos);
  const std::string indirect = parse_error("root ::= a\na ::= b \"x\"\nb ::= \"\" | a \"y\"");
  CHECK(indirect.find("left-recursive") != std::string::npos);
  CHECK(indirect.find("a -> b -> a") != std::string::npos);
  // through a nullable prefix
  CHECK(parse_error("root ::= opt root \"a\" | \"b\"\nopt ::= \"x\"?").find("'root' is left-recursive") != std::string::npos);
  // a group starting with its own rule
  CHECK(parse_error("root ::= (root | \"a\") \"b\"").find("left-recursive") != std::string::npos);
  // not left recursion: something comes first
  CHECK(parse_error("root ::= \"a\" root | \"b\"").empty());
}

TEST_CASE("grammar: hostile grammars end with errors quickly") {
  const auto start = std::chrono::steady_clock::now();
  CHECK(parse_error("root ::= \"a\"{0,100000}").find("repetition count over the limit") != std::string::npos);
  CHECK(parse_error("root ::= \"a\"{99999999999999999999}").find("over the limit") != std::string::npos);
  CHECK(parse_error(std::string("root ::= ") + std::string(200, '(') + "\"a\"" + std::string(200, ')')).find("nested deeper") !=
        std::string::npos);
  // products of repetitions are bounded by the element budget
  std::string product = "root ::= ";
  for (int i = 0; i < 200; ++i) product += "(\"a\"{10000})";
  CHECK(parse_error(product).find("more than") != std::string::npos);
  lamina::GrammarLimits small;
  small.max_text_bytes = 100;
  CHECK(parse_error("root ::= \"" + std::string(200, 'a') + "\"", small).find("over the limit") != std::string::npos);
  small = {};
  small.max_rules = 10;
  std::string many = "root ::= r0\n";
  for (int i = 0; i < 20; ++i) many += "r" + std::to_string(i) + " ::= \"x\" r" + std::to_string(i + 1) + "\n";
  CHECK(parse_error(many, small).find("more than 10 rules") != std::string::npos);
  // a long chain of rules (deep, but no recursion in the checker or the matcher)
  std::string chain = "root ::= r0\n";
  for (int i = 0; i < 20000; ++i) chain += "r" + std::to_string(i) + " ::= r" + std::to_string(i + 1) + "\n";
  chain += "r20000 ::= \"z\"\n";
  auto deep = Grammar::parse(chain);
  REQUIRE(deep);
  CHECK(matches(*deep, "z"));
  // ambiguous grammar: the stacks stay few (same position and parent are merged)
  auto ambiguous = parse_ok("root ::= x*\nx ::= \"a\" | \"a\" \"a\" | \"a\" \"a\" \"a\" | (\"a\" | \"a\")+");
  GrammarMatcher matcher(ambiguous);
  for (int i = 0; i < 500; ++i) REQUIRE(matcher.accept_bytes("a"));
  CHECK(matcher.stack_count() <= 1024);
  CHECK(matcher.is_complete());
  // past the cap a step is refused, with overflowed() saying why
  lamina::GrammarMatcherLimits few;
  few.max_stacks = 4;
  GrammarMatcher capped(parse_ok("root ::= \"a\" tail\ntail ::= \"x\" | \"y\" | \"z\" | \"w\" | \"v\""), few);
  CHECK_FALSE(capped.overflowed());
  CHECK_FALSE(capped.accept_bytes("a"));
  CHECK(capped.overflowed());
  // nullable inside a star is left recursion of the generated rule: refused, not a hang
  CHECK(parse_error("root ::= (\"a\"?)*").find("left-recursive") != std::string::npos);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(seconds < 10.0);
}

namespace {

const char* const valid_json[] = {
    "{}",
    "[]",
    "0",
    "-0",
    "12.5e-3",
    "1E+10",
    "-123.4",
    "true",
    "false",
    "null",
    "\"\"",
    "\"hello\"",
    "\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\"",
    "\"unicode: é ü 中文 😀 \xE2\x80\x8B\"",
    "{\"a\":1}",
    "{\"a\": 1, \"b\": [true, false, null]}",
    "[1, 2, 3, [4, [5, [6, []]]]]",
    "{\"nested\": {\"deeper\": {\"deepest\": [\"x\", {\"y\": -1.5e3}]}}}",
    "[{\"id\": 1, \"tags\": [\"a\", \"b\"]}, {\"id\": 2, \"tags\": []}]",
    "{\n  \"name\": \"lamina\",\n  \"version\": [0, 1],\n  \"ok\": true\n}",
    "[\n\t1,\n\t2\n]",
    "{\"empty\": {}, \"list\": [], \"s\": \"\"}",
    "{\"k\": \"\\u0041\\u00DF\\u6771\"}",
    "[0.5, 10, 100e2, -0.0]",
    "{\"a\" : 1}",
    "\"tab\\tand\\nnewline\"",
};

const char* const invalid_json[] = {
    "",
    "{",
    "[1, 2",
    "[1,]",
    "{\"a\":}",
    "{\"a\" 1}",
    "{a: 1}",
    "01",
    "1.",
    ".5",
    "1e",
    "-",
    "+1",
    "tru",
    "nul",
    "True",
    "\"unterminated",
    "\"bad \\x escape\"",
    "\"bad \\u12 escape\"",
    "\"control \x01 char\"",
    "[1 2]",
    "{\"a\":1,}",
    "{,}",
    "[\"a\"]]",
    "{}{}",
    "'single'",
    "[1, 2, 3]x",
};

bool grammar_accepts_json(const std::shared_ptr<const Grammar>& grammar, const std::string& text) {
  GrammarMatcher matcher(grammar);
  return matcher.accept_bytes(text) && matcher.is_complete();
}

}  // namespace

TEST_CASE("grammar: the JSON grammar agrees with nlohmann::json") {
  auto json = parse_ok(lamina::json_grammar());
  for (const char* text : valid_json) {
    CAPTURE(text);
    REQUIRE(nlohmann::json::accept(text));
    CHECK(grammar_accepts_json(json, text));
    CHECK(matches_bytewise(json, text));
  }
  for (const char* text : invalid_json) {
    CAPTURE(text);
    REQUIRE_FALSE(nlohmann::json::accept(text));
    CHECK_FALSE(grammar_accepts_json(json, text));
  }
  // Every prefix of a valid document is accepted (not complete, except where nlohmann also says it is a document).
  for (const char* text : valid_json) {
    const std::string document(text);
    GrammarMatcher matcher(json);
    for (std::size_t i = 0; i < document.size(); ++i) {
      REQUIRE(matcher.accept_bytes(document.substr(i, 1)));
      const std::string prefix = document.substr(0, i + 1);
      // Whitespace-free prefixes: complete exactly when nlohmann accepts the prefix.
      if (prefix.find_first_of(" \n\t") == std::string::npos && (static_cast<unsigned char>(prefix.back()) < 0x80)) {
        CAPTURE(prefix);
        CHECK(matcher.is_complete() == nlohmann::json::accept(prefix));
      }
    }
  }
  // One character changed at every position, compact documents: both judges agree.
  const char replacements[] = {'{', '}', '[', ']', ',', ':', '"', '\\', '0', '1', '-', '.', 'e', 'a', 't', 'n', 'u', 'x'};
  std::size_t compared = 0;
  for (const char* text : valid_json) {
    const std::string document(text);
    if (document.find_first_of(" \n\t") != std::string::npos) continue;
    for (std::size_t i = 0; i < document.size(); ++i) {
      for (char replacement : replacements) {
        std::string mutated = document;
        mutated[i] = replacement;
        const bool reference = nlohmann::json::accept(mutated);
        CAPTURE(mutated);
        CHECK(grammar_accepts_json(json, mutated) == reference);
        ++compared;
      }
    }
  }
  CHECK(compared > 1000);
  // Whitespace is bounded: the grammar cannot be fed spaces forever.
  GrammarMatcher spaces(json);
  CHECK(spaces.accept_bytes("["));
  CHECK_FALSE(spaces.accept_bytes("  "));
  CHECK(spaces.accept_bytes("\n" + std::string(20, ' ')));
  CHECK_FALSE(spaces.accept_bytes(" "));
}

TEST_CASE("grammar: generated random JSON documents match") {
  auto json = parse_ok(lamina::json_grammar());
  std::uint64_t state = 12345;
  auto next = [&](std::uint32_t bound) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::uint32_t>(state >> 33) % bound;
  };
  // Builds a random value with nlohmann, then dumps it (compact and indented).
  std::function<nlohmann::json(int)> random_value = [&](int depth) -> nlohmann::json {
    const std::uint32_t kind = next(depth > 3 ? 5 : 7);
    switch (kind) {
      case 0: return nullptr;
      case 1: return next(2) == 0;
      case 2: return static_cast<int>(next(100000)) - 50000;
      case 3: return static_cast<double>(next(100000)) / 7.0;
      case 4: {
        const char* pieces[] = {"a", "\"", "\\", "\n", "é", "中", "😀", "\t", "/", "\x01", "z"};
        std::string s;
        for (std::uint32_t i = next(6); i > 0; --i) s += pieces[next(11)];
        return s;
      }
      case 5: {
        nlohmann::json array = nlohmann::json::array();
        for (std::uint32_t i = next(4); i > 0; --i) array.push_back(random_value(depth + 1));
        return array;
      }
      default: {
        nlohmann::json object = nlohmann::json::object();
        for (std::uint32_t i = next(4); i > 0; --i) object["k" + std::to_string(next(50))] = random_value(depth + 1);
        return object;
      }
    }
  };
  for (int i = 0; i < 200; ++i) {
    const nlohmann::json value = random_value(0);
    const std::string compact = value.dump();
    const std::string indented = value.dump(2);
    CAPTURE(compact);
    CHECK(grammar_accepts_json(json, compact));
    CHECK(grammar_accepts_json(json, indented));
    CHECK(matches_bytewise(json, compact));
    // cut off: a prefix is never complete unless it is itself a document
    if (compact.size() > 1) {
      const std::string cut = compact.substr(0, compact.size() / 2);
      GrammarMatcher matcher(json);
      CHECK(matcher.accept_bytes(cut));
      if (cut.find_first_of("0123456789") == std::string::npos) CHECK(matcher.is_complete() == nlohmann::json::accept(cut));
    }
  }
}

namespace {

lamina::Result<lamina::Tokenizer> load_vocabulary(const std::string& name) {
  lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open(lamina_test::shared_path("vocab/ggml-vocab-" + name + ".gguf"));
  if (!file) return file.take_error();
  return lamina::Tokenizer::from_gguf(*file);
}

}  // namespace

TEST_CASE("grammar: token masks equal brute force on a real vocabulary") {
  for (const char* name : {"llama-spm", "gpt-2"}) {
    CAPTURE(name);
    auto tokenizer = load_vocabulary(name);
    REQUIRE_MESSAGE(tokenizer, tokenizer.error().message);
    auto trie = TokenTrie::from_tokenizer(*tokenizer);
    auto json = parse_ok(lamina::json_grammar());
    for (std::size_t cache_size : {std::size_t(0), std::size_t(4)}) {
    CAPTURE(cache_size);
    GrammarConstraint constraint(json, trie);
    constraint.set_mask_cache_size(cache_size);  // 0: every mask is a trie walk
    const std::string document = "{\"name\": \"Zoë 中文\", \"list\": [1, -2.5e3, true, null, {\"x\": \"\\n\\u00e9\"}], \"z\": {}}";
    std::size_t states = 0;
    for (std::size_t cut = 0; cut <= document.size(); cut += 1) {
      // states after every prefix (some cut inside a UTF-8 character)
      constraint.reset();
      REQUIRE(constraint.matcher().accept_bytes(document.substr(0, cut)));
      if (cut % 3 != 0 && cut != document.size()) continue;  // keep the test quick
      const std::vector<std::uint8_t> allowed = constraint.compute_allowed();
      std::size_t mismatches = 0, allowed_count = 0;
      for (std::size_t token = 0; token < trie->vocab_size(); ++token) {
        const lamina::Token id = static_cast<lamina::Token>(token);
        bool expected;
        if (trie->is_end_of_generation(id)) expected = constraint.matcher().is_complete();
        else expected = !trie->text(id).empty() && constraint.matcher().can_accept(trie->text(id));
        if (expected != (allowed[token] != 0)) ++mismatches;
        if (constraint.allows(id) != expected) ++mismatches;
        allowed_count += expected;
      }
      CAPTURE(document.substr(0, cut));
      CHECK(mismatches == 0);
      CHECK(allowed_count > 0);
      ++states;
    }
    CHECK(states > 20);
    // mask_logits: -infinity exactly where not allowed; EOS only once complete
    constraint.reset();
    std::vector<float> logits(trie->vocab_size(), 1.0f);
    constraint.mask_logits(logits.data());
    for (std::size_t token = 0; token < logits.size(); ++token) {
      CHECK((std::isinf(logits[token]) == (constraint.allowed()[token] == 0)));
    }
    if (tokenizer->eos() >= 0) {
      CHECK_FALSE(constraint.allows(tokenizer->eos()));
      CHECK(constraint.matcher().accept_bytes("[1]"));
      CHECK(constraint.allows(tokenizer->eos()));
      CHECK(constraint.accept_token(tokenizer->eos()));
    }
    }
  }
}

TEST_CASE("grammar: token masks on a plain vocabulary, tokens cutting UTF-8") {
  std::vector<std::string> texts = {"a", "b", "ab", "\xC3", "\xA9", "\xC3\xA9", "\xC3\xA9\xC3", "", "\"", "</s>"};
  auto trie = TokenTrie::from_texts(texts, {9});
  auto grammar = parse_ok("root ::= \"a\" \"é\"+ \"b\"?");
  GrammarConstraint constraint(grammar, trie);
  auto allowed_list = [&]() {
    std::string list;
    const auto& allowed = constraint.compute_allowed();
    for (std::size_t i = 0; i < allowed.size(); ++i) if (allowed[i]) list += std::to_string(i) + ",";
    return list;
  };
  CHECK(allowed_list() == "0,");
  CHECK(constraint.accept_token(0));
  CHECK(allowed_list() == "3,5,6,");
  CHECK(constraint.accept_token(3));  // half of é
  CHECK(allowed_list() == "4,");
  CHECK_FALSE(constraint.accept_token(1));
  CHECK(constraint.accept_token(4));
  CHECK(allowed_list() == "1,3,5,6,9,");
  CHECK(constraint.accept_token(6));
  CHECK(allowed_list() == "4,");
  CHECK(constraint.accept_token(4));
  CHECK(constraint.accept_token(1));
  CHECK(allowed_list() == "9,");
  CHECK(constraint.is_complete());
}
