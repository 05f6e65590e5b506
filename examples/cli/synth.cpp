// lamina synth — write a random-weight model with the shapes of a real architecture.
//
//   lamina synth --preset llama-1b --type q4_0 --vocab ../shared/vocab/ggml-vocab-llama-spm.gguf -o llama-1b-q4_0.gguf
//
// The library does the work (synth.hpp); this file parses options and reports.
#include "cli_common.hpp"

#include "synth.hpp"

#include <cstdio>
#include <string>
#include <vector>

namespace lamina_cli {

namespace {

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

void print_presets() {
  std::printf("presets:\n");
  for (const lamina::SynthPreset& preset : lamina::synth_presets()) std::printf("  %-12s %s\n", preset.name, preset.description);
}

void print_types() {
  std::printf("types:\n");
  for (const lamina::FileTypeInfo& type : lamina::file_types()) std::printf("  %-8s %s\n", type.name, type.summary);
}

// lamina synth --lora-for MODEL.gguf: a random adapter of the model's shapes.
int run_synth_lora(const ParsedArguments& arguments, const std::string& base) {
  if (!arguments.get("--output")) return report(usage_error("--lora-for needs -o ADAPTER.gguf"));
  lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open(base);
  if (!file) return report(file.error());
  lamina::Result<lamina::ModelHparams> hparams = lamina::read_hparams(*file);
  if (!hparams) return report(hparams.error());
  lamina::SynthLoraOptions options;
  if (const std::string* rank = arguments.get("--rank")) {
    lamina::Result<long long> value = parse_integer(*rank, "--rank", 1, 4096);
    if (!value) return report(value.error());
    options.rank = static_cast<std::uint32_t>(*value);
  }
  options.alpha = static_cast<float>(options.rank);
  if (const std::string* alpha = arguments.get("--alpha")) {
    lamina::Result<float> value = parse_float(*alpha, "--alpha", -1e6, 1e6);
    if (!value) return report(value.error());
    options.alpha = *value;
  }
  if (const std::string* seed = arguments.get("--seed")) {
    lamina::Result<unsigned long long> value = parse_unsigned(*seed, "--seed");
    if (!value) return report(value.error());
    options.seed = *value;
  }
  if (const std::string* deviation = arguments.get("--std")) {
    lamina::Result<float> value = parse_float(*deviation, "--std", 1e-6, 10.0);
    if (!value) return report(value.error());
    options.factor_std = *value;
  }
  const std::string& output = *arguments.get("--output");
  lamina::Result<std::uint64_t> bytes = lamina::synthesize_lora(*hparams, output, options);
  if (!bytes) return report(bytes.error());
  std::printf("wrote %s: rank %u LoRA on all seven matrices of %u layers, alpha %g, %s of factors\n", output.c_str(), options.rank,
              hparams->block_count, static_cast<double>(options.alpha), human_bytes(static_cast<double>(*bytes)).c_str());
  return 0;
}

}  // namespace

int run_synth(int argc, char** argv) {
  const char* usage =
      "lamina synth --preset NAME -o OUT.gguf [--type TYPE] [--vocab VOCAB.gguf] [--seed S] [--pure] [-t N]\n"
      "       lamina synth --lora-for MODEL.gguf [--rank R] [--alpha A] [--seed S] [--std S] -o ADAPTER.gguf\n"
      "       lamina synth --list";
  const std::vector<Option> options = {
      help_option,
      {"--preset", nullptr, true, "architecture and sizes (see --list)"},
      {"--output", "-o", true, "GGUF file to write"},
      {"--type", nullptr, true, "weight type or llama.cpp recipe: f16 (default), f32, bf16, q8_0, q4_0, q4_k_m, q6_k, … (see --list)"},
      {"--vocab", nullptr, true, "GGUF whose tokenizer.* keys to copy (sets the vocabulary size); default: built-in byte vocabulary"},
      {"--seed", nullptr, true, "random seed (default 0)"},
      {"--std", nullptr, true, "standard deviation of the weights (default 0.02)"},
      {"--pure", nullptr, false, "no recipe: every weight matrix gets the type's base type (llama-quantize --pure)"},
      threads_option,
      {"--quiet", "-q", false, "no per-tensor progress"},
      {"--list", nullptr, false, "list the presets and types"},
      {"--lora-for", nullptr, true, "write a random LoRA adapter (all seven matrices of every layer) for this model instead"},
      {"--rank", nullptr, true, "--lora-for: rank (default 16)"},
      {"--alpha", nullptr, true, "--lora-for: alpha (default: the rank, so scaling 1)"}};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 2, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) {
    print_help(usage, options);
    std::printf("\n");
    print_presets();
    return 0;
  }
  if (arguments->has("--list")) {
    print_presets();
    print_types();
    return 0;
  }
  if (const std::string* base = arguments->get("--lora-for")) return run_synth_lora(*arguments, *base);
  if (!arguments->get("--preset") || !arguments->get("--output")) {
    return report(usage_error(std::string("missing --preset or -o; usage: ") + usage));
  }
  const lamina::SynthPreset* preset = lamina::find_synth_preset(*arguments->get("--preset"));
  if (preset == nullptr) {
    std::string names;
    for (const lamina::SynthPreset& known : lamina::synth_presets()) names += (names.empty() ? "" : ", ") + std::string(known.name);
    return report(usage_error("--preset: unknown preset '" + *arguments->get("--preset") + "' (presets: " + names + ")"));
  }
  lamina::SynthOptions synth;
  if (const std::string* type = arguments->get("--type")) {
    lamina::Result<lamina::FileType> parsed = lamina::parse_file_type(*type);
    if (!parsed) return report(usage_error("--type: " + parsed.error().message));
    synth.file_type = *parsed;
  }
  if (const std::string* vocab = arguments->get("--vocab")) synth.vocab_path = *vocab;
  if (const std::string* seed = arguments->get("--seed")) {
    lamina::Result<unsigned long long> value = parse_unsigned(*seed, "--seed");
    if (!value) return report(value.error());
    synth.seed = *value;
  }
  if (const std::string* deviation = arguments->get("--std")) {
    lamina::Result<float> value = parse_float(*deviation, "--std", 1e-6, 10.0);
    if (!value) return report(value.error());
    synth.weight_std = *value;
  }
  synth.pure = arguments->has("--pure");
  lamina::Result<std::uint32_t> threads = thread_count_option(*arguments);
  if (!threads) return report(threads.error());
  synth.thread_count = *threads;
  if (!arguments->has("--quiet")) {
    synth.on_tensor = [](const lamina::TensorProgress& tensor) {
      std::fprintf(stderr, "[%4zu/%4zu] %-28s %-16s %-7s %10s%s\n", tensor.index + 1, tensor.count, tensor.name.c_str(),
                   shape_text(tensor.shape).c_str(), lamina::dtype_name(tensor.to), human_bytes(static_cast<double>(tensor.bytes_after)).c_str(),
                   tensor.fell_back ? "  (fallback: rows do not fit the recipe's type)" : "");
    };
  }
  const std::string& output = *arguments->get("--output");
  lamina::Result<lamina::SynthReport> result = lamina::synthesize_model(*preset, output, synth);
  if (!result) return report(result.error());
  std::printf("wrote %s: %s %s, %zu tensors, %.3f B parameters, vocabulary %u, %s, in %.1f s\n", output.c_str(), preset->name,
              lamina::file_type_name(synth.file_type), result->tensor_count, static_cast<double>(result->parameter_count) / 1e9,
              result->vocab_size, human_bytes(static_cast<double>(result->file_bytes)).c_str(), result->seconds);
  return 0;
}

}  // namespace lamina_cli
