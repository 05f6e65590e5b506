// lamina/text/chat.hpp — chat templates: the Jinja text a model ships in tokenizer.chat_template,
// rendered as transformers' apply_chat_template renders it (Jinja2 3.1, sandboxed, trim_blocks,
// lstrip_blocks, loop controls, {% generation %}, tojson as Python's json.dumps, raise_exception,
// strftime_now), byte for byte.
//
// NOT part of the umbrella header: it needs nlohmann/json for the variables. The engine is in
// lamina/text/jinja.hpp (internal), and so is ChatTemplateLimits, the bounds on one render.
//
//   lamina::Result<lamina::ChatTemplate> chat = lamina::ChatTemplate::parse(template_text);
//   if (!chat) return chat.take_error();  // "line 3, column 14: expected end of statement block, got 'foo'"
//   nlohmann::ordered_json variables = {{"messages", messages}, {"add_generation_prompt", true},
//                                       {"bos_token", "<s>"}, {"eos_token", "</s>"}};
//   std::tm now = ...;  // what strftime_now() formats: the caller fixes the time, rendering reads no clock
//   lamina::Result<std::string> prompt = chat->render(variables, now);
//
// To tokenize a prompt safely, render_prompt() also says which bytes the template itself wrote
// (its text and string literals, also where concatenated with other strings), so that control
// tokens are cut out only there and a "<|im_end|>" a player typed stays plain text:
//   lamina::Result<lamina::RenderedPrompt> prompt = chat->render_prompt(variables, now, {"bos_token", "eos_token"});
//   lamina::EncodeOptions options;
//   options.parse_special = true;
//   options.special_ranges = prompt->template_ranges;
//   tokenizer.encode(prompt->text, options);
// Every string from the variables is untrusted, and so is a string computed from one other than by
// concatenation (`+`, `~`, join keep each piece's provenance; slicing, trim, replace, tojson,
// str() of a list holding one ... make the whole result untrusted). Numbers printed are trusted.
//
// Pass the variables as nlohmann::ordered_json: templates print dicts (tojson of tool schemas) in
// their key order, which plain nlohmann::json loses (it sorts keys; that overload is accepted and
// renders with sorted keys).
//
// Jinja2 as transformers configures it, in the details templates notice:
//   - ImmutableSandboxedEnvironment: list.append, dict.update and the other methods that modify a
//     list or dict are refused (an error when called); `{% set ns.x = ... %}` on a namespace()
//     is the way to carry state out of a loop; range() gives at most 100,000 items;
//   - select, reject, selectattr, rejectattr, map, unique, items and reverse give generators, as
//     in Jinja2: always true, no length, not JSON (tojson fails), consumed by one loop; `| list`
//     makes a list;
//   - `|safe` makes Markup, and Markup + str HTML-escapes the str (markupsafe's rule);
//   - an unknown filter or test is an error when reached (Jinja2 may report it at parse time).
// What differs from Jinja2 (none of it is used by the chat templates lamina is tested on):
//   - no {% include %}, {% import %}, {% extends %}/{% block %}, recursive loops, {% with %},
//     str.format or the % operator on strings;
//   - upper/lower change ASCII, Latin-1 and basic Greek and Cyrillic letters only, title and
//     capitalize ASCII letters only;
//   - integers are 64-bit (an overflow or a literal past 2**63 is an error, where Python grows the
//     integer); range() makes a list (it prints as a list, not as "range(0, 3)"); generators and
//     methods print without Python's addresses;
//   - a namespace may not hold itself (`{% set ns.me = ns %}` is an error: Python's collector
//     frees such cycles, lamina's shared ownership could not), nor a value nested over max_depth;
//   - a macro stored in a namespace and called after the loop iteration that defined it ended is
//     an error;
//   - no HTML autoescaping (transformers does not enable it either).
// Errors (ErrorCode::invalid_format for syntax, ErrorCode::invalid_argument at render) start with
// "line L, column C: " where the template is at fault; raise_exception(message) gives `message`.
#pragma once

#include "../config.hpp"
#include "../core/result.hpp"
#include "jinja.hpp"
#include "text_range.hpp"

#include <nlohmann/json.hpp>

#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

LAMINA_NAMESPACE_BEGIN

namespace detail {
// Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm): gives the day of the week
// and of the year that %a, %A and %j print, without asking the C library's time zone.
inline long long days_from_civil(long long year, int month, int day) {
  year -= month <= 2;
  const long long era = (year >= 0 ? year : year - 399) / 400;
  const long long year_of_era = year - era * 400;
  const long long day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const long long day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}
}  // namespace detail

// "2026-12-01T09:30:00" (or with a space for the T, or a date alone) as the broken-down local
// time that strftime_now() formats, with its day of the week and of the year. Anything else, or
// a date that does not exist, is ErrorCode::invalid_argument.
inline Result<std::tm> parse_local_time(std::string_view text) {
  const bool date_only = text.size() == 10, date_and_time = text.size() == 19 && (text[10] == 'T' || text[10] == ' ');
  bool shaped = date_only || date_and_time;
  for (std::size_t i = 0; shaped && i < text.size(); ++i) {
    if (i == 10) continue;
    const char separator = i == 4 || i == 7 ? '-' : (i == 13 || i == 16 ? ':' : '\0');
    shaped = separator != '\0' ? text[i] == separator : (text[i] >= '0' && text[i] <= '9');
  }
  const auto number = [&](std::size_t at, std::size_t digits) {
    int value = 0;
    for (std::size_t i = at; i < at + digits; ++i) value = value * 10 + (text[i] - '0');
    return value;
  };
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (shaped) {
    year = number(0, 4), month = number(5, 2), day = number(8, 2);
    if (date_and_time) hour = number(11, 2), minute = number(14, 2), second = number(17, 2);
  }
  static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  const bool valid = shaped && month >= 1 && month <= 12 && day >= 1 && day <= (month == 2 && !leap ? 28 : month_days[month - 1]) &&
                     hour <= 23 && minute <= 59 && second <= 60;
  if (!valid) return fail(ErrorCode::invalid_argument, "'" + std::string(text) + "' is not a date and time like 2026-12-01T09:30:00");
  std::tm time{};
  time.tm_year = year - 1900;
  time.tm_mon = month - 1;
  time.tm_mday = day;
  time.tm_hour = hour;
  time.tm_min = minute;
  time.tm_sec = second;
  const long long days = detail::days_from_civil(year, month, day);
  time.tm_wday = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday
  time.tm_yday = static_cast<int>(days - detail::days_from_civil(year, 1, 1));
  time.tm_isdst = -1;
  return time;
}

// A rendered prompt and where its bytes came from.
struct RenderedPrompt {
  std::string text;
  // The bytes of `text` the template wrote (sorted, not overlapping, not adjacent): where control
  // tokens may be cut out. Pass as EncodeOptions::special_ranges, with parse_special = true.
  std::vector<TextRange> template_ranges;
};

class ChatTemplate {
 public:
  // Parses `source`; a syntax error names its line and column.
  static Result<ChatTemplate> parse(std::string_view source, const ChatTemplateLimits& limits = {});

  // Renders with `variables` (a JSON object: messages, tools, add_generation_prompt, bos_token,
  // eos_token, anything else the template reads) and `now`, the local time strftime_now() formats.
  Result<std::string> render(const nlohmann::ordered_json& variables, const std::tm& now) const;
  Result<std::string> render(const nlohmann::json& variables, const std::tm& now) const;

  // As render(), and which bytes of the text the template wrote. `trusted_variables` names
  // top-level variables whose strings count as the template's own: those the application sets
  // and no user can type into, such as {"bos_token", "eos_token"} from the model's vocabulary.
  Result<RenderedPrompt> render_prompt(const nlohmann::ordered_json& variables, const std::tm& now,
                                       const std::vector<std::string>& trusted_variables = {}) const;
  Result<RenderedPrompt> render_prompt(const nlohmann::json& variables, const std::tm& now,
                                       const std::vector<std::string>& trusted_variables = {}) const;

  const ChatTemplateLimits& limits() const { return program_->limits; }

 private:
  // Parsed once, shared by copies (immutable after parsing).
  struct Program {
    std::string source;  // newlines normalized: line and column refer to this text
    ChatTemplateLimits limits;
    detail::jinja::Body body;
  };
  template <class Json>
  Result<RenderedPrompt> render_json(const Json& variables, const std::tm& now, const std::vector<std::string>& trusted_variables) const;

  std::shared_ptr<const Program> program_;
};

inline Result<ChatTemplate> ChatTemplate::parse(std::string_view source, const ChatTemplateLimits& limits) {
  auto program = std::make_shared<Program>();
  program->limits = limits;
  // As Jinja2 reads a template: "\r\n" and "\r" become "\n", and one newline at the very end goes
  // (keep_trailing_newline=False).
  program->source.reserve(source.size());
  for (std::size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      program->source += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      program->source += source[i];
    }
  }
  if (!program->source.empty() && program->source.back() == '\n') program->source.pop_back();

  Result<std::vector<detail::jinja::Token>> tokens = detail::jinja::Lexer(program->source).run();
  if (!tokens) return tokens.take_error();
  Result<detail::jinja::Body> body = detail::jinja::Parser(program->source, std::move(*tokens), program->limits).run();
  if (!body) return body.take_error();
  program->body = std::move(*body);
  ChatTemplate result;
  result.program_ = std::move(program);
  return result;
}

template <class Json>
Result<RenderedPrompt> ChatTemplate::render_json(const Json& variables, const std::tm& now, const std::vector<std::string>& trusted_variables) const {
  using namespace detail::jinja;
  if (!program_) return fail(ErrorCode::invalid_state, "render() on a ChatTemplate that was not parsed");
  if (!variables.is_object() && !variables.is_null()) return fail(ErrorCode::invalid_argument, "chat template variables must be a JSON object");
  Interpreter interpreter(program_->source, program_->limits, now);
  auto root = std::make_shared<Scope>();
  bool too_deep = false;
  if (variables.is_object())
    for (auto it = variables.begin(); it != variables.end(); ++it) {
      Value value = from_json(it.value(), program_->limits.max_depth, too_deep);
      for (const std::string& trusted : trusted_variables)
        if (trusted == it.key()) trust_strings(value, program_->limits.max_depth);
      root->set(it.key(), std::move(value));
    }
  if (too_deep)
    return fail(ErrorCode::invalid_argument, "chat template variables nested more than " + std::to_string(program_->limits.max_depth) + " levels deep");
  TrackedText out;
  interpreter.execute(program_->body, root, out);
  if (interpreter.failed()) return fail(ErrorCode::invalid_argument, interpreter.error);
  RenderedPrompt prompt;
  prompt.template_ranges = out.trusted_ranges();
  prompt.text = std::move(out.text);
  return prompt;
}

inline Result<std::string> ChatTemplate::render(const nlohmann::ordered_json& variables, const std::tm& now) const {
  Result<RenderedPrompt> prompt = render_json(variables, now, {});
  if (!prompt) return prompt.take_error();
  return std::move(prompt->text);
}
inline Result<std::string> ChatTemplate::render(const nlohmann::json& variables, const std::tm& now) const {
  Result<RenderedPrompt> prompt = render_json(variables, now, {});
  if (!prompt) return prompt.take_error();
  return std::move(prompt->text);
}
inline Result<RenderedPrompt> ChatTemplate::render_prompt(const nlohmann::ordered_json& variables, const std::tm& now,
                                                          const std::vector<std::string>& trusted_variables) const {
  return render_json(variables, now, trusted_variables);
}
inline Result<RenderedPrompt> ChatTemplate::render_prompt(const nlohmann::json& variables, const std::tm& now,
                                                          const std::vector<std::string>& trusted_variables) const {
  return render_json(variables, now, trusted_variables);
}

LAMINA_NAMESPACE_END
