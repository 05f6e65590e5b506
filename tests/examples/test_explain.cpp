// The teaching example (examples/explain): its step-by-step forward pass against llama.cpp's
// logits, and its heatmaps decoded again (stb_image) to check their sizes and that they show
// something.
#include <doctest/doctest.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION  // this file compiles stb_image_write for the tests
#define STB_IMAGE_WRITE_STATIC
#include "../../examples/explain/explain.hpp"
#include "../reference_cases.hpp"
#include "../test_support.hpp"

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#include <stb/stb_image.h>

#include <cstdio>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

TEST_CASE("explain: the step-by-step forward pass gives llama.cpp's logits and non-blank heatmaps") {
  LAMINA_REQUIRE_SHARED("reference/llama-f32.json");
  const lamina_test::ReferenceCase reference = lamina_test::load_case("llama-f32");
  const std::shared_ptr<const lamina::Model> model = lamina_test::load_model(reference.model_path);
  const lamina::ModelHparams& hp = model->hparams();
  const std::vector<lamina::Token>& prompt = reference.prompt;

  lamina_explain::Explainer explainer(*model, /*verbose=*/false);
  const lamina_explain::Trace trace = explainer.run(prompt);
  // The last position's logits match llama.cpp's (the reference layout: one row per position).
  const std::size_t vocab = hp.vocab_size;
  const float* expected = reference.logits.data() + (prompt.size() - 1) * vocab;
  REQUIRE(trace.final_logits.size() == vocab);
  double largest = 0;
  for (std::size_t i = 0; i < vocab; ++i) largest = std::max(largest, static_cast<double>(std::fabs(trace.final_logits[i] - expected[i])));
  CHECK(largest <= 0.02 * std::max(1.0, lamina_test::standard_deviation(reference.logits)));
  // Attention rows are distributions over the positions up to the query's.
  for (std::size_t layer = 0; layer < hp.block_count; ++layer) {
    for (std::size_t head = 0; head < hp.head_count; ++head) {
      for (std::size_t query = 0; query < prompt.size(); ++query) {
        double sum = 0;
        for (std::size_t key = 0; key < prompt.size(); ++key) {
          const float weight = trace.attention[layer][head][query * prompt.size() + key];
          if (key > query) REQUIRE(weight == 0.0f);
          sum += weight;
        }
        REQUIRE(sum == doctest::Approx(1.0).epsilon(1e-4));
      }
    }
  }

  const std::string directory = lamina_test::temp_path("explain");
  ::mkdir(directory.c_str(), 0777);
  const lamina::Result<std::vector<std::string>> written = lamina_explain::write_heatmaps(trace, prompt.size(), directory);
  REQUIRE(written.ok());
  REQUIRE(written->size() == 2 * hp.block_count);
  for (const std::string& path : *written) {
    CAPTURE(path);
    int width = 0, height = 0, channels = 0;
    unsigned char* pixels = stbi_load(path.c_str(), &width, &height, &channels, 3);
    REQUIRE(pixels != nullptr);
    const bool attention = path.find("attention-layer") != std::string::npos;
    const int cell = static_cast<int>(std::max<std::size_t>(4, std::min<std::size_t>(32, 256 / prompt.size())));
    const int side = static_cast<int>(prompt.size()) * cell;
    if (attention) {
      CHECK(width == static_cast<int>(hp.head_count) * (side + 4) - 4);
      CHECK(height == side);
    } else {
      CHECK(width == 2 * side);
      CHECK(height == 16 * 2 * cell);
    }
    // Not blank: the pixels take many values.
    std::vector<int> seen(256, 0);
    for (int i = 0; i < width * height * 3; i += 3) seen[pixels[i + 1]] = 1;  // green channel
    int distinct = 0;
    for (int value : seen) distinct += value;
    CHECK(distinct >= 5);
    stbi_image_free(pixels);
    std::remove(path.c_str());
  }
  // A FIFO where a heatmap goes: an error that names it, and the FIFO is left as it was.
  const std::string blocked = directory + "/logit-lens-layer00.png";
  REQUIRE(::mkfifo(blocked.c_str(), 0600) == 0);
  const lamina::Result<std::vector<std::string>> refused = lamina_explain::write_heatmaps(trace, prompt.size(), directory);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find(blocked) != std::string::npos);
  CHECK(refused.error().message.find("not a regular file") != std::string::npos);
  struct stat status;
  REQUIRE(::stat(blocked.c_str(), &status) == 0);
  CHECK(S_ISFIFO(status.st_mode));
  for (std::size_t layer = 0; layer < hp.block_count; ++layer) {
    std::remove((directory + "/attention-layer" + lamina_explain::two_digits(layer) + "-" +
                 lamina_explain::two_digits(hp.head_count) + "heads.png").c_str());
  }
  std::remove(blocked.c_str());
  ::rmdir(directory.c_str());
}
