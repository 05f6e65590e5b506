// lamina_bench_first_token — time to first token: from Model::load() to the first sampled token
// of a prompt, with the model file cold (not in the page cache) and warm (cached by the run
// before), with and without ModelParams::touch_pages.
//
// Cold means the file's pages were dropped from the page cache with posix_fadvise(DONTNEED)
// just before the load (no root needed; it drops clean pages that nothing maps). The figures
// say how much of the file was in memory right after the load, so a drop that did not happen
// shows. The four kinds of run are interleaved, ROUNDS times; each figure is the best round.
//
// usage: lamina_bench_first_token MODEL.gguf [--prompt-tokens N] [--threads T] [--rounds R]
// The last line is one JSON object: for each of cold, warm, cold_touch, warm_touch the load,
// session, prompt and total milliseconds and the resident fraction after the load.
#include <lamina/lamina.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#  include <fcntl.h>
#  include <unistd.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

double milliseconds_since(Clock::time_point start) { return std::chrono::duration<double, std::milli>(Clock::now() - start).count(); }

int fail_with(const std::string& message) {
  std::fprintf(stderr, "lamina_bench_first_token: %s\n", message.c_str());
  return 1;
}

// Asks the kernel to forget the file's cached pages; false where it cannot be asked.
bool drop_from_page_cache(const std::string& path) {
#if defined(POSIX_FADV_DONTNEED)
  const int descriptor = ::open(path.c_str(), O_RDONLY);
  if (descriptor < 0) return false;
  const bool dropped = ::posix_fadvise(descriptor, 0, 0, POSIX_FADV_DONTNEED) == 0;
  ::close(descriptor);
  return dropped;
#else
  (void)path;
  return false;
#endif
}

struct FirstToken {
  double load_ms = 0, session_ms = 0, prompt_ms = 0, total_ms = 0;
  double resident_after_load = 0;  // fraction of the mapped weights in memory
};

struct RunKind {
  const char* name;
  bool cold;
  bool touch_pages;
};

lamina::Result<FirstToken> first_token(const std::string& path, bool touch_pages, std::size_t prompt_tokens, std::size_t threads) {
  FirstToken figures;
  const Clock::time_point start = Clock::now();
  lamina::ModelParams model_params;
  model_params.touch_pages = touch_pages;
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path, model_params);
  if (!model) return model.take_error();
  figures.load_ms = milliseconds_since(start);
  const double mapped = static_cast<double>((*model)->mapped_bytes());
  figures.resident_after_load = mapped > 0 ? static_cast<double>((*model)->resident_bytes()) / mapped : 1.0;

  const Clock::time_point session_start = Clock::now();
  lamina::SessionParams params;
  params.thread_count = static_cast<std::uint32_t>(threads);
  params.context_length = static_cast<std::uint32_t>(prompt_tokens + 16);
  lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
  if (!session) return session.take_error();
  figures.session_ms = milliseconds_since(session_start);

  // The prompt: BOS, then tokens spread over the vocabulary (the same ones every run).
  const std::uint32_t vocab = (*model)->hparams().vocab_size;
  std::vector<lamina::Token> prompt(prompt_tokens);
  for (std::size_t i = 0; i < prompt_tokens; ++i) prompt[i] = static_cast<lamina::Token>(i == 0 ? 1 % vocab : (i * 7919 + 13) % vocab);
  const Clock::time_point prompt_start = Clock::now();
  LAMINA_TRY(session->feed(prompt));
  lamina::Result<lamina::Token> token = session->sample();
  if (!token) return token.take_error();
  figures.prompt_ms = milliseconds_since(prompt_start);
  figures.total_ms = milliseconds_since(start);
  return figures;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: lamina_bench_first_token MODEL.gguf [--prompt-tokens N] [--threads T] [--rounds R]\n");
    return 2;
  }
  const std::string path = argv[1];
  std::size_t prompt_tokens = 64, threads = 2, rounds = 3;
  for (int i = 2; i < argc; ++i) {
    const std::string option = argv[i];
    if (i + 1 >= argc) return fail_with("option " + option + " needs a value");
    const long value = std::strtol(argv[++i], nullptr, 10);
    if (option == "--prompt-tokens" && value >= 1 && value <= 8192) prompt_tokens = static_cast<std::size_t>(value);
    else if (option == "--threads" && value >= 1 && value <= 256) threads = static_cast<std::size_t>(value);
    else if (option == "--rounds" && value >= 1 && value <= 100) rounds = static_cast<std::size_t>(value);
    else return fail_with("unknown option or value out of range: " + option + " " + argv[i]);
  }

  const RunKind kinds[] = {{"cold", true, false}, {"warm", false, false}, {"cold_touch", true, true}, {"warm_touch", false, true}};
  constexpr std::size_t kind_count = sizeof(kinds) / sizeof(kinds[0]);
  std::vector<FirstToken> best(kind_count);
  bool dropped = true;
  for (std::size_t round = 0; round < rounds; ++round) {
    for (std::size_t k = 0; k < kind_count; ++k) {
      if (kinds[k].cold) dropped = drop_from_page_cache(path) && dropped;
      lamina::Result<FirstToken> figures = first_token(path, kinds[k].touch_pages, prompt_tokens, threads);
      if (!figures) return fail_with(figures.error().message);
      if (round == 0 || figures->total_ms < best[k].total_ms) best[k] = *figures;
    }
  }
  if (!dropped) std::printf("note: the page cache could not be asked to drop the file; \"cold\" runs may be warm\n");

  std::printf("time to first token, %zu prompt tokens, %zu threads, best of %zu rounds\n", prompt_tokens, threads, rounds);
  std::printf("%-11s %9s %11s %10s %9s %20s\n", "run", "load ms", "session ms", "prompt ms", "total ms", "resident after load");
  for (std::size_t k = 0; k < kind_count; ++k) {
    std::printf("%-11s %9.1f %11.1f %10.1f %9.1f %19.0f%%\n", kinds[k].name, best[k].load_ms, best[k].session_ms, best[k].prompt_ms,
                best[k].total_ms, 100.0 * best[k].resident_after_load);
  }
  std::printf("{\"prompt_tokens\": %zu, \"threads\": %zu, \"rounds\": %zu", prompt_tokens, threads, rounds);
  for (std::size_t k = 0; k < kind_count; ++k) {
    std::printf(", \"%s\": {\"load_ms\": %.2f, \"session_ms\": %.2f, \"prompt_ms\": %.2f, \"total_ms\": %.2f, \"resident_after_load\": %.3f}",
                kinds[k].name, best[k].load_ms, best[k].session_ms, best[k].prompt_ms, best[k].total_ms, best[k].resident_after_load);
  }
  std::printf("}\n");
  return 0;
}
