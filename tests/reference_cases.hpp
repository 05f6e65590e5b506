// The reference cases of ../shared/reference and how lamina is judged against them: the
// tolerances of ../shared/README.md (the same rule as tools/compare_logits.py).
#pragma once

#include <doctest/doctest.h>
#include <lamina/lamina.hpp>
#include <nlohmann/json.hpp>

#include "test_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace lamina_test {

// One case of ../shared/reference: model, prompt, adapter stack, llama.cpp's logits.
struct ReferenceAdapter {
  std::string gguf_path;  // empty when the adapter only exists in PEFT form
  std::string peft_path;
  float scale = 1.0f;
};

struct ReferenceCase {
  std::string model_path;
  std::vector<ReferenceAdapter> adapters;
  std::vector<lamina::Token> prompt;
  std::vector<lamina::Token> greedy_next;
  std::int32_t vocab = 0;
  std::vector<float> logits;  // [prompt.size(), vocab]
};

inline ReferenceCase load_case(const std::string& name) {
  ReferenceCase result;
  const std::string json_path = lamina_test::shared_path("reference/" + name + ".json");
  const nlohmann::json json = nlohmann::json::parse(lamina_test::read_text_file(json_path), nullptr, false);
  REQUIRE_MESSAGE(!json.is_discarded(), "cannot parse " << json_path);
  result.model_path = lamina_test::shared_path(json["model"].get<std::string>());
  result.prompt = json["prompt"].get<std::vector<lamina::Token>>();
  if (json.contains("greedy_next")) result.greedy_next = json["greedy_next"].get<std::vector<lamina::Token>>();  // llama.cpp cases only
  if (json.contains("adapters")) {
    for (const nlohmann::json& adapter : json["adapters"]) {
      ReferenceAdapter entry;
      if (adapter.contains("gguf")) entry.gguf_path = lamina_test::shared_path(adapter["gguf"].get<std::string>());
      if (adapter.contains("peft")) entry.peft_path = lamina_test::shared_path(adapter["peft"].get<std::string>());
      entry.scale = adapter["scale"].get<float>();
      result.adapters.push_back(entry);
    }
  }
  const std::vector<unsigned char> bytes = lamina_test::read_binary_file(lamina_test::shared_path(json["logits"].get<std::string>()));
  REQUIRE(bytes.size() >= 4);
  std::memcpy(&result.vocab, bytes.data(), 4);
  result.logits.resize((bytes.size() - 4) / 4);
  std::memcpy(result.logits.data(), bytes.data() + 4, result.logits.size() * 4);
  REQUIRE(result.logits.size() == result.prompt.size() * static_cast<std::size_t>(result.vocab));
  return result;
}

// Logits after every prompt token, [tokens, vocab], with `adapters` stacked on sequence 0.
inline std::vector<float> evaluate(const std::shared_ptr<const lamina::Model>& model, const std::vector<lamina::Token>& tokens,
                                   std::uint32_t threads = 2, std::uint32_t batch_size = 512,
                                   const lamina::AdapterStack& adapters = {}, lamina::DType kv_cache_type = lamina::DType::f16) {
  lamina::SessionParams params;
  params.kv_cache_type = kv_cache_type;
  params.thread_count = threads;
  params.logits_for_every_token = true;
  params.batch_size = batch_size;
  params.context_length = 256;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE_MESSAGE(session.ok(), (session.ok() ? "" : session.error().message));
  if (!adapters.empty()) {
    lamina::Result<void> stacked = session->set_adapters(adapters);
    REQUIRE_MESSAGE(stacked.ok(), (stacked.ok() ? "" : stacked.error().message));
  }
  std::vector<float> logits(tokens.size() * model->hparams().vocab_size);
  lamina::Result<void> fed = session->feed(tokens.data(), tokens.size(), 0, logits.data());
  REQUIRE_MESSAGE(fed.ok(), (fed.ok() ? "" : fed.error().message));
  return logits;
}

inline double standard_deviation(const std::vector<float>& values) {
  double sum = 0, sum_of_squares = 0;
  for (float v : values) { sum += v; sum_of_squares += static_cast<double>(v) * v; }
  const double mean = sum / static_cast<double>(values.size());
  return std::sqrt(std::max(0.0, sum_of_squares / static_cast<double>(values.size()) - mean * mean));
}

// max |diff| <= 0.02 × scale and, at every position, lamina's top token is within that
// tolerance of the reference maximum (near-ties in flat random logits are not errors).
inline void check_against_reference(const ReferenceCase& reference, const std::vector<float>& logits, double relative_tolerance,
                             double required_top1_agreement) {
  const double tolerance = relative_tolerance * std::max(1.0, standard_deviation(reference.logits));
  const std::size_t vocab = static_cast<std::size_t>(reference.vocab);
  double max_difference = 0;
  std::size_t agreeing = 0;
  for (std::size_t position = 0; position < reference.prompt.size(); ++position) {
    const float* expected = reference.logits.data() + position * vocab;
    const float* got = logits.data() + position * vocab;
    for (std::size_t i = 0; i < vocab; ++i) {
      REQUIRE(std::isfinite(got[i]));
      max_difference = std::max(max_difference, static_cast<double>(std::fabs(expected[i] - got[i])));
    }
    const std::size_t picked = static_cast<std::size_t>(std::max_element(got, got + vocab) - got);
    const float reference_max = *std::max_element(expected, expected + vocab);
    agreeing += expected[picked] >= reference_max - tolerance ? 1 : 0;
  }
  const double agreement = static_cast<double>(agreeing) / static_cast<double>(reference.prompt.size());
  INFO("max |diff| " << max_difference << " (tolerance " << tolerance << "), top-1 agreement " << agreement);
  CHECK(max_difference <= tolerance);
  CHECK(agreement >= required_top1_agreement);
}

// Greedy continuation from the prompt; the first tokens must match llama.cpp's.
inline std::vector<lamina::Token> greedy(const std::shared_ptr<const lamina::Model>& model, const std::vector<lamina::Token>& prompt,
                                  std::size_t count) {
  lamina::SessionParams params;
  params.thread_count = 2;
  params.context_length = 256;
  params.sampling.temperature = 0.0f;
  lamina::Result<lamina::Session> session = lamina::Session::create(model, params);
  REQUIRE(session.ok());
  REQUIRE(session->feed(prompt).ok());
  std::vector<lamina::Token> generated;
  for (std::size_t i = 0; i < count; ++i) {
    lamina::Result<lamina::Token> token = session->generate_next();
    REQUIRE(token.ok());
    generated.push_back(*token);
  }
  return generated;
}

inline std::shared_ptr<const lamina::Model> load_model(const std::string& path) {
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path);
  REQUIRE_MESSAGE(model.ok(), (model.ok() ? "" : model.error().message));
  return *model;
}

}  // namespace lamina_test
