// lamina/core/executor.hpp — how lamina runs its parallel loops.
//
// Every parallel loop in lamina is "run task(i) for i in [0, n)". An Executor decides where
// those tasks run. lamina ships ThreadPool; a game engine can implement Executor on top of
// its own job system so lamina never starts threads of its own:
//
//   struct EngineExecutor final : lamina::Executor {
//     std::size_t concurrency() const override { return engine.worker_count(); }
//     void run(std::size_t count, lamina::TaskRef task) override {
//       engine.parallel_for(count, [&](std::size_t i) { task(i); });  // must return when all ran
//     }
//   };
//
// Work is always split into the same tasks whatever the concurrency, so results do not
// depend on how many threads ran them.
#pragma once

#include "../config.hpp"

#include <atomic>
#include <cstddef>
#include <type_traits>
#include <utility>

#if LAMINA_THREADS
#  include <condition_variable>
#  include <mutex>
#  include <thread>
#  include <vector>
#endif

LAMINA_NAMESPACE_BEGIN

// A non-owning reference to a callable `void(std::size_t task_index)`. Cheap to copy; the
// callable must outlive the call it is passed to.
class TaskRef {
 public:
  template <class Function, class = std::enable_if_t<!std::is_same<std::decay_t<Function>, TaskRef>::value>>
  TaskRef(Function& function)  // NOLINT: implicit by design, like std::function_ref
      : object_(static_cast<void*>(&function)), call_([](void* object, std::size_t index) {
          (*static_cast<Function*>(object))(index);
        }) {}
  void operator()(std::size_t index) const { call_(object_, index); }

 private:
  void* object_;
  void (*call_)(void*, std::size_t);
};

class Executor {
 public:
  virtual ~Executor() = default;
  // How many tasks may run at the same time; lamina uses it only to size work, never for results.
  virtual std::size_t concurrency() const = 0;
  // Runs task(i) once for every i in [0, count), in any order and on any threads, and returns
  // when all of them have finished.
  virtual void run(std::size_t count, TaskRef task) = 0;
};

// Runs every task on the calling thread.
class SerialExecutor final : public Executor {
 public:
  std::size_t concurrency() const override { return 1; }
  void run(std::size_t count, TaskRef task) override {
    for (std::size_t i = 0; i < count; ++i) task(i);
  }
};

// Convenience: parallel_for(executor, n, [&](std::size_t i) { ... }).
template <class Function>
void parallel_for(Executor& executor, std::size_t count, Function&& function) {
  if (count == 0) return;
  if (count == 1 || executor.concurrency() <= 1) {
    for (std::size_t i = 0; i < count; ++i) function(i);
    return;
  }
  executor.run(count, TaskRef(function));
}

// Splits [0, item_count) into at most `max_chunks` contiguous ranges of near-equal size and
// runs function(chunk_index, begin, end) for each. The split depends only on the counts, never
// on the executor's concurrency, so a chunk index can select a per-chunk scratch buffer and the
// results do not depend on the number of threads.
template <class Function>
void parallel_chunks(Executor& executor, std::size_t item_count, std::size_t max_chunks, Function&& function) {
  if (item_count == 0) return;
  const std::size_t chunk_count = item_count < max_chunks ? item_count : (max_chunks == 0 ? 1 : max_chunks);
  auto run_chunk = [&](std::size_t chunk) {
    const std::size_t begin = item_count * chunk / chunk_count;
    const std::size_t end = item_count * (chunk + 1) / chunk_count;
    function(chunk, begin, end);
  };
  parallel_for(executor, chunk_count, run_chunk);
}

#if LAMINA_THREADS

// A fixed set of worker threads. The thread that calls run() works too, so a pool of
// concurrency N starts N - 1 threads. One run() at a time per pool (a second caller waits).
//
// A decode step hands the pool a few hundred small jobs, so waking workers must be cheap:
// between jobs a worker spins briefly on the job counter before it sleeps on a condition
// variable, and the caller spins while the last tasks finish.
class ThreadPool final : public Executor {
 public:
  // thread_count 0 means one per hardware thread.
  explicit ThreadPool(std::size_t thread_count = 0) {
    if (thread_count == 0) thread_count = std::thread::hardware_concurrency();
    if (thread_count == 0) thread_count = 1;
    concurrency_ = thread_count;
    workers_.reserve(thread_count - 1);
    for (std::size_t i = 0; i + 1 < thread_count; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  ~ThreadPool() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_.store(true, std::memory_order_release);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_workers_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

  std::size_t concurrency() const override { return concurrency_; }

  void run(std::size_t count, TaskRef task) override {
    if (count == 0) return;
    std::lock_guard<std::mutex> one_run_at_a_time(run_mutex_);
    if (workers_.empty() || count == 1) {
      for (std::size_t i = 0; i < count; ++i) task(i);
      return;
    }
    job_task_ = &task;
    job_count_ = count;
    next_index_.store(0, std::memory_order_relaxed);
    workers_busy_.store(workers_.size(), std::memory_order_relaxed);
    {
      // Under the lock, so a worker that is about to sleep either sees the new job or is woken.
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    if (sleeping_.load(std::memory_order_acquire) > 0) wake_workers_.notify_all();
    work_on_current_job(task, count);
    for (std::size_t spins = 0; workers_busy_.load(std::memory_order_acquire) != 0; ++spins) {
      if (spins > 4096) std::this_thread::yield();
    }
    job_task_ = nullptr;
  }

 private:
  void work_on_current_job(TaskRef task, std::size_t count) {
    for (;;) {
      const std::size_t index = next_index_.fetch_add(1, std::memory_order_relaxed);
      if (index >= count) return;
      task(index);
    }
  }

  void worker_loop() {
    std::size_t seen_generation = 0;
    for (;;) {
      // Spin a little (about 50-100 µs) for the next job, then sleep.
      std::size_t generation = generation_.load(std::memory_order_acquire);
      for (int spins = 0; generation == seen_generation && spins < 20000; ++spins) {
        std::this_thread::yield();
        generation = generation_.load(std::memory_order_acquire);
      }
      if (generation == seen_generation) {
        std::unique_lock<std::mutex> lock(mutex_);
        sleeping_.fetch_add(1, std::memory_order_acq_rel);
        wake_workers_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen_generation; });
        sleeping_.fetch_sub(1, std::memory_order_acq_rel);
        generation = generation_.load(std::memory_order_acquire);
      }
      seen_generation = generation;
      if (stopping_.load(std::memory_order_acquire)) return;
      work_on_current_job(*job_task_, job_count_);
      workers_busy_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::size_t concurrency_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_workers_;
  TaskRef* job_task_ = nullptr;       // written before generation_ is bumped, read after
  std::size_t job_count_ = 0;
  std::atomic<std::size_t> next_index_{0};
  std::atomic<std::size_t> workers_busy_{0};
  std::atomic<std::size_t> generation_{0};
  std::atomic<std::size_t> sleeping_{0};
  std::atomic<bool> stopping_{false};
};

#else

// Without LAMINA_THREADS the built-in pool runs everything on the calling thread.
class ThreadPool final : public Executor {
 public:
  explicit ThreadPool(std::size_t = 0) {}
  std::size_t concurrency() const override { return 1; }
  void run(std::size_t count, TaskRef task) override {
    for (std::size_t i = 0; i < count; ++i) task(i);
  }
};

#endif

LAMINA_NAMESPACE_END
