// For the tests of plain text and of chat prompts.
#pragma once

#include <lamina/lamina.hpp>

#include "../test_support.hpp"

namespace lamina_test {

// A vocabulary with ChatML's control tokens: GPT-2's, with <|im_start|> and <|im_end|> added.
inline lamina::Result<lamina::Tokenizer> chatml_tokenizer() {
  lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open(lamina_test::shared_path("vocab/ggml-vocab-gpt-2.gguf"));
  if (!file) return file.take_error();
  lamina::Result<lamina::VocabularyData> vocabulary = lamina::read_vocabulary(*file);
  if (!vocabulary) return vocabulary.take_error();
  if (vocabulary->token_types.empty()) vocabulary->token_types.assign(vocabulary->tokens.size(), lamina::TokenType::normal);
  for (const char* text : {"<|im_start|>", "<|im_end|>"}) {
    vocabulary->tokens.push_back(text);
    vocabulary->token_types.push_back(lamina::TokenType::control);
    if (!vocabulary->scores.empty()) vocabulary->scores.push_back(0.0f);
  }
  return lamina::Tokenizer::create(*vocabulary);
}

}  // namespace lamina_test
