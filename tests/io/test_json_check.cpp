// Tests of lamina/io/json_check.hpp: the syntax pass that gives JSON errors a byte offset.
#include <lamina/io/json_check.hpp>

#include <doctest/doctest.h>

#include <string>

namespace {

std::string error_of(const std::string& text) {
  const lamina::Result<void> checked = lamina::check_json_syntax(text, "spec.json");
  REQUIRE_FALSE(checked.ok());
  CHECK(checked.error().code == lamina::ErrorCode::invalid_format);
  return checked.error().message;
}

}  // namespace

TEST_CASE("check_json_syntax: accepts JSON, says where and what is wrong otherwise") {
  CHECK(lamina::check_json_syntax(R"({"sequences": [{"tokens": [1, 2, 3.5e10]}]})", "spec.json").ok());
  // A number past double's range: where it starts, and the number.
  CHECK(error_of(R"({"sequences": [{"tokens": [1, 2, 1e400]}]})") ==
        "spec.json: at byte 33: invalid JSON: number overflow parsing '1e400'");
  // A syntax error: the offending byte, nlohmann's words without its exception prefix.
  CHECK(error_of(R"({"a": [1, 2,]})") ==
        "spec.json: at byte 12: invalid JSON: syntax error while parsing value - unexpected ']'; expected '[', '{', or a literal");
  CHECK(error_of("{\"a\": [1, 2") ==
        "spec.json: at byte 11: invalid JSON: syntax error while parsing array - unexpected end of input; expected ']'");
  // Nesting past 32 levels is refused before a DOM is built.
  CHECK(error_of(std::string(33, '[') + std::string(33, ']')) == "spec.json: JSON nested more than 32 levels deep");
  CHECK(lamina::check_json_syntax(std::string(32, '[') + std::string(32, ']'), "spec.json").ok());
}
