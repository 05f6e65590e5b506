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

// Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm): gives the day of the
// week and of the year that %a, %A and %j print, without asking the C library's time zone.
long long days_from_civil(long long year, int month, int day) {
  year -= month <= 2;
  const long long era = (year >= 0 ? year : year - 399) / 400;
  const long long year_of_era = year - era * 400;
  const long long day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const long long day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

// "2026-12-01T09:30:00" (or with a space for the T, or a date alone) as the local time that
// strftime_now() formats. Anything else, or a date that does not exist, is an error.
lamina::Result<std::tm> parse_now(const std::string& text) {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  char separator = 'T';
  int consumed = 0;
  const bool date_only = text.size() == 10 && std::sscanf(text.c_str(), "%4d-%2d-%2d%n", &year, &month, &day, &consumed) == 3 && consumed == 10;
  const bool date_and_time = text.size() == 19 &&
                             std::sscanf(text.c_str(), "%4d-%2d-%2d%c%2d:%2d:%2d%n", &year, &month, &day, &separator, &hour, &minute, &second, &consumed) == 7 &&
                             consumed == 19 && (separator == 'T' || separator == ' ');
  bool digits = true;  // sscanf accepts signs and spaces inside the fields; ISO 8601 does not
  for (std::size_t i = 0; i < text.size(); ++i) {
    const bool digit_position = !(i == 4 || i == 7 || i == 10 || i == 13 || i == 16);
    if (digit_position && (text[i] < '0' || text[i] > '9')) digits = false;
  }
  static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  const bool valid = (date_only || date_and_time) && digits && month >= 1 && month <= 12 && day >= 1 &&
                     day <= (month == 2 && !leap ? 28 : month_days[month - 1]) && hour <= 23 && minute <= 59 && second <= 60;
  if (!valid) return usage_error("--now: '" + text + "' is not a date and time like 2026-12-01T09:30:00");
  std::tm now{};
  now.tm_year = year - 1900;
  now.tm_mon = month - 1;
  now.tm_mday = day;
  now.tm_hour = hour;
  now.tm_min = minute;
  now.tm_sec = second;
  const long long days = days_from_civil(year, month, day);
  now.tm_wday = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday
  now.tm_yday = static_cast<int>(days - days_from_civil(year, 1, 1));
  now.tm_isdst = -1;
  return now;
}

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

  lamina::Result<std::tm> now = arguments->get("--now") ? parse_now(*arguments->get("--now")) : local_time_now();
  if (!now) return report(now.error());

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
