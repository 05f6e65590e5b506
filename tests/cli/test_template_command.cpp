// `lamina template` (examples/cli/chat_template.cpp), run as a program: reference cases from
// ../shared/chat print exactly their expected text with exit status 0; bad files, bad JSON, a bad
// --now and a template's raise_exception() exit 1 with one line on stderr; a FIFO or a directory
// given as the template is an error at once, not a wait.
#include <doctest/doctest.h>

#include "../test_support.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#if defined(LAMINA_TEST_CLI_PATH) && !defined(_WIN32)
#  include <sys/stat.h>
#  include <sys/types.h>
#  include <sys/wait.h>
#  include <unistd.h>

namespace {

struct Run {
  int status = -1;
  std::string out;
  std::string err;
};

std::string quoted(const std::string& argument) {
  std::string out = "'";
  for (const char c : argument) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

Run run_cli(const std::vector<std::string>& arguments) {
  const std::string out_path = lamina_test::temp_path("template-stdout"), err_path = lamina_test::temp_path("template-stderr");
  std::string command = quoted(LAMINA_TEST_CLI_PATH);
  for (const std::string& argument : arguments) command += " " + quoted(argument);
  command += " >" + quoted(out_path) + " 2>" + quoted(err_path) + " </dev/null";
  Run run;
  const int status = std::system(command.c_str());
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = lamina_test::read_text_file(out_path);
  run.err = lamina_test::read_text_file(err_path);
  std::remove(out_path.c_str());
  std::remove(err_path.c_str());
  return run;
}

bool one_line(const std::string& text) {
  return !text.empty() && text.back() == '\n' && text.find('\n') == text.size() - 1;
}

void check_fails(const std::vector<std::string>& arguments, const std::string& expected_part) {
  const Run run = run_cli(arguments);
  INFO("stderr: " << run.err);
  CHECK(run.status == 1);
  CHECK(run.out.empty());
  CHECK(one_line(run.err));
  CHECK(run.err.find(expected_part) != std::string::npos);
}

}  // namespace

TEST_CASE("lamina template: reference cases print exactly the expected text") {
  int checked = 0;
  for (const char* file : {"Qwen-Qwen2.5-7B-Instruct", "meta-llama-Llama-3.1-8B-Instruct", "google-gemma-2-2b-it", "openai-gpt-oss-120b"}) {
    const std::string cases_path = lamina_test::shared_path("chat/cases/" + std::string(file) + ".json");
    LAMINA_REQUIRE_SHARED("chat/cases/" + std::string(file) + ".json");
    const nlohmann::ordered_json cases = nlohmann::ordered_json::parse(lamina_test::read_text_file(cases_path), nullptr, false);
    REQUIRE(cases.is_object());
    const std::string template_path = lamina_test::shared_path("chat/" + cases["template"].get<std::string>());
    for (const nlohmann::ordered_json& one : cases["cases"]) {
      if (one.value("error", false)) continue;
      INFO(file << "/" << one["name"].get<std::string>());
      const std::string vars_path = lamina_test::temp_path("template-vars.json");
      REQUIRE(lamina_test::write_text_file(vars_path, one["variables"].dump()));
      std::vector<std::string> arguments = {"template", "--template", template_path, "--vars", vars_path};
      if (cases.contains("now")) arguments.insert(arguments.end(), {"--now", cases["now"].get<std::string>()});
      const Run run = run_cli(arguments);
      std::remove(vars_path.c_str());
      INFO("stderr: " << run.err);
      CHECK(run.status == 0);
      CHECK(run.err.empty());
      CHECK(run.out == one["expected"].get<std::string>());
      ++checked;
    }
  }
  CHECK(checked >= 8);
}

TEST_CASE("lamina template: errors exit 1 with one line on stderr") {
  const std::string template_path = lamina_test::temp_path("template.jinja"), vars_path = lamina_test::temp_path("template-vars.json");
  REQUIRE(lamina_test::write_text_file(template_path, "{{ messages[0].content }}"));
  REQUIRE(lamina_test::write_text_file(vars_path, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}"));
  {
    const Run run = run_cli({"template", "--template", template_path, "--vars", vars_path, "--now", "2026-12-01T09:30:00"});
    CHECK(run.status == 0);
    CHECK(run.out == "hi");
  }
  const std::string missing = lamina_test::temp_path("no-such-file.jinja");
  check_fails({"template", "--template", missing, "--vars", vars_path}, "no-such-file.jinja");
  check_fails({"template", "--template", template_path, "--vars", missing}, "no-such-file.jinja");
  check_fails({"template", "--template", template_path}, "missing option");
  check_fails({"template", "--template", template_path, "--vars", vars_path, "--now", "yesterday"}, "--now");
  check_fails({"template", "--template", template_path, "--vars", vars_path, "--now", "2026-02-30T09:30:00"}, "--now");

  const std::string bad_json = lamina_test::temp_path("template-bad.json");
  REQUIRE(lamina_test::write_text_file(bad_json, "{\"messages\": ["));
  check_fails({"template", "--template", template_path, "--vars", bad_json}, "invalid JSON");
  REQUIRE(lamina_test::write_text_file(bad_json, "[1, 2]"));
  check_fails({"template", "--template", template_path, "--vars", bad_json}, "not a JSON object");

  const std::string raising = lamina_test::temp_path("template-raise.jinja");
  REQUIRE(lamina_test::write_text_file(raising, "{{ raise_exception('System role not supported\nat all') }}"));
  check_fails({"template", "--template", raising, "--vars", vars_path}, "System role not supported");
  REQUIRE(lamina_test::write_text_file(raising, "{% if %}"));
  check_fails({"template", "--template", raising, "--vars", vars_path}, "line 1, column");

  // Hostile paths: a directory and a FIFO (opening a FIFO for reading waits for a writer).
  check_fails({"template", "--template", lamina_test::shared_path("chat"), "--vars", vars_path}, "chat");
  const std::string fifo = lamina_test::temp_path("template-fifo");
  std::remove(fifo.c_str());
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  check_fails({"template", "--template", fifo, "--vars", vars_path}, "template-fifo");
  check_fails({"template", "--template", template_path, "--vars", fifo}, "template-fifo");

  for (const std::string& path : {template_path, vars_path, bad_json, raising, fifo}) std::remove(path.c_str());
}

#endif  // LAMINA_TEST_CLI_PATH
