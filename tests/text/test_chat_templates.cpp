// Chat templates (lamina/text/chat.hpp): every case in ../shared/chat/cases rendered byte for byte
// as Jinja2 3.1 + transformers rendered it (by render() and by render_prompt()), then the engine's behaviour on hostile templates
// (they must end with an error, quickly) and on syntax errors (they must say where).
#include <lamina/text/chat.hpp>

#include <doctest/doctest.h>

#include "../test_support.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#if !defined(_WIN32)
#  include <dirent.h>
#endif

namespace {

using nlohmann::ordered_json;

// Cases known to differ from Jinja2, as "file/case" with the reason in a comment. Empty: all 336
// cases pass. A listed case is still rendered, and the test fails once it passes, so the list
// stays true.
const std::vector<std::string> known_failing_cases = {};

bool is_known_failing(const std::string& name) {
  return std::find(known_failing_cases.begin(), known_failing_cases.end(), name) != known_failing_cases.end();
}

std::vector<std::string> case_files() {
  std::vector<std::string> names;
#if !defined(_WIN32)
  if (DIR* directory = opendir(lamina_test::shared_path("chat/cases").c_str())) {
    while (const dirent* entry = readdir(directory)) {
      const std::string name = entry->d_name;
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0) names.push_back(name);
    }
    closedir(directory);
  }
#endif
  std::sort(names.begin(), names.end());
  return names;
}

// "2026-12-01T09:30:00" as the broken-down local time strftime_now() formats.
std::tm parse_now(const std::string& text) {
  lamina::Result<std::tm> time = lamina::parse_local_time(text);
  REQUIRE_MESSAGE(time.ok(), text);
  return *time;
}

std::tm fixed_time() { return parse_now("2026-12-01T09:30:00"); }

lamina::Result<std::string> render(const std::string& source, const ordered_json& variables = ordered_json::object(),
                                   const lamina::ChatTemplateLimits& limits = {}) {
  lamina::Result<lamina::ChatTemplate> chat = lamina::ChatTemplate::parse(source, limits);
  if (!chat) return chat.take_error();
  return chat->render(variables, fixed_time());
}

std::string render_ok(const std::string& source, const ordered_json& variables = ordered_json::object()) {
  lamina::Result<std::string> out = render(source, variables);
  if (!out) {
    MESSAGE("error: " << out.error().message);
    return "<error>";
  }
  return *out;
}

}  // namespace

TEST_CASE("chat templates: every reference case renders as Jinja2 + transformers did") {
  const std::vector<std::string> files = case_files();
  if (files.empty()) {
    MESSAGE("no cases under " << lamina_test::shared_path("chat/cases") << "; skipped");
    return;
  }
  int passed = 0, total = 0, prompt_cases = 0;
  std::vector<std::string> failures;
  for (const std::string& file : files) {
    const ordered_json cases = ordered_json::parse(lamina_test::read_text_file(lamina_test::shared_path("chat/cases/" + file)), nullptr, false);
    REQUIRE_MESSAGE(cases.is_object(), file);
    REQUIRE(cases.contains("template"));
    const std::string source = lamina_test::read_text_file(lamina_test::shared_path("chat/" + cases["template"].get<std::string>()));
    lamina::Result<lamina::ChatTemplate> chat = lamina::ChatTemplate::parse(source);
    const std::tm now = parse_now(cases.value("now", std::string()));
    for (const ordered_json& one : cases["cases"]) {
      ++total;
      const std::string name = file.substr(0, file.size() - 5) + "/" + one["name"].get<std::string>();
      const bool expect_error = one.value("error", false);
      bool ok;
      std::string detail;
      if (!chat) {
        ok = expect_error;
        detail = "parse error: " + chat.error().message;
      } else {
        lamina::Result<std::string> out = chat->render(one["variables"], now);
        if (expect_error) {
          ok = !out;
          detail = "rendered where Jinja2 raised";
        } else if (!out) {
          ok = false;
          detail = "error: " + out.error().message;
        } else {
          ok = *out == one["expected"].get<std::string>();
          detail = "output differs";
          // Tracking which bytes the template wrote must not change a byte of the text.
          lamina::Result<lamina::RenderedPrompt> prompt = chat->render_prompt(one["variables"], now);
          if (ok && (!prompt || prompt->text != *out)) {
            ok = false;
            detail = "render_prompt() differs from render()";
          }
          if (prompt) prompt_cases += 1;
        }
      }
      if (is_known_failing(name)) {
        CHECK_MESSAGE(!ok, name << " is listed as failing but passes: remove it from known_failing_cases");
        continue;
      }
      if (ok) ++passed;
      else failures.push_back(name + ": " + detail);
    }
  }
  for (const std::string& failure : failures) MESSAGE(failure);
  MESSAGE(passed << " of " << total << " chat template cases pass (" << prompt_cases << " also through render_prompt)");
  CHECK(failures.empty());
  CHECK(total == 336);
}

TEST_CASE("chat templates: Jinja2 semantics that real templates lean on") {
  CHECK(render_ok("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.0 }} {{ 1e-5 }} {{ 0.1 + 0.2 }}") ==
        "3 -4 2 3.5 1024 1.0 1e-05 0.30000000000000004");
  CHECK(render_ok("{{ [1, 'a', none, true] }} {{ {'a': 1} }} {{ ('x',) }} {{ \"it's\" }}") == "[1, 'a', None, True] {'a': 1} ('x',) it's");
  CHECK(render_ok("{{ x }}|{{ x is defined }}|{{ x | default('d') }}|{% for i in x %}no{% endfor %}|{{ x | length }}") == "|False|d||0");
  CHECK(!render("{{ x.y }}"));                                  // attribute of Undefined raises
  CHECK(render_ok("{{ none.y is defined }}") == "False");         // attribute of None is Undefined
  CHECK(render_ok("{{ [1, 2][5] is defined }}{{ [1, 2][-1] }}") == "False2");  // out of range is Undefined
  CHECK(render_ok("{{ 'héllo'[1] }}{{ 'héllo'|length }}{{ 'abcdef'[::-2] }}{{ [1,2,3,4][1:3] }}") == "é5fdb[2, 3]");
  CHECK(render_ok("{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}={{ v }}{{ ',' if not loop.last }}{% endfor %}") == "b=1,a=2");
  CHECK(render_ok("{% for x in [1, 2, 3, 4] if x is even %}{{ loop.index }}/{{ loop.length }}:{{ x }} {% endfor %}") == "1/2:2 2/2:4 ");
  CHECK(render_ok("{% for x in [] %}a{% else %}empty{% endfor %}") == "empty");
  CHECK(render_ok("{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{% if x is odd %}{% continue %}{% endif %}{{ x }}{% endfor %}") == "02");
  CHECK(render_ok("{% set ns = namespace(n=0) %}{% for x in range(3) %}{% set ns.n = ns.n + x %}{% set local = 1 %}{% endfor %}{{ ns.n }}{{ local is defined }}") == "3False");
  CHECK(render_ok("{% macro greet(name, greeting='Hi') %}{{ greeting }} {{ name }}{% endmacro %}{{ greet('Ann') }}, {{ greet('Bo', greeting='Yo') }}") == "Hi Ann, Yo Bo");
  CHECK(render_ok("{% set block %} padded {% endset %}[{{ block | trim }}]") == "[padded]");
  CHECK(render_ok("{{ {'b': [1, 2.5], 'a': 'é\"\\n'} | tojson }}") == "{\"b\": [1, 2.5], \"a\": \"é\\\"\\n\"}");
  CHECK(render_ok("{{ {'a': [1]} | tojson(indent=2) }}") == "{\n  \"a\": [\n    1\n  ]\n}");
  CHECK(render_ok("{{ 'a' ~ 1 ~ none }}{{ 'x' if false }}{{ 'abc' | upper | replace('B', '-') }}") == "a1NoneA-C");
  CHECK(render_ok("{{ '  a b  '.strip().split(' ') }}{{ 'a,b'.split(',') | join('+') }}{{ 'ab'.startswith(('x', 'a')) }}") == "['a', 'b']a+bTrue");
  CHECK(render_ok("{{ [3, 1, 2] | sort | list }}{{ [{'n': 'b'}, {'n': 'a'}] | map(attribute='n') | join }}{{ [1, 1, 2] | unique | list }}") == "[1, 2, 3]ba[1, 2]");
  CHECK(render_ok("{{ [{'r': 'u'}, {'r': 's'}] | selectattr('r', 'equalto', 's') | list | length }}{{ {'b': 1, 'a': 2} | dictsort }}") == "1[('a', 2), ('b', 1)]");
  CHECK(render_ok("{{ 'x\ny' | indent(2) }}|{{ 'x\ny' | indent(2, true) }}") == "x\n  y|  x\n  y");
  CHECK(render_ok("{{ strftime_now('%d %B %Y') }}") == "01 December 2026");
  CHECK(render_ok("{{ 'a' | safe + '<b>' }}") == "a&lt;b&gt;");  // Markup + str escapes the str
  CHECK(render_ok("  {% if true %}\n  x\n  {% endif %}\n") == "  x\n");  // lstrip_blocks, trim_blocks, trailing newline
  CHECK(render_ok("a  {%- if true -%}  b  {%- endif -%}  c") == "abc");
  CHECK(render_ok("  {%+ if true %}x{% endif +%}\n") == "  x");  // the one newline at the very end goes, as in Jinja2
  CHECK(render_ok("{# comment #}\n{% raw %}{{ not rendered }}{% endraw %}") == "{{ not rendered }}");

  lamina::Result<std::string> raised = render("{{ raise_exception('no system role') }}");
  REQUIRE(!raised);
  CHECK(raised.error().message.find("no system role") != std::string::npos);
  CHECK(!render("{% set xs = [] %}{{ xs.append(1) }}"));  // the immutable sandbox refuses list.append
  CHECK(!render("{{ [1] | select | tojson }}"));           // a generator is not JSON
}

TEST_CASE("chat templates: hostile templates end with an error, quickly") {
  struct Hostile {
    const char* what;
    const char* source;
  };
  const Hostile hostile[] = {
      {"endless nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"},
      {"endless recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"},
      {"mutual recursion", "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}"},
      {"a gigantic string at once", "{{ 'x' * 1000000000 }}"},
      {"a gigantic string by doubling", "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"},
      {"a gigantic string by joining", "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(30) %}{% set ns.s = [ns.s, ns.s] | join %}{% endfor %}"},
      {"a gigantic output", "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}{% endfor %}"},
      {"a gigantic list", "{{ ([1] * 100000000) | length }}"},
      {"a list grown by doubling", "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}"},
      {"a range past the sandbox's limit", "{{ range(1000000000) | length }}"},
      {"a list nested 100000 deep, printed", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}"},
      {"a list nested 100000 deep, as JSON", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l | tojson }}"},
      {"an integer overflow", "{{ 2 ** 64 }}"},
      {"a replace that multiplies the text", "{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s.replace('x', 'xx') %}{% endfor %}"},
  };
  for (const Hostile& h : hostile) {
    const auto start = std::chrono::steady_clock::now();
    lamina::Result<std::string> out = render(h.source);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    INFO(std::string(h.what));
    CHECK(!out);
    if (!out) MESSAGE(std::string(h.what) << " (" << seconds << " s): " << out.error().message);
    CHECK(seconds < 10.0);
  }

  // Nesting deeper than the parser's limit: parentheses, blocks, and list literals.
  CHECK(!render("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}"));
  std::string nested_ifs;
  for (int i = 0; i < 10000; ++i) nested_ifs += "{% if true %}";
  for (int i = 0; i < 10000; ++i) nested_ifs += "{% endif %}";
  CHECK(!render(nested_ifs));
  CHECK(!render("{{ " + std::string(100000, '[') + std::string(100000, ']') + " }}"));
  CHECK(!render("{{ " + [] { std::string s; for (int i = 0; i < 100000; ++i) s += "not "; return s; }() + "x }}"));

  // Variables nested deeper than max_depth are refused before rendering starts.
  ordered_json deep = ordered_json::array();
  for (int i = 0; i < 1000; ++i) deep = ordered_json::array({deep});
  CHECK(!render("{{ deep }}", ordered_json{{"deep", deep}}));

  // A small step budget stops a modest loop; the same template renders with the default one.
  lamina::ChatTemplateLimits tight;
  tight.max_steps = 1000;
  CHECK(!render("{% for i in range(10000) %}{{ i }}{% endfor %}", ordered_json::object(), tight));
  CHECK(render("{% for i in range(10000) %}{{ i }}{% endfor %}"));
}

TEST_CASE("chat templates: syntax errors say where") {
  struct Broken {
    const char* source;
    const char* position;
  };
  const Broken broken[] = {
      {"hello {{ name ", "line 1, column 7"},
      {"line one\n{% if x %}\nno end", "line 3, column 7"},
      {"{% for x in %}{% endfor %}", "line 1, column 13"},
      {"a\nb {% frobnicate %}", "line 2, column 6"},
      {"{{ 'unclosed }}", "line 1, column 4"},
      {"{% if x %}{% endfor %}", "line 1, column 14"},
      {"{# never closed", "line 1, column 1"},
      {"{{ a + }}", "line 1, column 8"},
      {"{% break %}", "line 1, column 4"},
  };
  for (const Broken& b : broken) {
    lamina::Result<lamina::ChatTemplate> chat = lamina::ChatTemplate::parse(b.source);
    INFO(std::string(b.source));
    REQUIRE(!chat);
    CHECK(chat.error().code == lamina::ErrorCode::invalid_format);
    CHECK_MESSAGE(chat.error().message.rfind(b.position, 0) == 0, chat.error().message);
  }
}
