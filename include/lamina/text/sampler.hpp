// lamina/text/sampler.hpp — choosing the next token from logits, and stopping at stop strings.
//
//   lamina::SamplerParams params;          // temperature 0.8, top-k 40, top-p 0.95, min-p 0.05
//   params.seed = 42;
//   auto sampler = lamina::Sampler::create(params, vocab_size);
//   if (!sampler) { report(sampler.error()); return; }
//   for (lamina::Token t : prompt) sampler->accept(t);      // prompt tokens count for penalties
//   lamina::Token next = sampler->sample(logits);            // logits: [vocab_size]
//   sampler->accept(next);
//
// What sample() does, in llama.cpp's order (common/sampling.cpp):
//   1. logit bias: logit[t] += bias for each (t, bias) pair;
//   2. penalties over the last `penalty_last_n` accepted tokens, for each distinct token t seen
//      `count` times there: a positive logit is divided by repeat_penalty, a negative one
//      multiplied; then logit -= count * frequency_penalty + presence_penalty;
//   3. temperature 0: the highest logit wins (ties: the lowest id). Otherwise
//      top-k, top-p (smallest set of best tokens whose probability reaches top_p), min-p (drop tokens
//      whose probability is below min_p times the best one's), all three judged at temperature 1,
//      then logits are divided by the temperature and one token is drawn from their softmax.
// NaN logits are never chosen; -infinity means "never" (use a bias of -infinity to ban a token).
//
// Determinism: the random numbers come from lamina's own xoshiro256** generator seeded through
// splitmix64, turned into floats by bit arithmetic, so the random stream is identical on every
// compiler and CPU. Candidates are ordered by (logit, id), so ties never depend on the standard
// library's sort. The draw also uses std::exp; where two C libraries' exp differ in the last
// bit, a choice can differ with a probability around 1e-7 per token.
//
// Memory: create() allocates every buffer ([vocab_size] candidates); sample() and accept()
// allocate nothing.
#pragma once

#include "../config.hpp"
#include "../core/random.hpp"
#include "../core/result.hpp"
#include "token.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN

struct SamplerParams {
  float temperature = 0.8f;      // 0 = greedy (always the most likely token)
  int top_k = 40;                // keep the k best tokens; 0 = off
  float top_p = 0.95f;           // nucleus sampling, in (0, 1]; 1 = off
  float min_p = 0.05f;           // in [0, 1]; 0 = off
  float repeat_penalty = 1.0f;   // > 0; 1 = off
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  int penalty_last_n = 64;       // how many of the latest accepted tokens the penalties look at; 0 = off
  std::vector<std::pair<Token, float>> logit_bias;  // added to the logit of a token; -inf bans it
  std::uint64_t seed = 0xC0FFEEull;
};

class Sampler {
 public:
  // Checks every option; an option out of range gives ErrorCode::invalid_argument naming it.
  static Result<Sampler> create(const SamplerParams& params, std::size_t vocab_size);

  // Chooses a token from `logits` ([vocab_size], not modified). Does not record it: call
  // accept() with the token that is actually used.
  Token sample(const float* logits);

  // Records a token for the penalties (prompt tokens too). Ids outside the vocabulary are ignored.
  void accept(Token token);

  // Forgets accepted tokens and restarts the random numbers from seed(): a reset sampler repeats
  // its earlier choices exactly.
  void reset();

  std::uint64_t seed() const { return params_.seed; }
  const SamplerParams& params() const { return params_; }
  std::size_t vocab_size() const { return vocab_size_; }

  // Steps 1 and 2 of sample() in place on `logits` ([vocab_size]): logit bias, then penalties.
  void apply_bias_and_penalties(float* logits);

  // What a saved session keeps of a sampler: the state of its random numbers and the accepted
  // tokens the penalties look at, oldest first. restore() continues exactly where state() was
  // taken (a sampler of the same params); ids outside the vocabulary are ignored, as by accept().
  struct State {
    std::uint64_t random[4] = {0, 0, 0, 0};
    std::vector<Token> recent;
  };
  State state() const;
  void restore(const State& state);

 private:
  struct Candidate {
    Token id;
    float logit;
    float weight;  // exp((logit - max) / temperature) for the draw; top-p first uses it at temperature 1
  };
  // The order candidates are ranked in: higher logit first, then lower id, so the order is total.
  static bool ranks_before(const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
  bool penalties_active() const {
    return params_.penalty_last_n > 0 &&
           (params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f);
  }
  Token greedy(const float* logits) const;
  std::size_t keep_top_p(std::size_t count, std::size_t sorted_prefix, float max_logit);
  Token draw(std::size_t count, std::size_t sorted_prefix, float max_logit);

  SamplerParams params_;
  std::size_t vocab_size_ = 0;
  std::vector<float> work_;              // [vocab_size] logits after bias and penalties
  std::vector<Candidate> candidates_;    // [vocab_size] tokens still in the running
  std::vector<Token> history_;           // [penalty_last_n] ring of the latest accepted tokens
  std::size_t history_next_ = 0;         // where the next accepted token goes in history_
  std::size_t history_size_ = 0;         // how many entries of history_ are filled
  std::vector<std::int32_t> counts_;     // [vocab_size] how often each token occurs in history_
  detail::Xoshiro256 random_;
};

inline Result<Sampler> Sampler::create(const SamplerParams& params, std::size_t vocab_size) {
  auto invalid = [](const std::string& what) { return fail(ErrorCode::invalid_argument, "sampler: " + what); };
  if (vocab_size == 0 || vocab_size > static_cast<std::size_t>(std::numeric_limits<Token>::max())) {
    return invalid("vocab_size = " + std::to_string(vocab_size) + " is out of range");
  }
  if (!(params.temperature >= 0.0f) || std::isinf(params.temperature)) {
    return invalid("temperature = " + detail::format_float(params.temperature) +
                   " is out of range; it must be a finite number >= 0 (0 = greedy)");
  }
  if (params.top_k < 0) {
    return invalid("top_k = " + std::to_string(params.top_k) + " is out of range; it must be >= 0 (0 = off)");
  }
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {
    return invalid("top_p = " + detail::format_float(params.top_p) + " is out of range; it must be in (0, 1] (1 = off)");
  }
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f)) {
    return invalid("min_p = " + detail::format_float(params.min_p) + " is out of range; it must be in [0, 1] (0 = off)");
  }
  if (!(params.repeat_penalty > 0.0f) || std::isinf(params.repeat_penalty)) {
    return invalid("repeat_penalty = " + detail::format_float(params.repeat_penalty) +
                   " is out of range; it must be a finite number > 0 (1 = off)");
  }
  if (!std::isfinite(params.frequency_penalty)) {
    return invalid("frequency_penalty = " + detail::format_float(params.frequency_penalty) + " must be a finite number");
  }
  if (!std::isfinite(params.presence_penalty)) {
    return invalid("presence_penalty = " + detail::format_float(params.presence_penalty) + " must be a finite number");
  }
  if (params.penalty_last_n < 0) {
    return invalid("penalty_last_n = " + std::to_string(params.penalty_last_n) + " is out of range; it must be >= 0 (0 = off)");
  }
  for (const std::pair<Token, float>& bias : params.logit_bias) {
    if (bias.first < 0 || static_cast<std::size_t>(bias.first) >= vocab_size) {
      return invalid("logit_bias token " + std::to_string(bias.first) + " is outside the vocabulary [0, " +
                     std::to_string(vocab_size) + ")");
    }
    if (std::isnan(bias.second)) {
      return invalid("logit_bias for token " + std::to_string(bias.first) + " is NaN");
    }
  }

  Sampler sampler;
  sampler.params_ = params;
  sampler.vocab_size_ = vocab_size;
  sampler.work_.assign(vocab_size, 0.0f);
  sampler.candidates_.assign(vocab_size, Candidate{0, 0.0f, 0.0f});
  if (sampler.penalties_active()) {
    sampler.history_.assign(static_cast<std::size_t>(params.penalty_last_n), 0);
    sampler.counts_.assign(vocab_size, 0);
  }
  sampler.random_.seed(params.seed);
  return sampler;
}

inline void Sampler::accept(Token token) {
  if (history_.empty() || token < 0 || static_cast<std::size_t>(token) >= vocab_size_) return;
  if (history_size_ == history_.size()) {
    --counts_[static_cast<std::size_t>(history_[history_next_])];  // the oldest token leaves the window
  } else {
    ++history_size_;
  }
  history_[history_next_] = token;
  ++counts_[static_cast<std::size_t>(token)];
  history_next_ = (history_next_ + 1) % history_.size();
}

inline void Sampler::reset() {
  for (std::size_t i = 0; i < history_size_; ++i) counts_[static_cast<std::size_t>(history_[i])] = 0;
  history_next_ = 0;
  history_size_ = 0;
  random_.seed(params_.seed);
}

inline Sampler::State Sampler::state() const {
  State state;
  random_.get_state(state.random);
  state.recent.reserve(history_size_);
  const std::size_t oldest = history_size_ == history_.size() ? history_next_ : 0;
  for (std::size_t i = 0; i < history_size_; ++i) state.recent.push_back(history_[(oldest + i) % history_.size()]);
  return state;
}

inline void Sampler::restore(const State& state) {
  reset();
  for (Token token : state.recent) accept(token);
  random_.set_state(state.random);
}

inline void Sampler::apply_bias_and_penalties(float* logits) {
  for (const std::pair<Token, float>& bias : params_.logit_bias) logits[bias.first] += bias.second;
  if (!penalties_active()) return;
  // Each distinct token in the window is penalised once, by its count. Negating a count marks
  // the token as done; the second loop restores the counts.
  for (std::size_t i = 0; i < history_size_; ++i) {
    const std::size_t token = static_cast<std::size_t>(history_[i]);
    const std::int32_t count = counts_[token];
    if (count <= 0) continue;
    float& logit = logits[token];
    logit = logit > 0.0f ? logit / params_.repeat_penalty : logit * params_.repeat_penalty;
    logit -= static_cast<float>(count) * params_.frequency_penalty + params_.presence_penalty;
    counts_[token] = -count;
  }
  for (std::size_t i = 0; i < history_size_; ++i) {
    std::int32_t& count = counts_[static_cast<std::size_t>(history_[i])];
    if (count < 0) count = -count;
  }
}

inline Token Sampler::greedy(const float* logits) const {
  Token best = -1;
  float best_logit = -std::numeric_limits<float>::infinity();
  for (std::size_t i = 0; i < vocab_size_; ++i) {
    if (logits[i] > best_logit) {  // false for NaN; strict, so ties keep the lowest id
      best_logit = logits[i];
      best = static_cast<Token>(i);
    }
  }
  if (best >= 0) return best;
  // Nothing above -infinity: every token is banned or NaN. Return the first one that is not NaN.
  for (std::size_t i = 0; i < vocab_size_; ++i) {
    if (!std::isnan(logits[i])) return static_cast<Token>(i);
  }
  return 0;
}

// Keeps the smallest set of best candidates whose probability (softmax at temperature 1) reaches
// top_p, like llama.cpp: the token that crosses the threshold stays. Sorts only as far as needed:
// the best 64, then 256, ... (the first `sorted_prefix` candidates are already in rank order and
// better than the rest). Returns how many candidates stay; they are then sorted.
inline std::size_t Sampler::keep_top_p(std::size_t count, std::size_t sorted_prefix, float max_logit) {
  Candidate* begin = candidates_.data();
  double total = 0.0;
  for (std::size_t i = 0; i < count; ++i) {
    begin[i].weight = static_cast<float>(std::exp(static_cast<double>(begin[i].logit - max_logit)));
    total += static_cast<double>(begin[i].weight);
  }
  const double target = static_cast<double>(params_.top_p) * total;
  double cumulative = 0.0;
  std::size_t kept = 0;
  while (kept < count) {
    if (kept == sorted_prefix) {
      const std::size_t next = std::min(count, std::max<std::size_t>(64, sorted_prefix * 4));
      if (next < count) std::nth_element(begin + sorted_prefix, begin + next, begin + count, ranks_before);
      std::sort(begin + sorted_prefix, begin + next, ranks_before);
      sorted_prefix = next;
    }
    cumulative += static_cast<double>(begin[kept].weight);  // travels with its candidate through the sorts
    ++kept;
    if (cumulative >= target) break;
  }
  return kept;
}

inline Token Sampler::sample(const float* logits) {
  std::copy(logits, logits + vocab_size_, work_.begin());
  apply_bias_and_penalties(work_.data());
  if (params_.temperature == 0.0f) return greedy(work_.data());

  // Candidates: every token with a logit above -infinity (NaN compares false and drops out too).
  const float infinity = std::numeric_limits<float>::infinity();
  std::size_t count = 0;
  float max_logit = -infinity;
  for (std::size_t i = 0; i < vocab_size_; ++i) {
    const float logit = work_[i];
    if (!(logit > -infinity)) continue;
    ++count;
    if (logit > max_logit) max_logit = logit;
  }
  if (count == 0) return greedy(work_.data());
  Candidate* begin = candidates_.data();
  if (params_.top_k > 0 && static_cast<std::size_t>(params_.top_k) < count && max_logit < infinity) {
    // The best k in one pass, without writing out every candidate: a heap whose front is the
    // worst of the k kept so far; most tokens lose to it at once. The order of ranks_before is
    // total (logit, then id), so the set and its sorted order are what sorting all would give.
    const std::size_t k = static_cast<std::size_t>(params_.top_k);
    std::size_t kept = 0;
    for (std::size_t i = 0; i < vocab_size_; ++i) {
      const float logit = work_[i];
      if (!(logit > -infinity)) continue;
      const Candidate candidate{static_cast<Token>(i), logit, 0.0f};
      if (kept < k) {
        begin[kept++] = candidate;
        std::push_heap(begin, begin + kept, ranks_before);
      } else if (ranks_before(candidate, begin[0])) {
        std::pop_heap(begin, begin + k, ranks_before);
        begin[k - 1] = candidate;
        std::push_heap(begin, begin + k, ranks_before);
      }
    }
    std::sort(begin, begin + k, ranks_before);
    return draw(k, k, max_logit);
  }
  count = 0;
  for (std::size_t i = 0; i < vocab_size_; ++i) {
    const float logit = work_[i];
    if (logit > -infinity) candidates_[count++] = Candidate{static_cast<Token>(i), logit, 0.0f};
  }
  if (max_logit == infinity) {
    // A +inf logit (from a bias) means "certainly one of these": keep those, equally likely.
    std::size_t kept = 0;
    for (std::size_t i = 0; i < count; ++i) {
      if (candidates_[i].logit == infinity) candidates_[kept++] = Candidate{candidates_[i].id, 0.0f, 0.0f};
    }
    count = kept;
    max_logit = 0.0f;
  }

  std::size_t sorted_prefix = 0;  // how many leading candidates are in rank order
  if (params_.top_k > 0 && static_cast<std::size_t>(params_.top_k) < count) {
    const std::size_t k = static_cast<std::size_t>(params_.top_k);
    std::nth_element(begin, begin + k, begin + count, ranks_before);
    std::sort(begin, begin + k, ranks_before);  // nth_element leaves an order that differs between libraries
    count = k;
    sorted_prefix = k;
  }
  return draw(count, sorted_prefix, max_logit);
}

// top-p, min-p, temperature and the draw, over the first `count` candidates (the first
// `sorted_prefix` of them in rank order and better than the rest).
inline Token Sampler::draw(std::size_t count, std::size_t sorted_prefix, float max_logit) {
  Candidate* begin = candidates_.data();
  if (params_.top_p < 1.0f) {
    count = keep_top_p(count, sorted_prefix, max_logit);
  }
  if (params_.min_p > 0.0f) {
    // p(token) >= min_p * p(best)  <=>  logit >= max_logit + log(min_p); the best always stays.
    const float threshold = max_logit + std::log(params_.min_p);
    std::size_t kept = 0;
    for (std::size_t i = 0; i < count; ++i) {
      if (begin[i].logit >= threshold) begin[kept++] = begin[i];
    }
    count = kept;
  }

  // Temperature, softmax and the draw. Weights are relative to the best logit, so they are in
  // (0, 1] and the sum cannot overflow.
  const double temperature = static_cast<double>(params_.temperature);
  double total = 0.0;
  for (std::size_t i = 0; i < count; ++i) {
    begin[i].weight = static_cast<float>(std::exp(static_cast<double>(begin[i].logit - max_logit) / temperature));
    total += static_cast<double>(begin[i].weight);
  }
  const double target = random_.uniform() * total;
  double cumulative = 0.0;
  std::size_t last_possible = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (begin[i].weight <= 0.0f) continue;
    cumulative += static_cast<double>(begin[i].weight);
    last_possible = i;
    if (target < cumulative) return begin[i].id;
  }
  return begin[last_possible].id;  // only reached through rounding at the very end of [0, total)
}

// Stop strings for streamed output. Generated text arrives in pieces (one per token) and a stop
// string can straddle pieces, so text that might be the start of a stop string is held back
// until it is clear either way:
//
//   lamina::StopStringMatcher stops({"</s>", "\nUser:"});
//   for (...) {
//     lamina::StopMatch match = stops.feed(piece_of(token));
//     std::fwrite(match.text.data(), 1, match.text.size(), stdout);  // never part of a stop string
//     if (match.stopped) break;                                       // the stop string is dropped
//   }
//   std::string_view rest = stops.flush();  // generation ended otherwise: the held-back text is safe
struct StopMatch {
  std::string_view text;       // bytes safe to emit now; valid until the next call on the matcher
  bool stopped = false;        // a stop string completed; `text` is what came before it
  std::size_t stop_index = 0;  // which stop string, when stopped (index in the constructor's list)
};

class StopStringMatcher {
 public:
  StopStringMatcher() = default;
  // Empty strings are ignored (they would stop before anything was said).
  explicit StopStringMatcher(std::vector<std::string> stop_strings) : stops_(std::move(stop_strings)) {
    stops_.erase(std::remove_if(stops_.begin(), stops_.end(), [](const std::string& s) { return s.empty(); }), stops_.end());
    std::size_t longest = 0;
    for (const std::string& stop : stops_) longest = std::max(longest, stop.size());
    pending_.reserve(2 * longest + 256);  // enough for usual pieces: feed() then allocates nothing
  }

  // Adds the next piece of generated text. When a stop string completes, the earliest one wins
  // and everything from it on is dropped; later calls return nothing and stay stopped.
  StopMatch feed(std::string_view piece) {
    if (stopped_) return StopMatch{std::string_view(), true, stop_index_};
    pending_.erase(0, emitted_);  // the caller has the text returned last time
    emitted_ = 0;
    pending_.append(piece.data(), piece.size());
    const std::string_view pending(pending_);

    std::size_t earliest = std::string_view::npos;
    for (std::size_t i = 0; i < stops_.size(); ++i) {
      const std::size_t at = pending.find(stops_[i]);
      if (at < earliest) {
        earliest = at;
        stop_index_ = i;
      }
    }
    if (earliest != std::string_view::npos) {
      stopped_ = true;
      pending_.resize(earliest);
      emitted_ = earliest;
      return StopMatch{std::string_view(pending_), true, stop_index_};
    }

    // Hold back the longest tail of the text that is the beginning of some stop string.
    std::size_t hold = 0;
    for (const std::string& stop : stops_) {
      for (std::size_t length = std::min(stop.size() - 1, pending.size()); length > hold; --length) {
        if (pending.substr(pending.size() - length) == std::string_view(stop).substr(0, length)) {
          hold = length;
          break;
        }
      }
    }
    emitted_ = pending.size() - hold;
    return StopMatch{pending.substr(0, emitted_), false, 0};
  }

  // Generation ended for another reason (end of text, token limit): the held-back text is safe.
  std::string_view flush() {
    if (stopped_) return std::string_view();
    pending_.erase(0, emitted_);
    emitted_ = pending_.size();
    return std::string_view(pending_);
  }

  // Bytes held back so far (fed but not yet returned as safe).
  std::size_t held_back() const { return pending_.size() - emitted_; }
  bool stopped() const { return stopped_; }
  const std::vector<std::string>& stop_strings() const { return stops_; }

  // Starts over for a new generation, keeping the stop strings.
  void reset() {
    pending_.clear();
    emitted_ = 0;
    stopped_ = false;
    stop_index_ = 0;
  }

 private:
  std::vector<std::string> stops_;
  std::string pending_;        // text fed and not yet handed over, plus what the last call returned
  std::size_t emitted_ = 0;    // leading bytes of pending_ returned by the last call
  std::size_t stop_index_ = 0;
  bool stopped_ = false;
};

LAMINA_NAMESPACE_END
