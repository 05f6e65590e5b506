// The pieces every `lamina` subcommand shares: declaring and parsing options, strict number
// parsing, help text, error reporting. Each subcommand is a function `int run_NAME(argc, argv)`
// in its own file (main.cpp: logits, generate, tokenize, inspect; synth.cpp, bench.cpp,
// quantize.cpp) that returns the process exit status: 0, or 1 with one message on stderr.
#pragma once

#include <lamina/lamina.hpp>
#include <lamina/adapters/peft.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace lamina_cli {

// ---------------------------------------------------------------------------------------------
// Argument parsing: every option is declared with the subcommand that takes it; anything else
// is an error. Values are checked strictly (no trailing garbage, in range).

struct Option {
  const char* long_name;
  const char* short_name;  // or nullptr
  bool takes_value;
  const char* help;
};

struct ParsedArguments {
  std::vector<std::pair<std::string, std::string>> values;  // (long name, value) in order
  std::vector<std::string> positionals;                      // only where the subcommand takes them
  bool has(const std::string& name) const {
    for (const auto& entry : values) if (entry.first == name) return true;
    return false;
  }
  const std::string* get(const std::string& name) const {
    const std::string* found = nullptr;
    for (const auto& entry : values) if (entry.first == name) found = &entry.second;
    return found;  // the last occurrence wins
  }
  std::vector<std::string> all(const std::string& name) const {
    std::vector<std::string> found;
    for (const auto& entry : values) if (entry.first == name) found.push_back(entry.second);
    return found;
  }
};

inline lamina::Error usage_error(const std::string& message) { return lamina::fail(lamina::ErrorCode::invalid_argument, message); }

// Parses argv[first ..]. With allow_positionals, arguments that do not start with '-' are
// collected in order (a lone "-" too); otherwise they are errors like unknown options.
inline lamina::Result<ParsedArguments> parse_arguments(int argc, char** argv, int first, const std::vector<Option>& options,
                                                       bool allow_positionals = false) {
  ParsedArguments parsed;
  for (int i = first; i < argc; ++i) {
    const std::string argument = argv[i];
    const Option* matched = nullptr;
    for (const Option& option : options) {
      if (argument == option.long_name || (option.short_name != nullptr && argument == option.short_name)) matched = &option;
    }
    if (matched == nullptr) {
      if (allow_positionals && (argument.empty() || argument[0] != '-' || argument == "-")) {
        parsed.positionals.push_back(argument);
        continue;
      }
      return usage_error("unknown option '" + argument + "' (see --help)");
    }
    std::string value;
    if (matched->takes_value) {
      if (i + 1 >= argc) return usage_error(std::string("option ") + matched->long_name + " needs a value");
      value = argv[++i];
    }
    parsed.values.emplace_back(matched->long_name, value);
  }
  return parsed;
}

inline lamina::Result<long long> parse_integer(const std::string& text, const char* option, long long minimum, long long maximum) {
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || end == text.c_str() || *end != '\0' || errno == ERANGE || value < minimum || value > maximum) {
    return usage_error(std::string("option ") + option + ": '" + text + "' is not an integer in [" + std::to_string(minimum) +
                       ", " + std::to_string(maximum) + "]");
  }
  return value;
}

inline lamina::Result<unsigned long long> parse_unsigned(const std::string& text, const char* option) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || end == text.c_str() || *end != '\0' || errno == ERANGE || text[0] == '-' || text[0] == '+' || text[0] == ' ') {
    return usage_error(std::string("option ") + option + ": '" + text + "' is not a non-negative integer");
  }
  return value;
}

inline lamina::Result<float> parse_float(const std::string& text, const char* option, double minimum, double maximum) {
  errno = 0;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end == text.c_str() || *end != '\0' || errno == ERANGE || !std::isfinite(value) || value < minimum ||
      value > maximum) {
    char range[96];
    std::snprintf(range, sizeof range, "[%g, %g]", minimum, maximum);
    return usage_error(std::string("option ") + option + ": '" + text + "' is not a number in " + range);
  }
  return static_cast<float>(value);
}

// "1 2 3" or "1,2,3" -> token ids.
inline lamina::Result<std::vector<lamina::Token>> parse_token_list(const std::string& text) {
  std::vector<lamina::Token> tokens;
  std::string current;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    const char c = i < text.size() ? text[i] : ' ';
    if (c == ' ' || c == ',' || c == '\t' || c == '\n') {
      if (current.empty()) continue;
      lamina::Result<long long> id = parse_integer(current, "--tokens", 0, 0x7fffffff);
      if (!id) return id.take_error();
      tokens.push_back(static_cast<lamina::Token>(*id));
      current.clear();
    } else {
      current += c;
    }
  }
  if (tokens.empty()) return usage_error("option --tokens: no token ids given");
  return tokens;
}

// A text input (tokenize --file): through lamina::read_regular_file, so a FIFO or device is
// refused at once and /dev/zero cannot fill memory. 64 MiB is far more text than anyone
// tokenizes in one command, and little enough to hold.
inline constexpr std::size_t max_text_file_bytes = std::size_t{64} << 20;
inline lamina::Result<std::string> read_whole_file(const std::string& path, std::size_t max_bytes = max_text_file_bytes) {
  return lamina::read_regular_file(path, max_bytes);
}

inline void print_help(const char* usage, const std::vector<Option>& options) {
  std::printf("usage: %s\n\noptions:\n", usage);
  for (const Option& option : options) {
    std::string names = option.short_name ? std::string(option.short_name) + ", " + option.long_name : std::string("    ") + option.long_name;
    std::printf("  %-22s %s\n", names.c_str(), option.help);
  }
}

inline int report(const lamina::Error& error) {
  std::fprintf(stderr, "lamina: %s\n", error.message.c_str());
  return 1;
}

inline const Option help_option{"--help", "-h", false, "show this help"};
inline const Option model_option{"--model", "-m", true, "GGUF model file"};
inline const Option lora_option{"--lora", nullptr, true, "LoRA adapter PATH[:SCALE] (repeatable)"};
// Text from the command line is plain, as a user typed it; --parse-special is for text built
// from a trusted template (see lamina::EncodeOptions::parse_special).
inline const Option parse_special_option{"--parse-special", nullptr, false,
                                         "cut control tokens such as </s> and <|im_end|> out of the text (trusted text only; default: plain text)"};
inline const Option threads_option{"--threads", "-t", true, "threads (default: all cores)"};

// One --lora value: PATH[:SCALE] (SCALE defaults to 1 and may be negative). A suffix after the
// last ':' that is not a number belongs to the path.
struct LoraArgument {
  std::string path;
  float scale = 1.0f;
};
inline lamina::Result<LoraArgument> parse_lora_argument(const std::string& text) {
  LoraArgument argument{text, 1.0f};
  const std::size_t colon = text.rfind(':');
  if (colon != std::string::npos && colon + 1 < text.size()) {
    const std::string suffix = text.substr(colon + 1);
    char* end = nullptr;
    errno = 0;
    const double scale = std::strtod(suffix.c_str(), &end);
    if (end != nullptr && *end == '\0' && end != suffix.c_str()) {
      if (errno != 0 || !std::isfinite(scale) || std::fabs(scale) > 1e6) return usage_error("--lora " + text + ": the scale is out of range");
      argument.path = text.substr(0, colon);
      argument.scale = static_cast<float>(scale);
    }
  }
  if (argument.path.empty()) return usage_error("--lora needs PATH[:SCALE]");
  return argument;
}

// Loads every --lora of the command line against `model`, in order (loading each file once).
inline lamina::Result<lamina::AdapterStack> load_lora_stack(const ParsedArguments& arguments, const lamina::Model& model) {
  lamina::AdapterStack stack;
  std::vector<std::pair<std::string, std::shared_ptr<const lamina::LoraAdapter>>> loaded;
  for (const std::string& text : arguments.all("--lora")) {
    lamina::Result<LoraArgument> argument = parse_lora_argument(text);
    if (!argument) return argument.take_error();
    std::shared_ptr<const lamina::LoraAdapter> adapter;
    for (const auto& entry : loaded) if (entry.first == argument->path) adapter = entry.second;
    if (adapter == nullptr) {
      lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> read = lamina::peft::load_adapter(model, argument->path);
      if (!read) return read.take_error();
      adapter = *read;
      loaded.emplace_back(argument->path, adapter);
    }
    stack.push_back({adapter, argument->scale});
  }
  return stack;
}

// --threads N (1..1024), or 0 ("all cores") when absent.
inline lamina::Result<std::uint32_t> thread_count_option(const ParsedArguments& arguments) {
  const std::string* text = arguments.get("--threads");
  if (text == nullptr) return std::uint32_t{0};
  lamina::Result<long long> count = parse_integer(*text, "--threads", 1, 1024);
  if (!count) return count.take_error();
  return static_cast<std::uint32_t>(*count);
}

inline const Option context_option{"--ctx", "-c", true, "longest sequence, in tokens (default: the model's context length)"};

// The longest sequence a command may evaluate: --ctx N (1 .. 2^24) when given, else the model's
// training context. A model is not asked about positions past it unless the user says so.
inline lamina::Result<std::uint32_t> context_length_option(const ParsedArguments& arguments, const lamina::Model& model) {
  const std::string* text = arguments.get("--ctx");
  if (text == nullptr) return model.hparams().context_length;
  lamina::Result<long long> length = parse_integer(*text, "--ctx", 1, lamina::max_session_context_length);
  if (!length) return length.take_error();
  return static_cast<std::uint32_t>(*length);
}

// Fails when a sequence of `token_count` tokens is longer than `context_length` (what
// context_length_option returned), naming where the limit came from.
inline lamina::Result<void> check_fits_context(std::size_t token_count, std::uint32_t context_length, const ParsedArguments& arguments,
                                               const lamina::Model& model, const std::string& what) {
  if (token_count <= context_length) return lamina::success();
  const std::string limit = arguments.has("--ctx") ? "--ctx " + std::to_string(context_length)
                                                   : "the model's context length " + std::to_string(context_length) + " ('" +
                                                         model.hparams().architecture_name + ".context_length')";
  return usage_error(what + " has " + std::to_string(token_count) + " tokens, more than " + limit +
                     "; pass --ctx N to evaluate longer sequences");
}

// "1.5 GiB", "12.0 MiB" …
inline std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024.0 && unit < 4) {
    bytes /= 1024.0;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.2f %s", bytes, units[unit]);
  return text;
}

// The subcommands defined outside main.cpp.
int run_synth(int argc, char** argv);
int run_bench(int argc, char** argv);
int run_quantize(int argc, char** argv);
int run_batch_logits(int argc, char** argv);
int run_explain(int argc, char** argv);
int run_lora(int argc, char** argv);  // lora.cpp: lora merge, lora combine
int run_template(int argc, char** argv);  // chat_template.cpp

}  // namespace lamina_cli
