// Memory a host can plan for: Session::memory_needed() against the bytes the session really
// allocates (tests/main.cpp counts every operator new and delete), and an adapter's memory
// going back when the last stack that holds it lets go.
#include <doctest/doctest.h>
#include <lamina/adapters/peft.hpp>
#include <lamina/lamina.hpp>

#include "alloc_counter.hpp"
#include "test_support.hpp"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace {

double relative_gap(double measured, double predicted) { return std::fabs(measured - predicted) / predicted; }

}  // namespace

TEST_CASE("memory_needed() tells what a session allocates; an adapter's memory goes with its last user") {
  if (!lamina_test::allocation_counting()) {
    MESSAGE("allocations are not counted in this build (a sanitizer replaces operator new); skipped");
    return;
  }
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(lamina_test::shared_path("models/synth-llama-q8_0.gguf"));
  REQUIRE(model.ok());
  for (std::uint32_t context : {64u, 1024u}) {
    for (lamina::DType kv_type : {lamina::DType::f16, lamina::DType::f32}) {
      CAPTURE(context);
      lamina::SessionParams params;
      params.context_length = context;
      params.sequence_count = 3;
      params.batch_size = 64;
      params.thread_count = 1;  // no pool threads: their stacks are not heap bytes, their bookkeeping is
      params.kv_cache_type = kv_type;
      params.sampling.repeat_penalty = 1.1f;
      lamina::Result<lamina::SessionMemory> planned = lamina::Session::memory_needed(**model, params);
      REQUIRE(planned.ok());
      const std::size_t before = lamina_test::live_bytes();
      lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
      REQUIRE(session.ok());
      const double created = static_cast<double>(lamina_test::live_bytes() - before);
      const double without_adapters = static_cast<double>(planned->total() - planned->adapter_scratch);
      const std::string kv_name = lamina::dtype_name(kv_type);
      MESSAGE("context " << context << ", KV " << kv_name << ": session planned " << static_cast<std::uint64_t>(without_adapters)
                         << " bytes (KV cache " << planned->kv_cache << ", forward buffers " << planned->forward_buffers << ", per sequence "
                         << planned->per_sequence << "), allocated " << static_cast<std::uint64_t>(created));
      CHECK(relative_gap(created, without_adapters) < 0.02);

      // An adapter: its factors when loaded, the session's adapter scratch when a stack first holds it.
      const std::size_t before_adapter = lamina_test::live_bytes();
      lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> adapter =
          lamina::peft::load_adapter(**model, lamina_test::shared_path("adapters/lora-a.gguf"));
      if (!adapter.ok()) {  // lora-a is built for synth-llama-f32's shapes; the q8_0 file shares them
        FAIL(adapter.error().message);
      }
      const std::size_t loaded = lamina_test::live_bytes() - before_adapter;
      CHECK(static_cast<double>(loaded) >= static_cast<double>((*adapter)->factor_bytes()));
      const std::size_t before_stack = lamina_test::live_bytes();
      REQUIRE(session->set_adapters({{*adapter, 1.0f}}, 1).ok());
      const double scratch = static_cast<double>(lamina_test::live_bytes() - before_stack);
      CHECK(relative_gap(scratch, static_cast<double>(planned->adapter_scratch)) < 0.05);
      const lamina::LoraAdapter* raw = adapter->get();
      const std::size_t raw_factor_bytes = raw->factor_bytes();
      *adapter = nullptr;  // the stack holds the only reference now
      const std::size_t held = lamina_test::live_bytes();
      CHECK(session->remove_adapter(raw, 1));
      const std::size_t freed = held - lamina_test::live_bytes();
      CHECK(freed >= (loaded * 9) / 10);  // the factors and the adapter went with the last stack
      MESSAGE("context " << context << ", KV " << kv_name << ", adapter lora-a: factor_bytes() " << raw_factor_bytes
                         << ", allocated by the load " << loaded << "; adapter scratch planned " << planned->adapter_scratch << ", allocated " << static_cast<std::uint64_t>(scratch)
                         << "; freed with the last stack " << freed);
    }
  }
}

// --- loading on a worker thread: progress reports and cancellation -------------------------

TEST_CASE("a model load reports its stages in order, ends at 1, and touching pages makes the weights resident") {
  std::vector<lamina::LoadProgress> reports;
  lamina::ModelParams params;
  params.touch_pages = true;
  params.load.on_progress = [&](const lamina::LoadProgress& progress) { reports.push_back(progress); };
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(lamina_test::shared_path("models/synth-llama-q8_0.gguf"), params);
  REQUIRE(model.ok());
  REQUIRE(reports.size() >= 5);
  CHECK(reports.front().stage == lamina::LoadStage::parse);
  CHECK(reports.front().fraction == 0.0);
  CHECK(reports.back().stage == lamina::LoadStage::done);
  CHECK(reports.back().fraction == 1.0);
  bool touched = false, tokenized = false;
  for (std::size_t i = 1; i < reports.size(); ++i) {
    CHECK(reports[i].fraction >= reports[i - 1].fraction);
    CHECK(static_cast<int>(reports[i].stage) >= static_cast<int>(reports[i - 1].stage));
    CHECK(reports[i].done <= reports[i].total);
    touched = touched || reports[i].stage == lamina::LoadStage::touch_pages;
    tokenized = tokenized || reports[i].stage == lamina::LoadStage::tokenizer;
  }
  CHECK(touched);
  CHECK(tokenized);
  // The weights' bytes: every tensor's, and after touching them all in memory.
  std::uint64_t tensor_bytes = 0;
  for (const lamina::gguf::TensorInfo& tensor : (*model)->file().tensors()) tensor_bytes += tensor.size_bytes;
  CHECK((*model)->mapped_bytes() == tensor_bytes);
  CHECK((*model)->resident_bytes() <= (*model)->mapped_bytes());
  CHECK((*model)->resident_bytes() + 4096 >= (*model)->mapped_bytes());
}

TEST_CASE("a cancelled load stops with ErrorCode::cancelled, at any stage") {
  const std::string path = lamina_test::shared_path("models/synth-llama-q8_0.gguf");
  SUBCASE("cancelled before it starts") {
    lamina::CancelSource source;
    lamina::ModelParams params;
    params.load.cancel = source.token();
    source.cancel();
    lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path, params);
    REQUIRE(!model.ok());
    CHECK(model.error().code == lamina::ErrorCode::cancelled);
  }
  for (lamina::LoadStage stage : {lamina::LoadStage::validate, lamina::LoadStage::touch_pages, lamina::LoadStage::tokenizer}) {
    CAPTURE(static_cast<int>(stage));
    lamina::CancelSource source;
    lamina::ModelParams params;
    params.touch_pages = true;
    params.load.cancel = source.token();
    bool reached = false;
    params.load.on_progress = [&](const lamina::LoadProgress& progress) {
      if (progress.stage == stage) {
        reached = true;
        source.cancel();  // as another thread would, while this stage runs
      }
    };
    lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(path, params);
    CHECK(reached);
    REQUIRE(!model.ok());
    CHECK(model.error().code == lamina::ErrorCode::cancelled);
  }
}

TEST_CASE("an adapter load reports progress and can be cancelled") {
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(lamina_test::shared_path("models/synth-llama-f32.gguf"));
  REQUIRE(model.ok());
  for (const char* adapter_path : {"adapters/lora-a.gguf", "adapters/lora-a-peft"}) {
    CAPTURE(adapter_path);
    std::vector<lamina::LoadProgress> reports;
    lamina::LoadControl control;
    control.on_progress = [&](const lamina::LoadProgress& progress) { reports.push_back(progress); };
    lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> adapter = lamina::peft::load_adapter(**model, lamina_test::shared_path(adapter_path), control);
    REQUIRE(adapter.ok());
    REQUIRE(reports.size() >= 2);
    CHECK(reports.back().stage == lamina::LoadStage::done);
    CHECK(reports.back().fraction == 1.0);

    lamina::CancelSource source;
    control.cancel = source.token();
    control.on_progress = [&](const lamina::LoadProgress& progress) {
      if (progress.stage == lamina::LoadStage::convert) source.cancel();
    };
    lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> stopped = lamina::peft::load_adapter(**model, lamina_test::shared_path(adapter_path), control);
    REQUIRE(!stopped.ok());
    CHECK(stopped.error().code == lamina::ErrorCode::cancelled);
  }
}
