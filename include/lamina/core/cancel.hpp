// lamina/core/cancel.hpp — stopping work from another thread.
//
//   lamina::CancelSource source;                 // owned by whatever runs the work (a Session)
//   lamina::CancelToken token = source.token();  // taken when a piece of work starts
//   ... worker: if (token.cancelled()) return fail(ErrorCode::cancelled, ...);
//   ... any thread: source.cancel();
//
// cancel() stops the work that started before it, not the work that starts after it: a
// cancel() that arrives just after a call returned does not spoil the next call. The source
// counts cancel() calls; a token remembers the count when it was taken and is cancelled once
// the count has moved on.
#pragma once

#include "../config.hpp"

#include <atomic>
#include <cstdint>

LAMINA_NAMESPACE_BEGIN

class CancelToken {
 public:
  CancelToken() = default;  // never cancelled
  bool cancelled() const { return count_ != nullptr && count_->load(std::memory_order_acquire) != count_when_taken_; }

 private:
  friend class CancelSource;
  CancelToken(const std::atomic<std::uint64_t>* count, std::uint64_t count_when_taken) : count_(count), count_when_taken_(count_when_taken) {}
  const std::atomic<std::uint64_t>* count_ = nullptr;
  std::uint64_t count_when_taken_ = 0;
};

class CancelSource {
 public:
  CancelSource() = default;
  CancelSource(const CancelSource&) = delete;  // tokens point at it
  CancelSource& operator=(const CancelSource&) = delete;

  // From any thread: every token taken before this call is cancelled from now on.
  void cancel() { count_.fetch_add(1, std::memory_order_acq_rel); }
  CancelToken token() const { return CancelToken(&count_, count_.load(std::memory_order_acquire)); }

 private:
  std::atomic<std::uint64_t> count_{0};
};

LAMINA_NAMESPACE_END
