// lamina/text/vocabulary.hpp — VocabularyData, what a tokenizer is built from; read_vocabulary() (GGUF).
//
// The tokenizer.ggml.* keys of a GGUF file, resolved with llama.cpp's defaults for absent keys
// into plain arrays and ids; Tokenizer::create() (text/tokenizer.hpp) builds its tables from
// them. Fill a VocabularyData by hand to make a tokenizer without a file.
#pragma once

#include "../config.hpp"
#include "../core/result.hpp"
#include "../io/gguf_reader.hpp"
#include "../io/gguf_value.hpp"
#include "pre_tokenizer.hpp"
#include "token.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
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

// Reads the tokenizer.ggml.* keys (and general.name) of a GGUF file, with llama.cpp's defaults
// for absent keys. Errors name the file and the key.
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

LAMINA_NAMESPACE_END
