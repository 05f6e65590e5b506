// lamina explain — the teaching example (examples/explain/explain.hpp) as a subcommand:
//
//   lamina explain -m MODEL (--prompt TEXT | --tokens IDS) --out-dir DIR [--top N] [--parse-special]
#include "cli_common.hpp"

#define STB_IMAGE_WRITE_IMPLEMENTATION  // this file compiles stb_image_write for the program
#define STB_IMAGE_WRITE_STATIC
#include "../explain/explain.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace lamina_cli {

int run_explain(int argc, char** argv) {
  const char* usage = "lamina explain -m MODEL (--prompt TEXT | --tokens IDS) --out-dir DIR [--top N] [--parse-special]";
  const std::vector<Option> options = {help_option, model_option,
                                       {"--prompt", "-p", true, "prompt text (tokenized with the model's tokenizer, BOS added)"},
                                       {"--tokens", nullptr, true, "prompt as token ids instead"},
                                       {"--out-dir", nullptr, true, "directory for the PNG heatmaps (created if missing)"},
                                       {"--top", nullptr, true, "tokens shown by the logit lens (default 5)"},
                                       parse_special_option};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 2, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) return print_help(usage, options), 0;
  if (!arguments->get("--model") || !arguments->get("--out-dir") || arguments->has("--prompt") == arguments->has("--tokens")) {
    return report(usage_error(std::string("give -m, --out-dir and one of --prompt / --tokens; usage: ") + usage));
  }
  std::size_t top = 5;
  if (const std::string* text = arguments->get("--top")) {
    lamina::Result<long long> value = parse_integer(*text, "--top", 1, 50);
    if (!value) return report(value.error());
    top = static_cast<std::size_t>(*value);
  }
  // The output folder first: a path that cannot hold the heatmaps costs no forward pass.
  const std::string& directory = *arguments->get("--out-dir");
  if (::mkdir(directory.c_str(), 0777) != 0) {
    struct stat status;
    if (errno != EEXIST) {
      return report(lamina::fail(lamina::ErrorCode::io, directory + ": cannot create directory: " + std::strerror(errno)));
    }
    if (::stat(directory.c_str(), &status) != 0 || !S_ISDIR(status.st_mode)) {
      return report(lamina::fail(lamina::ErrorCode::invalid_argument, directory + ": exists and is not a directory (--out-dir)"));
    }
  }
  // With a tokenizer when the file has one (token pieces make the printout readable); a
  // prompt given as ids works without.
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(*arguments->get("--model"));
  if (!model && arguments->has("--tokens")) {
    lamina::ModelParams model_params;
    model_params.load_tokenizer = false;
    model = lamina::Model::load(*arguments->get("--model"), model_params);
  }
  if (!model) return report(model.error());
  std::vector<lamina::Token> tokens;
  if (const std::string* prompt = arguments->get("--prompt")) {
    lamina::EncodeOptions encode_options;
    encode_options.parse_special = arguments->has("--parse-special");
    lamina::Result<std::vector<lamina::Token>> encoded = (*model)->tokenizer().encode(*prompt, encode_options);
    if (!encoded) return report(encoded.error());
    tokens = std::move(*encoded);
  } else {
    lamina::Result<std::vector<lamina::Token>> parsed = parse_token_list(*arguments->get("--tokens"));
    if (!parsed) return report(parsed.error());
    tokens = std::move(*parsed);
  }
  if (tokens.empty() || tokens.size() > 128) return report(usage_error("the prompt must have 1 to 128 tokens"));
  for (lamina::Token token : tokens) {
    if (token < 0 || static_cast<std::uint32_t>(token) >= (*model)->hparams().vocab_size) {
      return report(usage_error("token id " + std::to_string(token) + " is outside the vocabulary"));
    }
  }

  const lamina::ModelHparams& hp = (*model)->hparams();
  std::printf("model: %s, %u layers, width %u, %u query heads / %u KV heads of %u, feed-forward %u, vocabulary %u\n",
              hp.architecture_name.c_str(), hp.block_count, hp.embedding_length, hp.head_count, hp.head_count_kv, hp.head_size,
              hp.feed_forward_length, hp.vocab_size);
  lamina_explain::Explainer explainer(**model, true);
  explainer.set_top(top);
  std::printf("prompt: %zu tokens:", tokens.size());
  for (lamina::Token token : tokens) std::printf(" %s", explainer.quoted_piece(token).c_str());
  std::printf("\n\nthe forward pass of the last token, step by step:\n");
  const lamina_explain::Trace trace = explainer.run(tokens);

  std::vector<float> probabilities = trace.final_logits;
  lamina::reference::softmax(probabilities.data(), probabilities.size());
  const lamina::Token next = static_cast<lamina::Token>(std::max_element(probabilities.begin(), probabilities.end()) - probabilities.begin());
  std::printf("\nnext token (greedy): %d %s, p = %.3f\n  top %zu: %s\n", next, explainer.quoted_piece(next).c_str(),
              static_cast<double>(probabilities[static_cast<std::size_t>(next)]), top, explainer.top_tokens(probabilities, top).c_str());
  const lamina::Result<std::vector<std::string>> written = lamina_explain::write_heatmaps(trace, tokens.size(), directory);
  if (!written) return report(written.error());
  std::printf("\nwrote %zu heatmaps to %s (attention-layerNN-HHheads.png, logit-lens-layerNN.png)\n", written->size(), directory.c_str());
  return 0;
}

}  // namespace lamina_cli
