// libFuzzer target for model binding: a GGUF file through Model::load's checks, a session and
// one forward pass, not only the parser (gguf_fuzz.cpp covers that).
//
// The input is parsed; when it parses, the model is bound (with its tokenizer when it has one,
// else without), a session with a short context and a 256 MiB memory limit is created, two
// tokens are fed and one is sampled; with a tokenizer, a text is encoded and decoded too. Every
// failure must be an Error with a message. libFuzzer's -malloc_limit_mb (by default the RSS
// limit) turns any allocation sized from an unchecked count into a reported crash.
//
// Seeds are tiny models written by this program, so the mutations land in metadata and tensor
// tables rather than in megabytes of weights:
//   LAMINA_FUZZ_WRITE_SEEDS=/tmp/model-corpus ./model_fuzz      (writes the seeds, then exits)
//   ./model_fuzz /tmp/model-corpus -rss_limit_mb=2048 -max_total_time=600
#include <lamina/lamina.hpp>
#include <cli/synth.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "model_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

// Small enough that a forward pass takes microseconds; one of each architecture and a few types.
void write_seeds(const std::string& directory) {
  struct Seed { const char* file; lamina::SynthPreset preset; lamina::FileType type; };
  const Seed seeds[] = {
      {"llama-f32.gguf", {"fuzz-llama", "llama", "fuzz seed", 32, 2, 4, 2, 64, 260, 16, 10000.0f, 1e-5f, false, false}, lamina::FileType::f32},
      {"llama-q8_0.gguf", {"fuzz-llama", "llama", "fuzz seed", 64, 1, 4, 4, 96, 260, 16, 10000.0f, 1e-5f, false, false}, lamina::FileType::q8_0},
      {"llama-q4_0.gguf", {"fuzz-llama", "llama", "fuzz seed", 32, 1, 2, 1, 64, 270, 16, 10000.0f, 1e-5f, false, false}, lamina::FileType::q4_0},
      {"qwen2-f16.gguf", {"fuzz-qwen2", "qwen2", "fuzz seed", 32, 2, 4, 2, 64, 260, 16, 1000000.0f, 1e-6f, true, true}, lamina::FileType::f16},
  };
  for (const Seed& seed : seeds) {
    lamina::SynthOptions options;
    options.file_type = seed.type;
    options.thread_count = 1;
    const std::string path = directory + "/" + seed.file;
    lamina::Result<lamina::SynthReport> written = lamina::synthesize_model(seed.preset, path, options);
    if (!written) {
      std::fprintf(stderr, "model_fuzz: %s\n", written.error().message.c_str());
      std::exit(1);
    }
    std::printf("model_fuzz: wrote %s (%llu bytes)\n", path.c_str(), static_cast<unsigned long long>(written->file_bytes));
  }
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
  lamina::Result<lamina::gguf::File> parsed = lamina::gguf::File::parse(data, size, "fuzz.gguf");
  if (!parsed) {
    check(!parsed.error().message.empty(), "a parse error has a message");
    return 0;
  }
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::from_file(*parsed);
  if (!model) {
    check(!model.error().message.empty(), "a load error has a message");
    lamina::ModelParams without_tokenizer;
    without_tokenizer.load_tokenizer = false;
    model = lamina::Model::from_file(std::move(*parsed), without_tokenizer);
    if (!model) {
      check(!model.error().message.empty(), "a load error has a message");
      return 0;
    }
  }
  lamina::SessionParams params;
  params.context_length = 8;
  params.batch_size = 4;
  params.thread_count = 1;
  params.memory_limit_bytes = std::uint64_t{256} << 20;
  lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
  if (!session) {
    check(!session.error().message.empty(), "a session error has a message");
    return 0;
  }
  const std::uint32_t vocab = (*model)->hparams().vocab_size;
  const std::vector<lamina::Token> tokens = {static_cast<lamina::Token>(1 % vocab), static_cast<lamina::Token>(vocab - 1)};
  lamina::Result<void> fed = session->feed(tokens);
  if (fed) {
    lamina::Result<lamina::Token> next = session->sample();
    check(!next || (*next >= 0 && static_cast<std::uint32_t>(*next) < vocab), "a sampled token is in the vocabulary");
  } else {
    check(!fed.error().message.empty(), "a decode error has a message");
  }
  if ((*model)->has_tokenizer()) {
    const lamina::Tokenizer& tokenizer = (*model)->tokenizer();
    lamina::Result<std::vector<lamina::Token>> encoded = tokenizer.encode("Hello, world! </s> \xE2\x96\x81 \xF0\x9F\x98\x80");
    if (encoded) {
      std::string text;
      for (lamina::Token token : *encoded) {
        check(token >= 0 && static_cast<std::uint32_t>(token) < tokenizer.vocab_size(), "an encoded token is in the vocabulary");
        text += tokenizer.token_to_piece(token);
      }
    }
  }
  return 0;
}
