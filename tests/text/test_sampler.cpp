// Tests of lamina/text/sampler.hpp: Sampler (greedy, top-k/top-p/min-p, temperature, penalties,
// logit bias, determinism, option checks) and StopStringMatcher.
#include <lamina/text/sampler.hpp>

#include <doctest/doctest.h>

#include "alloc_counter.hpp"

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace {

using lamina::Sampler;
using lamina::SamplerParams;
using lamina::Token;

// A tiny deterministic generator for test data (independent of the sampler's own).
struct TestRandom {
  std::uint64_t state;
  explicit TestRandom(std::uint64_t seed) : state(seed * 2862933555777941757ull + 3037000493ull) {}
  std::uint32_t next() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::uint32_t>(state >> 33);
  }
  float uniform(float low, float high) { return low + (high - low) * static_cast<float>(next() >> 8) / 16777216.0f; }
};

std::vector<float> random_logits(std::size_t vocab, std::uint64_t seed, float low = -8.0f, float high = 8.0f) {
  TestRandom random(seed);
  std::vector<float> logits(vocab);
  for (float& logit : logits) logit = random.uniform(low, high);
  return logits;
}

Token argmax(const std::vector<float>& logits) {
  Token best = 0;
  for (std::size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[static_cast<std::size_t>(best)]) best = static_cast<Token>(i);
  }
  return best;
}

Sampler make(const SamplerParams& params, std::size_t vocab) {
  lamina::Result<Sampler> sampler = Sampler::create(params, vocab);
  REQUIRE_MESSAGE(sampler.ok(), (sampler.ok() ? std::string() : sampler.error().message));
  return std::move(*sampler);
}

// Plain sampling: temperature only, every filter off.
SamplerParams plain(float temperature, std::uint64_t seed = 1) {
  SamplerParams params;
  params.temperature = temperature;
  params.top_k = 0;
  params.top_p = 1.0f;
  params.min_p = 0.0f;
  params.seed = seed;
  return params;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  double max = -1e300;
  for (float logit : logits) max = std::max(max, static_cast<double>(logit));
  std::vector<double> probabilities(logits.size());
  double total = 0.0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    probabilities[i] = std::exp((static_cast<double>(logits[i]) - max) / temperature);
    total += probabilities[i];
  }
  for (double& p : probabilities) p /= total;
  return probabilities;
}

std::vector<int> histogram(Sampler& sampler, const std::vector<float>& logits, int draws) {
  std::vector<int> counts(logits.size(), 0);
  int out_of_range = 0;
  for (int i = 0; i < draws; ++i) {
    const Token token = sampler.sample(logits.data());
    if (token < 0 || static_cast<std::size_t>(token) >= logits.size()) {
      ++out_of_range;
      continue;
    }
    ++counts[static_cast<std::size_t>(token)];
  }
  REQUIRE(out_of_range == 0);
  return counts;
}

}  // namespace

TEST_CASE("sampler: temperature 0 picks the highest logit, the lowest id on ties, never NaN") {
  Sampler sampler = make(plain(0.0f), 1000);
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    const std::vector<float> logits = random_logits(1000, seed);
    CHECK(sampler.sample(logits.data()) == argmax(logits));
  }
  std::vector<float> logits(1000, 0.0f);
  logits[7] = 3.0f;
  logits[500] = 3.0f;
  CHECK(sampler.sample(logits.data()) == 7);
  logits[3] = std::numeric_limits<float>::quiet_NaN();
  logits[4] = std::numeric_limits<float>::infinity();
  CHECK(sampler.sample(logits.data()) == 4);
  logits[4] = std::numeric_limits<float>::quiet_NaN();
  CHECK(sampler.sample(logits.data()) == 7);
}

TEST_CASE("sampler: top-k 1 gives the greedy choice at any temperature") {
  SamplerParams params = plain(1.5f, 99);
  params.top_k = 1;
  Sampler sampler = make(params, 4096);
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    const std::vector<float> logits = random_logits(4096, seed, -2.0f, 2.0f);
    CHECK(sampler.sample(logits.data()) == argmax(logits));
  }
}

TEST_CASE("sampler: a seed repeats exactly, reset() restarts it, another seed differs") {
  const std::vector<float> logits = random_logits(512, 5, -1.0f, 1.0f);  // flat: many plausible tokens
  SamplerParams params;  // the defaults: top-k 40, top-p 0.95, min-p 0.05, temperature 0.8
  params.seed = 1234;
  Sampler first = make(params, 512);
  Sampler second = make(params, 512);
  std::vector<Token> run;
  for (int i = 0; i < 500; ++i) {
    const Token token = first.sample(logits.data());
    CHECK(token == second.sample(logits.data()));
    run.push_back(token);
  }
  first.reset();
  bool same_after_reset = true;
  for (int i = 0; i < 500; ++i) same_after_reset = same_after_reset && first.sample(logits.data()) == run[static_cast<std::size_t>(i)];
  CHECK(same_after_reset);
  CHECK(first.seed() == 1234);

  params.seed = 1235;
  Sampler other = make(params, 512);
  int differences = 0;
  for (int i = 0; i < 500; ++i) differences += other.sample(logits.data()) != run[static_cast<std::size_t>(i)];
  CHECK(differences > 100);
}

TEST_CASE("sampler: the random stream is fixed (the same on every compiler and CPU)") {
  // Pins the generator: xoshiro256** seeded by splitmix64. If this changes, seeded runs change.
  lamina::detail::Xoshiro256 random;
  random.seed(0);
  // splitmix64(0) gives the state; these are the first outputs of xoshiro256** from it.
  const std::uint64_t first = random.next();
  const std::uint64_t second = random.next();
  lamina::detail::Xoshiro256 again;
  again.seed(0);
  CHECK(again.next() == first);
  CHECK(again.next() == second);
  CHECK(first == 0x99ec5f36cb75f2b4ull);
  CHECK(second == 0xbf6e1f784956452aull);
  bool in_unit_interval = true;
  for (int i = 0; i < 100000; ++i) {
    const double u = random.uniform();
    in_unit_interval = in_unit_interval && u >= 0.0 && u < 1.0;
  }
  CHECK(in_unit_interval);
}

TEST_CASE("sampler: at temperature 1 the frequencies match the softmax") {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f};
  const int draws = 200000;
  for (float temperature : {1.0f, 0.5f}) {
    Sampler sampler = make(plain(temperature, 2024), logits.size());
    const std::vector<int> counts = histogram(sampler, logits, draws);
    const std::vector<double> expected = softmax(logits, static_cast<double>(temperature));
    for (std::size_t i = 0; i < logits.size(); ++i) {
      const double frequency = counts[i] / static_cast<double>(draws);
      const double sigma = std::sqrt(expected[i] * (1.0 - expected[i]) / draws);
      INFO("temperature " << temperature << ", token " << i << ": frequency " << frequency << ", softmax " << expected[i]);
      CHECK(std::fabs(frequency - expected[i]) <= 5.0 * sigma + 1e-4);
    }
  }
}

TEST_CASE("sampler: top-k, top-p and min-p keep exactly the tokens they must") {
  // Probabilities at temperature 1, placed at shuffled ids so rank order is not id order.
  const std::vector<double> probabilities = {0.05, 0.30, 0.50, 0.15};
  std::vector<float> logits;
  for (double p : probabilities) logits.push_back(static_cast<float>(std::log(p)));
  const int draws = 20000;

  SUBCASE("top-p 0.75 keeps the two best (0.5 + 0.3 crosses 0.75)") {
    SamplerParams params = plain(1.0f, 7);
    params.top_p = 0.75f;
    Sampler sampler = make(params, logits.size());
    const std::vector<int> counts = histogram(sampler, logits, draws);
    CHECK(counts[0] == 0);
    CHECK(counts[3] == 0);
    CHECK(counts[1] > 0);
    CHECK(counts[2] > 0);
    CHECK(std::fabs(counts[2] / static_cast<double>(draws) - 0.5 / 0.8) < 0.02);
  }
  SUBCASE("top-p 0.4 keeps the best only") {
    SamplerParams params = plain(1.0f, 7);
    params.top_p = 0.4f;
    Sampler sampler = make(params, logits.size());
    CHECK(histogram(sampler, logits, 1000)[2] == 1000);
  }
  SUBCASE("min-p 0.2 drops what is below 0.2 x 0.5 = 0.1") {
    SamplerParams params = plain(1.0f, 7);
    params.min_p = 0.2f;
    Sampler sampler = make(params, logits.size());
    const std::vector<int> counts = histogram(sampler, logits, draws);
    CHECK(counts[0] == 0);
    CHECK(counts[1] > 0);
    CHECK(counts[2] > 0);
    CHECK(counts[3] > 0);
  }
  SUBCASE("min-p is judged at temperature 1, before the temperature") {
    SamplerParams params = plain(5.0f, 7);  // a hot temperature flattens, but must not revive token 0
    params.min_p = 0.2f;
    Sampler sampler = make(params, logits.size());
    CHECK(histogram(sampler, logits, draws)[0] == 0);
  }
  SUBCASE("top-k 2") {
    SamplerParams params = plain(1.0f, 7);
    params.top_k = 2;
    Sampler sampler = make(params, logits.size());
    const std::vector<int> counts = histogram(sampler, logits, draws);
    CHECK(counts[0] == 0);
    CHECK(counts[3] == 0);
    CHECK(counts[1] > 0);
    CHECK(counts[2] > 0);
  }
}

TEST_CASE("sampler: top-p over a large vocabulary keeps the smallest set reaching p") {
  const std::size_t vocab = 5000;
  const std::vector<float> logits = random_logits(vocab, 11, -4.0f, 4.0f);
  const std::vector<double> p = softmax(logits, 1.0);
  // Reference: sort all by probability, cut where the cumulative sum reaches 0.9.
  std::vector<std::size_t> order(vocab);
  for (std::size_t i = 0; i < vocab; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return p[a] > p[b]; });
  std::vector<bool> allowed(vocab, false);
  double cumulative = 0.0;
  std::size_t kept = 0;
  for (std::size_t index : order) {
    allowed[index] = true;
    ++kept;
    cumulative += p[index];
    if (cumulative >= 0.9) break;
  }
  REQUIRE(kept > 256);  // exercises the sampler's stepwise partial sort

  SamplerParams params = plain(1.0f, 3);
  params.top_p = 0.9f;
  Sampler sampler = make(params, vocab);
  bool all_allowed = true;
  for (int i = 0; i < 2000; ++i) {
    const Token token = sampler.sample(logits.data());
    all_allowed = all_allowed && allowed[static_cast<std::size_t>(token)];
  }
  CHECK(all_allowed);
}

TEST_CASE("sampler: penalties follow llama.cpp's definition over the last N accepted tokens") {
  const std::size_t vocab = 64;
  SamplerParams params = plain(0.0f);
  params.repeat_penalty = 1.3f;
  params.frequency_penalty = 0.25f;
  params.presence_penalty = 0.5f;
  params.penalty_last_n = 16;
  Sampler sampler = make(params, vocab);

  TestRandom random(77);
  std::vector<Token> accepted;
  for (int i = 0; i < 40; ++i) {
    const Token token = static_cast<Token>(random.next() % 12);  // few distinct tokens: many repeats
    accepted.push_back(token);
    sampler.accept(token);
  }
  const std::vector<float> logits = random_logits(vocab, 78, -3.0f, 3.0f);

  // Reference: count the tokens in the last 16, then apply the formula to each distinct one.
  std::map<Token, int> counts;
  for (std::size_t i = accepted.size() - 16; i < accepted.size(); ++i) ++counts[accepted[i]];
  std::vector<float> expected = logits;
  for (const auto& entry : counts) {
    float& logit = expected[static_cast<std::size_t>(entry.first)];
    logit = logit > 0.0f ? logit / params.repeat_penalty : logit * params.repeat_penalty;
    logit -= static_cast<float>(entry.second) * params.frequency_penalty + params.presence_penalty;
  }
  std::vector<float> got = logits;
  sampler.apply_bias_and_penalties(got.data());
  for (std::size_t i = 0; i < vocab; ++i) {
    INFO("token " << i);
    CHECK(got[i] == expected[i]);
  }
  // Applying twice must give the same result (the internal counts are restored).
  std::vector<float> again = logits;
  sampler.apply_bias_and_penalties(again.data());
  CHECK(again == got);
  // sample() uses the same logits.
  CHECK(sampler.sample(logits.data()) == argmax(expected));

  sampler.reset();  // forgets the history
  std::vector<float> after_reset = logits;
  sampler.apply_bias_and_penalties(after_reset.data());
  CHECK(after_reset == logits);

  SamplerParams off = params;
  off.penalty_last_n = 0;
  Sampler no_window = make(off, vocab);
  for (Token token : accepted) no_window.accept(token);
  std::vector<float> unchanged = logits;
  no_window.apply_bias_and_penalties(unchanged.data());
  CHECK(unchanged == logits);
}

TEST_CASE("sampler: a repeat penalty makes greedy decoding move on") {
  SamplerParams params = plain(0.0f);
  params.repeat_penalty = 2.0f;
  Sampler sampler = make(params, 4);
  const std::vector<float> logits = {1.0f, 3.0f, 2.5f, -1.0f};
  CHECK(sampler.sample(logits.data()) == 1);
  sampler.accept(1);  // 3 / 2 = 1.5 < 2.5
  CHECK(sampler.sample(logits.data()) == 2);
  sampler.accept(2);  // 2.5 / 2 = 1.25 < 1.5
  CHECK(sampler.sample(logits.data()) == 1);
  sampler.accept(3);  // a negative logit is multiplied: -1 * 2 = -2, still last
  std::vector<float> penalized = logits;
  sampler.apply_bias_and_penalties(penalized.data());
  CHECK(penalized == std::vector<float>{1.0f, 1.5f, 1.25f, -2.0f});

  Sampler ties = make(params, 2);
  const std::vector<float> two = {1.0f, 2.0f};
  ties.accept(1);  // 2 / 2 = 1 ties with token 0: the lowest id wins
  CHECK(ties.sample(two.data()) == 0);
}

TEST_CASE("sampler: logit bias") {
  std::vector<float> logits = {0.0f, 5.0f, 4.0f, 1.0f};
  SamplerParams params = plain(0.0f);
  params.logit_bias = {{1, -std::numeric_limits<float>::infinity()}, {3, 0.5f}};
  Sampler greedy = make(params, 4);
  CHECK(greedy.sample(logits.data()) == 2);  // 1 is banned
  std::vector<float> biased = logits;
  greedy.apply_bias_and_penalties(biased.data());
  CHECK(biased[3] == 1.5f);
  CHECK(biased[0] == 0.0f);

  params = plain(1.0f, 5);
  params.logit_bias = {{0, 100.0f}};
  Sampler forced = make(params, 4);
  CHECK(histogram(forced, logits, 1000)[0] == 1000);

  params.logit_bias = {{1, -std::numeric_limits<float>::infinity()}};
  Sampler banned = make(params, 4);
  CHECK(histogram(banned, logits, 5000)[1] == 0);

  params.logit_bias = {{3, std::numeric_limits<float>::infinity()}};
  Sampler certain = make(params, 4);
  CHECK(histogram(certain, logits, 1000)[3] == 1000);
}

TEST_CASE("sampler: NaN and -inf logits are never drawn") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float minus_infinity = -std::numeric_limits<float>::infinity();
  std::vector<float> logits = {nan, 1.0f, nan, 0.5f, minus_infinity, nan};
  for (SamplerParams params : {plain(1.0f, 3), SamplerParams{}}) {
    Sampler sampler = make(params, logits.size());
    const std::vector<int> counts = histogram(sampler, logits, 5000);
    CHECK(counts[0] == 0);
    CHECK(counts[2] == 0);
    CHECK(counts[4] == 0);
    CHECK(counts[5] == 0);
    CHECK(counts[1] + counts[3] == 5000);
  }
  Sampler sampler = make(plain(1.0f), 3);
  const std::vector<float> all_nan = {nan, nan, nan};
  CHECK(sampler.sample(all_nan.data()) == 0);
  const std::vector<float> all_banned = {nan, minus_infinity, minus_infinity};
  CHECK(sampler.sample(all_banned.data()) == 1);
}

TEST_CASE("sampler: sample() and accept() allocate nothing") {
  SamplerParams params;  // every filter on
  params.repeat_penalty = 1.1f;
  params.top_k = 0;      // the top-p path sorts the whole vocabulary in steps
  params.logit_bias = {{3, 1.0f}};
  const std::size_t vocab = 32000;
  Sampler sampler = make(params, vocab);
  const std::vector<float> logits = random_logits(vocab, 9, -3.0f, 3.0f);
  lamina_test::AllocationScope scope;
  for (int i = 0; i < 20; ++i) sampler.accept(sampler.sample(logits.data()));
  CHECK(scope.count() == 0);
  if (!lamina_test::allocation_counting()) MESSAGE("allocations are not counted in this build (a sanitizer replaces operator new)");
}

TEST_CASE("sampler: options out of range are errors that name the option") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    const char* option;
    SamplerParams params;
  };
  std::vector<Case> cases;
  auto add = [&](const char* option, void (*change)(SamplerParams&)) {
    SamplerParams params;
    change(params);
    cases.push_back(Case{option, params});
  };
  add("temperature", [](SamplerParams& p) { p.temperature = -0.1f; });
  add("temperature", [](SamplerParams& p) { p.temperature = std::numeric_limits<float>::quiet_NaN(); });
  add("temperature", [](SamplerParams& p) { p.temperature = std::numeric_limits<float>::infinity(); });
  add("top_k", [](SamplerParams& p) { p.top_k = -1; });
  add("top_p", [](SamplerParams& p) { p.top_p = 0.0f; });
  add("top_p", [](SamplerParams& p) { p.top_p = 1.01f; });
  add("top_p", [](SamplerParams& p) { p.top_p = std::numeric_limits<float>::quiet_NaN(); });
  add("min_p", [](SamplerParams& p) { p.min_p = -0.01f; });
  add("min_p", [](SamplerParams& p) { p.min_p = 1.5f; });
  add("min_p", [](SamplerParams& p) { p.min_p = std::numeric_limits<float>::quiet_NaN(); });
  add("repeat_penalty", [](SamplerParams& p) { p.repeat_penalty = 0.0f; });
  add("repeat_penalty", [](SamplerParams& p) { p.repeat_penalty = -1.0f; });
  add("repeat_penalty", [](SamplerParams& p) { p.repeat_penalty = std::numeric_limits<float>::quiet_NaN(); });
  add("frequency_penalty", [](SamplerParams& p) { p.frequency_penalty = std::numeric_limits<float>::quiet_NaN(); });
  add("presence_penalty", [](SamplerParams& p) { p.presence_penalty = std::numeric_limits<float>::infinity(); });
  add("penalty_last_n", [](SamplerParams& p) { p.penalty_last_n = -1; });
  add("logit_bias", [](SamplerParams& p) { p.logit_bias = {{100, 1.0f}}; });
  add("logit_bias", [](SamplerParams& p) { p.logit_bias = {{-1, 1.0f}}; });
  add("logit_bias", [](SamplerParams& p) { p.logit_bias = {{5, std::numeric_limits<float>::quiet_NaN()}}; });
  for (const Case& c : cases) {
    lamina::Result<Sampler> sampler = Sampler::create(c.params, 100);
    REQUIRE_FALSE(sampler.ok());
    INFO(sampler.error().message);
    CHECK(sampler.error().code == lamina::ErrorCode::invalid_argument);
    CHECK(sampler.error().message.find(c.option) != std::string::npos);
  }
  CHECK_FALSE(Sampler::create(SamplerParams{}, 0).ok());
  (void)nan;

  // The edges of the ranges are allowed.
  SamplerParams edges;
  edges.temperature = 0.0f;
  edges.top_k = 0;
  edges.top_p = 1.0f;
  edges.min_p = 1.0f;
  edges.frequency_penalty = -1.0f;  // negative penalties encourage repeats; allowed as in llama.cpp
  edges.penalty_last_n = 0;
  edges.logit_bias = {{99, -std::numeric_limits<float>::infinity()}};
  CHECK(Sampler::create(edges, 100).ok());
}

// ---------------------------------------------------------------------------------------------
// StopStringMatcher

namespace {

// Feeds the pieces, collects what the matcher lets through (and the flush at the end).
struct StreamResult {
  std::string output;
  bool stopped = false;
  std::size_t stop_index = 0;
  bool leaked = false;  // emitted text that is not a prefix of the expected output at some point
};

StreamResult stream(lamina::StopStringMatcher& matcher, const std::vector<std::string>& pieces, const std::string& expected) {
  StreamResult result;
  for (const std::string& piece : pieces) {
    const lamina::StopMatch match = matcher.feed(piece);
    result.output.append(match.text.data(), match.text.size());
    if (expected.compare(0, result.output.size(), result.output) != 0 || result.output.size() > expected.size()) {
      result.leaked = true;
    }
    if (match.stopped) {
      result.stopped = true;
      result.stop_index = match.stop_index;
      break;
    }
  }
  if (!result.stopped) {
    const std::string_view rest = matcher.flush();
    result.output.append(rest.data(), rest.size());
  }
  return result;
}

}  // namespace

TEST_CASE("stop strings: a stop string split across pieces is never printed") {
  lamina::StopStringMatcher matcher({"</s>", "\nUser:"});
  const StreamResult result = stream(matcher, {"Hello <", "/", "s> and more"}, "Hello ");
  CHECK(result.stopped);
  CHECK(result.stop_index == 0);
  CHECK(result.output == "Hello ");
  CHECK_FALSE(result.leaked);
  CHECK(matcher.stopped());
  CHECK(matcher.feed("x").stopped);
  CHECK(matcher.feed("x").text.empty());
}

TEST_CASE("stop strings: held-back text is released when the stop string does not complete") {
  lamina::StopStringMatcher matcher({"</s>"});
  lamina::StopMatch match = matcher.feed("a<");
  CHECK(match.text == "a");
  CHECK(matcher.held_back() == 1);
  match = matcher.feed("/");
  CHECK(match.text.empty());
  CHECK(matcher.held_back() == 2);
  match = matcher.feed("x");
  CHECK(match.text == "</x");
  CHECK_FALSE(match.stopped);
  CHECK(matcher.held_back() == 0);
  match = matcher.feed("</");
  CHECK(match.text.empty());
  CHECK(matcher.flush() == "</");  // generation ended otherwise: what was held back is safe
}

TEST_CASE("stop strings: overlapping prefixes, the earliest stop wins, reset") {
  lamina::StopStringMatcher matcher({"aab"});
  StreamResult result = stream(matcher, {"a", "a", "a", "b", "c"}, "a");
  CHECK(result.stopped);
  CHECK(result.output == "a");

  lamina::StopStringMatcher two({"world", "lo w"});
  result = stream(two, {"hel", "lo wor", "ld"}, "hel");
  CHECK(result.stopped);
  CHECK(result.stop_index == 1);
  CHECK(result.output == "hel");

  two.reset();
  CHECK_FALSE(two.stopped());
  result = stream(two, {"say ", "hi"}, "say hi");
  CHECK_FALSE(result.stopped);
  CHECK(result.output == "say hi");

  lamina::StopStringMatcher none({""});  // empty stop strings are ignored
  result = stream(none, {"x", "y"}, "xy");
  CHECK(result.output == "xy");
}

TEST_CASE("stop strings: random texts and random piece boundaries") {
  const std::vector<std::string> stops = {"<|end|>", "##", "<|e"};
  const char alphabet[] = {'<', '|', 'e', 'n', 'd', '>', '#', 'x'};
  TestRandom random(31);
  int stopped_cases = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const std::size_t length = random.next() % 40;
    for (std::size_t i = 0; i < length; ++i) text += alphabet[random.next() % sizeof alphabet];
    std::size_t earliest = std::string::npos;
    for (const std::string& stop : stops) earliest = std::min(earliest, text.find(stop));
    const std::string expected = earliest == std::string::npos ? text : text.substr(0, earliest);
    std::vector<std::string> pieces;
    for (std::size_t at = 0; at < text.size();) {
      const std::size_t size = std::min<std::size_t>(text.size() - at, random.next() % 5);  // empty pieces too
      pieces.push_back(text.substr(at, size));
      at += size;
    }
    lamina::StopStringMatcher matcher(stops);
    const StreamResult result = stream(matcher, pieces, expected);
    INFO("text '" << text << "'");
    CHECK(result.output == expected);
    CHECK_FALSE(result.leaked);
    CHECK(result.stopped == (earliest != std::string::npos));
    stopped_cases += result.stopped;
  }
  CHECK(stopped_cases > 100);
}
