// lamina lora — LoRA adapters turned into files.
//
//   lamina lora merge -m base.gguf --lora lora-a.gguf:0.7 --lora lora-b-peft:0.5 -o merged.gguf
//   lamina lora combine -m base.gguf --lora a.gguf:0.7 --lora b-peft:0.5 --method cat -o ab-peft
//
// merge writes a model with the stack merged into its weights (no adapter at run time);
// combine writes one adapter made of several, as PEFT's add_weighted_adapter does. The library
// does the work (lora_tools.hpp); this file parses options and reports.
#include "cli_common.hpp"

#include "lora_tools.hpp"

#include <cstdio>
#include <string>
#include <vector>

namespace lamina_cli {

namespace {

// The scale (merge) or weight (combine) of each --lora, for the file's metadata: "path:scale".
lamina::Result<std::vector<std::string>> lora_labels(const ParsedArguments& arguments) {
  std::vector<std::string> labels;
  for (const std::string& text : arguments.all("--lora")) {
    lamina::Result<LoraArgument> argument = parse_lora_argument(text);
    if (!argument) return argument.take_error();
    char scale[32];
    std::snprintf(scale, sizeof scale, "%g", static_cast<double>(argument->scale));
    labels.push_back(argument->path + ":" + scale);
  }
  return labels;
}

lamina::Result<std::shared_ptr<const lamina::Model>> load_base(const std::string& path) {
  lamina::ModelParams params;
  params.load_tokenizer = false;  // weights and metadata only; the tokenizer is copied as metadata
  return lamina::Model::load(path, params);
}

int run_lora_merge(int argc, char** argv) {
  const char* usage = "lamina lora merge -m BASE.gguf --lora PATH[:SCALE]... -o OUT.gguf [--type TYPE] [-t N] [-q]";
  const std::vector<Option> options = {
      help_option, model_option,
      {"--lora", nullptr, true, "adapter PATH[:SCALE] to merge (a .gguf adapter or a PEFT directory; repeatable)"},
      {"--output", "-o", true, "the merged model (GGUF)"},
      {"--type", nullptr, true, "type of the merged matrices: f32, f16, bf16, q8_0, q4_k … (default: each keeps the base's)"},
      threads_option,
      {"--quiet", "-q", false, "no per-tensor progress"}};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 3, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) {
    print_help(usage, options);
    std::printf("\nEvery metadata key and tensor of BASE is copied in its order; the matrices the adapters change\n"
                "are replaced by W + sum of SCALE * delta. The adapters are listed in lamina.merged_adapters.\n");
    return 0;
  }
  if (!arguments->get("--model") || !arguments->get("--output") || !arguments->has("--lora")) {
    return report(usage_error(std::string("missing option; usage: ") + usage));
  }
  lamina::LoraMergeOptions merge;
  if (const std::string* type = arguments->get("--type")) {
    lamina::Result<lamina::DType> parsed = lamina::parse_merge_type(*type);
    if (!parsed) return report(parsed.error());
    merge.type = *parsed;
  }
  lamina::Result<std::uint32_t> threads = thread_count_option(*arguments);
  if (!threads) return report(threads.error());
  merge.thread_count = *threads;
  lamina::Result<std::vector<std::string>> labels = lora_labels(*arguments);
  if (!labels) return report(labels.error());
  merge.adapter_labels = std::move(*labels);
  if (!arguments->has("--quiet")) {
    merge.on_tensor = [](const lamina::LoraMergeProgress& tensor) {
      if (!tensor.merged) return;
      std::fprintf(stderr, "[%4zu/%4zu] %-28s merged, %s -> %s\n", tensor.index + 1, tensor.count, tensor.name.c_str(),
                   lamina::dtype_name(tensor.from), lamina::dtype_name(tensor.to));
    };
  }

  lamina::Result<std::shared_ptr<const lamina::Model>> model = load_base(*arguments->get("--model"));
  if (!model) return report(model.error());
  lamina::Result<lamina::AdapterStack> stack = load_lora_stack(*arguments, **model);
  if (!stack) return report(stack.error());
  const std::string& output = *arguments->get("--output");
  lamina::Result<lamina::LoraMergeReport> result = lamina::merge_lora_model(**model, *stack, output, merge);
  if (!result) return report(result.error());
  std::printf("wrote %s: %zu tensors, %zu merged, in %.1f s; %s\n", output.c_str(), result->tensor_count, result->merged_count,
              result->seconds, result->file_type_note.c_str());
  return 0;
}

int run_lora_combine(int argc, char** argv) {
  const char* usage =
      "lamina lora combine -m BASE.gguf --lora PATH[:WEIGHT]... --method METHOD -o OUT [--rank R] [--density D] [--seed S]\n"
      "                    [--majority-sign total|frequency] [--svd-clamp Q]";
  const std::vector<Option> options = {
      help_option,
      {"--model", "-m", true, "the base model the adapters belong to (see below)"},
      {"--lora", nullptr, true, "adapter PATH[:WEIGHT] (a .gguf adapter or a PEFT directory; repeatable)"},
      {"--method", nullptr, true, "linear, cat, svd, ties, dare_linear (or dare), dare_ties, magnitude_prune"},
      {"--output", "-o", true, "OUT.gguf: llama.cpp's GGUF adapter; anything else: a PEFT directory (created)"},
      {"--rank", nullptr, true, "svd: rank of the result (default: the largest input rank)"},
      {"--density", nullptr, true, "ties, dare_*, magnitude_prune: fraction of entries kept, in (0, 1] (default 1)"},
      {"--seed", nullptr, true, "dare_*: seed of the random masks (default 0; matrix i uses seed + i)"},
      {"--majority-sign", nullptr, true, "ties, dare_ties: total (default) or frequency"},
      {"--svd-clamp", nullptr, true, "svd: clamp the factors to this quantile of their |values|, in [0, 1]"}};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 3, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) {
    print_help(usage, options);
    std::printf("\nHugging Face PEFT's add_weighted_adapter over whole adapters: every matrix any input adapts is\n"
                "combined from the inputs that adapt it. The result has scaling 1 (alpha = rank).\n"
                "-m is needed because lamina checks every adapter against its base model when it loads one\n"
                "(layers, shapes); the base's general.architecture and general.name also go into OUT. Only its\n"
                "shapes matter: use its F32 or F16 file if you have one, since factors loaded against a quantized\n"
                "base are kept as F16.\n");
    return 0;
  }
  if (!arguments->get("--model") || !arguments->get("--output") || !arguments->get("--method") || !arguments->has("--lora")) {
    return report(usage_error(std::string("missing option; usage: ") + usage));
  }
  lamina::lora::CombineOptions combine;
  std::string method = *arguments->get("--method");
  if (method == "dare") method = "dare_linear";
  lamina::Result<lamina::lora::CombineMethod> parsed_method = lamina::lora::parse_combine_method(method);
  if (!parsed_method) return report(parsed_method.error());
  combine.method = *parsed_method;
  if (const std::string* text = arguments->get("--rank")) {
    lamina::Result<long long> rank = parse_integer(*text, "--rank", 1, 65536);
    if (!rank) return report(rank.error());
    combine.rank = static_cast<std::size_t>(*rank);
  }
  if (const std::string* text = arguments->get("--density")) {
    lamina::Result<float> density = parse_float(*text, "--density", 0.0, 1.0);
    if (!density) return report(density.error());
    if (!(*density > 0.0f)) return report(usage_error("option --density: must be greater than 0 (and at most 1)"));
    combine.density = *density;
  }
  if (const std::string* text = arguments->get("--seed")) {
    lamina::Result<unsigned long long> seed = parse_unsigned(*text, "--seed");
    if (!seed) return report(seed.error());
    combine.seed = *seed;
  }
  if (const std::string* text = arguments->get("--majority-sign")) {
    lamina::Result<lamina::lora::MajoritySign> sign = lamina::lora::parse_majority_sign(*text);
    if (!sign) return report(sign.error());
    combine.majority_sign = *sign;
  }
  if (const std::string* text = arguments->get("--svd-clamp")) {
    lamina::Result<float> clamp = parse_float(*text, "--svd-clamp", 0.0, 1.0);
    if (!clamp) return report(clamp.error());
    combine.svd_clamp = *clamp;
  }
  lamina::Result<std::vector<std::string>> labels = lora_labels(*arguments);
  if (!labels) return report(labels.error());

  lamina::Result<std::shared_ptr<const lamina::Model>> model = load_base(*arguments->get("--model"));
  if (!model) return report(model.error());
  lamina::Result<lamina::AdapterStack> stack = load_lora_stack(*arguments, **model);
  if (!stack) return report(stack.error());
  std::vector<lamina::CombineSource> sources;
  for (const lamina::AdapterStackEntry& entry : *stack) sources.push_back({entry.adapter, entry.scale});
  lamina::Result<lamina::CombinedAdapter> combined = lamina::combine_adapters(sources, combine, *labels);
  if (!combined) return report(combined.error());
  const std::string& output = *arguments->get("--output");
  lamina::Result<void> written = lamina::write_combined_adapter(output, *combined, lamina::combined_adapter_info(**model));
  if (!written) return report(written.error());
  std::printf("wrote %s (%s): %zu matrices, rank %zu%s\n", output.c_str(), lamina::lora::to_string(combine.method),
              combined->modules.size(), combined->max_rank(), combined->uniform_rank() ? "" : " at most (ranks differ per matrix)");
  return 0;
}

}  // namespace

int run_lora(int argc, char** argv) {
  const char* usage =
      "lamina lora merge   -m BASE.gguf --lora PATH[:SCALE]... -o OUT.gguf [--type TYPE] [-t N]\n"
      "       lamina lora combine -m BASE.gguf --lora PATH[:WEIGHT]... --method METHOD -o OUT [--rank R] [--density D] [--seed S]";
  const std::string action = argc >= 3 ? argv[2] : "";
  if (action == "merge") return run_lora_merge(argc, argv);
  if (action == "combine") return run_lora_combine(argc, argv);
  if (action == "--help" || action == "-h" || action == "help") {
    std::printf("usage: %s\n\n  merge    write a model with the adapters merged into its weights\n"
                "  combine  write one adapter combined from several (PEFT's add_weighted_adapter)\n"
                "\n`lamina lora merge --help`, `lamina lora combine --help` for their options.\n",
                usage);
    return 0;
  }
  return report(usage_error(action.empty() ? std::string("lora: expected merge or combine; usage: ") + usage
                                           : "lora: unknown action '" + action + "' (expected merge or combine)"));
}

}  // namespace lamina_cli
