// lamina/core/progress.hpp — watching and stopping a load from another thread.
//
//   lamina::CancelSource stop_loading;
//   lamina::ModelParams params;
//   params.touch_pages = true;
//   params.load.on_progress = [](const lamina::LoadProgress& p) { loading_bar = p.fraction; };
//   params.load.cancel = stop_loading.token();   // stop_loading.cancel() from the game thread
//   auto model = lamina::Model::load(path, params);  // on a worker thread
//
// on_progress is called on the loading thread, a few hundred times at most for a whole load
// (each stage reports in steps of about 1%), so it may take a lock or post a message.
#pragma once

#include "../config.hpp"
#include "cancel.hpp"

#include <cstdint>
#include <functional>

LAMINA_NAMESPACE_BEGIN

enum class LoadStage {
  parse,        // the file's header: metadata and tensor table
  validate,     // the weights against the architecture (shapes, types, sizes)
  touch_pages,  // one read per page of the weights (ModelParams::touch_pages)
  tokenizer,    // the vocabulary and its tables
  convert,      // an adapter's matrices to F32
  done,
};

struct LoadProgress {
  LoadStage stage = LoadStage::parse;
  std::uint64_t done = 0;   // units of this stage finished (bytes for touch_pages, else tensors or steps)
  std::uint64_t total = 0;  // of this stage
  double fraction = 0;      // of the whole load, in [0, 1]; 1 once, with LoadStage::done
};

struct LoadControl {
  std::function<void(const LoadProgress&)> on_progress;
  // A token of a CancelSource the host keeps: its cancel() stops the load at the next check
  // (between tensors, every few MiB while touching pages) with ErrorCode::cancelled.
  CancelToken cancel;
};

namespace detail {

// Reports a load's stages through a LoadControl: each stage owns a share of the whole
// ([begin, end) of fraction) and reports when it has moved on by about 1% of the whole.
class LoadReporter {
 public:
  explicit LoadReporter(const LoadControl& control) : control_(&control) {}

  bool cancelled() const { return control_->cancel.cancelled(); }

  void stage(LoadStage stage, std::uint64_t total, double share_begin, double share_end) {
    stage_ = stage;
    total_ = total;
    begin_ = share_begin;
    end_ = share_end;
    last_reported_ = -1.0;
    report(0);
  }

  void report(std::uint64_t done) {
    if (!control_->on_progress) return;
    const double stage_fraction = total_ == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total_);
    const double fraction = begin_ + (end_ - begin_) * stage_fraction;
    if (last_reported_ >= 0 && fraction - last_reported_ < 0.01 && done != total_) return;
    last_reported_ = fraction;
    LoadProgress progress;
    progress.stage = stage_;
    progress.done = done;
    progress.total = total_;
    progress.fraction = fraction;
    control_->on_progress(progress);
  }

  void finish() {
    stage_ = LoadStage::done;
    total_ = 1;
    begin_ = end_ = 1.0;
    last_reported_ = -1.0;
    report(1);
  }

 private:
  const LoadControl* control_;
  LoadStage stage_ = LoadStage::parse;
  std::uint64_t total_ = 0;
  double begin_ = 0, end_ = 0, last_reported_ = -1.0;
};

}  // namespace detail

LAMINA_NAMESPACE_END
