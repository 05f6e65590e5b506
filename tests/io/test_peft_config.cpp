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

// --- hostile configs: work linear in the config's size -------------------------------------------

namespace {

// A config with `count` rank_pattern keys "L<i>.q" (none matches a real module) followed by
// `tail`, e.g. ",\"v_proj\":4".
std::string many_rank_keys(std::size_t count, const std::string& tail) {
  std::string text = R"({"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["q_proj","v_proj"],"rank_pattern":{)";
  text.reserve(text.size() + count * 13 + tail.size() + 2);
  for (std::size_t i = 0; i < count; ++i) {
    if (i != 0) text += ',';
    text += "\"L" + std::to_string(i) + ".q\":8";
  }
  return text + tail + "}}";
}

// synth-llama's 28 module paths.
std::vector<std::string> llama_modules() {
  std::vector<std::string> paths;
  for (int layer = 0; layer < 4; ++layer) {
    for (const char* name : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                             "mlp.up_proj", "mlp.down_proj"}) {
      paths.push_back("model.layers." + std::to_string(layer) + "." + name);
    }
  }
  return paths;
}

bool printable_ascii(const std::string& text) {
  for (const char c : text) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("peft config: 100,000 and 1,000,000 rank_pattern keys load, with work independent of their count") {
  // Before: the file-order list was deduplicated with a linear search (quadratic: 25 s for 100k
  // keys, minutes for 1M) and every key was compiled as a regex once per module. Literal keys now
  // go to a hash index: matching a module costs a few probes, however many keys there are.
  std::uint64_t steps_per_count[2] = {0, 0};
  const std::size_t counts[2] = {100000, 1000000};
  for (int c = 0; c < 2; ++c) {
    CAPTURE(counts[c]);
    const std::string text = many_rank_keys(counts[c], R"(,"layers\\.2\\..*":2,"v_proj":4)");
    CHECK(text.size() < (16u << 20));  // under read_adapter_config's cap
    peft::ModuleMatcher matcher;
    lamina::Result<peft::AdapterConfig> config = peft::parse_adapter_config(text, "adapter_config.json", &matcher);
    REQUIRE_MESSAGE(config.ok(), config.error().message);
    CHECK(config->rank_pattern.size() == counts[c] + 2);
    CHECK(config->rank_pattern_order.size() == counts[c] + 2);
    CHECK(config->rank_pattern_order.back() == "v_proj");
    for (const std::string& module : llama_modules()) {
      lamina::Result<peft::RankAlpha> ra = matcher.effective_rank_alpha(module);
      REQUIRE(ra.ok());
      // The regex key comes before "v_proj" in the file: it wins on layer 2.
      const bool layer_2 = module.find(".2.") != std::string::npos;
      const bool v_proj = module.find("v_proj") != std::string::npos;
      CHECK(ra->rank == (layer_2 ? 2 : v_proj ? 4 : 8));
      CHECK(ra->rank_key == (layer_2 ? "layers\\.2\\..*" : v_proj ? "v_proj" : ""));
    }
    steps_per_count[c] = matcher.work().steps;
  }
  // Ten times the keys, about the same work: a few steps per module and group of keys of one
  // length and wildcard layout ("L<5 digits>.q" and "L<6 digits>.q" are two), not per key.
  CHECK(steps_per_count[1] < steps_per_count[0] + steps_per_count[0] / 10);
  CHECK(steps_per_count[1] < 28 * 500);
}

TEST_CASE("peft config: repeated keys keep their first place, deduplicated in linear time") {
  // Python's json keeps the last value of a repeated key at the key's first position; so does lamina.
  peft::AdapterConfig config = parse_ok(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],
      "rank_pattern":{"a|q_proj":2,"b|q_proj":3,"a|q_proj":4}})");
  CHECK(config.rank_pattern_order == std::vector<std::string>{"a|q_proj", "b|q_proj"});
  CHECK(peft::effective_rank_alpha(config, "model.q_proj").rank == 4);
  // A repeated top-level "rank_pattern": nlohmann keeps the last object, and its order is used.
  peft::AdapterConfig twice = parse_ok(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],
      "rank_pattern":{"z|q_proj":2},"rank_pattern":{"y|q_proj":5,"x|q_proj":6}})");
  CHECK(twice.rank_pattern_order == std::vector<std::string>{"y|q_proj", "x|q_proj"});
  CHECK(peft::effective_rank_alpha(twice, "model.q_proj").rank == 5);
}

TEST_CASE("peft config: the literal-key index agrees with the regex engine") {
  // Each key alone, through ModuleMatcher (index or NFA) and through regex_full_match on PEFT's
  // pattern (.*\.)?(key): the same answer for every path.
  const std::vector<std::string> keys = {"q_proj", "self_attn.q_proj", "layers.0.self_attn.q_proj", "layers\\.0\\.self_attn\\.q_proj",
                                         "q.proj", "layers.1", "model.layers.0.self_attn.q_proj", "s.lf_attn.q_proj", "proj",
                                         "\\_proj", "a\\-b", "x.y", "...", "", "layers.0.self_attn.q_proj\n", "q_proj{2}", "q_pro[j]"};
  const std::vector<std::string> paths = {"model.layers.0.self_attn.q_proj", "model.layers.10.self_attn.q_proj", "q_proj", "xq_proj",
                                          "model.layers.1", "a-b", "x.y", "x\ny", "abc", "model.q\nproj", "model.q\n.q_proj", "",
                                          "model.layers.0.self_attn.q_proj\n", "q_projq_proj"};
  for (const std::string& key : keys) {
    peft::AdapterConfig config;
    config.r = 8;
    config.target_modules = {"q_proj"};
    config.rank_pattern[key] = 3;
    lamina::Result<peft::ModuleMatcher> matcher = peft::ModuleMatcher::compile(config, "adapter_config.json");
    REQUIRE_MESSAGE(matcher.ok(), matcher.error().message);
    for (const std::string& path : paths) {
      CAPTURE(key);
      CAPTURE(path);
      lamina::Result<peft::RankAlpha> ra = matcher->effective_rank_alpha(path);
      REQUIRE(ra.ok());
      CHECK((ra->rank == 3) == peft::detail::regex_full_match("(.*\\.)?(" + key + ")", path));
      CHECK(peft::effective_rank_alpha(config, path).rank == ra->rank);
    }
  }
  // File order across the index and the NFA: the first matching key wins whichever holds it.
  peft::AdapterConfig literal_first = parse_ok(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],
      "rank_pattern":{"q_proj":2,"(q|k)_proj":3}})");
  CHECK(peft::effective_rank_alpha(literal_first, "model.q_proj").rank == 2);
  peft::AdapterConfig regex_first = parse_ok(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],
      "rank_pattern":{"(q|k)_proj":3,"q_proj":2}})");
  CHECK(peft::effective_rank_alpha(regex_first, "model.q_proj").rank == 3);
}

TEST_CASE("peft config: 2,000 pathological regex keys are refused before any matching") {
  // (.*.*.*.*){250} compiles to about 3,000 NFA instructions, each visited at every byte of a
  // path: 2,000 of them took 47 s to load. The patterns of one config may compile to 200,000
  // instructions in all; this config passes that at its 67th key.
  std::string text = R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],"rank_pattern":{)";
  for (int i = 0; i < 2000; ++i) text += (i ? ",\"" : "\"") + std::string("(.*.*.*.*){250}x") + std::to_string(i) + "\":8";
  text += "}}";
  expect_error(text, ErrorCode::unsupported,
               {"key 'rank_pattern'", "pattern '(.*.*.*.*){250}x66'", "more than 200000 NFA instructions in all", "this one to 3009"});
  // One such pattern alone is refused when its repeats run past the per-pattern limit.
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],"rank_pattern":{"(.*.*.*.*.*.*.*.*){1000}x":8}})", ErrorCode::unsupported,
               {"key 'rank_pattern'", "too large once compiled", "more than 20000 NFA instructions", "lamina bounds the size"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],"rank_pattern":{"x{1001}":8}})", ErrorCode::unsupported,
               {"key 'rank_pattern'", "pattern 'x{1001}'", "a repeat count above 1000 at position 1"});
  // Repeats of an empty group emit no instruction but would be visited 10^12 times.
  lamina::peft::detail::Regex regex;
  CHECK(contains_text(regex.compile("((((){1000}){1000}){1000}){1000}"), "too large once compiled"));
  CHECK(regex.refused_for_size());
}

TEST_CASE("peft config: an over-long pattern is refused, naming the key") {
  const std::string long_key(5000, 'a');
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],"rank_pattern":{")" + long_key + R"(":8}})",
               ErrorCode::unsupported,
               {"key 'rank_pattern'", "pattern 'aaaa", "...'", "the pattern is 5000 bytes long, more than lamina accepts (4096)"});
  const std::string long_group = "(" + long_key + ")";  // not literal: the NFA's own check
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],"alpha_pattern":{")" + long_group + R"(":8}})",
               ErrorCode::unsupported, {"key 'alpha_pattern'", "pattern '(aaaa", "5002 bytes long"});
  expect_error(R"({"peft_type":"LORA","r":8,"target_modules":")" + long_key + R"("})", ErrorCode::unsupported,
               {"key 'target_modules'", "5000 bytes long"});
  // 4096 bytes are accepted, literal or not.
  parse_ok(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],"rank_pattern":{")" + std::string(4096, 'a') + R"(":8,")" +
           std::string(4094, 'b') + R"(.*":8}})");
}

TEST_CASE("peft config: matching work is bounded and counted") {
  // 60 keys under the size limits, each visiting ~3,000 instructions per byte of every path it is
  // tried on (the last byte 'j' passes the quick filter, "xj" fails only at the end).
  std::string text = R"({"peft_type":"LORA","r":8,"target_modules":["q_proj","v_proj"],"rank_pattern":{)";
  for (int i = 1; i <= 60; ++i) text += (i > 1 ? ",\"" : "\"") + std::string("(.*.*.*.*){250}") + std::string(static_cast<std::size_t>(i), 'x') + "j\":8";
  text += "}}";
  peft::ModuleMatcher matcher;
  lamina::Result<peft::AdapterConfig> config = peft::parse_adapter_config(text, "bad/adapter_config.json", &matcher);
  REQUIRE_MESSAGE(config.ok(), config.error().message);
  CHECK(matcher.work().limit == 100000000);
  matcher.set_work_limit(2000000);
  lamina::Result<peft::RankAlpha> first = matcher.effective_rank_alpha("model.layers.0.self_attn.q_proj");
  REQUIRE_FALSE(first.ok());
  const std::string message = first.error().message;
  INFO(message);
  CHECK(first.error().code == ErrorCode::unsupported);
  for (const char* part : {"bad/adapter_config.json: key 'rank_pattern'", "matching module 'model.layers.0.self_attn.q_proj'",
                           "(at pattern '(.*.*.*.*){250}", "passes the limit of 2000000 steps"}) {
    CHECK(contains_text(message, part));
  }
  // It stopped at the limit, not after all 60 keys (about 9.6M steps).
  CHECK(matcher.work().steps <= 2000001);
  // Keys whose last byte cannot end the path cost one step each.
  peft::ModuleMatcher cheap;
  REQUIRE(peft::parse_adapter_config(R"({"peft_type":"LORA","r":8,"target_modules":["q_proj"],
      "rank_pattern":{"(.*.*.*.*){250}x":8,"(.*.*.*.*){250}y":8}})", "adapter_config.json", &cheap).ok());
  REQUIRE(cheap.effective_rank_alpha("model.layers.0.self_attn.q_proj").ok());
  CHECK(cheap.work().steps == 2);
}

TEST_CASE("peft config: target_modules lists and layers_to_transform are hashed") {
  // 200,000 target names: each module costs one probe per trailing run of its components.
  std::string text = R"({"peft_type":"LORA","r":8,"layers_to_transform":[)";
  for (int i = 0; i < 1000; ++i) text += (i ? "," : "") + std::to_string(i * 2);
  text += R"(],"target_modules":[)";
  for (int i = 0; i < 200000; ++i) text += (i ? ",\"m" : "\"m") + std::to_string(i) + "\"";
  text += R"(,"q_proj"]})";
  peft::ModuleMatcher matcher;
  lamina::Result<peft::AdapterConfig> config = peft::parse_adapter_config(text, "adapter_config.json", &matcher);
  REQUIRE_MESSAGE(config.ok(), config.error().message);
  for (const std::string& module : llama_modules()) {
    lamina::Result<bool> targeted = matcher.targets_module(module);
    REQUIRE(targeted.ok());
    const bool even_layer = module.find(".0.") != std::string::npos || module.find(".2.") != std::string::npos;
    CHECK(*targeted == (even_layer && module.find("q_proj") != std::string::npos));
    // The free function hashes the whole list on each call: a few calls only.
    if (module.find("layers.0.self_attn") != std::string::npos) CHECK(peft::targets_module(*config, module) == *targeted);
  }
  CHECK(matcher.work().steps < 28 * 200);
}

TEST_CASE("peft config: messages never echo raw invalid UTF-8 or control bytes") {
  // nlohmann's parse error ends with the bytes it read: quoted, escaped.
  const std::string invalid_utf8 = "{\"peft_type\":\"LORA\",\"r\":8,\"target_modules\":[\"q\xff\xfe\x1b[2J\"]}";
  lamina::Result<peft::AdapterConfig> config = peft::parse_adapter_config(invalid_utf8, "bad/adapter_config.json");
  REQUIRE_FALSE(config.ok());
  INFO(config.error().message);
  CHECK(config.error().code == ErrorCode::invalid_format);
  CHECK(contains_text(config.error().message, "bad/adapter_config.json: at byte 46: invalid JSON"));
  CHECK(contains_text(config.error().message, "last read: '\"q\\xff'"));
  CHECK(printable_ascii(config.error().message));
  // Valid JSON whose strings hold control characters (\u001b) or other bytes: quoted with escapes.
  expect_error(R"({"peft_type":"LO\u001b[2JRA","r":8,"target_modules":["q"]})", ErrorCode::unsupported,
               {"key 'peft_type'", "adapter type 'LO\\x1b[2JRA'"});
  lamina::Result<peft::AdapterConfig> control = peft::parse_adapter_config(
      R"({"peft_type":"LORA","r":8,"target_modules":["q"],"rank_pattern":{"\u0007\u009b(":2}})", "adapter_config.json");
  REQUIRE_FALSE(control.ok());
  INFO(control.error().message);
  CHECK(contains_text(control.error().message, "pattern '\\x07\\xc2\\x9b('"));
  CHECK(printable_ascii(control.error().message));
}
