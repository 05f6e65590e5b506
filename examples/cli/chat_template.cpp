// lamina template — render a chat template (the Jinja text of tokenizer.chat_template) with the
// variables of a JSON file, as transformers' apply_chat_template would, and print the text.
//
//   lamina template --template qwen2.5.jinja --vars chat.json --now 2026-12-01T09:30:00
//
// chat.json is an object: {"messages": [...], "add_generation_prompt": true, "bos_token": "<s>", ...}.
// Its key order is kept (templates print tool schemas in it). stdout gets exactly the rendered
// text, no newline added, so that it can be compared byte for byte or piped to `lamina tokenize`.
#include "cli_common.hpp"

#include <lamina/io/json_check.hpp>
#include <lamina/text/chat.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

namespace lamina_cli {

namespace {

lamina::Result<std::tm> local_time_now() {
  const std::time_t seconds = std::time(nullptr);
  std::tm now{};
#if defined(_WIN32)
  if (localtime_s(&now, &seconds) != 0) return lamina::fail(lamina::ErrorCode::io, "cannot read the local time");
#else
  if (localtime_r(&seconds, &now) == nullptr) return lamina::fail(lamina::ErrorCode::io, "cannot read the local time");
#endif
  return now;
}

// The error on one line: a template's raise_exception() message may hold newlines.
int report_one_line(const lamina::Error& error) {
  lamina::Error flat = error;
  std::string message;
  for (const char c : error.message) message += c == '\n' ? std::string("\\n") : c == '\r' ? std::string("\\r") : std::string(1, c);
  flat.message = message;
  return report(flat);
}

}  // namespace

int run_template(int argc, char** argv) {
  const char* usage = "lamina template --template FILE.jinja --vars VARS.json [--now 2026-12-01T09:30:00]";
  const std::vector<Option> options = {help_option,
                                       {"--template", nullptr, true, "the chat template (Jinja text, as in tokenizer.chat_template)"},
                                       {"--vars", nullptr, true, "a JSON object: messages, add_generation_prompt, bos_token, tools ..."},
                                       {"--now", nullptr, true, "the local time strftime_now() formats (default: now)"}};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 2, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) return print_help(usage, options), 0;
  if (!arguments->get("--template") || !arguments->get("--vars")) return report(usage_error(std::string("missing option; usage: ") + usage));

  lamina::Result<std::tm> now = arguments->get("--now") ? lamina::parse_local_time(*arguments->get("--now")) : local_time_now();
  if (!now) return report(arguments->get("--now") ? usage_error("--now: " + now.error().message) : now.error());

  const std::string& template_path = *arguments->get("--template");
  lamina::Result<std::string> source = read_whole_file(template_path);
  if (!source) return report_one_line(source.error());
  lamina::Result<lamina::ChatTemplate> chat = lamina::ChatTemplate::parse(*source);
  if (!chat) return report_one_line(lamina::fail(chat.error().code, template_path + ": " + chat.error().message));

  const std::string& vars_path = *arguments->get("--vars");
  lamina::Result<std::string> vars_text = read_whole_file(vars_path);
  if (!vars_text) return report_one_line(vars_text.error());
  // The syntax check names the byte at fault (and bounds the nesting) where nlohmann's parse
  // without exceptions would only say that it failed.
  lamina::Result<void> syntax = lamina::check_json_syntax(*vars_text, vars_path);
  if (!syntax) return report_one_line(syntax.error());
  const nlohmann::ordered_json variables = nlohmann::ordered_json::parse(*vars_text, nullptr, false);  // no exceptions
  if (variables.is_discarded()) return report(lamina::fail(lamina::ErrorCode::invalid_format, vars_path + ": invalid JSON"));
  if (!variables.is_object()) return report(lamina::fail(lamina::ErrorCode::invalid_format, vars_path + ": not a JSON object"));

  lamina::Result<std::string> text = chat->render(variables, *now);
  if (!text) return report_one_line(lamina::fail(text.error().code, template_path + ": " + text.error().message));
  if (std::fwrite(text->data(), 1, text->size(), stdout) != text->size() || std::fflush(stdout) != 0) {
    return report(lamina::fail(lamina::ErrorCode::io, "cannot write the rendered text to stdout"));
  }
  return 0;
}

}  // namespace lamina_cli
