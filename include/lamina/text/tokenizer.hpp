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
//
// The parts, each a header of its own (tokenizer.hpp includes them all):
//   vocabulary.hpp       TokenType, VocabularyData, read_vocabulary() (the GGUF keys)
//   token_tables.hpp     the token and merge hash tables, the special-token trie
//   byte_alphabet.hpp    GPT-2's byte -> printable code point table
//   character_class.hpp  the class bits (\s, \p{L} ...) of every code point of a text
//   split_regex.hpp      SplitRegex, the regex engine of the pre-tokenizers
//   pre_tokenizer.hpp    the GPT-2 / Llama 3 matchers, and the recipe of each tokenizer.ggml.pre
#pragma once

#include "../config.hpp"
#include "../core/result.hpp"
#include "../io/gguf_reader.hpp"
#include "byte_alphabet.hpp"
#include "character_class.hpp"
#include "pre_tokenizer.hpp"
#include "split_regex.hpp"
#include "text_range.hpp"
#include "token.hpp"
#include "token_tables.hpp"
#include "unicode.hpp"
#include "vocabulary.hpp"

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

#include "../core/definitions_begin.inl"

LAMINA_NAMESPACE_BEGIN

// Options of Tokenizer::encode. add_bos / add_eos: -1 as the vocabulary says, 0 never, 1 always.
struct EncodeOptions {
  int add_bos = -1;
  int add_eos = -1;
  // false: the text is plain (what a user typed): "<|im_end|>" in it is those characters.
  // true: control tokens ("<s>", "<|im_end|>") are cut out of the text and become their ids; only
  // for prompts built from trusted templates. User-defined tokens are cut out either way.
  bool parse_special = false;
  // With parse_special, and not empty: a control token is cut out only where it lies wholly inside
  // one of these ranges (in order, not overlapping): the parts of a rendered chat prompt that the
  // template itself wrote. Elsewhere (the messages a player typed, tool results) the text stays
  // plain, and a typed "<|im_end|>" cannot end a turn. Everything else is encoded as one text.
  std::vector<TextRange> special_ranges;
};

// Options of Tokenizer::decode (llama.cpp's llama_detokenize flags).
struct DecodeOptions {
  bool render_special = false;   // print control/unknown tokens as their text instead of nothing
  bool remove_special = false;   // drop a leading BOS and a trailing EOS when the vocabulary adds them
  bool clean_up_spaces = false;  // " ," -> ",", " 's" -> "'s" ... (Hugging Face's clean_up_tokenization_spaces;
                                 // llama.cpp applies it for most BPE vocabularies, see Tokenizer::cleans_up_spaces)
};

class Tokenizer;


// Internals: lamina::detail::text (the tokenizer's own corner of detail; the parts above add to
// it). Here: what encode() keeps per token and per call.
namespace detail {
namespace text {

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
  void cut_special_tokens(std::string_view text, const EncodeOptions& options, detail::text::EncodeScratch& scratch,
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

#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Result<Tokenizer> Tokenizer::create(VocabularyData vocabulary) {
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
LAMINA_DETAIL_API std::string Tokenizer::make_piece(Token token) const {
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

LAMINA_DETAIL_API std::string_view Tokenizer::piece(Token token, bool render_special) const noexcept {
  if (!in_vocabulary(token)) return std::string_view();
  const auto index = static_cast<std::size_t>(token);
  if (!render_special && (attributes_[index] & (detail::text::attribute_control | detail::text::attribute_unknown))) return std::string_view();
  return std::string_view(pieces_).substr(piece_offsets_[index], piece_offsets_[index + 1] - piece_offsets_[index]);
}

LAMINA_DETAIL_API std::string Tokenizer::decode(const Token* tokens, std::size_t count, const DecodeOptions& options) const {
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
void Tokenizer::cut_special_tokens(std::string_view text, const EncodeOptions& options, detail::text::EncodeScratch& scratch,
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
  // Whether a control token may be cut out at [start, start + length) (see EncodeOptions).
  const std::vector<TextRange>& ranges = options.special_ranges;
  const auto control_allowed = [&](std::size_t start, std::size_t length) {
    if (!options.parse_special) return false;
    if (ranges.empty()) return true;
    // The last range that begins at or before `start`.
    const auto after =
        std::upper_bound(ranges.begin(), ranges.end(), start, [](std::size_t at, const TextRange& range) { return at < range.begin; });
    return after != ranges.begin() && start + length <= (after - 1)->end;
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
      if ((attributes & (detail::text::attribute_control | detail::text::attribute_unknown)) && !control_allowed(position, length)) return;
      occurrences.push_back(static_cast<std::uint64_t>(index) << 32 | (position - window_start));
      reach = std::max(reach, position + length);
    });
  }
  if (held.length > 0) fragment(held);
}

LAMINA_DETAIL_API Result<void> Tokenizer::encode_into(std::string_view text, std::vector<Token>& tokens, const EncodeOptions& options,
                                           TokenizerScratch& scratch) const {
  const std::size_t invalid_at = unicode::find_invalid_utf8(text);
  if (invalid_at != std::string_view::npos) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned>(static_cast<unsigned char>(text[invalid_at])));
    return fail(ErrorCode::invalid_argument, "encode: the text is not valid UTF-8: byte " + std::string(byte) +
                                                 " at byte offset " + std::to_string(invalid_at));
  }
  if (text.size() > UINT32_MAX / 2) return fail(ErrorCode::invalid_argument, "encode: the text is larger than 2 GiB");
  for (std::size_t i = 0; i < options.special_ranges.size(); ++i) {
    const TextRange& range = options.special_ranges[i];
    if (range.begin > range.end || range.end > text.size() || (i > 0 && range.begin < options.special_ranges[i - 1].end)) {
      return fail(ErrorCode::invalid_argument, "encode: special_ranges[" + std::to_string(i) + "] = [" + std::to_string(range.begin) + ", " +
                                                   std::to_string(range.end) + ") is not in order inside the " +
                                                   std::to_string(text.size()) + "-byte text");
    }
  }
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
  cut_special_tokens(text, options, work, [&](const detail::text::Fragment& fragment) {
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
LAMINA_DETAIL_API void Tokenizer::encode_sentencepiece(std::string_view text, bool space_prefix, std::vector<Token>& tokens,
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
LAMINA_DETAIL_API void Tokenizer::encode_sentencepiece_chunk(std::string_view chunk, std::vector<Token>& tokens,
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
LAMINA_DETAIL_API void Tokenizer::encode_bpe_fragment(std::string_view text, std::vector<Token>& tokens, detail::text::EncodeScratch& scratch) const {
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
LAMINA_DETAIL_API std::size_t Tokenizer::split_and_encode(std::size_t step, std::string_view window, std::size_t begin, std::size_t end,
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
LAMINA_DETAIL_API void Tokenizer::encode_bpe_word(std::string_view word, std::vector<Token>& tokens, detail::text::EncodeScratch& scratch) const {
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
// GGUF (read_vocabulary() is in vocabulary.hpp).

LAMINA_DETAIL_API Result<Tokenizer> Tokenizer::from_gguf(const gguf::File& file) {
  Result<VocabularyData> vocabulary = read_vocabulary(file);
  if (!vocabulary) return vocabulary.take_error();
  Result<Tokenizer> tokenizer = create(std::move(*vocabulary));
  if (!tokenizer) return tokenizer.take_error().with_context(file.name());
  return tokenizer;
}
#endif  // LAMINA_DETAIL_DEFINITIONS

LAMINA_NAMESPACE_END

#include "../core/definitions_end.inl"
