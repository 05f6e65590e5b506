// lamina — command-line front end of the library. Every subcommand is a thin client of the
// public API in <lamina/lamina.hpp>; read it as a set of usage examples.
//
//   lamina logits   -m MODEL --tokens "1 2 3" [--lora PATH[:SCALE]]... -o OUT.f32
//   lamina generate -m MODEL (--prompt TEXT | --tokens IDS) -n N [sampling options] [--print-ids]
//   lamina tokenize -m GGUF (--text TEXT | --file FILE) [--split-tests]
//   lamina inspect  -m GGUF
//   lamina synth    --preset NAME -o OUT.gguf [--type TYPE] [--vocab VOCAB.gguf]      (synth.cpp)
//   lamina bench    -m MODEL [-t N] [-p N] [-n N] [-r N] [--json]                       (bench.cpp)
//   lamina quantize IN.gguf OUT.gguf TYPE [--pure] [-t N]                               (quantize.cpp)
//   lamina batch-logits -m MODEL --spec SPEC.json --out-dir DIR                         (batch_logits.cpp)
//   lamina explain  -m MODEL (--prompt TEXT | --tokens IDS) --out-dir DIR                (explain.cpp)
//   lamina lora merge   -m BASE.gguf --lora PATH[:SCALE]... -o OUT.gguf [--type TYPE] [-t N]           (lora.cpp)
//   lamina devices                                                                        (backend.cpp)
//   lamina template --template FILE.jinja --vars VARS.json [--now ISO-8601]              (chat_template.cpp)
//   lamina lora combine -m BASE.gguf --lora PATH[:WEIGHT]... --method METHOD -o OUT [--rank R] [--density D] [--seed S]
#include "backend_option.hpp"
#include "cli_common.hpp"
#include "tokenizer_test_cases.hpp"

#include <lamina/lamina.hpp>

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace lamina_cli;

// ---------------------------------------------------------------------------------------------

int run_logits(int argc, char** argv) {
  const char* usage = "lamina logits -m MODEL --tokens \"1 2 3\" [--lora PATH[:SCALE]]... [--ctx N] [--backend cpu|vulkan] [--device N] -o OUT.f32";
  const std::vector<Option> options = {
      help_option, model_option, {"--tokens", nullptr, true, "token ids, space or comma separated"},
      lora_option, {"--output", "-o", true, "output file: int32 n_vocab, then float32[n_tokens][n_vocab]"},
      {"--threads", "-t", true, "threads (default: all cores)"}, context_option, backend_option, device_option, pipeline_cache_option};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 2, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) return print_help(usage, options), 0;
  if (!arguments->get("--model") || !arguments->get("--tokens") || !arguments->get("--output")) {
    return report(usage_error(std::string("missing option; usage: ") + usage));
  }
  lamina::Result<std::vector<lamina::Token>> tokens = parse_token_list(*arguments->get("--tokens"));
  if (!tokens) return report(tokens.error());
  // Checked first, so a FIFO or device as the output costs no model load.
  const std::string& path = *arguments->get("--output");
  lamina::Result<void> writable = lamina::check_output_path(path);
  if (!writable) return report(writable.error());
  lamina::SessionParams params;
  if (const std::string* threads = arguments->get("--threads")) {
    lamina::Result<long long> count = parse_integer(*threads, "--threads", 1, 1024);
    if (!count) return report(count.error());
    params.thread_count = static_cast<std::uint32_t>(*count);
  }
  lamina::Result<void> backend = apply_backend_options(*arguments, params);
  if (!backend) return report(backend.error());
  lamina::ModelParams model_params;
  model_params.load_tokenizer = false;  // ids in, logits out
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(*arguments->get("--model"), model_params);
  if (!model) return report(model.error());
  const std::uint32_t vocab = (*model)->hparams().vocab_size;
  lamina::Result<std::uint32_t> context_length = context_length_option(*arguments, **model);
  if (!context_length) return report(context_length.error());
  lamina::Result<void> fits = check_fits_context(tokens->size(), *context_length, *arguments, **model, "--tokens");
  if (!fits) return report(fits.error());
  params.context_length = static_cast<std::uint32_t>(tokens->size());
  params.batch_size = static_cast<std::uint32_t>(tokens->size());
  params.logits_for_every_token = true;
  lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
  if (!session) return report(session.error());
  lamina::Result<lamina::AdapterStack> adapters = load_lora_stack(*arguments, **model);
  if (!adapters) return report(adapters.error());
  lamina::Result<void> stacked = session->set_adapters(std::move(*adapters));
  if (!stacked) return report(stacked.error());
  std::vector<float> logits(tokens->size() * vocab);
  lamina::Result<void> fed = session->feed(tokens->data(), tokens->size(), 0, logits.data());
  if (!fed) return report(fed.error());

  // OutputFile: written whole or not at all, never over a FIFO or device, every write error
  // reported with the path.
  lamina::Result<lamina::OutputFile> out = lamina::OutputFile::create(path);
  if (!out) return report(out.error());
  const std::int32_t header = static_cast<std::int32_t>(vocab);
  lamina::Result<void> written = out->write(&header, sizeof header);
  if (written) written = out->write(logits.data(), logits.size() * sizeof(float));
  if (written) written = out->commit();
  if (!written) return report(written.error());
  std::printf("wrote logits of %zu tokens × %u to %s\n", tokens->size(), vocab, path.c_str());
  return check_backend_validation(params, 0);
}

int run_generate(int argc, char** argv) {
  const char* usage =
      "lamina generate -m MODEL (--prompt TEXT | --tokens IDS) -n N [--temp T] [--top-k K] [--top-p P] [--min-p P]\n"
      "                [--repeat-penalty R] [--seed S] [--lora PATH[:SCALE]]... [--parse-special] [--print-ids] [--backend cpu|vulkan] [--device N]";
  const std::vector<Option> options = {
      help_option, model_option,
      {"--prompt", "-p", true, "prompt text"},
      {"--tokens", nullptr, true, "prompt as token ids instead of text"},
      {"--n-predict", "-n", true, "tokens to generate (default 64)"},
      {"--temp", nullptr, true, "temperature; 0 = greedy (default 0.8)"},
      {"--top-k", nullptr, true, "keep the K most likely tokens; 0 = off (default 40)"},
      {"--top-p", nullptr, true, "nucleus sampling threshold; 1 = off (default 0.95)"},
      {"--min-p", nullptr, true, "drop tokens below P × the top probability; 0 = off (default 0.05)"},
      {"--repeat-penalty", nullptr, true, "penalty for tokens in the last 64; 1 = off (default 1.0)"},
      {"--seed", nullptr, true, "random seed (default 0)"},
      {"--threads", "-t", true, "threads (default: all cores)"},
      {"--ctx", "-c", true, "longest sequence, in tokens (default: the model's context length)"},
      lora_option,
      parse_special_option,
      {"--print-ids", nullptr, false, "print the generated token ids after the text"},
      backend_option, device_option, pipeline_cache_option};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 2, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) return print_help(usage, options), 0;
  if (!arguments->get("--model")) return report(usage_error(std::string("missing -m MODEL; usage: ") + usage));
  if (arguments->has("--prompt") == arguments->has("--tokens")) {
    return report(usage_error("give exactly one of --prompt and --tokens"));
  }
  lamina::SessionParams params;
  long long n_predict = 64;
  struct FloatOption { const char* name; float* target; double minimum; double maximum; };
  const FloatOption float_options[] = {
      {"--temp", &params.sampling.temperature, 0.0, 100.0},
      {"--top-p", &params.sampling.top_p, 0.0, 1.0},
      {"--min-p", &params.sampling.min_p, 0.0, 1.0},
      {"--repeat-penalty", &params.sampling.repeat_penalty, 0.0, 100.0},
  };
  for (const FloatOption& option : float_options) {
    if (const std::string* text = arguments->get(option.name)) {
      lamina::Result<float> value = parse_float(*text, option.name, option.minimum, option.maximum);
      if (!value) return report(value.error());
      *option.target = *value;
    }
  }
  if (const std::string* text = arguments->get("--n-predict")) {
    lamina::Result<long long> value = parse_integer(*text, "-n", 0, 1 << 24);
    if (!value) return report(value.error());
    n_predict = *value;
  }
  if (const std::string* text = arguments->get("--top-k")) {
    lamina::Result<long long> value = parse_integer(*text, "--top-k", 0, 1 << 30);
    if (!value) return report(value.error());
    params.sampling.top_k = static_cast<int>(*value);
  }
  if (const std::string* text = arguments->get("--seed")) {
    errno = 0;
    char* end = nullptr;
    const unsigned long long seed = std::strtoull(text->c_str(), &end, 10);
    if (text->empty() || *end != '\0' || errno == ERANGE || (*text)[0] == '-') return report(usage_error("--seed: '" + *text + "' is not a non-negative integer"));
    params.sampling.seed = seed;
  }
  if (const std::string* text = arguments->get("--threads")) {
    lamina::Result<long long> value = parse_integer(*text, "--threads", 1, 1024);
    if (!value) return report(value.error());
    params.thread_count = static_cast<std::uint32_t>(*value);
  }
  if (const std::string* text = arguments->get("--ctx")) {
    lamina::Result<long long> value = parse_integer(*text, "--ctx", 1, 1 << 24);
    if (!value) return report(value.error());
    params.context_length = static_cast<std::uint32_t>(*value);
  }
  lamina::Result<void> backend = apply_backend_options(*arguments, params);
  if (!backend) return report(backend.error());

  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(*arguments->get("--model"));
  if (!model) return report(model.error());
  const lamina::Tokenizer& tokenizer = (*model)->tokenizer();
  std::vector<lamina::Token> prompt;
  if (const std::string* ids = arguments->get("--tokens")) {
    lamina::Result<std::vector<lamina::Token>> parsed = parse_token_list(*ids);
    if (!parsed) return report(parsed.error());
    prompt = std::move(*parsed);
  } else {
    lamina::EncodeOptions encode_options;
    encode_options.parse_special = arguments->has("--parse-special");
    lamina::Result<std::vector<lamina::Token>> encoded = tokenizer.encode(*arguments->get("--prompt"), encode_options);
    if (!encoded) return report(encoded.error());
    prompt = std::move(*encoded);
  }
  if (prompt.empty()) return report(usage_error("the prompt is empty"));
  // Without --ctx the limit is the model's context, and the session holds just the prompt and
  // the tokens asked for: a model trained on 128k tokens needs no 128k-token KV cache here.
  const std::size_t needed = prompt.size() + static_cast<std::size_t>(n_predict);
  const std::uint32_t context_length = params.context_length != 0 ? params.context_length : (*model)->hparams().context_length;
  if (needed > context_length) {
    return report(usage_error("prompt (" + std::to_string(prompt.size()) + " tokens) + -n " + std::to_string(n_predict) +
                              " exceed the context of " + std::to_string(context_length) + " tokens (see --ctx)"));
  }
  if (params.context_length == 0) params.context_length = static_cast<std::uint32_t>(needed);
  lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
  if (!session) return report(session.error());
  lamina::Result<lamina::AdapterStack> adapters = load_lora_stack(*arguments, **model);
  if (!adapters) return report(adapters.error());
  lamina::Result<void> stacked = session->set_adapters(std::move(*adapters));
  if (!stacked) return report(stacked.error());

  // Echo the prompt, then stream each token's text as soon as it is sampled.
  if (arguments->has("--prompt")) std::fputs(arguments->get("--prompt")->c_str(), stdout);
  else for (lamina::Token token : prompt) std::fputs(tokenizer.token_to_piece(token).c_str(), stdout);
  std::fflush(stdout);

  lamina::GenerateOptions generate_options;
  generate_options.max_tokens = static_cast<std::size_t>(n_predict);
  lamina::Result<lamina::GenerationResult> result =
      lamina::generate(*session, prompt, generate_options, [](std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        return true;
      });
  std::printf("\n");
  if (!result) return report(result.error());
  if (arguments->has("--print-ids")) {
    std::printf("ids:");
    for (lamina::Token token : result->tokens) std::printf(" %d", token);
    std::printf("\n");
  }
  const double prompt_seconds = result->prompt_seconds;
  const double generation_seconds = result->generation_seconds;
  const std::size_t generated = result->tokens.size();
  std::printf("prompt: %zu tokens in %.3f s (%.1f t/s) | generation: %zu tokens in %.3f s (%.1f t/s)\n", prompt.size(),
              prompt_seconds, prompt_seconds > 0 ? static_cast<double>(prompt.size()) / prompt_seconds : 0.0, generated,
              generation_seconds, generation_seconds > 0 ? static_cast<double>(generated) / generation_seconds : 0.0);
  return check_backend_validation(params, 0);
}

int run_tokenize(int argc, char** argv) {
  const char* usage = "lamina tokenize -m GGUF (--text TEXT | --file FILE) [--split-tests] [--parse-special]";
  const std::vector<Option> options = {
      help_option, model_option,
      {"--text", nullptr, true, "text to tokenize"},
      {"--file", "-f", true, "file to tokenize"},
      {"--split-tests", nullptr, false, "FILE holds test cases separated by '\\n__ggml_vocab_test__\\n': one line of ids per case, no BOS"},
      parse_special_option};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 2, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) return print_help(usage, options), 0;
  if (!arguments->get("--model")) return report(usage_error(std::string("missing -m GGUF; usage: ") + usage));
  if (arguments->has("--text") == arguments->has("--file")) return report(usage_error("give exactly one of --text and --file"));
  if (arguments->has("--split-tests") && !arguments->has("--file")) return report(usage_error("--split-tests needs --file"));

  lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open(*arguments->get("--model"));
  if (!file) return report(file.error());
  lamina::Result<lamina::Tokenizer> tokenizer = lamina::Tokenizer::from_gguf(*file);
  if (!tokenizer) return report(tokenizer.error());
  std::string text;
  if (const std::string* path = arguments->get("--file")) {
    lamina::Result<std::string> contents = read_whole_file(*path);
    if (!contents) return report(contents.error());
    text = std::move(*contents);
  } else {
    text = *arguments->get("--text");
  }
  auto print_ids = [](const std::vector<lamina::Token>& ids) {
    for (std::size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
    std::printf("\n");
  };
  if (arguments->has("--split-tests")) {
    lamina::EncodeOptions case_options;  // each case is plain text, as SentencePiece takes it
    case_options.add_bos = 0;
    case_options.add_eos = 0;
    case_options.parse_special = arguments->has("--parse-special");
    for (const std::string& test_case : lamina_cli::split_tokenizer_test_cases(text)) {
      lamina::Result<std::vector<lamina::Token>> ids = tokenizer->encode(test_case, case_options);
      if (!ids) return report(ids.error());
      print_ids(*ids);
    }
    return 0;
  }
  lamina::EncodeOptions encode_options;
  encode_options.parse_special = arguments->has("--parse-special");
  lamina::Result<std::vector<lamina::Token>> ids = tokenizer->encode(text, encode_options);
  if (!ids) return report(ids.error());
  print_ids(*ids);
  return 0;
}

// Text from a file, made safe to print on a terminal: valid UTF-8 stays as it is, while control
// characters (C0, DEL and C1: an ESC sequence in a metadata string could recolour, retitle or
// rewrite the terminal) and bytes that are not UTF-8 are shown as escapes (\n, \x1b, \u0085).
// At most `limit` characters are shown, then "...".
std::string printable(std::string_view text, std::size_t limit = std::string_view::npos) {
  std::string out;
  std::size_t shown = 0;
  for (std::size_t offset = 0; offset < text.size(); ++shown) {
    if (shown == limit) return out + "...";
    const lamina::unicode::DecodedCodepoint decoded = lamina::unicode::decode_utf8(text, offset);
    const char32_t codepoint = decoded.codepoint;
    char escape[16];
    if (decoded.length == 0) {
      std::snprintf(escape, sizeof escape, "\\x%02x", static_cast<unsigned char>(text[offset]));
      out += escape;
      offset += 1;
      continue;
    }
    if (codepoint == '\\') {
      out += "\\\\";
    } else if (codepoint == '\n') {
      out += "\\n";
    } else if (codepoint == '\t') {
      out += "\\t";
    } else if (codepoint < 0x20 || codepoint == 0x7f) {
      std::snprintf(escape, sizeof escape, "\\x%02x", static_cast<unsigned>(codepoint));
      out += escape;
    } else if (codepoint >= 0x80 && codepoint < 0xa0) {
      std::snprintf(escape, sizeof escape, "\\u%04x", static_cast<unsigned>(codepoint));
      out += escape;
    } else {
      out.append(text.data() + offset, decoded.length);
    }
    offset += decoded.length;
  }
  return out;
}

std::string describe_value(const lamina::gguf::Value& value) {
  using lamina::gguf::ValueType;
  switch (value.type) {
    case ValueType::uint8: case ValueType::uint16: case ValueType::uint32: case ValueType::uint64:
      return std::to_string(value.unsigned_value);
    case ValueType::int8: case ValueType::int16: case ValueType::int32: case ValueType::int64:
      return std::to_string(value.signed_value);
    case ValueType::float32: case ValueType::float64: {
      char buffer[64];
      std::snprintf(buffer, sizeof buffer, "%g", value.float_value);
      return buffer;
    }
    case ValueType::boolean: return value.unsigned_value ? "true" : "false";
    case ValueType::string: return "\"" + printable(value.string_value, 80) + "\"";
    case ValueType::array: {
      std::string text = std::string("[") + lamina::gguf::value_type_name(value.element_type) + " × " +
                         std::to_string(value.elements.size()) + "]";
      if (!value.elements.empty()) {
        text += " ";
        for (std::size_t i = 0; i < value.elements.size() && i < 5; ++i) text += (i ? ", " : "") + describe_value(value.elements[i]);
        if (value.elements.size() > 5) text += ", …";
      }
      return text;
    }
  }
  return "?";
}

int run_inspect(int argc, char** argv) {
  const char* usage = "lamina inspect -m GGUF";
  const std::vector<Option> options = {help_option, model_option};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 2, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) return print_help(usage, options), 0;
  if (!arguments->get("--model")) return report(usage_error(std::string("missing -m GGUF; usage: ") + usage));
  lamina::Result<lamina::gguf::File> file = lamina::gguf::File::open(*arguments->get("--model"));
  if (!file) return report(file.error());
  std::printf("%s: GGUF v%u, %zu metadata keys, %zu tensors, alignment %u\n\n", printable(file->name()).c_str(), file->version(),
              file->metadata().size(), file->tensors().size(), file->alignment());
  std::printf("metadata:\n");
  for (const auto& entry : file->metadata()) {
    std::printf("  %-44s %s\n", printable(entry.first).c_str(), describe_value(entry.second).c_str());
  }
  std::printf("\ntensors:\n  %-40s %-8s %-24s %12s\n", "name", "type", "shape", "bytes");
  std::uint64_t total = 0;
  for (const lamina::gguf::TensorInfo& tensor : file->tensors()) {
    std::string shape = "[";
    for (std::size_t i = 0; i < tensor.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(tensor.shape[i]);
    shape += "]";
    std::printf("  %-40s %-8s %-24s %12" PRIu64 "\n", printable(tensor.name).c_str(), lamina::dtype_name(tensor.dtype), shape.c_str(),
                tensor.size_bytes);
    total += tensor.size_bytes;
  }
  std::printf("\n%zu tensors, %.2f MiB of weights\n", file->tensors().size(), static_cast<double>(total) / (1024.0 * 1024.0));
  return 0;
}

void print_main_help() {
  std::printf(
      "lamina %s — run LLMs locally\n\n"
      "usage: lamina COMMAND [options]   (lamina COMMAND --help for its options)\n\n"
      "commands:\n"
      "  logits     evaluate token ids and write the logits after every position\n"
      "  generate   generate text from a prompt, streaming it\n"
      "  tokenize   print the token ids of a text\n"
      "  inspect    print a GGUF file's metadata and tensor table\n"
      "  synth      write a random-weight model with the shapes of a real one\n"
      "  bench      measure prompt and generation speed (tokens/s), like llama-bench\n"
      "  quantize   convert a model's weights to another type (q4_0, q4_k_m, q8_0, …)\n"
      "  batch-logits  evaluate several sequences, each with its own adapters, in one forward pass\n"
      "  explain    walk through a forward pass step by step and draw attention / logit-lens heatmaps\n"
      "  lora       merge adapters into a model (lora merge), or combine adapters into one (lora combine)\n"
      "  devices    list the Vulkan devices that --backend vulkan can use\n"
      "  template   render a chat template with the variables of a JSON file and print the prompt\n",
      LAMINA_VERSION_STRING);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_main_help();
    return 1;
  }
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") return print_main_help(), 0;
  if (command == "--version") return std::printf("lamina %s\n", LAMINA_VERSION_STRING), 0;
  if (command == "logits") return run_logits(argc, argv);
  if (command == "generate") return run_generate(argc, argv);
  if (command == "tokenize") return run_tokenize(argc, argv);
  if (command == "inspect") return run_inspect(argc, argv);
  if (command == "synth") return lamina_cli::run_synth(argc, argv);
  if (command == "bench") return lamina_cli::run_bench(argc, argv);
  if (command == "quantize") return lamina_cli::run_quantize(argc, argv);
  if (command == "batch-logits") return lamina_cli::run_batch_logits(argc, argv);
  if (command == "explain") return lamina_cli::run_explain(argc, argv);
  if (command == "lora") return lamina_cli::run_lora(argc, argv);
  if (command == "devices") return lamina_cli::run_devices(argc, argv);
  if (command == "template") return lamina_cli::run_template(argc, argv);
  std::fprintf(stderr, "lamina: unknown command '%s' (commands: logits, generate, tokenize, inspect, synth, bench, quantize, batch-logits, explain, lora, devices, template)\n",
               command.c_str());
  return 1;
}
