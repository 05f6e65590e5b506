// Tests for lamina/io/peft_config.hpp: the shared PEFT adapter configs, PEFT's module matching
// and rank/alpha pattern rules, and bad configs, each giving an error naming the file and key.
#include <lamina/io/peft_config.hpp>

#include <doctest/doctest.h>

#include "../test_support.hpp"

#include <cmath>
#include <string>
#include <vector>

using lamina::ErrorCode;
namespace peft = lamina::peft;

namespace {

bool contains_text(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

peft::AdapterConfig parse_ok(const std::string& text) {
  lamina::Result<peft::AdapterConfig> config = peft::parse_adapter_config(text, "adapter_config.json");
  REQUIRE_MESSAGE(config.ok(), config.error().message);
  return *config;
}

void expect_error(const std::string& text, ErrorCode code, std::vector<std::string> parts) {
  lamina::Result<peft::AdapterConfig> config = peft::parse_adapter_config(text, "bad/adapter_config.json");
  REQUIRE_FALSE(config.ok());
  INFO(config.error().message);
  CHECK(config.error().code == code);
  CHECK(contains_text(config.error().message, "bad/adapter_config.json: "));
  for (const std::string& part : parts) CHECK(contains_text(config.error().message, part));
}

bool full_match(const std::string& pattern, const std::string& text) {
  lamina::peft::detail::Regex regex;
  const std::string why = regex.compile(pattern);
  REQUIRE_MESSAGE(why.empty(), pattern << ": " << why);
  return regex.full_match(text);
}

}  // namespace

TEST_CASE("peft config: the shared adapters") {
  LAMINA_REQUIRE_SHARED("adapters/lora-a-peft/adapter_config.json");
  lamina::Result<peft::AdapterConfig> a = peft::read_adapter_config(lamina_test::shared_path("adapters/lora-a-peft"));
  REQUIRE_MESSAGE(a.ok(), a.error().message);
  CHECK(a->peft_type == "LORA");
  CHECK(a->r == 8);
  CHECK(a->lora_alpha == 16.0);
  CHECK_FALSE(a->use_rslora);
  CHECK_FALSE(a->use_dora);
  CHECK_FALSE(a->fan_in_fan_out);
  CHECK_FALSE(a->all_linear);
  CHECK(a->target_modules == std::vector<std::string>{"q_proj", "v_proj"});
  CHECK(a->base_model_name_or_path == "synth-llama");
  CHECK(peft::targets_module(*a, "model.layers.0.self_attn.q_proj"));
  CHECK(peft::targets_module(*a, "model.layers.1.self_attn.v_proj"));
  CHECK_FALSE(peft::targets_module(*a, "model.layers.0.self_attn.k_proj"));
  CHECK_FALSE(peft::targets_module(*a, "model.layers.0.self_attn.xq_proj"));
  const peft::RankAlpha ra = peft::effective_rank_alpha(*a, "model.layers.0.self_attn.q_proj");
  CHECK(ra.rank == 8);
  CHECK(ra.alpha == 16.0);
  CHECK(peft::scaling(*a, ra.rank, ra.alpha) == 2.0);

  lamina::Result<peft::AdapterConfig> d = peft::read_adapter_config(lamina_test::shared_path("adapters/lora-d-peft"));
  REQUIRE(d.ok());
  CHECK(d->use_dora);
  CHECK(d->r == 4);
  CHECK(peft::targets_module(*d, "model.layers.0.mlp.up_proj"));
  CHECK_FALSE(peft::targets_module(*d, "model.layers.0.mlp.down_proj"));

  // lora-e: rsLoRA, rank_pattern {v_proj: 4}, alpha_pattern {o_proj: 32}.
  lamina::Result<peft::AdapterConfig> e = peft::read_adapter_config(lamina_test::shared_path("adapters/lora-e-peft"));
  REQUIRE(e.ok());
  CHECK(e->use_rslora);
  CHECK(e->rank_pattern.at("v_proj") == 4);
  CHECK(e->alpha_pattern.at("o_proj") == 32.0);
  peft::RankAlpha v = peft::effective_rank_alpha(*e, "model.layers.1.self_attn.v_proj");
  CHECK(v.rank == 4);
  CHECK(v.alpha == 16.0);
  CHECK(peft::scaling(*e, v.rank, v.alpha) == doctest::Approx(16.0 / 2.0));
  peft::RankAlpha o = peft::effective_rank_alpha(*e, "model.layers.0.self_attn.o_proj");
  CHECK(o.rank == 8);
  CHECK(o.alpha == 32.0);
  CHECK(peft::scaling(*e, o.rank, o.alpha) == doctest::Approx(32.0 / std::sqrt(8.0)));
  peft::RankAlpha q = peft::effective_rank_alpha(*e, "model.layers.0.self_attn.q_proj");
  CHECK(q.rank == 8);
  CHECK(q.alpha == 16.0);

  for (const char* letter : {"b", "c"}) {
    lamina::Result<peft::AdapterConfig> config =
        peft::read_adapter_config(lamina_test::shared_path(std::string("adapters/lora-") + letter + "-peft"));
    REQUIRE_MESSAGE(config.ok(), config.error().message);
    CHECK(peft::targets_module(*config, "model.layers.0.mlp.down_proj"));
  }

  lamina::Result<peft::AdapterConfig> missing = peft::read_adapter_config(lamina_test::temp_path("no-such-adapter"));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == ErrorCode::io);
  CHECK(contains_text(missing.error().message, "adapter_config.json"));
}

TEST_CASE("peft config: target_modules forms and layers_to_transform") {
  peft::AdapterConfig all = parse_ok(R"({"peft_type":"LORA","r":4,"target_modules":"all-linear"})");
  CHECK(all.all_linear);
  CHECK(all.lora_alpha == 8.0);  // PEFT's default
  CHECK(peft::targets_module(all, "model.layers.0.mlp.gate_proj"));
  CHECK_FALSE(peft::targets_module(all, "lm_head"));

  peft::AdapterConfig regex = parse_ok(R"({"peft_type":"LORA","r":4,"target_modules":".*\\.(q|v)_proj"})");
  CHECK(regex.target_modules_regex == ".*\\.(q|v)_proj");
  CHECK(peft::targets_module(regex, "model.layers.7.self_attn.q_proj"));
  CHECK(peft::targets_module(regex, "model.layers.7.self_attn.v_proj"));
  CHECK_FALSE(peft::targets_module(regex, "model.layers.7.self_attn.k_proj"));
  CHECK_FALSE(peft::targets_module(regex, "model.layers.7.self_attn.q_proj.extra"));  // a full match

  peft::AdapterConfig layers = parse_ok(R"({"peft_type":"LORA","r":4,"target_modules":["q_proj"],"layers_to_transform":[0,2]})");
  CHECK(layers.layers_to_transform == std::vector<int>{0, 2});
  CHECK(peft::targets_module(layers, "model.layers.0.self_attn.q_proj"));
  CHECK_FALSE(peft::targets_module(layers, "model.layers.1.self_attn.q_proj"));
  CHECK(peft::targets_module(layers, "model.layers.2.self_attn.q_proj"));
  CHECK(peft::targets_module(layers, "q_proj"));  // an exact name skips the layer filter, as in PEFT

  peft::AdapterConfig one = parse_ok(R"({"peft_type":"LORA","r":4,"target_modules":["q_proj"],"layers_to_transform":1,
                                         "layers_pattern":"layers"})");
  CHECK(one.layers_to_transform == std::vector<int>{1});
  CHECK(one.layers_pattern == "layers");
  CHECK(peft::targets_module(one, "model.layers.1.self_attn.q_proj"));
  CHECK_FALSE(peft::targets_module(one, "model.layers.10.self_attn.q_proj"));
  CHECK_FALSE(peft::targets_module(one, "model.blocks.1.self_attn.q_proj"));
  // MoE: the first numbered component is the layer, not the expert.
  peft::AdapterConfig moe = parse_ok(R"({"peft_type":"LORA","r":4,"target_modules":["w1"],"layers_to_transform":[3]})");
  CHECK(peft::targets_module(moe, "model.layers.3.experts.0.w1"));
  CHECK_FALSE(peft::targets_module(moe, "model.layers.0.experts.3.w1"));

  peft::AdapterConfig excluded =
      parse_ok(R"({"peft_type":"LORA","r":4,"target_modules":["q_proj","v_proj"],"exclude_modules":["layers.0.self_attn.q_proj"]})");
  CHECK_FALSE(peft::targets_module(excluded, "model.layers.0.self_attn.q_proj"));
  CHECK(peft::targets_module(excluded, "model.layers.10.self_attn.q_proj"));

  peft::AdapterConfig unknown = parse_ok(R"({"peft_type":"LORA","r":2,"target_modules":["a"],"something_new":{"x":[1,2]},
                                             "lora_dropout":0.05,"use_dora":null,"base_model_name_or_path":null})");
  CHECK(unknown.r == 2);
  CHECK_FALSE(unknown.use_dora);
}

TEST_CASE("peft config: rank_pattern and alpha_pattern follow PEFT's first-match rule") {
  // PEFT: the first key k (in file order) such that re.match(rf"(.*\.)?({k})$", path).
  peft::AdapterConfig config = parse_ok(R"({"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["q_proj","v_proj"],
      "rank_pattern":{"v_proj":2,"layers.0.self_attn.v_proj":6,"^model.layers.[12].self_attn.q_proj":3},
      "alpha_pattern":{"layers\\.1\\..*":1.5}})");
  CHECK(config.rank_pattern_order == std::vector<std::string>{"v_proj", "layers.0.self_attn.v_proj", "^model.layers.[12].self_attn.q_proj"});
  CHECK(peft::effective_rank_alpha(config, "model.layers.0.self_attn.v_proj").rank == 2);  // "v_proj" comes first
  CHECK(peft::effective_rank_alpha(config, "model.layers.1.self_attn.q_proj").rank == 3);
  CHECK(peft::effective_rank_alpha(config, "model.layers.3.self_attn.q_proj").rank == 8);
  CHECK(peft::effective_rank_alpha(config, "model.layers.1.self_attn.q_proj").alpha == 1.5);
  CHECK(peft::effective_rank_alpha(config, "model.layers.2.self_attn.q_proj").alpha == 16.0);
  // A key must match whole components: "proj" does not match "q_proj".
  peft::AdapterConfig partial = parse_ok(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],"rank_pattern":{"proj":2}})");
  CHECK(peft::effective_rank_alpha(partial, "model.layers.0.self_attn.q_proj").rank == 8);
  // File order, not sorted order: "z_first" would sort after "a_second".
  peft::AdapterConfig ordered = parse_ok(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],
      "rank_pattern":{"z_first|q_proj":2,"a_second|q_proj":4}})");
  CHECK(peft::effective_rank_alpha(ordered, "model.q_proj").rank == 2);
  // Hand-built configs (no order recorded) use the maps' order.
  peft::AdapterConfig built;
  built.r = 8;
  built.lora_alpha = 8;
  built.rank_pattern["k_proj"] = 1;
  CHECK(peft::effective_rank_alpha(built, "model.layers.0.self_attn.k_proj").rank == 1);
  CHECK(peft::scaling(built, 1, 8) == 8.0);
}

TEST_CASE("peft config: the regex subset") {
  CHECK(full_match("abc", "abc"));
  CHECK_FALSE(full_match("abc", "abcd"));
  CHECK(full_match("a.c", "abc"));
  CHECK(full_match("a\\.c", "a.c"));
  CHECK_FALSE(full_match("a\\.c", "abc"));
  CHECK(full_match("(a|bc)+d?", "abca"));
  CHECK(full_match("[^.]*\\.\\d+", "layers.12"));
  CHECK_FALSE(full_match("[^.]*\\.\\d+", "lay.ers.12"));
  CHECK(full_match("x{2,3}", "xxx"));
  CHECK_FALSE(full_match("x{2,3}", "xxxx"));
  CHECK(full_match("a{,2}b", "aab"));
  CHECK(full_match("a{x", "a{x"));  // Python reads a '{' that starts no repeat literally
  CHECK(full_match("^(?:q|k)_proj$", "k_proj"));
  CHECK(full_match("(?P<name>q)_proj", "q_proj"));
  CHECK(full_match("[a-c_]+", "a_b_c"));
  CHECK(full_match("(a*)*b", std::string(5000, 'a') + "b"));  // linear time, no backtracking
  CHECK_FALSE(full_match("(a*)*b", std::string(5000, 'a')));
  CHECK(full_match(".*?q_proj", "model.q_proj"));
  CHECK(full_match("", ""));
  for (const char* bad : {"(a", "a)", "*a", "a**", "a*+", "(?=a)", "\\1", "\\b", "[a", "x{3,2}", "a{5000}", "(?i)a", "[z-a]"}) {
    lamina::peft::detail::Regex regex;
    CHECK_MESSAGE(!regex.compile(bad).empty(), bad);
    CHECK_FALSE(regex.full_match("a"));
  }
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "(";
  lamina::peft::detail::Regex regex;
  CHECK(contains_text(regex.compile(deep), "nested"));
}

TEST_CASE("peft config: bad configs give errors naming the file and key") {
  expect_error("{\"peft_type\":", ErrorCode::invalid_format, {"invalid JSON", "at byte"});
  expect_error("{\"a\":\"\xff\"}", ErrorCode::invalid_format, {"invalid JSON"});
  expect_error(std::string(100000, '['), ErrorCode::invalid_format, {"nested more than 32"});
  expect_error("[1]", ErrorCode::invalid_format, {"expected a JSON object, found an array"});
  expect_error(R"({"r":8,"target_modules":["q"]})", ErrorCode::missing, {"key 'peft_type'", "missing"});
  expect_error(R"({"peft_type":"IA3","r":8,"target_modules":["q"]})", ErrorCode::unsupported, {"key 'peft_type'", "'IA3'"});
  expect_error(R"({"peft_type":7,"r":8,"target_modules":["q"]})", ErrorCode::type_mismatch, {"key 'peft_type'", "expected a string"});
  expect_error(R"({"peft_type":"LORA","target_modules":["q"]})", ErrorCode::missing, {"key 'r'"});
  expect_error(R"({"peft_type":"LORA","r":0,"target_modules":["q"]})", ErrorCode::invalid_format, {"key 'r'", "positive", "found 0"});
  expect_error(R"({"peft_type":"LORA","r":-3,"target_modules":["q"]})", ErrorCode::invalid_format, {"key 'r'", "found -3"});
  expect_error(R"({"peft_type":"LORA","r":4.5,"target_modules":["q"]})", ErrorCode::invalid_format, {"key 'r'", "found 4.5"});
  expect_error(R"({"peft_type":"LORA","r":"8","target_modules":["q"]})", ErrorCode::invalid_format, {"key 'r'", "found a string"});
  expect_error(R"({"peft_type":"LORA","r":99999999999,"target_modules":["q"]})", ErrorCode::invalid_format, {"key 'r'"});
  expect_error(R"({"peft_type":"LORA","r":8,"lora_alpha":"16","target_modules":["q"]})", ErrorCode::type_mismatch, {"key 'lora_alpha'"});
  expect_error(R"({"peft_type":"LORA","r":8,"use_rslora":"yes","target_modules":["q"]})", ErrorCode::type_mismatch,
               {"key 'use_rslora'", "expected a boolean, found a string"});
  expect_error(R"({"peft_type":"LORA","r":8,"use_dora":1,"target_modules":["q"]})", ErrorCode::type_mismatch, {"key 'use_dora'"});
  expect_error(R"({"peft_type":"LORA","r":8})", ErrorCode::missing, {"key 'target_modules'"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":{"q":1}})", ErrorCode::type_mismatch, {"key 'target_modules'", "found an object"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q",3]})", ErrorCode::type_mismatch, {"key 'target_modules'", "element 1"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":"(?<=x)q"})", ErrorCode::unsupported, {"key 'target_modules'", "'(?<=x)q'"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q"],"layers_to_transform":[1,-2]})", ErrorCode::type_mismatch,
               {"key 'layers_to_transform'", "element 1"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q"],"layers_to_transform":"1"})", ErrorCode::type_mismatch,
               {"key 'layers_to_transform'"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q"],"layers_pattern":5})", ErrorCode::type_mismatch, {"key 'layers_pattern'"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q"],"rank_pattern":[]})", ErrorCode::type_mismatch, {"key 'rank_pattern'"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q"],"rank_pattern":{"v":0}})", ErrorCode::invalid_format,
               {"key 'rank_pattern'", "pattern 'v'", "positive"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q"],"rank_pattern":{"v(":2}})", ErrorCode::unsupported,
               {"key 'rank_pattern'"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q"],"alpha_pattern":{"v":"x"}})", ErrorCode::type_mismatch,
               {"key 'alpha_pattern'", "pattern 'v'"});
}
