// Tests of lamina/text/unicode.hpp and lamina/text/tokenizer.hpp: Unicode categories and UTF-8,
// llama.cpp's tokenizer test vectors for six vocabularies (ids must match exactly), decoding,
// special tokens, invalid input, and small vocabularies built in memory.
#include <lamina/text/tokenizer.hpp>
#include <lamina/text/unicode.hpp>
#include <cli/tokenizer_test_cases.hpp>

#include <doctest/doctest.h>

#include "../alloc_counter.hpp"
#include "../test_support.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using lamina::ErrorCode;
using lamina::Token;
using lamina::Tokenizer;
using lamina::TokenType;
using lamina::VocabularyData;
namespace unicode = lamina::unicode;

const char* const vocabulary_names[] = {"falcon", "gpt-2", "llama-spm", "mpt", "phi-3", "starcoder"};

std::string vocabulary_path(const std::string& name) { return "vocab/ggml-vocab-" + name + ".gguf"; }

// Loads a tokenizer from ../shared/vocab (the test fails clearly when the data is missing).
lamina::Result<Tokenizer> load_tokenizer(const std::string& name) {
  const std::string path = lamina_test::shared_path(vocabulary_path(name));
  lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open(path);
  if (!file) return file.take_error();
  return Tokenizer::from_gguf(*file);
}

// The encoding llama.cpp's test-tokenizer-0 checks: no BOS/EOS, special tokens not parsed.
lamina::EncodeOptions plain_text() {
  lamina::EncodeOptions options;
  options.add_bos = 0;
  options.add_eos = 0;
  options.parse_special = false;
  return options;
}

std::vector<Token> parse_ids(const std::string& line) {
  std::vector<Token> ids;
  const char* cursor = line.c_str();
  char* end = nullptr;
  for (long value = std::strtol(cursor, &end, 10); end != cursor; value = std::strtol(cursor, &end, 10)) {
    ids.push_back(static_cast<Token>(value));
    cursor = end;
  }
  return ids;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::string escaped(const std::string& text) {
  std::string out;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7F) {
      out.push_back(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", byte);
      out += hex;
    }
  }
  return out;
}

std::string codepoint_name(char32_t codepoint) {
  char name[16];
  std::snprintf(name, sizeof name, "U+%04X", static_cast<unsigned>(codepoint));
  return name;
}

std::string ids_text(const std::vector<Token>& ids) {
  std::string out;
  for (Token id : ids) out += " " + std::to_string(id);
  return out;
}

// Whether every byte of `text` has a token: byte-level vocabularies may lack a few bytes (Falcon
// has no token for 0x03 or 0xF2), which then vanish from the text, as in llama.cpp.
bool every_byte_has_a_token(const Tokenizer& tokenizer, const std::string& text) {
  if (tokenizer.model() != "gpt2") return true;  // SentencePiece falls back to <0xXX> tokens
  for (const char c : text) {
    std::string character;
    lamina::detail::text::append_byte_level(character, static_cast<unsigned char>(c));
    if (tokenizer.find(character) < 0) return false;
  }
  return true;
}

// A tiny deterministic generator for random text.
struct TestRandom {
  std::uint64_t state;
  explicit TestRandom(std::uint64_t seed) : state(seed * 2862933555777941757ull + 3037000493ull) {}
  std::uint32_t next() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::uint32_t>(state >> 33);
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Unicode.

TEST_CASE("unicode: general category and White_Space of known code points") {
  using Category = unicode::GeneralCategory;
  const struct {
    char32_t codepoint;
    Category category;
    bool whitespace;
  } known[] = {
      {U'A', Category::uppercase_letter, false},      {U'z', Category::lowercase_letter, false},
      {U'0', Category::decimal_number, false},        {U' ', Category::space_separator, true},
      {U'\t', Category::control, true},               {U'\n', Category::control, true},
      {U'~', Category::math_symbol, false},           {U'$', Category::currency_symbol, false},
      {U'_', Category::connector_punctuation, false}, {U'(', Category::open_punctuation, false},
      {0x00E9, Category::lowercase_letter, false},    {0x0411, Category::uppercase_letter, false},
      {0x01C5, Category::titlecase_letter, false},    {0x02B0, Category::modifier_letter, false},
      {0x4E2D, Category::other_letter, false},        {0xAC00, Category::other_letter, false},
      {0x0301, Category::nonspacing_mark, false},     {0x0903, Category::spacing_mark, false},
      {0x0663, Category::decimal_number, false},      {0x216B, Category::letter_number, false},
      {0x00B2, Category::other_number, false},        {0x3002, Category::other_punctuation, false},
      {0x00AB, Category::initial_punctuation, false}, {0x2019, Category::final_punctuation, false},
      {0x20AC, Category::currency_symbol, false},     {0x1F600, Category::other_symbol, false},
      {0x00A0, Category::space_separator, true},      {0x3000, Category::space_separator, true},
      {0x2028, Category::line_separator, true},       {0x2029, Category::paragraph_separator, true},
      {0x0085, Category::control, true},              {0x200B, Category::format, false},
      {0xFEFF, Category::format, false},              {0xD800, Category::surrogate, false},
      {0xE000, Category::private_use, false},         {0x10FFFD, Category::private_use, false},
      {0x0378, Category::unassigned, false},          {0x10FFFF, Category::unassigned, false},
      {0x20000, Category::other_letter, false},       {0x110000, Category::unassigned, false},
  };
  for (const auto& entry : known) {
    INFO(codepoint_name(entry.codepoint));
    CHECK(unicode::general_category(entry.codepoint) == entry.category);
    CHECK(unicode::is_whitespace(entry.codepoint) == entry.whitespace);
  }
  CHECK(unicode::is_letter(U'a'));
  CHECK(unicode::is_number(char32_t{0x0663}));
  CHECK(unicode::is_punctuation(char32_t{0x3002}));
  CHECK(unicode::is_symbol(U'+'));
  CHECK(unicode::is_mark(char32_t{0x0301}));
  CHECK_FALSE(unicode::is_letter(U'1'));
  CHECK(std::string(unicode::abbreviation(Category::decimal_number)) == "Nd");
}

TEST_CASE("unicode: the generated table agrees with UnicodeData.txt for every code point") {
  // The generator's input, when this machine has it (Debian: unicode-data).
  const std::string data = lamina_test::read_text_file("/usr/share/unicode/UnicodeData.txt");
  if (data.empty()) {
    MESSAGE("skipped: /usr/share/unicode/UnicodeData.txt is not installed");
    return;
  }
  std::vector<std::string> expected(0x110000, "Cn");
  std::uint32_t range_first = 0;
  for (const std::string& line : split_lines(data)) {
    const std::size_t first_semicolon = line.find(';');
    const std::size_t second_semicolon = line.find(';', first_semicolon + 1);
    if (first_semicolon == std::string::npos || second_semicolon == std::string::npos) continue;
    const auto codepoint = static_cast<std::uint32_t>(std::strtoul(line.c_str(), nullptr, 16));
    const std::string name = line.substr(first_semicolon + 1, second_semicolon - first_semicolon - 1);
    const std::string category = line.substr(second_semicolon + 1, 2);
    if (name.find(", First>") != std::string::npos) {
      range_first = codepoint;
      continue;
    }
    const std::uint32_t first = name.find(", Last>") != std::string::npos ? range_first : codepoint;
    for (std::uint32_t inside = first; inside <= codepoint; ++inside) expected[inside] = category;
  }
  std::size_t mismatches = 0;
  for (char32_t codepoint = 0; codepoint <= unicode::max_codepoint; ++codepoint) {
    if (expected[codepoint] != unicode::abbreviation(unicode::general_category(codepoint)) && ++mismatches <= 5) {
      FAIL_CHECK(codepoint_name(codepoint) << ": table says "
                      << unicode::abbreviation(unicode::general_category(codepoint)) << ", UnicodeData.txt " << expected[codepoint]);
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("unicode: UTF-8 encode and decode round trip for every code point") {
  std::size_t failures = 0;
  for (char32_t codepoint = 0; codepoint <= unicode::max_codepoint; ++codepoint) {
    if (codepoint >= 0xD800 && codepoint <= 0xDFFF) continue;
    const std::string bytes = unicode::to_utf8(codepoint);
    const unicode::DecodedCodepoint decoded = unicode::decode_utf8(bytes, 0);
    if (decoded.codepoint != codepoint || decoded.length != bytes.size() || !unicode::is_valid_utf8(bytes)) ++failures;
  }
  CHECK(failures == 0);
  CHECK(unicode::to_utf8(0xD800) == "\xEF\xBF\xBD");  // a surrogate is no character: U+FFFD
  CHECK(unicode::to_utf8(0x110000) == "\xEF\xBF\xBD");
}

TEST_CASE("unicode: invalid UTF-8 is found at the right byte offset") {
  const struct {
    std::string bytes;
    std::size_t invalid_at;
  } cases[] = {
      {"abc", std::string::npos},
      {"h\xC3\xA9llo \xE4\xB8\xAD \xF0\x9F\x98\x80", std::string::npos},
      {"ab\xC3", 2},                 // truncated 2-byte sequence
      {"ab\xE4\xB8", 2},             // truncated 3-byte sequence
      {"\xF0\x9F\x98", 0},           // truncated 4-byte sequence
      {"x\xC3(", 1},                 // bad continuation byte
      {"\x80", 0},                   // lone continuation byte
      {"ok\xBF", 2},
      {"\xC0\x80", 0},               // overlong NUL
      {"\xC1\xBF", 0},               // overlong
      {"\xE0\x80\x80", 0},           // overlong 3-byte
      {"\xE0\x9F\xBF", 0},           // overlong 3-byte (U+07FF)
      {"\xF0\x80\x80\x80", 0},       // overlong 4-byte
      {"\xF0\x8F\xBF\xBF", 0},       // overlong 4-byte (U+FFFF)
      {"a\xED\xA0\x80", 1},          // surrogate U+D800
      {"\xED\xBF\xBF", 0},           // surrogate U+DFFF
      {"\xF4\x90\x80\x80", 0},       // U+110000
      {"\xF5\x80\x80\x80", 0},
      {"abc\xFF", 3},
      {"\xFE", 0},
      {std::string("a\0b", 3), std::string::npos},  // NUL is a valid character
  };
  for (const auto& entry : cases) {
    INFO(escaped(entry.bytes));
    CHECK(unicode::find_invalid_utf8(entry.bytes) == entry.invalid_at);
  }
}

// ---------------------------------------------------------------------------------------------
// The .inp test-file format.

TEST_CASE("split_tokenizer_test_cases reads the file as llama.cpp's test-tokenizer-0 does") {
  using lamina_cli::split_tokenizer_test_cases;
  CHECK(split_tokenizer_test_cases("") == std::vector<std::string>{});
  CHECK(split_tokenizer_test_cases("a\n__ggml_vocab_test__\n") == std::vector<std::string>{"a"});
  CHECK(split_tokenizer_test_cases("a\n__ggml_vocab_test__\n\n__ggml_vocab_test__\n \n__ggml_vocab_test__\n") ==
        std::vector<std::string>{"a", "", " "});
  CHECK(split_tokenizer_test_cases("a\n__ggml_vocab_test__\nb") == std::vector<std::string>{"a", "b"});
  CHECK(split_tokenizer_test_cases("\n\n__ggml_vocab_test__\n") == std::vector<std::string>{"\n"});
}

// ---------------------------------------------------------------------------------------------
// llama.cpp's test vectors.

TEST_CASE("tokenizer: llama.cpp's test vectors give exactly the expected ids") {
  for (const char* name : vocabulary_names) {
    SUBCASE(name) {
      const std::string path = vocabulary_path(name);
      LAMINA_REQUIRE_SHARED(path);
      LAMINA_REQUIRE_SHARED(path + ".inp");
      LAMINA_REQUIRE_SHARED(path + ".out");
      lamina::Result<Tokenizer> tokenizer = load_tokenizer(name);
      REQUIRE_MESSAGE(tokenizer.ok(), tokenizer.error().message);
      const std::vector<std::string> cases =
          lamina_cli::split_tokenizer_test_cases(lamina_test::read_text_file(lamina_test::shared_path(path + ".inp")));
      const std::vector<std::string> expected_lines = split_lines(lamina_test::read_text_file(lamina_test::shared_path(path + ".out")));
      REQUIRE(cases.size() == expected_lines.size());
      REQUIRE(cases.size() >= 40);
      std::size_t passed = 0;
      for (std::size_t i = 0; i < cases.size(); ++i) {
        INFO(name << " case " << i << ": '" << escaped(cases[i]) << "'");
        const std::vector<Token> expected = parse_ids(expected_lines[i]);
        lamina::Result<std::vector<Token>> ids = tokenizer->encode(cases[i], plain_text());
        REQUIRE(ids.ok());
        CHECK_MESSAGE(*ids == expected, "expected" << ids_text(expected) << "\ngot     " << ids_text(*ids));
        if (*ids == expected) ++passed;
        // Parsing special tokens changes nothing here: the texts hold none.
        lamina::EncodeOptions with_special = plain_text();
        with_special.parse_special = true;
        lamina::Result<std::vector<Token>> special_ids = tokenizer->encode(cases[i], with_special);
        REQUIRE(special_ids.ok());
        CHECK(*special_ids == *ids);
        // Both families are lossless on these texts: decoding gives the text back.
        CHECK(tokenizer->decode(*ids) == cases[i]);
      }
      MESSAGE(std::string(name) << ": " << passed << "/" << cases.size() << " cases give llama.cpp's ids");
    }
  }
}

TEST_CASE("tokenizer: vocabulary facts read from GGUF") {
  LAMINA_REQUIRE_SHARED(vocabulary_path("llama-spm"));
  lamina::Result<Tokenizer> spm = load_tokenizer("llama-spm");
  REQUIRE(spm.ok());
  CHECK(spm->vocab_size() == 32000);
  CHECK(spm->model() == "llama");
  CHECK(spm->bos() == 1);
  CHECK(spm->eos() == 2);
  CHECK(spm->unknown() == 0);
  CHECK(spm->adds_bos());
  CHECK_FALSE(spm->adds_eos());
  CHECK(spm->adds_space_prefix());
  CHECK(spm->is_end_of_generation(2));
  CHECK_FALSE(spm->is_end_of_generation(1));
  CHECK(spm->type(0) == TokenType::unknown);
  CHECK(spm->type(1) == TokenType::control);
  CHECK(spm->type(3) == TokenType::byte);
  CHECK(spm->text(3) == "<0x00>");
  CHECK(spm->find("<0x0A>") == 13);
  CHECK(spm->find("no such token") == -1);

  LAMINA_REQUIRE_SHARED(vocabulary_path("gpt-2"));
  lamina::Result<Tokenizer> gpt2 = load_tokenizer("gpt-2");
  REQUIRE(gpt2.ok());
  CHECK(gpt2->vocab_size() == 50257);
  CHECK(gpt2->model() == "gpt2");
  CHECK(gpt2->pre_tokenizer() == "gpt-2");
  CHECK(gpt2->bos() == 50256);
  CHECK(gpt2->eos() == 50256);
  CHECK_FALSE(gpt2->adds_bos());
  CHECK(gpt2->is_end_of_generation(50256));
  CHECK(gpt2->cleans_up_spaces());

  LAMINA_REQUIRE_SHARED(vocabulary_path("phi-3"));
  lamina::Result<Tokenizer> phi3 = load_tokenizer("phi-3");
  REQUIRE(phi3.ok());
  CHECK(phi3->eos() == 32000);
  CHECK(phi3->is_end_of_generation(32000));  // <|endoftext|>
  CHECK(phi3->is_end_of_generation(32007));  // <|end|>
  CHECK(phi3->end_of_turn() == 32007);
  CHECK_FALSE(phi3->is_end_of_generation(32010));  // <|user|>
}

TEST_CASE("tokenizer: every token id has a piece, and ids outside the vocabulary give nothing") {
  for (const char* name : vocabulary_names) {
    SUBCASE(name) {
      LAMINA_REQUIRE_SHARED(vocabulary_path(name));
      lamina::Result<Tokenizer> tokenizer = load_tokenizer(name);
      REQUIRE(tokenizer.ok());
      std::size_t total_bytes = 0, empty_normal = 0;
      std::vector<Token> all;
      for (Token id = 0; static_cast<std::size_t>(id) < tokenizer->vocab_size(); ++id) {
        const std::string piece = tokenizer->token_to_piece(id, true);
        total_bytes += piece.size();
        if (piece.empty() && tokenizer->type(id) == TokenType::normal) ++empty_normal;
        CHECK(tokenizer->piece(id, true) == piece);
        if (tokenizer->is_control(id)) CHECK(tokenizer->piece(id).empty());
        all.push_back(id);
      }
      CHECK(empty_normal == 0);
      CHECK(total_bytes > tokenizer->vocab_size());
      CHECK(tokenizer->decode(all, lamina::DecodeOptions{true, false, false}).size() >= total_bytes - 1);
      const Token outside[] = {-1, -100, static_cast<Token>(tokenizer->vocab_size()), INT32_MAX, INT32_MIN};
      for (Token id : outside) {
        CHECK(tokenizer->piece(id, true).empty());
        CHECK(tokenizer->text(id).empty());
        CHECK(tokenizer->type(id) == TokenType::undefined);
      }
      CHECK(tokenizer->decode(std::vector<Token>(outside, outside + 5)).empty());
    }
  }
}

TEST_CASE("tokenizer: pieces of byte tokens, SentencePiece spaces and byte-level characters") {
  LAMINA_REQUIRE_SHARED(vocabulary_path("llama-spm"));
  lamina::Result<Tokenizer> spm = load_tokenizer("llama-spm");
  REQUIRE(spm.ok());
  CHECK(spm->token_to_piece(13) == "\n");      // <0x0A>
  CHECK(spm->token_to_piece(3 + 0xAB) == "\xAB");  // <0xAB>
  CHECK(spm->token_to_piece(spm->find("\xE2\x96\x81Hello")) == " Hello");
  CHECK(spm->token_to_piece(1).empty());             // <s>: control
  CHECK(spm->token_to_piece(1, true) == "<s>");
  CHECK(spm->token_to_piece(0, true) == "<unk>");

  LAMINA_REQUIRE_SHARED(vocabulary_path("gpt-2"));
  lamina::Result<Tokenizer> gpt2 = load_tokenizer("gpt-2");
  REQUIRE(gpt2.ok());
  CHECK(gpt2->token_to_piece(gpt2->find("\xC4\xA0Hello")) == " Hello");  // "ĠHello"
  CHECK(gpt2->token_to_piece(gpt2->find("\xC4\x8A")) == "\n");          // "Ċ"
  CHECK(gpt2->token_to_piece(50256).empty());
  CHECK(gpt2->token_to_piece(50256, true) == "<|endoftext|>");

  // Pieces are views into the tokenizer: no allocation per generated token.
  lamina_test::AllocationScope scope;
  std::size_t bytes = 0;
  for (Token id = 0; id < 1000; ++id) bytes += gpt2->piece(id).size() + spm->piece(id).size();
  CHECK(scope.count() == 0);
  CHECK(bytes > 0);
}

TEST_CASE("tokenizer: BOS, EOS and the empty text") {
  LAMINA_REQUIRE_SHARED(vocabulary_path("llama-spm"));
  lamina::Result<Tokenizer> spm = load_tokenizer("llama-spm");
  REQUIRE(spm.ok());
  CHECK(*spm->encode("") == std::vector<Token>{1});  // the vocabulary adds BOS
  CHECK(spm->encode("", plain_text())->empty());
  lamina::EncodeOptions both;
  both.add_bos = 1;
  both.add_eos = 1;
  CHECK(*spm->encode("", both) == std::vector<Token>{1, 2});
  const std::vector<Token> hello = *spm->encode("Hello");
  REQUIRE(hello.size() >= 2);
  CHECK(hello[0] == 1);
  // As llama_detokenize: only the first token loses its prefix space, so after a BOS it stays.
  CHECK(spm->decode(hello) == " Hello");
  CHECK(spm->decode(hello, lamina::DecodeOptions{true, false, false}) == "<s> Hello");
  CHECK(spm->decode(hello, lamina::DecodeOptions{false, true, false}) == " Hello");
  CHECK(spm->decode(*spm->encode("Hello", plain_text())) == "Hello");

  LAMINA_REQUIRE_SHARED(vocabulary_path("gpt-2"));
  lamina::Result<Tokenizer> gpt2 = load_tokenizer("gpt-2");
  REQUIRE(gpt2.ok());
  CHECK(gpt2->encode("")->empty());
  CHECK(*gpt2->encode("", both) == std::vector<Token>{50256, 50256});
  CHECK(gpt2->decode(std::vector<Token>{}).empty());
}

TEST_CASE("tokenizer: texts made of special tokens") {
  LAMINA_REQUIRE_SHARED(vocabulary_path("phi-3"));
  lamina::Result<Tokenizer> phi3 = load_tokenizer("phi-3");
  REQUIRE(phi3.ok());
  lamina::EncodeOptions special = plain_text();
  special.parse_special = true;
  CHECK(*phi3->encode("<|user|><|end|>", special) == std::vector<Token>{32010, 32007});
  CHECK(*phi3->encode("<|user|><|end|><|user|>", special) == std::vector<Token>{32010, 32007, 32010});
  // Without parse_special they are text.
  const std::vector<Token> as_text = *phi3->encode("<|user|><|end|>", plain_text());
  CHECK(as_text.size() > 2);
  CHECK(phi3->decode(as_text) == "<|user|><|end|>");
  // Phi-3's special tokens swallow the whitespace after them (llama.cpp's rstrip); text after a
  // special token gets the SentencePiece space prefix.
  CHECK(*phi3->encode("<|user|>\nHi", special) == *phi3->encode("<|user|>Hi", special));
  const std::vector<Token> prompt = *phi3->encode("<|user|>Hi<|end|>", special);
  REQUIRE(prompt.size() >= 3);
  CHECK(prompt.front() == 32010);
  CHECK(prompt.back() == 32007);
  CHECK(phi3->decode(prompt, lamina::DecodeOptions{true, false, false}) == "<|user|> Hi<|end|>");

  LAMINA_REQUIRE_SHARED(vocabulary_path("starcoder"));
  lamina::Result<Tokenizer> starcoder = load_tokenizer("starcoder");
  REQUIRE(starcoder.ok());
  CHECK(*starcoder->encode("<|endoftext|>", special) == std::vector<Token>{0});
  CHECK(*starcoder->encode("<fim_prefix>x<fim_suffix>", special) == std::vector<Token>{1, starcoder->find("x"), 3});
  CHECK(starcoder->encode("<|endoftext|>", plain_text())->size() > 1);

  // MPT's user-defined tokens (runs of spaces) are cut out even without parse_special.
  LAMINA_REQUIRE_SHARED(vocabulary_path("mpt"));
  lamina::Result<Tokenizer> mpt = load_tokenizer("mpt");
  REQUIRE(mpt.ok());
  const Token three_spaces = mpt->find("   ");
  REQUIRE(three_spaces >= 0);
  CHECK(mpt->type(three_spaces) == TokenType::user_defined);
  CHECK(*mpt->encode("   ", plain_text()) == std::vector<Token>{three_spaces});
}

TEST_CASE("tokenizer: SentencePiece byte fallback and the space prefix") {
  LAMINA_REQUIRE_SHARED(vocabulary_path("llama-spm"));
  lamina::Result<Tokenizer> spm = load_tokenizer("llama-spm");
  REQUIRE(spm.ok());
  const std::string llama = "\xF0\x9F\xA6\x99";  // U+1F999, not a token: four byte tokens
  const std::vector<Token> ids = *spm->encode(llama, plain_text());
  REQUIRE(ids.size() == 5);
  CHECK(ids[0] == spm->find("\xE2\x96\x81"));
  CHECK(ids[1] == 3 + 0xF0);
  CHECK(ids[4] == 3 + 0x99);
  CHECK(spm->decode(ids) == llama);
  // " Hello" keeps its own space: the prefix adds a second one, and decode removes only that.
  CHECK(spm->decode(*spm->encode(" Hello", plain_text())) == " Hello");
}

TEST_CASE("tokenizer: invalid UTF-8 is an error with its byte offset, never a crash") {
  const std::string invalid[] = {
      "\xFF", "abc\xC3", "ok \xE4\xB8", "\xF0\x9F\x98", "\xC0\x80", "\xE0\x80\x80", "x\xED\xA0\x80y", "\xF4\x90\x80\x80",
      "\x80", "Hello \xFE world", std::string("\0\xFF", 2),
  };
  for (const char* name : vocabulary_names) {
    SUBCASE(name) {
      LAMINA_REQUIRE_SHARED(vocabulary_path(name));
      lamina::Result<Tokenizer> tokenizer = load_tokenizer(name);
      REQUIRE(tokenizer.ok());
      for (const std::string& text : invalid) {
        INFO(escaped(text));
        lamina::Result<std::vector<Token>> ids = tokenizer->encode(text);
        REQUIRE_FALSE(ids.ok());
        CHECK(ids.error().code == ErrorCode::invalid_argument);
        CHECK(ids.error().message.find("byte offset " + std::to_string(unicode::find_invalid_utf8(text))) != std::string::npos);
        std::vector<Token> kept{7};
        CHECK_FALSE(tokenizer->encode_into(text, kept).ok());
        CHECK(kept == std::vector<Token>{7});  // unchanged on error
      }
      // Random bytes: either an error or ids that decode back.
      TestRandom random(1234);
      for (int iteration = 0; iteration < 300; ++iteration) {
        std::string text;
        const std::size_t length = random.next() % 24;
        for (std::size_t i = 0; i < length; ++i) {
          const std::uint32_t pick = random.next() % 4;
          text.push_back(pick == 0 ? static_cast<char>(random.next() & 0xFF) : pick == 1 ? ' ' : static_cast<char>('a' + random.next() % 26));
        }
        lamina::Result<std::vector<Token>> ids = tokenizer->encode(text, plain_text());
        CHECK(ids.ok() == unicode::is_valid_utf8(text));
        if (ids.ok() && every_byte_has_a_token(*tokenizer, text)) CHECK(tokenizer->decode(*ids) == text);
      }
    }
  }
}

TEST_CASE("tokenizer: decode options follow llama.cpp") {
  LAMINA_REQUIRE_SHARED(vocabulary_path("gpt-2"));
  lamina::Result<Tokenizer> gpt2 = load_tokenizer("gpt-2");
  REQUIRE(gpt2.ok());
  const std::vector<Token> ids = *gpt2->encode("Hello , world ! It 's a ' b ' test .");
  CHECK(gpt2->decode(ids) == "Hello , world ! It 's a ' b ' test .");
  lamina::DecodeOptions clean;
  clean.clean_up_spaces = true;
  CHECK(gpt2->decode(ids, clean) == "Hello, world! It's a'b'test.");
  const std::vector<Token> with_eos = {50256, gpt2->find("Hi"), 50256};
  CHECK(gpt2->decode(with_eos) == "Hi");
  CHECK(gpt2->decode(with_eos, lamina::DecodeOptions{true, false, false}) == "<|endoftext|>Hi<|endoftext|>");
}

// ---------------------------------------------------------------------------------------------
// Vocabularies built in memory (no files needed).

namespace {

// A byte-level BPE vocabulary: the 256 byte characters, then the merges' results.
VocabularyData tiny_bpe(const std::string& pre, const std::vector<std::string>& merges) {
  VocabularyData vocabulary;
  vocabulary.model = "gpt2";
  vocabulary.pre = pre;
  for (unsigned byte = 0; byte < 256; ++byte) {
    std::string character;
    unicode::append_utf8(character, lamina::detail::text::byte_level_alphabet.codepoint_of_byte[byte]);
    vocabulary.tokens.push_back(character);
  }
  for (const std::string& merge : merges) {
    const std::size_t space = merge.find(' ');
    vocabulary.tokens.push_back(merge.substr(0, space) + merge.substr(space + 1));
  }
  vocabulary.merges = merges;
  vocabulary.tokens.push_back("<|end|>");
  vocabulary.token_types.assign(vocabulary.tokens.size(), TokenType::normal);
  vocabulary.token_types.back() = TokenType::control;
  vocabulary.eos = static_cast<Token>(vocabulary.tokens.size() - 1);
  vocabulary.add_space_prefix = false;
  return vocabulary;
}

}  // namespace

TEST_CASE("tokenizer: byte-level BPE merges by rank, leftmost first") {
  // "a a" is the best merge: "aaa" -> "aa" + "a" (the leftmost pair wins the tie).
  lamina::Result<Tokenizer> tokenizer = Tokenizer::create(tiny_bpe("gpt-2", {"a a", "b c", "aa a", "h i"}));
  REQUIRE_MESSAGE(tokenizer.ok(), tokenizer.error().message);
  const Token aa = tokenizer->find("aa"), aaa = tokenizer->find("aaa"), bc = tokenizer->find("bc");
  CHECK(*tokenizer->encode("aaa") == std::vector<Token>{aaa});
  CHECK(*tokenizer->encode("aaaa") == std::vector<Token>{aa, aa});
  CHECK(*tokenizer->encode("abc") == std::vector<Token>{'a', bc});
  lamina::EncodeOptions trusted;
  trusted.parse_special = true;
  CHECK(*tokenizer->encode("hi<|end|>", trusted) == std::vector<Token>{tokenizer->find("hi"), tokenizer->eos()});
  CHECK(tokenizer->encode("<|end|>")->size() == 7);  // plain text by default
  // Space is byte 0x20 -> "Ġ", its own word under GPT-2's pattern when followed by nothing.
  CHECK(*tokenizer->encode("a ") == std::vector<Token>{'a', tokenizer->find("\xC4\xA0")});
  CHECK(tokenizer->decode(*tokenizer->encode("h\xC3\xA9llo \xE4\xB8\xAD\n")) == "h\xC3\xA9llo \xE4\xB8\xAD\n");
  CHECK(tokenizer->is_end_of_generation(tokenizer->eos()));
}

TEST_CASE("tokenizer: the regex engine splits as llama.cpp's std::regex does") {
  // Expected piece lengths (in code points) from llama.cpp's method: std::regex over the text
  // with every non-ASCII code point replaced by its class ("collapsed") when the pattern uses
  // \p{...}, std::wregex over the code points otherwise.
  const struct {
    const char* pattern;
    const char* text;
    std::vector<std::uint32_t> pieces;
  } cases[] = {
      {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
       "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",  // Qwen2
       "Hello, y'ALL! It's 2024...\n\n  \xE6\x88\x91\xE6\x83\xB3 caf\xC3\xA9  \t x",
       {5, 1, 2, 4, 1, 3, 2, 1, 1, 1, 1, 1, 5, 1, 3, 5, 3, 2}},
      {"[\\p{P}\\$\\+<=>\\^~\\|`]+", "a+b=c; d~e `f` \xE3\x80\x82\xE2\x82\xAC!",  // Falcon
       {1, 1, 1, 1, 1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1}},
      {"\\s+$", "ab  \n cd   ", {8, 3}},
      {"\\p{S}+", "a~+b\xE2\x82\xAC", {2, 1, 1, 1}},  // llama.cpp's ASCII \p{S} lacks '~'
      {"(?=\\d)\\w{1,2}?x|a{2,3}|(?!a)\\W", "12x1xaaaa-", {3, 2, 3, 1, 1}},
      {"\\s?[!-/:-~\\uFF01-\\uFF0F\\uFF1A-\\uFF5E\\u2018-\\u201F\\u3000-\\u3002]+",  // DeepSeek: U+3000 is seen as \v
       "x, y\xEF\xBC\x81 \xE2\x80\x9Cz\xE2\x80\x9D\xE3\x80\x80\xE3\x80\x82", {2, 3, 4, 2}},
      {"[\\u4E00-\\u9FA5\\u0800-\\u4E00\\uAC00-\\uD7FF]+", "ab\xE6\x88\x91\xE6\x83\xB3\xEA\xB0\x80x\xE0\xA0\x80", {2, 3, 1, 1}},
      {" ?[^(\\s|.,!?\\u2026\\u3002\\uFF0C\\u3001\\u0964\\u06D4\\u060C)]+", "Hei maailma, (moi)|x\xE2\x80\xA6y z",  // BLOOM
       {3, 8, 3, 3, 2, 1, 1, 1, 2}},
  };
  lamina::detail::text::SplitRegex::Scratch scratch;
  for (const auto& entry : cases) {
    INFO(entry.pattern << " on '" << escaped(entry.text) << "'");
    lamina::Result<lamina::detail::text::SplitRegex> regex = lamina::detail::text::SplitRegex::compile(entry.pattern);
    REQUIRE_MESSAGE(regex.ok(), regex.error().message);
    lamina::detail::text::DecodedText decoded;
    decoded.assign(entry.text);
    std::vector<std::uint32_t> pieces;
    regex->split(decoded, 0, decoded.size(), pieces, scratch);
    CHECK(pieces == entry.pieces);
  }
}

TEST_CASE("tokenizer: every supported pre-tokenizer builds and encodes losslessly") {
  const char* pre_tokenizers[] = {
      "", "default", "llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "chatglm-bpe", "deepseek-llm",
      "deepseek-coder", "falcon", "mpt", "starcoder", "refact", "command-r", "smollm", "gpt-2", "phi-2", "olmo",
      "qwen2", "deepseek-r1-qwen", "stablelm2", "poro-chat", "bloom", "viking", "trillion",
  };
  const std::string sample = "Hello, y'all! How're you \xF0\x9F\x98\x81 ?\xE6\x88\x91\xE6\x83\xB3 12345 \t\n\n  x\xC2\xA0y\xE3\x80\x80z  ";
  for (const char* pre : pre_tokenizers) {
    INFO("pre '" << pre << "'");
    lamina::Result<Tokenizer> tokenizer = Tokenizer::create(tiny_bpe(pre, {"l l", "H e", "He ll", "Hell o"}));
    REQUIRE_MESSAGE(tokenizer.ok(), tokenizer.error().message);
    lamina::EncodeOptions options;
    options.add_bos = 0;
    lamina::Result<std::vector<Token>> ids = tokenizer->encode(sample, options);
    REQUIRE(ids.ok());
    CHECK(tokenizer->decode(*ids) == sample);
  }
}

TEST_CASE("tokenizer: unsupported and inconsistent vocabularies are clean errors") {
  lamina::Result<Tokenizer> unknown_pre = Tokenizer::create(tiny_bpe("no-such-pre", {"a b"}));
  REQUIRE_FALSE(unknown_pre.ok());
  CHECK(unknown_pre.error().code == ErrorCode::unsupported);
  CHECK(unknown_pre.error().message.find("'no-such-pre'") != std::string::npos);

  VocabularyData bert = tiny_bpe("", {"a b"});
  bert.model = "bert";
  lamina::Result<Tokenizer> unknown_model = Tokenizer::create(bert);
  REQUIRE_FALSE(unknown_model.ok());
  CHECK(unknown_model.error().code == ErrorCode::unsupported);
  CHECK(unknown_model.error().message.find("'bert'") != std::string::npos);

  VocabularyData duplicate = tiny_bpe("", {"a b"});
  duplicate.tokens.push_back("ab");
  CHECK(Tokenizer::create(duplicate).error().code == ErrorCode::invalid_format);

  VocabularyData no_merges = tiny_bpe("", {});
  CHECK(Tokenizer::create(no_merges).error().code == ErrorCode::invalid_format);

  VocabularyData bad_id = tiny_bpe("", {"a b"});
  bad_id.bos = static_cast<Token>(bad_id.tokens.size());
  CHECK(Tokenizer::create(bad_id).error().code == ErrorCode::invalid_format);

  VocabularyData few_scores = tiny_bpe("", {"a b"});
  few_scores.scores.assign(3, 0.0f);
  CHECK(Tokenizer::create(few_scores).error().code == ErrorCode::invalid_format);

  VocabularyData empty;
  empty.model = "llama";
  CHECK(Tokenizer::create(empty).error().code == ErrorCode::invalid_format);

  CHECK(lamina::detail::text::SplitRegex::compile("(a").error().code == ErrorCode::unsupported);
  CHECK(lamina::detail::text::SplitRegex::compile("(?:a*)*").error().code == ErrorCode::unsupported);
  CHECK(lamina::detail::text::SplitRegex::compile("\\p{Greek}").error().code == ErrorCode::unsupported);
}

TEST_CASE("tokenizer: a SentencePiece vocabulary built in memory") {
  VocabularyData vocabulary;
  vocabulary.model = "llama";
  vocabulary.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a", "ab", "\xE2\x96\x81" "ab"};
  vocabulary.scores = {0, 0, 0, -1, -2, -2, -1.5f, -0.5f, -3};
  vocabulary.token_types = {TokenType::unknown, TokenType::control, TokenType::control, TokenType::normal, TokenType::normal,
                            TokenType::normal,  TokenType::normal,  TokenType::normal,  TokenType::normal};
  vocabulary.bos = 1;
  vocabulary.eos = 2;
  vocabulary.unknown = 0;
  vocabulary.add_bos = true;
  lamina::Result<Tokenizer> tokenizer = Tokenizer::create(vocabulary);
  REQUIRE_MESSAGE(tokenizer.ok(), tokenizer.error().message);
  // "▁ab": "ab" (-0.5) merges before "▁a" (-1.5); then "▁"+"ab" -> "▁ab".
  CHECK(*tokenizer->encode("ab") == std::vector<Token>{1, 8});
  CHECK(*tokenizer->encode("ba") == std::vector<Token>{1, 3, 5, 4});
  // No byte tokens: an unknown character becomes <unk>.
  CHECK(*tokenizer->encode("a\xC3\xA9") == std::vector<Token>{1, 6, 0});
  CHECK(tokenizer->decode(*tokenizer->encode("ab ba", plain_text())) == "ab ba");
  VocabularyData no_prefix = vocabulary;
  no_prefix.add_space_prefix = false;
  lamina::Result<Tokenizer> without = Tokenizer::create(no_prefix);
  REQUIRE(without.ok());
  CHECK(*without->encode("ab") == std::vector<Token>{1, 7});
  CHECK(without->decode(*without->encode(" ab")) == " ab");
}
