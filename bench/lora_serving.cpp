// lamina_bench_lora_serving — what adapters cost at run time, in one process on one model:
//
//   1. generation of one sequence without adapters, with ADAPTER unmerged, and (--merge) merged
//      (tokens/s, interleaved rounds; the ratio is what a game pays for a character's adapter);
//   2. switching the active stack between two tokens (microseconds per switch, and the first
//      token after a switch against the steady rate);
//   3. SEQUENCES sequences decoding together, one token each per forward pass, each with its own
//      adapter, against the same sequences all sharing one adapter (tokens/s of the batch).
//
// usage: lamina_bench_lora_serving MODEL.gguf ADAPTER [ADAPTER2 ...] [--threads N] [--tokens N]
//        [--rounds N] [--sequences N] [--merge] [--json]
// ADAPTERs are GGUF adapter files or PEFT directories (lamina synth --lora-for MODEL -o A.gguf
// writes random ones; give SEQUENCES of them for part 3, or one, which is then reused with
// different scales so that every sequence still has a stack of its own).
#include <lamina/adapters/peft.hpp>
#include <lamina/lamina.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

int fail_with(const lamina::Error& error) {
  std::fprintf(stderr, "lamina_bench_lora_serving: %s\n", error.message.c_str());
  return 1;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0.0 : values[values.size() / 2];
}

// Tokens/s of `count` single-token steps of sequence 0 after a one-token warm-up.
lamina::Result<double> generation_rate(lamina::Session& session, std::size_t count, std::uint64_t& state) {
  const std::uint32_t vocab = session.model().hparams().vocab_size;
  auto next = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<lamina::Token>((state >> 33) % vocab);
  };
  session.clear();
  lamina::Token token = next();
  LAMINA_TRY(session.feed(&token, 1));
  const Clock::time_point start = Clock::now();
  for (std::size_t i = 0; i < count; ++i) {
    token = next();
    LAMINA_TRY(session.feed(&token, 1));
  }
  return static_cast<double>(count) / seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  std::uint32_t threads = 0, tokens = 32, rounds = 3, sequences = 8;
  bool json = false, merge = false;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    auto value = [&]() { return i + 1 < argc ? static_cast<std::uint32_t>(std::strtoul(argv[++i], nullptr, 10)) : 0u; };
    if (argument == "--threads") threads = value();
    else if (argument == "--tokens") tokens = value();
    else if (argument == "--rounds") rounds = value();
    else if (argument == "--sequences") sequences = value();
    else if (argument == "--json") json = true;
    else if (argument == "--merge") merge = true;
    else positional.push_back(argument);
  }
  if (positional.size() < 2 || tokens == 0 || rounds == 0 || sequences == 0 || sequences > 256) {
    std::fprintf(stderr, "usage: lamina_bench_lora_serving MODEL.gguf ADAPTER [ADAPTER2 ...] [--threads N] [--tokens N] [--rounds N] [--sequences N] [--merge] [--json]\n");
    return 1;
  }
  lamina::ModelParams model_params;
  model_params.load_tokenizer = false;
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(positional[0], model_params);
  if (!model) return fail_with(model.error());
  std::vector<std::shared_ptr<const lamina::LoraAdapter>> adapters;
  for (std::size_t i = 1; i < positional.size(); ++i) {
    lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> adapter = lamina::peft::load_adapter(**model, positional[i]);
    if (!adapter) return fail_with(adapter.error());
    adapters.push_back(*adapter);
  }
  const std::shared_ptr<const lamina::LoraAdapter>& first = adapters.front();
  std::fprintf(stderr, "model %s, adapter %s: max rank %u, %zu matrices, %.1f MiB of factors\n", positional[0].c_str(),
               first->name().c_str(), first->max_rank(), first->active_module_count(), static_cast<double>(first->factor_bytes()) / 1048576.0);

  // --- 1. one sequence: no adapter, unmerged, merged -------------------------------------------
  lamina::SessionParams params;
  params.thread_count = threads;
  params.context_length = tokens + 8;
  lamina::Result<lamina::Session> plain = lamina::Session::create(*model, params);
  if (!plain) return fail_with(plain.error());
  lamina::Result<lamina::Session> unmerged = lamina::Session::create(*model, params);
  if (!unmerged) return fail_with(unmerged.error());
  lamina::Result<void> stacked = unmerged->set_adapters({{first, 1.0f}});
  if (!stacked) return fail_with(stacked.error());
  lamina::Result<lamina::Session> merged = lamina::Session::create(*model, params);
  if (!merged) return fail_with(merged.error());
  double merge_seconds = 0;
  if (merge) {
    const Clock::time_point merge_start = Clock::now();
    lamina::Result<void> merging = merged->merge_adapters({{first, 1.0f}});
    if (!merging) return fail_with(merging.error());
    merge_seconds = seconds_since(merge_start);
  }

  std::vector<double> plain_rates, unmerged_rates, merged_rates;
  std::uint64_t state = 1;
  for (std::uint32_t round = 0; round < rounds; ++round) {
    std::fprintf(stderr, "round %u/%u: single sequence\n", round + 1, rounds);
    for (auto [session, rates] : {std::pair<lamina::Session*, std::vector<double>*>{&*plain, &plain_rates},
                                  {&*unmerged, &unmerged_rates}, {&*merged, &merged_rates}}) {
      if (session == &*merged && !merge) continue;
      lamina::Result<double> rate = generation_rate(*session, tokens, state);
      if (!rate) return fail_with(rate.error());
      rates->push_back(*rate);
    }
  }
  const double plain_tg = median(plain_rates), unmerged_tg = median(unmerged_rates), merged_tg = median(merged_rates);
  std::printf("generation, 1 sequence, %u tokens, median of %u rounds:\n", tokens, rounds);
  std::printf("  no adapter        %8.2f t/s\n", plain_tg);
  std::printf("  adapter unmerged  %8.2f t/s  (%.3fx)\n", unmerged_tg, unmerged_tg / plain_tg);
  if (merge) std::printf("  adapter merged    %8.2f t/s  (%.3fx; merging took %.2f s)\n", merged_tg, merged_tg / plain_tg, merge_seconds);

  // --- 2. switching stacks between tokens ------------------------------------------------------
  const lamina::AdapterStack stack_a = {{first, 1.0f}};
  const lamina::AdapterStack stack_b = {{adapters.back(), adapters.size() > 1 ? 1.0f : -0.5f}};
  std::vector<double> switch_seconds, after_switch_seconds;
  unmerged->clear();
  std::uint32_t vocab = (*model)->hparams().vocab_size;
  for (std::uint32_t i = 0; i < tokens; ++i) {
    const Clock::time_point start = Clock::now();
    lamina::Result<void> switched = unmerged->set_adapters(i % 2 == 0 ? stack_b : stack_a);
    if (!switched) return fail_with(switched.error());
    switch_seconds.push_back(seconds_since(start));
    const lamina::Token token = static_cast<lamina::Token>((i * 7919u) % vocab);
    const Clock::time_point step = Clock::now();
    lamina::Result<void> fed = unmerged->feed(&token, 1);
    if (!fed) return fail_with(fed.error());
    after_switch_seconds.push_back(seconds_since(step));
  }
  const double switch_us = median(switch_seconds) * 1e6, switch_max_us = *std::max_element(switch_seconds.begin(), switch_seconds.end()) * 1e6;
  std::printf("switching the stack between two tokens: median %.2f us, max %.2f us; a token right after a switch: %.2f ms (steady: %.2f ms)\n",
              switch_us, switch_max_us, median(after_switch_seconds) * 1e3, 1e3 / unmerged_tg);

  // --- 3. several sequences decoding together ----------------------------------------------------
  lamina::SessionParams batch_params = params;
  batch_params.sequence_count = sequences;
  batch_params.context_length = sequences * (tokens + 2);
  lamina::Result<lamina::Session> batched = lamina::Session::create(*model, batch_params);
  if (!batched) return fail_with(batched.error());
  const auto batch_rate = [&](bool distinct) -> lamina::Result<double> {
    batched->clear();
    for (std::uint32_t s = 0; s < sequences; ++s) {
      // Distinct: adapter s (or the one adapter at a scale of its own); shared: one stack for all.
      lamina::AdapterStack stack = {{adapters[distinct ? s % adapters.size() : 0], distinct && adapters.size() < sequences ? 1.0f - 0.01f * static_cast<float>(s) : 1.0f}};
      LAMINA_TRY(batched->set_adapters(stack, static_cast<lamina::SequenceId>(s)));
    }
    lamina::Batch batch;
    Clock::time_point start = Clock::now();
    for (std::uint32_t step = 0; step <= tokens; ++step) {
      if (step == 1) start = Clock::now();  // step 0 is the warm-up
      batch.clear();
      for (std::uint32_t s = 0; s < sequences; ++s) {
        batch.add(static_cast<lamina::Token>((step * 31u + s * 7u) % vocab), static_cast<lamina::Position>(step), static_cast<lamina::SequenceId>(s), true);
      }
      LAMINA_TRY(batched->decode(batch));
    }
    return static_cast<double>(tokens) * sequences / seconds_since(start);
  };
  std::vector<double> shared_rates, distinct_rates;
  for (std::uint32_t round = 0; round < rounds; ++round) {
    std::fprintf(stderr, "round %u/%u: %u sequences\n", round + 1, rounds, sequences);
    lamina::Result<double> shared = batch_rate(false);
    if (!shared) return fail_with(shared.error());
    lamina::Result<double> distinct = batch_rate(true);
    if (!distinct) return fail_with(distinct.error());
    shared_rates.push_back(*shared);
    distinct_rates.push_back(*distinct);
  }
  const double shared_tg = median(shared_rates), distinct_tg = median(distinct_rates);
  std::printf("%u sequences decoding together, one token each per pass, median of %u rounds:\n", sequences, rounds);
  std::printf("  one shared adapter        %8.2f t/s\n", shared_tg);
  std::printf("  %u different stacks        %8.2f t/s  (%.3fx)%s\n", sequences, distinct_tg, distinct_tg / shared_tg,
              adapters.size() < sequences ? "  (fewer adapters than sequences: some differ only by scale)" : "");
  if (json) {
    std::printf("{\"tg_plain\":%.3f,\"tg_unmerged\":%.3f,\"tg_merged\":%.3f,\"switch_us\":%.3f,\"batch_shared\":%.3f,\"batch_distinct\":%.3f}\n",
                plain_tg, unmerged_tg, merged_tg, switch_us, shared_tg, distinct_tg);
  }
  return 0;
}
