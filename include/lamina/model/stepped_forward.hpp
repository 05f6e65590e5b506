// lamina/model/stepped_forward.hpp — a CPU forward pass run a piece at a time, so that a frame
// loop can give it a few milliseconds per frame (Session::begin_decode / continue_decode).
//
// A piece is one operation of transformer_layer (model/llama.hpp): a matrix product, the
// attention, a norm. The layer is still described once: to go on with a layer, it is run again
// through ResumingOps, which skips the operations already done and stops before the first one
// that the times measured so far say would end after the deadline. The output projection is
// the last piece of a pass.
//
//   ResumingOps ops(cpu_ops, times, tokens, ops_done, first_of_step, step_start, deadline, cancel);
//   transformer_layer(hparams, layer, index, ops);  // runs what fits
//   if (ops.layer_done()) …next layer… else ops_done = ops.ops_done();
//
// PieceTimes learns, for each piece (an operation by its place in the layer, or the output), a
// fit t(n) ≈ fixed + per_token × n of its seconds in passes of n tokens: the fixed part is the
// weights streamed through once per pass, the per-token part the arithmetic. Recent passes
// weigh more, since attention grows with the context.
#pragma once

#include "../config.hpp"
#include "../core/cancel.hpp"
#include "forward_ops.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

LAMINA_NAMESPACE_BEGIN

class PieceTimes {
 public:
  static constexpr std::size_t slot_count = 32;  // operations of a layer, then the output
  static constexpr std::size_t output_slot = slot_count - 1;

  // Predicted seconds of piece `slot` in a pass of `tokens` tokens; negative when never measured.
  double predict(std::size_t slot, std::size_t tokens) const {
    const Fit& fit = fits_[slot];
    if (fit.weight <= 0) return -1.0;
    const double n = static_cast<double>(tokens);
    const double mean_n = fit.sum_n / fit.weight, mean_t = fit.sum_t / fit.weight;
    const double variance = fit.sum_nn / fit.weight - mean_n * mean_n;
    if (variance < 0.25) return mean_n > 0 ? mean_t * n / mean_n : mean_t;  // one pass size so far: assume it all scales with n
    double per_token = (fit.sum_nt / fit.weight - mean_n * mean_t) / variance;
    if (per_token < 0) per_token = 0;                       // noise; more tokens never cost less
    const double fixed = std::max(0.0, mean_t - per_token * mean_n);
    return fixed + per_token * n;
  }

  void record(std::size_t slot, std::size_t tokens, double seconds) {
    if (tokens == 0 || !(seconds >= 0)) return;
    Fit& fit = fits_[slot];
    const double n = static_cast<double>(tokens);
    fit.weight = fit.weight * decay + 1;
    fit.sum_n = fit.sum_n * decay + n;
    fit.sum_nn = fit.sum_nn * decay + n * n;
    fit.sum_t = fit.sum_t * decay + seconds;
    fit.sum_nt = fit.sum_nt * decay + n * seconds;
    if (tokens > largest_measured_) largest_measured_ = tokens;
  }

  // The most tokens, at most `limit`, for which every piece measured so far is predicted to take
  // at most `seconds`; 1 before any was measured. It grows by at most half of the largest pass
  // measured at a time, so that a prediction is never stretched far beyond what was seen. While
  // every pass had the same size, the fit cannot tell the fixed cost from the per-token one and
  // assumes the worst (all per token); then one pass of one token more is allowed, once, to learn.
  std::size_t tokens_within(double seconds, std::size_t limit) {
    if (limit == 0) return 0;
    std::size_t most = largest_measured_ == 0 ? 1 : largest_measured_ + std::max<std::size_t>(1, largest_measured_ / 2);
    most = std::min(most, limit);
    std::size_t low = 1, high = most;  // binary search: the predictions grow with the tokens
    while (low < high) {
      const std::size_t middle = low + (high - low + 1) / 2;
      if (fits(seconds, middle)) low = middle;
      else high = middle - 1;
    }
    if (low <= largest_measured_ && largest_measured_ < limit && one_size_only() && explored_ <= largest_measured_) {
      explored_ = largest_measured_ + 1;
      return largest_measured_ + 1;
    }
    return low;
  }

 private:
  static constexpr double decay = 0.9;
  struct Fit {
    double weight = 0, sum_n = 0, sum_nn = 0, sum_t = 0, sum_nt = 0;
  };
  bool one_size_only() const {
    for (const Fit& fit : fits_) {
      if (fit.weight > 0 && fit.sum_nn / fit.weight - (fit.sum_n / fit.weight) * (fit.sum_n / fit.weight) >= 0.25) return false;
    }
    return true;
  }
  bool fits(double seconds, std::size_t tokens) const {
    for (std::size_t slot = 0; slot < slot_count; ++slot) {
      if (predict(slot, tokens) > seconds) return false;
    }
    return true;
  }
  std::array<Fit, slot_count> fits_{};
  std::size_t largest_measured_ = 0;
  std::size_t explored_ = 0;  // the pass size last allowed beyond the predictions
};

// Runs the operations of one layer from the `ops_done`-th on, through `inner`, each while its
// predicted time ends before `deadline`; the first one of a step always runs, an unmeasured one
// only in the first quarter of the step (from `step_start`). Times every piece it runs.
class ResumingOps final : public ForwardOps {
 public:
  using Clock = std::chrono::steady_clock;

  ResumingOps(ForwardOps& inner, PieceTimes& times, std::size_t tokens, std::uint32_t ops_done, bool first_of_step,
              Clock::time_point step_start, Clock::time_point deadline, CancelToken cancel)
      : inner_(inner), times_(times), tokens_(tokens), ops_done_(ops_done), must_run_(first_of_step), step_start_(step_start),
        deadline_(deadline), cancel_(cancel) {}

  // After the layer was run through it: whether every operation is done (else: stopped or cancelled).
  bool layer_done() const { return !stopped_; }
  bool cancelled() const { return cancelled_; }
  std::uint32_t ops_done() const { return ops_done_; }
  bool ran_any() const { return ran_any_; }

  // Whether a piece predicted to take `predicted` seconds (negative: unknown) may start now.
  static bool may_start(double predicted, bool must_run, Clock::time_point now, Clock::time_point step_start, Clock::time_point deadline) {
    if (must_run) return true;
    if (!(predicted >= 0) || predicted > 3600) return now - step_start <= (deadline - step_start) / 4;  // unknown (or nonsense)
    return now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(predicted)) <= deadline;
  }

  void rms_norm(Activation in, std::uint32_t layer, LayerVector weight, Activation out) override {
    piece([&] { inner_.rms_norm(in, layer, weight, out); });
  }
  void project(std::uint32_t layer, Projection projection, Activation in, Activation out) override {
    piece([&] { inner_.project(layer, projection, in, out); });
  }
  void add_bias(std::uint32_t layer, LayerVector bias, Activation target) override {
    piece([&] { inner_.add_bias(layer, bias, target); });
  }
  void rope(Activation target, std::uint32_t heads) override {
    piece([&] { inner_.rope(target, heads); });
  }
  void store_kv(std::uint32_t layer) override {
    piece([&] { inner_.store_kv(layer); });
  }
  void attention(std::uint32_t layer) override {
    piece([&] { inner_.attention(layer); });
  }
  void silu_mul(Activation gate, Activation up) override {
    piece([&] { inner_.silu_mul(gate, up); });
  }
  void add(Activation target, Activation addend) override {
    piece([&] { inner_.add(target, addend); });
  }

 private:
  template <class Run>
  void piece(Run&& run) {
    const std::uint32_t place = next_place_++;
    if (place < ops_done_ || stopped_) return;  // done in an earlier step / the step is over
    if (cancel_.cancelled()) {
      stopped_ = cancelled_ = true;
      return;
    }
    const std::size_t slot = std::min<std::size_t>(place, PieceTimes::output_slot - 1);
    const Clock::time_point start = Clock::now();
    if (!may_start(times_.predict(slot, tokens_), must_run_ && !ran_any_, start, step_start_, deadline_)) {
      stopped_ = true;
      return;
    }
    run();
    times_.record(slot, tokens_, std::chrono::duration<double>(Clock::now() - start).count());
    ++ops_done_;
    ran_any_ = true;
  }

  ForwardOps& inner_;
  PieceTimes& times_;
  std::size_t tokens_;
  std::uint32_t ops_done_;
  bool must_run_;
  Clock::time_point step_start_, deadline_;
  CancelToken cancel_;
  std::uint32_t next_place_ = 0;
  bool stopped_ = false, cancelled_ = false, ran_any_ = false;
};

LAMINA_NAMESPACE_END
