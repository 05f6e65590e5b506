// libFuzzer target for lamina/text/chat.hpp (the Jinja parser and interpreter).
//
// The input is a template. It is parsed; when it parses, it is rendered twice with a fixed
// conversation (system, user and assistant turns, a tool call and its result, tools, the
// generation prompt): either an error with a message or text within the output limit, and the
// same both times. Limits are lowered so that each input runs in milliseconds; a template that
// loops, recurses or builds huge strings must end with an error, never hang or crash.
//
// Seeds: the 48 real templates of ../shared/chat/templates (copied into a scratch corpus, never
// into the repo) and a few small ones this file writes:
//   LAMINA_FUZZ_WRITE_SEEDS=/tmp/chat-corpus ./chat_template_fuzz   (writes the seeds, then exits)
//   ./chat_template_fuzz /tmp/chat-corpus -max_len=16384 -rss_limit_mb=2048 -max_total_time=600
#include <lamina/text/chat.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>
#include <string_view>

#if defined(__unix__) || defined(__APPLE__)
#  include <dirent.h>
#endif

namespace {

void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "chat_template_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

void write_seeds(const std::string& directory) {
  const char* const small[] = {
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
      "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content | trim }} [/INST]"
      "{% elif m.role == 'assistant' %}{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}",
      "{% set ns = namespace(n=0) %}{% for m in messages if m.content is string %}{% set ns.n = ns.n + 1 %}"
      "{{ loop.index }}:{{ m.content[:8] }}{% endfor %}{{ ns.n }}{{ tools | tojson(indent=2) }}",
      "{% macro show(x, depth=0) %}{% if x is mapping %}{% for k, v in x.items() %}{{ k }}={{ show(v, depth + 1) }}"
      "{% endfor %}{% else %}{{ x }}{% endif %}{% endmacro %}{{ show(tools[0]) }}{{ strftime_now('%Y-%m-%d') }}",
  };
  int index = 0;
  for (const char* text : small) write_file(directory + "/small-" + std::to_string(index++) + ".jinja", text);
#if defined(__unix__) || defined(__APPLE__)
  const char* shared = std::getenv("LAMINA_SHARED_DIR");
  const std::string templates = std::string(shared != nullptr ? shared : "../shared") + "/chat/templates";
  if (DIR* folder = ::opendir(templates.c_str())) {
    while (const dirent* entry = ::readdir(folder)) {
      const std::string name = entry->d_name;
      if (name.size() < 7 || name.compare(name.size() - 6, 6, ".jinja") != 0) continue;
      std::ifstream in(templates + "/" + name, std::ios::binary);
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      write_file(directory + "/" + name, text);
    }
    ::closedir(folder);
  }
#endif
}

const nlohmann::ordered_json& conversation() {
  static const nlohmann::ordered_json variables = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are a ship's computer."},
      {"role": "user", "content": "Status?<|im_end|> {{ 7 * 7 }}"},
      {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "scan", "arguments": {"range": 3}}}]},
      {"role": "tool", "content": "{\"contacts\": 2}"},
      {"role": "assistant", "content": "Two contacts."},
      {"role": "user", "content": [{"type": "text", "text": "And now? é ✓"}]}
    ],
    "tools": [{"type": "function", "function": {"name": "scan", "description": "Scans space.",
               "parameters": {"type": "object", "properties": {"range": {"type": "integer"}}, "required": ["range"]}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"
  })");
  return variables;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* directory = std::getenv("LAMINA_FUZZ_WRITE_SEEDS")) {
    write_seeds(directory);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  lamina::ChatTemplateLimits limits;
  limits.max_steps = 200000;
  limits.max_depth = 64;
  limits.max_output_bytes = 1 << 20;
  const std::string_view source(reinterpret_cast<const char*>(data), size);
  lamina::Result<lamina::ChatTemplate> parsed = lamina::ChatTemplate::parse(source, limits);
  if (!parsed) {
    check(!parsed.error().message.empty(), "a parse error has a message");
    return 0;
  }
  std::tm now{};
  now.tm_year = 126, now.tm_mon = 11, now.tm_mday = 1, now.tm_hour = 9, now.tm_min = 30;
  lamina::Result<std::string> first = parsed->render(conversation(), now);
  lamina::Result<std::string> second = parsed->render(conversation(), now);
  check(first.ok() == second.ok(), "rendering twice gives the same outcome");
  if (!first) {
    check(!first.error().message.empty(), "a render error has a message");
    return 0;
  }
  check(first->size() <= limits.max_output_bytes, "the output stays within max_output_bytes");
  check(*first == *second, "rendering twice gives the same text");
  return 0;
}
