// lamina_bench_grammar — cost of grammar-constrained sampling with the JSON grammar: the full
// token mask (trie walk) and the fast path (one sampled token's check), per generated token.
//
// A fixed JSON document is written token by token (the longest allowed token that continues it),
// so the states are the ones a real generation passes through (strings, numbers, between values). The vocabulary is a real one from ../shared
// (SPM llama, 32k tokens, or GPT-2, 50k tokens); a synthetic 150k vocabulary is made by adding
// each GPT-2 token with two prefixes.
//
// Each vocabulary runs with the constraint's mask cache (4 states) and without it (every mask a
// full trie walk). The steps stop at the end of the document, so no state is met from a rerun.
//
// usage: lamina_bench_grammar [SHARED_DIR] [--steps N]
// The last line is one JSON object with, per vocabulary, the mean / p50 / p99 / max mask
// milliseconds and the mean microseconds of allows() on the chosen token.
#include <lamina/io/gguf.hpp>
#include <lamina/text/grammar.hpp>
#include <lamina/text/tokenizer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifndef LAMINA_SHARED_DIR
#  define LAMINA_SHARED_DIR "../shared"
#endif

namespace {

using Clock = std::chrono::steady_clock;

// A document like the ones models are asked for: nested objects, arrays, long strings with
// escapes and non-ASCII text, numbers.
std::string json_document() {
  return "{\n  \"name\": \"Zoë Ångström\",\n  \"age\": 42,\n  \"height_m\": 1.68,\n  \"tags\": [\"physics\", \"music\", \"中文\"],\n"
         "  \"bio\": \"Born in Uppsala, she studied \\\"quantum\\\" optics and later wrote a book about light.\\nShe plays cello.\",\n"
         "  \"address\": {\"street\": \"Storgatan 12\", \"city\": \"Uppsala\", \"zip\": \"753 10\", \"geo\": [59.8586, 17.6389]},\n"
         "  \"active\": true,\n  \"spouse\": null,\n  \"scores\": [98, 87.5, -3, 1e-5],\n"
         "  \"notes\": [{\"date\": \"2024-01-15\", \"text\": \"First light at the observatory \\u2014 clear skies.\"}, {\"date\": \"2024-02-01\", \"text\": \"Calibration done.\"}]\n}";
}

struct Figures {
  std::string name;
  std::size_t vocab_size = 0, trie_nodes = 0, steps = 0;
  double build_ms = 0, mean_ms = 0, p50_ms = 0, p99_ms = 0, max_ms = 0, allows_us = 0;
};

Figures run(const std::string& name, std::vector<std::string> texts, std::vector<lamina::Token> end_of_generation, std::size_t steps,
            std::size_t cache_size) {
  Figures figures;
  figures.name = name;
  figures.vocab_size = texts.size();
  const auto build_start = Clock::now();
  auto trie = lamina::TokenTrie::from_texts(std::move(texts), std::move(end_of_generation));
  figures.build_ms = std::chrono::duration<double, std::milli>(Clock::now() - build_start).count();
  figures.trie_nodes = trie->node_count();
  auto grammar = lamina::Grammar::parse(lamina::json_grammar());
  if (!grammar) { std::fprintf(stderr, "%s\n", grammar.error().message.c_str()); std::exit(1); }
  lamina::GrammarConstraint constraint(*grammar, trie);
  constraint.set_mask_cache_size(cache_size);
  std::vector<double> mask_ms;
  double allows_total_us = 0;
  // The document is written token by token: at each step the mask is computed (timed), then
  // the longest allowed token that continues the document is taken, as a model would.
  const std::string document = json_document();
  std::string generated;
  std::size_t position = 0;
  while (mask_ms.size() < steps) {
    if (position == document.size()) break;  // one pass: no cache hits from a second round
    const auto start = Clock::now();
    const auto& allowed = constraint.compute_allowed();
    mask_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    lamina::Token chosen = -1;
    std::size_t chosen_length = 0;
    for (std::size_t t = 0; t < allowed.size(); ++t) {
      const std::string& text = trie->text(static_cast<lamina::Token>(t));
      if (allowed[t] && text.size() > chosen_length && document.compare(position, text.size(), text) == 0) {
        chosen = static_cast<lamina::Token>(t);
        chosen_length = text.size();
      }
    }
    if (chosen < 0) { std::fprintf(stderr, "%s: no allowed token continues the document at byte %zu\n", name.c_str(), position); std::exit(1); }
    const auto allows_start = Clock::now();
    const bool ok = constraint.allows(chosen);
    allows_total_us += std::chrono::duration<double, std::micro>(Clock::now() - allows_start).count();
    if (!ok || !constraint.accept_token(chosen)) { std::fprintf(stderr, "mask and allows() disagree\n"); std::exit(1); }
    generated += trie->text(chosen);
    position += chosen_length;
  }
  figures.steps = mask_ms.size();
  std::vector<double> sorted = mask_ms;
  std::sort(sorted.begin(), sorted.end());
  double total = 0;
  for (double ms : mask_ms) total += ms;
  figures.mean_ms = total / static_cast<double>(sorted.size());
  figures.p50_ms = sorted[sorted.size() / 2];
  figures.p99_ms = sorted[sorted.size() * 99 / 100];
  figures.max_ms = sorted.back();
  figures.allows_us = allows_total_us / static_cast<double>(sorted.size());
  std::printf("%-22s vocab %6zu  trie nodes %7zu  build %7.1f ms  mask mean %.3f ms  p50 %.3f  p99 %.3f  max %.3f  allows() %.2f us\n",
              name.c_str(), figures.vocab_size, figures.trie_nodes, figures.build_ms, figures.mean_ms, figures.p50_ms, figures.p99_ms,
              figures.max_ms, figures.allows_us);
  std::printf("  sample of the generated text: %.120s\n", generated.c_str());
  return figures;
}

bool load(const std::string& path, std::vector<std::string>& texts, std::vector<lamina::Token>& end_of_generation) {
  auto file = lamina::gguf::File::open(path);
  if (!file) { std::fprintf(stderr, "%s\n", file.error().message.c_str()); return false; }
  auto tokenizer = lamina::Tokenizer::from_gguf(*file);
  if (!tokenizer) { std::fprintf(stderr, "%s\n", tokenizer.error().message.c_str()); return false; }
  texts.assign(tokenizer->vocab_size(), std::string());
  for (std::size_t id = 0; id < texts.size(); ++id) {
    const lamina::Token token = static_cast<lamina::Token>(id);
    if (!tokenizer->is_control(token)) texts[id] = std::string(tokenizer->piece(token));
  }
  end_of_generation = tokenizer->end_of_generation_tokens();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string shared = LAMINA_SHARED_DIR;
  std::size_t steps = 300;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = static_cast<std::size_t>(std::atoi(argv[++i]));
    else shared = argv[i];
  }
  std::vector<Figures> all;
  std::vector<std::string> texts;
  std::vector<lamina::Token> end_of_generation;
  if (!load(shared + "/vocab/ggml-vocab-llama-spm.gguf", texts, end_of_generation)) return 1;
  all.push_back(run("llama-spm", texts, end_of_generation, steps, 4));
  all.push_back(run("llama-spm-nocache", texts, end_of_generation, steps, 0));
  if (!load(shared + "/vocab/ggml-vocab-gpt-2.gguf", texts, end_of_generation)) return 1;
  all.push_back(run("gpt-2", texts, end_of_generation, steps, 4));
  all.push_back(run("gpt-2-nocache", texts, end_of_generation, steps, 0));
  // synthetic 150k: each GPT-2 token as is, after a space and after a quote
  const std::size_t base = texts.size();
  for (std::size_t i = 0; i < base; ++i) {
    if (texts[i].empty()) continue;
    texts.push_back(" " + texts[i]);
    texts.push_back("\"" + texts[i]);
  }
  all.push_back(run("synthetic-150k", texts, end_of_generation, steps, 4));
  all.push_back(run("synthetic-150k-nocache", texts, end_of_generation, steps, 0));
  std::printf("{\"bench\":\"grammar\",\"grammar\":\"json\",\"max_steps\":%zu", steps);
  for (const Figures& f : all) {
    std::printf(",\"%s\":{\"steps\":%zu,\"vocab\":%zu,\"trie_nodes\":%zu,\"build_ms\":%.2f,\"mask_mean_ms\":%.4f,\"mask_p50_ms\":%.4f,"
                "\"mask_p99_ms\":%.4f,\"mask_max_ms\":%.4f,\"allows_us\":%.3f}",
                f.name.c_str(), f.steps, f.vocab_size, f.trie_nodes, f.build_ms, f.mean_ms, f.p50_ms, f.p99_ms, f.max_ms, f.allows_us);
  }
  std::printf("}\n");
  return 0;
}
