// lamina quantize — convert a model's weights to another type, as llama-quantize does.
//
//   lamina quantize model-f16.gguf model-q4_k_m.gguf q4_k_m
//
// The library does the work (lamina/quant/quantize_model.hpp); this file parses options and reports.
#include "cli_common.hpp"

#include <lamina/quant/quantize_model.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace lamina_cli {

int run_quantize(int argc, char** argv) {
  const char* usage = "lamina quantize IN.gguf OUT.gguf TYPE [--pure] [--allow-requantize] [-t N] [-q]";
  const std::vector<Option> options = {
      help_option,
      {"--pure", nullptr, false, "no recipe: every weight matrix gets TYPE's base type (llama-quantize --pure)"},
      {"--allow-requantize", nullptr, false, "accept quantized input tensors (dequantized first: accuracy is lost)"},
      threads_option,
      {"--quiet", "-q", false, "no per-tensor progress"}};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 2, options, true);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) {
    print_help(usage, options);
    std::printf("\ntypes (llama-quantize's recipes; q3_k, q4_k, q5_k mean the _m ones):\n");
    for (const lamina::FileTypeInfo& type : lamina::file_types()) std::printf("  %-8s %s\n", type.name, type.summary);
    return 0;
  }
  if (arguments->positionals.size() != 3) {
    return report(usage_error("expected IN.gguf OUT.gguf TYPE, got " + std::to_string(arguments->positionals.size()) +
                              " arguments; usage: " + usage));
  }
  const std::string& input = arguments->positionals[0];
  const std::string& output = arguments->positionals[1];
  lamina::Result<lamina::FileType> type = lamina::parse_file_type(arguments->positionals[2]);
  if (!type) return report(type.error());
  if (input == output) return report(usage_error("IN and OUT are the same file"));
  lamina::QuantizeOptions quantize;
  quantize.file_type = *type;
  quantize.pure = arguments->has("--pure");
  quantize.allow_requantize = arguments->has("--allow-requantize");
  lamina::Result<std::uint32_t> threads = thread_count_option(*arguments);
  if (!threads) return report(threads.error());
  quantize.thread_count = *threads;
  if (!arguments->has("--quiet")) {
    quantize.on_tensor = [](const lamina::TensorProgress& tensor) {
      std::string shape = "[";
      for (std::size_t i = 0; i < tensor.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(tensor.shape[i]);
      shape += "]";
      std::fprintf(stderr, "[%4zu/%4zu] %-28s %-16s %-6s -> %-7s %10s -> %10s%s\n", tensor.index + 1, tensor.count, tensor.name.c_str(),
                   shape.c_str(), lamina::dtype_name(tensor.from), lamina::dtype_name(tensor.to),
                   human_bytes(static_cast<double>(tensor.bytes_before)).c_str(), human_bytes(static_cast<double>(tensor.bytes_after)).c_str(),
                   tensor.fell_back ? "  (fallback: rows do not fit the recipe's type)" : "");
    };
  }
  lamina::Result<lamina::QuantizeReport> result = lamina::quantize_model(input, output, quantize);
  if (!result) return report(result.error());
  const double elements = result->element_count > 0 ? static_cast<double>(result->element_count) : 1.0;
  std::printf("wrote %s (%s): %zu tensors, %zu converted; %s (%.2f bits per weight) -> %s (%.2f bpw) in %.1f s\n", output.c_str(),
              lamina::file_type_name(*type), result->tensor_count, result->converted_count,
              human_bytes(static_cast<double>(result->bytes_before)).c_str(), static_cast<double>(result->bytes_before) * 8.0 / elements,
              human_bytes(static_cast<double>(result->bytes_after)).c_str(), static_cast<double>(result->bytes_after) * 8.0 / elements,
              result->seconds);
  if (result->fallback_count > 0) {
    std::printf("%zu tensors fell back to another type: their rows do not split into the recipe's blocks\n", result->fallback_count);
  }
  return 0;
}

}  // namespace lamina_cli
