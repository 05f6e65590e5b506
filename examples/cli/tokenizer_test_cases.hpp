// examples/cli/tokenizer_test_cases.hpp — reading llama.cpp's tokenizer test files, for
// `lamina tokenize --split-tests` and the tests that compare lamina with Hugging Face's ids.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lamina_cli {

// Splits the contents of a llama.cpp tokenizer test file (ggml-vocab-*.gguf.inp) into its texts:
// cases are separated by "\n__ggml_vocab_test__\n" and the file ends with a separator
// (read exactly as llama.cpp's test-tokenizer-0 does).
inline std::vector<std::string> split_tokenizer_test_cases(std::string_view file_contents) {
  static constexpr std::string_view separator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> cases;
  std::size_t position = 0;
  while (position < file_contents.size()) {
    const std::size_t next = file_contents.find(separator, position);
    if (next == std::string_view::npos) {
      cases.emplace_back(file_contents.substr(position));
      break;
    }
    cases.emplace_back(file_contents.substr(position, next - position));
    position = next + separator.size();
  }
  return cases;
}

}  // namespace lamina_cli
