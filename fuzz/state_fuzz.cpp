// libFuzzer target for saved session states: Session::restore_sequence on any bytes.
//
// A state ends with a checksum of everything before it, which random edits would almost never
// get right; so the input is a state without its last 8 bytes, and this target appends the
// checksum of the input before restoring. The parser behind the checksum is what gets fuzzed:
// counts, positions, adapter entries, lengths. When a state restores, the sequence must decode
// a token and sample a valid one. libFuzzer's -malloc_limit_mb catches an allocation sized from
// an unchecked count.
//
// The model is a tiny synthetic one written to a temporary file at start-up; seeds are states
// of it:
//   LAMINA_FUZZ_WRITE_SEEDS=/tmp/state-corpus ./state_fuzz     (writes the seeds, then exits)
//   ./state_fuzz /tmp/state-corpus -max_total_time=600
#include <lamina/lamina.hpp>
#include <cli/synth.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

void check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "state_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

[[noreturn]] void quit(const std::string& message) {
  std::fprintf(stderr, "state_fuzz: %s\n", message.c_str());
  std::exit(1);
}

std::shared_ptr<const lamina::Model> fuzz_model;
std::shared_ptr<const lamina::LoraAdapter> fuzz_adapter;

lamina::Session make_session() {
  lamina::SessionParams params;
  params.context_length = 16;
  params.batch_size = 4;
  params.thread_count = 1;
  params.sequence_count = 2;
  lamina::Result<lamina::Session> session = lamina::Session::create(fuzz_model, params);
  if (!session) quit(session.error().message);
  return std::move(*session);
}

void load_model() {
  const std::string path = "/tmp/lamina-state-fuzz-" + std::to_string(static_cast<long>(::getpid())) + ".gguf";
  const lamina::SynthPreset preset{"fuzz-llama", "llama", "fuzz seed", 32, 2, 4, 2, 64, 260, 16, 10000.0f, 1e-5f, false, false};
  lamina::SynthOptions options;
  options.file_type = lamina::FileType::f32;
  options.thread_count = 1;
  lamina::Result<lamina::SynthReport> written = lamina::synthesize_model(preset, path, options);
  if (!written) quit(written.error().message);
  lamina::ModelParams model_params;
  model_params.load_tokenizer = false;
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path, model_params);
  std::remove(path.c_str());  // the mapping keeps the bytes
  if (!model) quit(model.error().message);
  fuzz_model = *model;
  // A rank-2 adapter on one matrix, so that seeds carry a stack.
  lamina::LoraModule module;
  module.rank = 2;
  module.in = 32;
  module.out = 32;
  module.a.assign(2 * 32 * 4, 0);
  module.b.assign(2 * 32 * 4, 0);
  const float one = 0.01f;
  for (std::size_t i = 0; i < 64; ++i) std::memcpy(module.a.data() + 4 * i, &one, 4);
  std::vector<lamina::LoraModule> modules(static_cast<std::size_t>(fuzz_model->hparams().block_count) * lamina::projection_count);
  modules[0] = module;
  fuzz_adapter = std::make_shared<const lamina::LoraAdapter>("fuzz adapter", lamina::AdapterShape::of(fuzz_model->hparams()), std::move(modules));
}

void write_seeds(const std::string& directory) {
  for (int seed = 0; seed < 3; ++seed) {
    lamina::Session session = make_session();
    if (seed == 2 && !session.set_adapters({{fuzz_adapter, 0.5f}}).ok()) quit("set_adapters failed");
    std::vector<lamina::Token> tokens;
    for (int i = 0; i <= 3 * seed; ++i) tokens.push_back(static_cast<lamina::Token>(1 + 37 * i % 250));
    if (!session.feed(tokens).ok()) quit("feed failed");
    lamina::Result<std::vector<std::uint8_t>> state = session.save_sequence(0);
    if (!state) quit(state.error().message);
    const std::string path = directory + "/state-" + std::to_string(seed);
    std::FILE* file = std::fopen(path.c_str(), "wb");
    if (file == nullptr) quit("cannot write " + path);
    std::fwrite(state->data(), 1, state->size() - 8, file);  // without the checksum: see the top
    std::fclose(file);
    std::printf("state_fuzz: wrote %s (%zu bytes)\n", path.c_str(), state->size() - 8);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  load_model();
  if (const char* directory = std::getenv("LAMINA_FUZZ_WRITE_SEEDS")) {
    write_seeds(directory);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint8_t> state(data, data + size);
  const std::uint64_t checksum = lamina::Fingerprint().add_bytes(data, size).value();
  state.resize(size + 8);
  std::memcpy(state.data() + size, &checksum, 8);
  lamina::Session session = make_session();
  const lamina::Token other[] = {3, 4};
  check(session.feed(other, 2, 1).ok(), "sequence 1 is fed");
  lamina::Result<void> restored = session.restore_sequence(state.data(), state.size(), 0, {fuzz_adapter});
  if (!restored) {
    check(!restored.error().message.empty(), "a restore error has a message");
    check(session.position(0) == 0 && session.position(1) == 2, "a failed restore changes nothing");
    return 0;
  }
  check(session.position(1) == 2, "restoring sequence 0 leaves sequence 1 alone");
  const lamina::Token next = 5;
  lamina::Result<void> fed = session.feed(&next, 1, 0);
  if (fed) {
    lamina::Result<lamina::Token> sampled = session.sample(0);
    check(!sampled || (*sampled >= 0 && static_cast<std::uint32_t>(*sampled) < fuzz_model->hparams().vocab_size), "a sampled token is in the vocabulary");
  } else {
    check(!fed.error().message.empty(), "a decode error has a message");
  }
  return 0;
}
