// The demo model and adapters the project ships (models/demo, trained by tools/train_demo.py)
// against the logits the training script computed with PyTorch when it exported them.
#include <doctest/doctest.h>
#include <lamina/adapters/peft.hpp>
#include <lamina/lamina.hpp>
#include <nlohmann/json.hpp>

#include "../reference_cases.hpp"
#include "../test_support.hpp"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace {

// models/demo of this checkout (the test's own path: tests/model/test_demo_model.cpp).
std::string demo_dir() {
  std::string path = __FILE__;
  for (int up = 0; up < 3; ++up) path = path.substr(0, path.find_last_of("/\\"));
  return path + "/models/demo";
}

}  // namespace

TEST_CASE("the shipped demo model and adapters reproduce the training script's logits") {
  const std::string directory = demo_dir();
  if (!lamina_test::file_exists(directory + "/fortunes-demo.gguf")) {
    MESSAGE("models/demo/fortunes-demo.gguf not found next to the tests; skipped");
    return;
  }
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(directory + "/fortunes-demo.gguf");
  REQUIRE_MESSAGE(model.ok(), (model.ok() ? "" : model.error().message));
  for (const char* name : {"base", "computers", "startrek-love"}) {
    CAPTURE(name);
    const std::string json_path = directory + "/reference/" + name + ".json";
    const nlohmann::json json = nlohmann::json::parse(lamina_test::read_text_file(json_path), nullptr, false);
    REQUIRE(json.is_object());
    lamina_test::ReferenceCase reference;
    reference.prompt = json["prompt"].get<std::vector<lamina::Token>>();
    const std::vector<unsigned char> bytes = lamina_test::read_binary_file(directory + "/" + json["logits"].get<std::string>());
    REQUIRE(bytes.size() >= 4);
    std::memcpy(&reference.vocab, bytes.data(), 4);
    reference.logits.resize((bytes.size() - 4) / 4);
    std::memcpy(reference.logits.data(), bytes.data() + 4, reference.logits.size() * 4);
    REQUIRE(reference.logits.size() == reference.prompt.size() * static_cast<std::size_t>(reference.vocab));
    lamina::AdapterStack stack;
    for (const nlohmann::json& adapter : json["adapters"]) {
      lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> loaded =
          lamina::peft::load_adapter(**model, directory + "/" + adapter["peft"].get<std::string>());
      REQUIRE_MESSAGE(loaded.ok(), (loaded.ok() ? "" : loaded.error().message));
      stack.push_back({*loaded, adapter["scale"].get<float>()});
    }
    // The prompt's text, tokenized by lamina, gives the ids the script trained with.
    if (json.contains("text")) {
      lamina::Result<std::vector<lamina::Token>> ids = (*model)->tokenizer().encode(json["text"].get<std::string>());
      REQUIRE(ids.ok());
      CHECK(*ids == reference.prompt);
    }
    // PyTorch in float32 with an F32 KV cache here: the rounding of two implementations.
    lamina_test::check_against_reference(reference, lamina_test::evaluate(*model, reference.prompt, 2, 512, stack, lamina::DType::f32), 0.01, 1.0);
  }
}
