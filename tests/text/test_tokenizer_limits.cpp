// Tokenizer::encode on long and hostile texts: time linear in the text, scratch memory that does
// not grow with it, and the same ids as encoding the text's words one by one (the windows and
// chunks encode() works in must not show). Also a vocabulary where every token is user-defined,
// against a direct implementation of llama.cpp's tokenizer_st_partition.
#include <lamina/text/tokenizer.hpp>

#include <doctest/doctest.h>

#include "../test_support.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace {

using lamina::Token;
using lamina::Tokenizer;
using lamina::TokenizerScratch;
using lamina::TokenType;
using lamina::VocabularyData;

const char* const vocabulary_names[] = {"falcon", "gpt-2", "llama-spm", "mpt", "phi-3", "starcoder"};

lamina::Result<VocabularyData> load_vocabulary(const std::string& name) {
  lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open(lamina_test::shared_path("vocab/ggml-vocab-" + name + ".gguf"));
  if (!file) return file.take_error();
  return lamina::read_vocabulary(*file);
}

lamina::Result<Tokenizer> load_tokenizer(const std::string& name) {
  lamina::Result<VocabularyData> vocabulary = load_vocabulary(name);
  if (!vocabulary) return vocabulary.take_error();
  return Tokenizer::create(std::move(*vocabulary));
}

lamina::EncodeOptions no_bos_or_eos() {
  lamina::EncodeOptions options;
  options.add_bos = 0;
  options.add_eos = 0;
  return options;
}

// The words (runs of ASCII letters) of llama.cpp's tokenizer test texts.
std::vector<std::string> test_words() {
  const std::string text = lamina_test::read_text_file(lamina_test::shared_path("vocab/ggml-vocab-gpt-2.gguf.inp"));
  std::vector<std::string> words;
  std::string word;
  for (const char c : text + " ") {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      word += c;
    } else if (!word.empty()) {
      words.push_back(word);
      word.clear();
    }
  }
  return words;
}

// `count` words picked from `words` by a fixed sequence (the same text on every run).
std::vector<std::string> pick_words(const std::vector<std::string>& words, std::size_t count) {
  std::vector<std::string> picked;
  std::uint32_t state = 12345;
  for (std::size_t i = 0; i < count; ++i) {
    state = state * 1664525u + 1013904223u;
    picked.push_back(words[(state >> 8) % words.size()]);
  }
  return picked;
}

// Text of about `bytes` bytes: sentences of test words, with punctuation, digits and newlines,
// the way prose looks to a pre-tokenizer.
std::string prose(const std::vector<std::string>& words, std::size_t bytes) {
  std::string text;
  std::uint32_t state = 777;
  while (text.size() < bytes) {
    state = state * 1664525u + 1013904223u;
    text += words[(state >> 8) % words.size()];
    switch ((state >> 4) % 16) {
      case 0: text += ". "; break;
      case 1: text += ", "; break;
      case 2: text += "\n\n"; break;
      case 3: text += " " + std::to_string(state % 100000) + " "; break;
      case 4: text += "'s "; break;
      default: text += " "; break;
    }
  }
  return text;
}

struct EncodeFigures {
  std::size_t ids = 0;
  std::uint64_t work = 0;
  std::size_t scratch_bytes = 0;
};

EncodeFigures encode_figures(const Tokenizer& tokenizer, const std::string& text) {
  TokenizerScratch scratch;
  std::vector<Token> ids;
  const lamina::Result<void> encoded = tokenizer.encode_into(text, ids, no_bos_or_eos(), scratch);
  REQUIRE(encoded.ok());
  CHECK(tokenizer.decode(ids).size() >= text.size() / 2);  // it did encode the text
  return {ids.size(), scratch.last_work(), scratch.capacity_bytes()};
}

}  // namespace

TEST_CASE("tokenizer limits: work grows linearly with the text, scratch memory does not grow") {
  LAMINA_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf.inp");
  const std::vector<std::string> words = test_words();
  REQUIRE(words.size() > 100);
  const std::string quarter = prose(words, 256 * 1024);
  const std::string whole = prose(words, 1024 * 1024);  // starts with `quarter`
  for (const char* name : vocabulary_names) {
    SUBCASE(name) {
      LAMINA_REQUIRE_SHARED("vocab/ggml-vocab-" + std::string(name) + ".gguf");
      lamina::Result<Tokenizer> tokenizer = load_tokenizer(name);
      REQUIRE(tokenizer.ok());
      const EncodeFigures small = encode_figures(*tokenizer, quarter);
      const EncodeFigures large = encode_figures(*tokenizer, whole);
      INFO(name << ": work " << small.work << " -> " << large.work << ", scratch " << small.scratch_bytes << " -> "
                << large.scratch_bytes << " bytes, ids " << small.ids << " -> " << large.ids);
      // Four times the text: about four times the work and the ids, and no more scratch.
      CHECK(static_cast<double>(large.work) <= 4.5 * static_cast<double>(small.work));
      CHECK(static_cast<double>(large.ids) <= 4.5 * static_cast<double>(small.ids));
      CHECK(large.work <= 64 * whole.size());
      CHECK(static_cast<double>(large.scratch_bytes) <= 1.25 * static_cast<double>(small.scratch_bytes) + 65536.0);
      CHECK(large.scratch_bytes < whole.size());  // a megabyte of text, far less scratch
    }
  }
}

TEST_CASE("tokenizer limits: a long text gives the ids of its words encoded one by one") {
  // Words of letters joined by single spaces: every pre-tokenizer makes each " word" a piece of
  // its own, and no SentencePiece token joins a letter to the "▁" after it, so the text's ids are
  // the words' ids. The text is far longer than the windows (BPE) and chunks (SentencePiece)
  // encode() works in, and one word is longer than the first window.
  LAMINA_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf.inp");
  std::vector<std::string> words = pick_words(test_words(), 60000);
  words[30000] = std::string(100000, 'q');  // a single 100 kB word in the middle
  std::string text;
  for (std::size_t i = 0; i < words.size(); ++i) text += (i ? " " : "") + words[i];
  REQUIRE(text.size() > 300000);
  for (const char* name : {"falcon", "gpt-2", "llama-spm", "phi-3", "starcoder"}) {
    SUBCASE(name) {
      LAMINA_REQUIRE_SHARED("vocab/ggml-vocab-" + std::string(name) + ".gguf");
      lamina::Result<Tokenizer> tokenizer = load_tokenizer(name);
      REQUIRE(tokenizer.ok());
      const bool sentencepiece = tokenizer->model() == "llama";
      std::vector<Token> expected;
      TokenizerScratch scratch;
      for (std::size_t i = 0; i < words.size(); ++i) {
        // SentencePiece puts "▁" before every word itself (the space prefix and the spaces).
        const std::string piece = (sentencepiece || i == 0) ? words[i] : " " + words[i];
        REQUIRE(tokenizer->encode_into(piece, expected, no_bos_or_eos(), scratch).ok());
      }
      lamina::Result<std::vector<Token>> ids = tokenizer->encode(text, no_bos_or_eos());
      REQUIRE(ids.ok());
      CHECK(ids->size() == expected.size());
      CHECK(*ids == expected);
      CHECK(tokenizer->decode(*ids) == text);
    }
  }
}

namespace {

// llama.cpp's tokenizer_st_partition, written directly: for each special token, longest first
// (equal lengths: lower id first), cut each occurrence in what is still raw text, leftmost first.
// (No lstrip/rstrip here: the vocabularies of these tests have none.)
struct Piece {
  Token token;  // -1: raw text
  std::string text;
};

std::vector<Piece> partition_directly(const std::string& text, const Tokenizer& tokenizer) {
  std::vector<Token> specials;
  for (Token id = 0; static_cast<std::size_t>(id) < tokenizer.vocab_size(); ++id) {
    const TokenType type = tokenizer.type(id);
    if ((type == TokenType::user_defined || type == TokenType::control || type == TokenType::unknown) &&
        !tokenizer.text(id).empty() && text.find(tokenizer.text(id)) != std::string::npos) {
      specials.push_back(id);
    }
  }
  std::stable_sort(specials.begin(), specials.end(), [&](Token a, Token b) { return tokenizer.text(a).size() > tokenizer.text(b).size(); });
  std::vector<Piece> pieces = {{-1, text}};
  for (const Token special : specials) {
    const std::string& needle = tokenizer.text(special);
    std::vector<Piece> next;
    for (const Piece& piece : pieces) {
      if (piece.token >= 0) {
        next.push_back(piece);
        continue;
      }
      std::size_t from = 0;
      for (std::size_t at = piece.text.find(needle); at != std::string::npos; at = piece.text.find(needle, from)) {
        if (at > from) next.push_back({-1, piece.text.substr(from, at - from)});
        next.push_back({special, ""});
        from = at + needle.size();
      }
      if (from < piece.text.size()) next.push_back({-1, piece.text.substr(from)});
    }
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace

TEST_CASE("tokenizer limits: a vocabulary of user-defined tokens cuts as llama.cpp does, in linear time") {
  // GPT-2's and Llama's vocabularies with every normal token made user-defined: tens of thousands
  // of texts to cut out of the raw text, many at every byte.
  LAMINA_REQUIRE_SHARED("vocab/ggml-vocab-gpt-2.gguf.inp");
  const std::vector<std::string> words = test_words();
  for (const char* name : {"gpt-2", "llama-spm"}) {
    SUBCASE(name) {
      LAMINA_REQUIRE_SHARED("vocab/ggml-vocab-" + std::string(name) + ".gguf");
      lamina::Result<VocabularyData> vocabulary = load_vocabulary(name);
      REQUIRE(vocabulary.ok());
      if (vocabulary->token_types.empty()) vocabulary->token_types.assign(vocabulary->tokens.size(), TokenType::normal);
      std::size_t user_defined = 0;
      for (TokenType& type : vocabulary->token_types) {
        if (type == TokenType::normal) type = TokenType::user_defined, ++user_defined;
      }
      REQUIRE(user_defined > 10000);
      lamina::Result<Tokenizer> tokenizer = Tokenizer::create(*vocabulary);
      REQUIRE_MESSAGE(tokenizer.ok(), tokenizer.error().message);

      // Against the direct partition, on texts with and without spaces.
      std::string spaced = prose(words, 600);
      std::string unspaced;
      for (const char c : prose(words, 900)) {
        if (c != ' ') unspaced += c;
      }
      for (const std::string& text : {spaced, unspaced}) {
        std::vector<Token> expected;
        for (const Piece& piece : partition_directly(text, *tokenizer)) {
          if (piece.token >= 0) {
            expected.push_back(piece.token);
          } else {
            // What is left holds no special token, so encoding it cuts nothing more.
            REQUIRE(tokenizer->encode_into(piece.text, expected, no_bos_or_eos()).ok());
          }
        }
        lamina::Result<std::vector<Token>> ids = tokenizer->encode(text, no_bos_or_eos());
        REQUIRE(ids.ok());
        CHECK(*ids == expected);
      }

      // Linear: four times the text, about four times the work.
      std::string quarter, whole;
      for (const char c : prose(words, 256 * 1024)) {
        if (c != ' ') quarter += c;
      }
      for (const char c : prose(words, 1024 * 1024)) {
        if (c != ' ') whole += c;
      }
      const EncodeFigures small = encode_figures(*tokenizer, quarter);
      const EncodeFigures large = encode_figures(*tokenizer, whole);
      INFO(name << ": work " << small.work << " -> " << large.work << ", scratch " << small.scratch_bytes << " -> " << large.scratch_bytes);
      CHECK(static_cast<double>(large.work) <= 4.5 * static_cast<double>(small.work));
      CHECK(static_cast<double>(large.scratch_bytes) <= 1.25 * static_cast<double>(small.scratch_bytes) + 65536.0);
    }
  }
}
