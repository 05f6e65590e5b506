// Tests for lamina/io/gguf.hpp: round trips through the Writer, the shared reference models,
// and hostile files, each of which must give a clean Error that says what and where.
#include <lamina/io/gguf.hpp>

#include <doctest/doctest.h>

#include "../test_support.hpp"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

using lamina::DType;
using lamina::ErrorCode;
using lamina::gguf::File;
using lamina::gguf::TensorInfo;
using lamina::gguf::Value;
using lamina::gguf::ValueType;
using lamina::gguf::Writer;

namespace {

bool contains_text(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Builds GGUF bytes field by field, so a test can write exactly the malformed file it needs.
class ByteBuilder {
 public:
  ByteBuilder& u8(std::uint8_t value) { bytes.push_back(value); return *this; }
  ByteBuilder& u32(std::uint32_t value) {
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
    return *this;
  }
  ByteBuilder& u64(std::uint64_t value) {
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
    return *this;
  }
  ByteBuilder& raw(const std::string& text) {
    bytes.insert(bytes.end(), text.begin(), text.end());
    return *this;
  }
  ByteBuilder& str(const std::string& text) { return u64(text.size()).raw(text); }
  ByteBuilder& header(std::uint64_t tensor_count, std::uint64_t metadata_count, std::uint32_t version = 3) {
    return raw("GGUF").u32(version).u64(tensor_count).u64(metadata_count);
  }
  // A metadata entry holding one uint32.
  ByteBuilder& kv_u32(const std::string& key, std::uint32_t value) {
    return str(key).u32(static_cast<std::uint32_t>(ValueType::uint32)).u32(value);
  }
  // A tensor info; `dims` innermost first, as stored.
  ByteBuilder& tensor(const std::string& name, std::vector<std::uint64_t> dims, std::uint32_t type, std::uint64_t offset) {
    str(name).u32(static_cast<std::uint32_t>(dims.size()));
    for (std::uint64_t dim : dims) u64(dim);
    return u32(type).u64(offset);
  }
  ByteBuilder& pad_to(std::size_t alignment) {
    while (bytes.size() % alignment != 0) bytes.push_back(0);
    return *this;
  }
  ByteBuilder& zeros(std::size_t count) {
    bytes.insert(bytes.end(), count, 0);
    return *this;
  }

  std::vector<std::uint8_t> bytes;
};

lamina::Result<File> parse(const std::vector<std::uint8_t>& bytes) {
  return File::parse(bytes.data(), bytes.size(), "hostile.gguf");
}

// Parses `bytes`, requires the given failure, and returns the message for further checks.
std::string expect_error(const std::vector<std::uint8_t>& bytes, ErrorCode code) {
  lamina::Result<File> file = parse(bytes);
  REQUIRE_FALSE(file.ok());
  INFO(file.error().message);
  CHECK(file.error().code == code);
  CHECK(contains_text(file.error().message, "hostile.gguf"));
  return file.error().message;
}

// One Value of every scalar type, strings, and arrays including arrays of arrays.
std::vector<std::pair<std::string, Value>> every_value_type() {
  std::vector<std::pair<std::string, Value>> values;
  values.emplace_back("test.u8", Value::from_u8(255));
  values.emplace_back("test.i8", Value::from_i8(-128));
  values.emplace_back("test.u16", Value::from_u16(65535));
  values.emplace_back("test.i16", Value::from_i16(-32768));
  values.emplace_back("test.u32", Value::from_u32(4294967295u));
  values.emplace_back("test.i32", Value::from_i32(std::numeric_limits<std::int32_t>::min()));
  values.emplace_back("test.f32", Value::from_f32(-1.5e-7f));
  values.emplace_back("test.bool_true", Value::from_bool(true));
  values.emplace_back("test.bool_false", Value::from_bool(false));
  values.emplace_back("test.string", Value::from_string("hello, GGUF"));
  values.emplace_back("test.string_empty", Value::from_string(""));
  static const char binary_text[] = "nul\0in the middle \xff\xfe not utf-8";
  values.emplace_back("test.string_bytes", Value::from_string(std::string(binary_text, sizeof binary_text - 1)));
  values.emplace_back("test.u64", Value::from_u64(std::numeric_limits<std::uint64_t>::max()));
  values.emplace_back("test.i64", Value::from_i64(std::numeric_limits<std::int64_t>::min()));
  values.emplace_back("test.f64", Value::from_f64(3.141592653589793));
  values.emplace_back("test.f64_negative_zero", Value::from_f64(-0.0));
  values.emplace_back("test.f32_infinity", Value::from_f32(std::numeric_limits<float>::infinity()));
  values.emplace_back("test.f64_nan", Value::from_f64(std::numeric_limits<double>::quiet_NaN()));
  values.emplace_back("test.strings", Value::from_strings({"a", "", "longer than the small string buffer", "\xe2\x96\x81the"}));
  values.emplace_back("test.f32s", Value::from_f32s({0.0f, -1.0f, 1e30f, 1e-40f}));
  values.emplace_back("test.i32s", Value::from_i32s({-1, 0, 2147483647}));
  values.emplace_back("test.u8s", Value::from_array(ValueType::uint8, {Value::from_u8(0), Value::from_u8(200)}));
  values.emplace_back("test.i8s", Value::from_array(ValueType::int8, {Value::from_i8(-5)}));
  values.emplace_back("test.u16s", Value::from_array(ValueType::uint16, {Value::from_u16(1), Value::from_u16(60000)}));
  values.emplace_back("test.i16s", Value::from_array(ValueType::int16, {Value::from_i16(-300)}));
  values.emplace_back("test.u32s", Value::from_array(ValueType::uint32, {Value::from_u32(7)}));
  values.emplace_back("test.u64s", Value::from_array(ValueType::uint64, {Value::from_u64(1ull << 40)}));
  values.emplace_back("test.i64s", Value::from_array(ValueType::int64, {Value::from_i64(-(1ll << 40))}));
  values.emplace_back("test.f64s", Value::from_array(ValueType::float64, {Value::from_f64(2.5), Value::from_f64(-1e300)}));
  values.emplace_back("test.bools", Value::from_array(ValueType::boolean, {Value::from_bool(true), Value::from_bool(false)}));
  values.emplace_back("test.empty_array", Value::from_array(ValueType::string, {}));
  // Arrays of arrays: [[1, 2], [], [3]] and [["a"], ["b", "c"]], and three levels deep.
  values.emplace_back("test.nested_i32",
                      Value::from_array(ValueType::array, {Value::from_i32s({1, 2}), Value::from_i32s({}), Value::from_i32s({3})}));
  values.emplace_back("test.nested_strings",
                      Value::from_array(ValueType::array, {Value::from_strings({"a"}), Value::from_strings({"b", "c"})}));
  values.emplace_back("test.nested_three_deep",
                      Value::from_array(ValueType::array,
                                        {Value::from_array(ValueType::array, {Value::from_f32s({1.0f}), Value::from_f32s({})})}));
  return values;
}

// A small file with metadata of every kind and two tensors whose sizes are multiples of the
// alignment, so no byte of it is trailing padding: cutting it anywhere must be an error.
std::vector<std::uint8_t> small_file_without_slack() {
  Writer writer;
  writer.set("general.architecture", Value::from_string("llama"));
  writer.set("test.u32", Value::from_u32(7));
  writer.set("test.f64", Value::from_f64(0.25));
  writer.set("test.strings", Value::from_strings({"x", "yz"}));
  writer.set("test.nested", Value::from_array(ValueType::array, {Value::from_i32s({1}), Value::from_i32s({2, 3})}));
  std::vector<float> weights(16);
  for (std::size_t i = 0; i < weights.size(); ++i) weights[i] = static_cast<float>(i);
  REQUIRE(writer.add_tensor("a.weight", DType::f32, {2, 4}, weights.data(), 32).ok());  // 32 bytes
  REQUIRE(writer.add_tensor("b.weight", DType::f32, {8}, weights.data() + 8, 32).ok());
  return writer.to_bytes();
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Round trips
// ------------------------------------------------------------------------------------------

TEST_CASE("gguf: every value type round-trips, in insertion order, for versions 2 and 3") {
  for (std::uint32_t version : {2u, 3u}) {
    CAPTURE(version);
    const auto values = every_value_type();
    Writer writer(version);
    for (const auto& entry : values) writer.set(entry.first, entry.second);
    const std::vector<std::uint8_t> bytes = writer.to_bytes();

    lamina::Result<File> file = File::parse(bytes.data(), bytes.size(), "roundtrip.gguf");
    REQUIRE_MESSAGE(file.ok(), file.error().message);
    CHECK(file->version() == version);
    CHECK(file->alignment() == 32);
    CHECK(file->name() == "roundtrip.gguf");
    CHECK(file->tensors().empty());
    REQUIRE(file->metadata().size() == values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      CAPTURE(values[i].first);
      CHECK(file->metadata()[i].first == values[i].first);
      CHECK(file->metadata()[i].second == values[i].second);
      REQUIRE(file->find(values[i].first) != nullptr);
      CHECK(*file->find(values[i].first) == values[i].second);
    }
    CHECK(std::isnan(file->find("test.f64_nan")->float_value));
    CHECK(std::signbit(file->find("test.f64_negative_zero")->float_value));
    CHECK(file->find("test.string_bytes")->string_value.size() == 30);
    const Value& nested = *file->find("test.nested_strings");
    CHECK(nested.element_type == ValueType::array);
    REQUIRE(nested.elements.size() == 2);
    CHECK(nested.elements[1].elements[1].string_value == "c");

    // Writing what was read gives the same bytes.
    Writer again(version);
    for (const auto& entry : file->metadata()) again.set(entry.first, entry.second);
    CHECK(again.to_bytes() == bytes);
  }
}

TEST_CASE("gguf: Writer::set replaces a key in place") {
  Writer writer;
  writer.set("a", Value::from_u32(1));
  writer.set("b", Value::from_u32(2));
  writer.set("a", Value::from_string("replaced"));
  const std::vector<std::uint8_t> bytes = writer.to_bytes();
  lamina::Result<File> file = File::parse(bytes.data(), bytes.size(), "set.gguf");
  REQUIRE(file.ok());
  REQUIRE(file->metadata().size() == 2);
  CHECK(file->metadata()[0].first == "a");
  CHECK(file->metadata()[0].second.string_value == "replaced");
  CHECK(file->metadata()[1].first == "b");
}

TEST_CASE("gguf: tensors round-trip with default and custom alignment") {
  for (std::uint32_t alignment : {0u, 1u, 8u, 64u, 256u}) {  // 0: leave the default (32)
    CAPTURE(alignment);
    Writer writer;
    if (alignment != 0) writer.set_alignment(alignment);
    writer.set("general.architecture", Value::from_string("test"));

    std::vector<float> matrix(3 * 5);  // [3, 5]
    for (std::size_t i = 0; i < matrix.size(); ++i) matrix[i] = static_cast<float>(i) * 0.5f;
    std::vector<std::uint8_t> half_bytes(7 * 2);  // f16 [7]
    for (std::size_t i = 0; i < half_bytes.size(); ++i) half_bytes[i] = static_cast<std::uint8_t>(i * 3);
    std::vector<std::uint8_t> q8_bytes(2 * 2 * 34);  // q8_0 [2, 64]: two blocks of 34 bytes per row
    for (std::size_t i = 0; i < q8_bytes.size(); ++i) q8_bytes[i] = static_cast<std::uint8_t>(255 - i);
    std::vector<std::uint8_t> q4k_bytes(3 * 144);  // q4_K [1, 1, 3, 256], rank 4
    for (std::size_t i = 0; i < q4k_bytes.size(); ++i) q4k_bytes[i] = static_cast<std::uint8_t>(i * 7);

    REQUIRE(writer.add_tensor("matrix", DType::f32, {3, 5}, matrix.data(), matrix.size() * 4).ok());
    REQUIRE(writer.add_tensor("half", DType::f16, {7}, half_bytes.data(), half_bytes.size()).ok());
    REQUIRE(writer.add_tensor("blk.0.q8", DType::q8_0, {2, 64}, q8_bytes.data(), q8_bytes.size()).ok());
    REQUIRE(writer.add_tensor("blk.0.q4k", DType::q4_k, {1, 1, 3, 256}, q4k_bytes.data(), q4k_bytes.size()).ok());
    const std::vector<std::uint8_t> bytes = writer.to_bytes();

    lamina::Result<File> file = File::parse(bytes.data(), bytes.size(), "tensors.gguf");
    REQUIRE_MESSAGE(file.ok(), file.error().message);
    const std::uint32_t expected_alignment = alignment == 0 ? 32 : alignment;
    CHECK(file->alignment() == expected_alignment);
    CHECK(file->data_offset() % expected_alignment == 0);
    if (alignment != 0) {
      REQUIRE(file->get_u32("general.alignment").ok());
      CHECK(*file->get_u32("general.alignment") == alignment);
    } else {
      CHECK_FALSE(file->contains("general.alignment"));
    }
    REQUIRE(file->tensors().size() == 4);
    CHECK(file->tensors()[0].name == "matrix");  // file order
    CHECK(file->tensors()[3].name == "blk.0.q4k");

    const TensorInfo* info = file->find_tensor("matrix");
    REQUIRE(info != nullptr);
    CHECK(info->dtype == DType::f32);
    CHECK(info->shape == std::vector<std::int64_t>{3, 5});
    CHECK(info->size_bytes == 60);
    CHECK(std::memcmp(info->data, matrix.data(), 60) == 0);

    for (const TensorInfo& tensor : file->tensors()) {
      CAPTURE(tensor.name);
      CHECK(tensor.offset % expected_alignment == 0);
      CHECK(static_cast<std::size_t>(tensor.data - bytes.data()) == file->data_offset() + tensor.offset);
      CHECK(tensor.data + tensor.size_bytes <= bytes.data() + bytes.size());
    }
    CHECK(std::memcmp(file->find_tensor("half")->data, half_bytes.data(), half_bytes.size()) == 0);
    CHECK(std::memcmp(file->find_tensor("blk.0.q8")->data, q8_bytes.data(), q8_bytes.size()) == 0);
    const TensorInfo* q4k = file->find_tensor("blk.0.q4k");
    CHECK(q4k->shape == std::vector<std::int64_t>{1, 1, 3, 256});
    CHECK(std::memcmp(q4k->data, q4k_bytes.data(), q4k_bytes.size()) == 0);
    CHECK(file->find_tensor("absent") == nullptr);

    // The view: [3, 5] f32 has row stride 20 bytes; q8_0 [2, 64] rows of 68 bytes.
    const lamina::TensorView matrix_view = info->view();
    CHECK(matrix_view.rank == 2);
    CHECK(matrix_view.dim(0) == 3);
    CHECK(matrix_view.dim(1) == 5);
    CHECK(matrix_view.stride[0] == 20);
    CHECK(matrix_view.stride[1] == 4);
    CHECK(matrix_view.data == info->data);
    CHECK(matrix_view.row(2) == info->data + 40);
    const lamina::TensorView q8_view = file->find_tensor("blk.0.q8")->view();
    CHECK(q8_view.stride[0] == 68);
    CHECK(q8_view.row_count() == 2);
    const lamina::TensorView q4k_view = q4k->view();
    CHECK(q4k_view.rank == 4);
    CHECK(q4k_view.stride[2] == 144);
    CHECK(q4k_view.stride[0] == 3 * 144);

    // Reading back and writing again gives the same bytes.
    Writer again;
    for (const auto& entry : file->metadata()) again.set(entry.first, entry.second);
    for (const TensorInfo& tensor : file->tensors()) {
      REQUIRE(again.add_tensor(tensor.name, tensor.dtype, tensor.shape, tensor.data, tensor.size_bytes).ok());
    }
    CHECK(again.to_bytes() == bytes);
  }
}

TEST_CASE("gguf: add_tensor rejects what it cannot write") {
  Writer writer;
  std::vector<std::uint8_t> data(4096);
  const auto expect_rejected = [&](const std::string& name, DType dtype, std::vector<std::int64_t> shape, std::size_t size,
                                   const std::string& part) {
    lamina::Result<void> added = writer.add_tensor(name, dtype, std::move(shape), data.data(), size);
    REQUIRE_FALSE(added.ok());
    INFO(added.error().message);
    CHECK(added.error().code == ErrorCode::invalid_argument);
    CHECK(contains_text(added.error().message, part));
  };
  expect_rejected("scalar", DType::f32, {}, 4, "rank 0");
  expect_rejected("rank5", DType::f32, {1, 1, 1, 1, 1}, 4, "rank 5");
  expect_rejected("zero", DType::f32, {0, 4}, 0, "dimension 0 is 0");
  expect_rejected("negative", DType::f32, {4, -2}, 32, "dimension 1 is -2");
  expect_rejected("rows", DType::q4_0, {2, 48}, 2 * 27, "not a multiple of the q4_0 block size 32");
  expect_rejected("size", DType::f32, {2, 3}, 25, "needs 24 bytes");
  expect_rejected("unknown", static_cast<DType>(4), {4}, 4, "unknown dtype id 4");
  expect_rejected(std::string(64, 'n'), DType::f32, {1}, 4, "llama.cpp reads at most 63");
  expect_rejected("overflow", DType::f32, {1ll << 40, 1ll << 40}, 4, "overflows");
  CHECK(writer.add_tensor("", DType::f32, {1}, data.data(), 4).error().code == ErrorCode::invalid_argument);
  CHECK(writer.add_tensor("null", DType::f32, {1}, nullptr, 4).error().code == ErrorCode::invalid_argument);
  REQUIRE(writer.add_tensor("ok", DType::f32, {1}, data.data(), 4).ok());
  expect_rejected("ok", DType::f32, {1}, 4, "already added");
}

TEST_CASE("gguf: write_file and File::open; copies keep the mapping alive") {
  Writer writer;
  writer.set("general.architecture", Value::from_string("llama"));
  std::vector<float> weights = {1, 2, 3, 4, 5, 6, 7, 8};
  REQUIRE(writer.add_tensor("w", DType::f32, {2, 4}, weights.data(), 32).ok());
  const std::string path = lamina_test::temp_path("gguf-write.gguf");
  lamina::Result<void> written = writer.write_file(path);
  REQUIRE_MESSAGE(written.ok(), written.error().message);
  const std::vector<std::uint8_t> expected = writer.to_bytes();
  CHECK(lamina_test::read_binary_file(path) == std::vector<unsigned char>(expected.begin(), expected.end()));
  CHECK_FALSE(lamina_test::file_exists(path + ".partial"));

  File copy;
  {
    lamina::Result<File> file = File::open(path);
    REQUIRE_MESSAGE(file.ok(), file.error().message);
    CHECK(file->name() == path);
    copy = *file;  // the original goes out of scope here
  }
  CHECK(copy.get_string("general.architecture").value() == "llama");
  const TensorInfo* w = copy.find_tensor("w");
  REQUIRE(w != nullptr);
  CHECK(std::memcmp(w->data, weights.data(), 32) == 0);
  File moved = std::move(copy);
  CHECK(moved.tensors().size() == 1);
  std::remove(path.c_str());

  // A default-constructed File reads as empty.
  File empty;
  CHECK(empty.metadata().empty());
  CHECK(empty.tensors().empty());
  CHECK(empty.find("x") == nullptr);
  CHECK(empty.get_u32("x").error().code == ErrorCode::missing);

  lamina::Result<void> failed = writer.write_file("/nonexistent-directory/lamina/x.gguf");
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().code == ErrorCode::io);
  CHECK(contains_text(failed.error().message, "/nonexistent-directory/lamina/x.gguf"));

  lamina::Result<File> missing = File::open("/nonexistent-directory/missing.gguf");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == ErrorCode::io);
  CHECK(contains_text(missing.error().message, "missing.gguf"));
}

TEST_CASE("gguf: a 150k-entry string array parses quickly") {
  std::vector<std::string> vocabulary(150000);
  for (std::size_t i = 0; i < vocabulary.size(); ++i) vocabulary[i] = "token_" + std::to_string(i * 7919);
  Writer writer;
  writer.set("tokenizer.ggml.tokens", Value::from_strings(vocabulary));
  const std::vector<std::uint8_t> bytes = writer.to_bytes();
  const auto start = std::chrono::steady_clock::now();
  lamina::Result<File> file = File::parse(bytes.data(), bytes.size(), "vocab.gguf");
  const double milliseconds =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  REQUIRE(file.ok());
  MESSAGE("parsed 150000 strings in " << milliseconds << " ms");
  CHECK(milliseconds < 1000);  // tens of ms optimized; generous for sanitizer builds
  lamina::Result<std::vector<std::string>> tokens = file->get_string_array("tokenizer.ggml.tokens");
  REQUIRE(tokens.ok());
  CHECK(*tokens == vocabulary);
}

// ------------------------------------------------------------------------------------------
// The shared reference models
// ------------------------------------------------------------------------------------------

TEST_CASE("gguf: stories260K") {
  LAMINA_REQUIRE_SHARED("models/stories260K.gguf");
  const std::string path = lamina_test::shared_path("models/stories260K.gguf");
  lamina::Result<File> file = File::open(path);
  REQUIRE_MESSAGE(file.ok(), file.error().message);
  CHECK(file->version() == 3);
  CHECK(file->get_string("general.architecture").value() == "llama");
  CHECK(file->get_u32("llama.block_count").value() == 5);
  CHECK(file->get_u32("llama.context_length").value() == 128);
  CHECK(file->get_u32("llama.embedding_length").value() == 64);
  CHECK(file->get_u32("llama.attention.head_count").value() == 8);
  CHECK(file->get_u32("llama.attention.head_count_kv").value() == 4);
  CHECK(file->get_f32("llama.attention.layer_norm_rms_epsilon").value() == doctest::Approx(1e-5));
  CHECK(file->get_string_array("tokenizer.ggml.tokens").value().size() == 512);
  CHECK(file->get_f32_array("tokenizer.ggml.scores").value().size() == 512);
  CHECK(file->get_i32_array("tokenizer.ggml.token_type").value().size() == 512);
  CHECK(file->tensors().size() == 48);  // embedding, output norm, output, 5 layers x 9

  const TensorInfo* embedding = file->find_tensor("token_embd.weight");
  REQUIRE(embedding != nullptr);
  CHECK(embedding->dtype == DType::f32);
  CHECK(embedding->shape == std::vector<std::int64_t>{512, 64});  // [n_vocab, n_embd]
  CHECK(embedding->size_bytes == 512 * 64 * 4);
  CHECK(file->find_tensor("blk.0.ffn_down.weight")->shape == std::vector<std::int64_t>{64, 172});

  const std::vector<unsigned char> bytes = lamina_test::read_binary_file(path);
  REQUIRE(bytes.size() > 0);
  std::uint64_t total = 0;
  for (const TensorInfo& tensor : file->tensors()) {
    total += tensor.size_bytes;
    const std::uint64_t at = file->data_offset() + tensor.offset;
    REQUIRE(at + tensor.size_bytes <= bytes.size());
    // data points into the mapping, at the right place: compare with the bytes read directly.
    CHECK(std::memcmp(tensor.data, bytes.data() + at, static_cast<std::size_t>(tensor.size_bytes)) == 0);
    CHECK(tensor.data - embedding->data == static_cast<std::ptrdiff_t>(tensor.offset) - static_cast<std::ptrdiff_t>(embedding->offset));
  }
  CHECK(total <= bytes.size());
}

TEST_CASE("gguf: every shared model, adapter and vocabulary parses") {
  const char* files[] = {
      "models/stories260K.gguf",          "models/synth-llama-f32.gguf",   "models/synth-llama-f16.gguf",
      "models/synth-llama-q8_0.gguf",     "models/synth-llama-q4_0.gguf",  "models/synth-llama-q4_k_m.gguf",
      "models/synth-llama-q6_k.gguf",     "models/synth-qwen2-f32.gguf",   "models/synth-qwen2-q8_0.gguf",
      "adapters/lora-a.gguf",             "adapters/lora-b.gguf",          "adapters/lora-c.gguf",
      "vocab/ggml-vocab-gpt-2.gguf",      "vocab/ggml-vocab-phi-3.gguf",   "vocab/ggml-vocab-llama-spm.gguf",
      "vocab/ggml-vocab-falcon.gguf",     "vocab/ggml-vocab-mpt.gguf",     "vocab/ggml-vocab-starcoder.gguf",
  };
  for (const char* relative : files) {
    CAPTURE(relative);
    LAMINA_REQUIRE_SHARED(relative);
    lamina::Result<File> file = File::open(lamina_test::shared_path(relative));
    REQUIRE_MESSAGE(file.ok(), file.error().message);
    CHECK(file->get_string("general.architecture").ok());
  }

  lamina::Result<File> q4_k_m = File::open(lamina_test::shared_path("models/synth-llama-q4_k_m.gguf"));
  REQUIRE(q4_k_m.ok());
  CHECK(q4_k_m->find_tensor("token_embd.weight")->dtype == DType::q4_k);
  CHECK(q4_k_m->find_tensor("output.weight")->dtype == DType::q6_k);
  CHECK(q4_k_m->find_tensor("output.weight")->shape == std::vector<std::int64_t>{512, 256});
  CHECK(q4_k_m->find_tensor("output.weight")->size_bytes == 512 * 210);
  CHECK(q4_k_m->tensors().size() == 39);

  lamina::Result<File> qwen = File::open(lamina_test::shared_path("models/synth-qwen2-f32.gguf"));
  REQUIRE(qwen.ok());
  CHECK(qwen->get_string("general.architecture").value() == "qwen2");
  CHECK(qwen->find_tensor("output.weight") == nullptr);  // tied embeddings

  lamina::Result<File> gpt2 = File::open(lamina_test::shared_path("vocab/ggml-vocab-gpt-2.gguf"));
  REQUIRE(gpt2.ok());
  CHECK(gpt2->get_string_array("tokenizer.ggml.tokens").value().size() == 50257);
  CHECK(gpt2->get_string_array("tokenizer.ggml.merges").value().size() == 50000);
  CHECK(gpt2->tensors().empty());

  lamina::Result<File> phi3 = File::open(lamina_test::shared_path("vocab/ggml-vocab-phi-3.gguf"));
  REQUIRE(phi3.ok());
  CHECK(phi3->get_bool("tokenizer.ggml.add_bos_token").value() == true);
  CHECK(phi3->get_bool("tokenizer.ggml.add_eos_token").value() == false);
  CHECK(phi3->get_u32("tokenizer.ggml.eos_token_id").value() == 32000);

  lamina::Result<File> lora = File::open(lamina_test::shared_path("adapters/lora-a.gguf"));
  REQUIRE(lora.ok());
  CHECK(lora->get_string("adapter.type").value() == "lora");
  CHECK(lora->get_f32("adapter.lora.alpha").value() == 16.0f);
}

// ------------------------------------------------------------------------------------------
// Hostile input
// ------------------------------------------------------------------------------------------

TEST_CASE("gguf hostile: truncation at every byte offset is a clean error") {
  const std::vector<std::uint8_t> bytes = small_file_without_slack();
  REQUIRE(parse(bytes).ok());
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    CAPTURE(cut);
    // A fresh allocation of exactly `cut` bytes, so ASan catches any read past the end.
    std::vector<std::uint8_t> truncated(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    lamina::Result<File> file = File::parse(truncated.empty() ? nullptr : truncated.data(), cut, "hostile.gguf");
    REQUIRE_FALSE(file.ok());
    CHECK(file.error().code == ErrorCode::invalid_format);
    CHECK(contains_text(file.error().message, "hostile.gguf"));
    CHECK((contains_text(file.error().message, "truncated") || contains_text(file.error().message, "past the end")));
  }
}

TEST_CASE("gguf hostile: bad magic, versions 1 and 99, big-endian") {
  ByteBuilder bad_magic;
  bad_magic.raw("GGML").u32(3).u64(0).u64(0);
  CHECK(contains_text(expect_error(bad_magic.bytes, ErrorCode::invalid_format), "bad magic"));

  ByteBuilder version1;
  version1.header(0, 0, 1);
  const std::string message1 = expect_error(version1.bytes, ErrorCode::unsupported);
  CHECK(contains_text(message1, "version 1"));
  CHECK(contains_text(message1, "at byte 4"));

  ByteBuilder version99;
  version99.header(0, 0, 99);
  CHECK(contains_text(expect_error(version99.bytes, ErrorCode::unsupported), "unknown GGUF version 99"));

  ByteBuilder big_endian;
  big_endian.header(0, 0, 0x03000000u);
  CHECK(contains_text(expect_error(big_endian.bytes, ErrorCode::unsupported), "big-endian"));

  ByteBuilder empty_but_valid;
  empty_but_valid.header(0, 0);
  REQUIRE(parse(empty_but_valid.bytes).ok());
}

TEST_CASE("gguf hostile: absurd counts are refused before allocating") {
  ByteBuilder tensors;
  tensors.header(std::uint64_t{1} << 62, 0).zeros(64);
  CHECK(contains_text(expect_error(tensors.bytes, ErrorCode::invalid_format), "tensor count 4611686018427387904 cannot fit"));

  ByteBuilder metadata;
  metadata.header(0, std::numeric_limits<std::uint64_t>::max()).zeros(64);
  CHECK(contains_text(expect_error(metadata.bytes, ErrorCode::invalid_format), "metadata entry count"));

  ByteBuilder both;  // each count alone would fit, together they cannot
  both.header(2, 4).zeros(80);
  CHECK(contains_text(expect_error(both.bytes, ErrorCode::invalid_format), "cannot fit"));
}

TEST_CASE("gguf hostile: memory budgets for values and tensors") {
  // Each limit is hit by a file that really holds the bytes, so only the budget can refuse it.
  const std::uint64_t too_many_values = lamina::gguf::detail::max_metadata_values + 1;
  ByteBuilder values;
  values.header(0, 1).str("tokenizer.ggml.precompiled_charsmap").u32(9).u32(0).u64(too_many_values);
  values.zeros(static_cast<std::size_t>(too_many_values));
  std::string message = expect_error(values.bytes, ErrorCode::unsupported);
  CHECK(contains_text(message, "more than 4194304 values"));
  CHECK(contains_text(message, "precompiled_charsmap"));

  const std::uint64_t too_many_tensors = lamina::gguf::detail::max_tensor_count + 1;
  ByteBuilder tensors;
  tensors.header(too_many_tensors, 0).zeros(static_cast<std::size_t>(too_many_tensors * 33));
  CHECK(contains_text(expect_error(tensors.bytes, ErrorCode::unsupported), "tensor count 65537 is more than lamina accepts"));
}

TEST_CASE("gguf hostile: strings and arrays past the end") {
  ByteBuilder key_length;
  key_length.header(0, 1).u64(1000).raw("general");
  std::string message = expect_error(key_length.bytes, ErrorCode::invalid_format);
  CHECK(contains_text(message, "key length 1000 runs past the end"));
  CHECK(contains_text(message, "at byte 24"));

  ByteBuilder string_value;
  string_value.header(0, 1).str("general.name").u32(8).u64(std::uint64_t{1} << 63).raw("abc");
  message = expect_error(string_value.bytes, ErrorCode::invalid_format);
  CHECK(contains_text(message, "key 'general.name'"));
  CHECK(contains_text(message, "string value length 9223372036854775808 runs past the end"));

  ByteBuilder array_count;
  array_count.header(0, 1).str("tokenizer.ggml.tokens").u32(9).u32(8).u64(std::uint64_t{1} << 60).zeros(16);
  message = expect_error(array_count.bytes, ErrorCode::invalid_format);
  CHECK(contains_text(message, "key 'tokenizer.ggml.tokens'"));
  CHECK(contains_text(message, "array of 1152921504606846976 string elements runs past the end"));

  ByteBuilder scalar_array;  // 100 int32 elements claimed, 3 present
  scalar_array.header(0, 1).str("scores").u32(9).u32(5).u64(100).u32(1).u32(2).u32(3);
  CHECK(contains_text(expect_error(scalar_array.bytes, ErrorCode::invalid_format), "array of 100 int32 elements"));

  ByteBuilder element_string;  // the count fits, one element's length does not
  element_string.header(0, 1).str("tokens").u32(9).u32(8).u64(2).str("ok").u64(500).raw("xyz");
  CHECK(contains_text(expect_error(element_string.bytes, ErrorCode::invalid_format), "array element string length 500"));
}

TEST_CASE("gguf hostile: deeply nested arrays") {
  // Nine levels: the innermost holds no elements.
  ByteBuilder nine;
  nine.header(0, 1).str("nested").u32(9);
  for (int level = 0; level < 8; ++level) nine.u32(9).u64(1);
  nine.u32(4).u64(0);
  CHECK(contains_text(expect_error(nine.bytes, ErrorCode::invalid_format), "nested more than 8 deep"));

  // Eight levels are fine.
  ByteBuilder eight;
  eight.header(0, 1).str("nested").u32(9);
  for (int level = 0; level < 7; ++level) eight.u32(9).u64(1);
  eight.u32(4).u64(0);
  lamina::Result<File> file = parse(eight.bytes);
  REQUIRE_MESSAGE(file.ok(), file.error().message);

  // A depth bomb: a million levels must not exhaust the stack.
  ByteBuilder bomb;
  bomb.header(0, 1).str("bomb").u32(9);
  for (int level = 0; level < 1000000; ++level) bomb.u32(9).u64(1);
  CHECK(contains_text(expect_error(bomb.bytes, ErrorCode::invalid_format), "nested more than 8 deep"));
}

TEST_CASE("gguf hostile: metadata keys and types") {
  ByteBuilder duplicate;
  duplicate.header(0, 2).kv_u32("llama.block_count", 1).kv_u32("llama.block_count", 2);
  std::string message = expect_error(duplicate.bytes, ErrorCode::invalid_format);
  CHECK(contains_text(message, "duplicate key"));
  CHECK(contains_text(message, "'llama.block_count'"));

  ByteBuilder empty_key;
  empty_key.header(0, 1).str("").u32(4).u32(1);
  CHECK(contains_text(expect_error(empty_key.bytes, ErrorCode::invalid_format), "empty key"));

  ByteBuilder value_type;
  value_type.header(0, 1).str("weird").u32(13).u32(1);
  message = expect_error(value_type.bytes, ErrorCode::invalid_format);
  CHECK(contains_text(message, "unknown value type 13"));
  CHECK(contains_text(message, "'weird'"));

  ByteBuilder element_type;
  element_type.header(0, 1).str("weird").u32(9).u32(77).u64(0);
  CHECK(contains_text(expect_error(element_type.bytes, ErrorCode::invalid_format), "unknown array element type 77"));

  // Keys are bytes, not necessarily UTF-8; messages escape them.
  ByteBuilder binary_key;
  binary_key.header(0, 2).kv_u32(std::string("\xff\x01key", 5), 1).kv_u32(std::string("\xff\x01key", 5), 2);
  CHECK(contains_text(expect_error(binary_key.bytes, ErrorCode::invalid_format), "'\\xff\\x01key'"));
  ByteBuilder binary_ok;
  binary_ok.header(0, 1).kv_u32(std::string("\xff\x01key", 5), 1);
  REQUIRE(parse(binary_ok.bytes).ok());
}

TEST_CASE("gguf hostile: general.alignment") {
  ByteBuilder zero;
  zero.header(0, 1).kv_u32("general.alignment", 0);
  CHECK(contains_text(expect_error(zero.bytes, ErrorCode::invalid_format), "alignment 0 is not a nonzero power of two"));

  ByteBuilder not_power;
  not_power.header(0, 1).kv_u32("general.alignment", 48);
  const std::string message = expect_error(not_power.bytes, ErrorCode::invalid_format);
  CHECK(contains_text(message, "alignment 48 is not a nonzero power of two"));
  CHECK(contains_text(message, "general.alignment"));

  ByteBuilder wrong_type;
  wrong_type.header(0, 1).str("general.alignment").u32(10).u64(64);
  CHECK(contains_text(expect_error(wrong_type.bytes, ErrorCode::invalid_format), "must be a uint32, found uint64"));

  ByteBuilder good;  // alignment 64 places the data section at 64
  good.header(1, 1).kv_u32("general.alignment", 64).tensor("t", {16}, 0, 0).pad_to(64).zeros(64);
  lamina::Result<File> file = parse(good.bytes);
  REQUIRE_MESSAGE(file.ok(), file.error().message);
  CHECK(file->alignment() == 64);
  CHECK(file->data_offset() == 128);
}

TEST_CASE("gguf hostile: tensor infos") {
  const auto one_tensor = [](std::vector<std::uint64_t> dims, std::uint32_t type, std::uint64_t offset,
                             std::size_t data_bytes) {
    ByteBuilder file;
    file.header(1, 0).tensor("blk.0.attn_q.weight", std::move(dims), type, offset).pad_to(32).zeros(data_bytes);
    return file.bytes;
  };
  REQUIRE(parse(one_tensor({4, 2}, 0, 0, 32)).ok());

  std::string message = expect_error(one_tensor({}, 0, 0, 32), ErrorCode::invalid_format);
  CHECK(contains_text(message, "dimension count 0"));
  CHECK(contains_text(message, "tensor 'blk.0.attn_q.weight'"));
  CHECK(contains_text(expect_error(one_tensor({1, 1, 1, 1, 1}, 0, 0, 32), ErrorCode::invalid_format), "dimension count 5"));
  CHECK(contains_text(expect_error(one_tensor({4, 0}, 0, 0, 32), ErrorCode::invalid_format), "dimension 1 (innermost first) is 0"));
  CHECK(contains_text(expect_error(one_tensor({std::uint64_t{1} << 63}, 0, 0, 32), ErrorCode::invalid_format),
                      "larger than a signed 64-bit integer"));
  CHECK(contains_text(expect_error(one_tensor({std::uint64_t{1} << 32, std::uint64_t{1} << 32}, 0, 0, 32), ErrorCode::invalid_format),
                      "element count overflows"));
  CHECK(contains_text(expect_error(one_tensor({std::uint64_t{1} << 62, 1}, 28, 0, 32), ErrorCode::invalid_format),
                      "size in bytes overflows"));  // f64: 2^62 elements of 8 bytes

  message = expect_error(one_tensor({32}, 4, 0, 32), ErrorCode::unsupported);  // retired Q4_2
  CHECK(contains_text(message, "unknown tensor type id 4"));
  CHECK(contains_text(expect_error(one_tensor({32}, 1000, 0, 32), ErrorCode::unsupported), "unknown tensor type id 1000"));
  CHECK(contains_text(expect_error(one_tensor({48, 2}, 2, 0, 64), ErrorCode::invalid_format),
                      "row length 48 is not a multiple of the q4_0 block size 32"));
  CHECK(contains_text(expect_error(one_tensor({4}, 0, 8, 64), ErrorCode::invalid_format),
                      "data offset 8 is not a multiple of the alignment 32"));
  message = expect_error(one_tensor({16}, 0, 0, 32), ErrorCode::invalid_format);  // 64 bytes needed
  CHECK(contains_text(message, "runs past the end of the file"));
  CHECK(contains_text(message, "tensor 'blk.0.attn_q.weight'"));
  CHECK(contains_text(expect_error(one_tensor({4}, 0, std::uint64_t{1} << 63, 32), ErrorCode::invalid_format),
                      "runs past the end of the file"));
  CHECK(contains_text(expect_error(one_tensor({4}, 0, 0xffffffffffffffe0ull, 32), ErrorCode::invalid_format),
                      "runs past the end of the file"));

  ByteBuilder overlap;  // b starts inside a
  overlap.header(3, 0).tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).tensor("c", {8}, 0, 96).pad_to(32).zeros(128);
  message = expect_error(overlap.bytes, ErrorCode::invalid_format);
  CHECK(contains_text(message, "overlaps tensor 'a'"));
  CHECK(contains_text(message, "tensor 'b'"));

  ByteBuilder duplicate_offset;
  duplicate_offset.header(2, 0).tensor("x", {8}, 0, 0).tensor("y", {8}, 0, 0).pad_to(32).zeros(32);
  CHECK(contains_text(expect_error(duplicate_offset.bytes, ErrorCode::invalid_format), "overlaps tensor 'x'"));

  ByteBuilder duplicate_name;
  duplicate_name.header(2, 0).tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).pad_to(32).zeros(64);
  CHECK(contains_text(expect_error(duplicate_name.bytes, ErrorCode::invalid_format), "duplicate tensor name"));

  ByteBuilder empty_name;
  empty_name.header(1, 0).tensor("", {8}, 0, 0).pad_to(32).zeros(32);
  CHECK(contains_text(expect_error(empty_name.bytes, ErrorCode::invalid_format), "empty tensor name"));

  ByteBuilder adjacent;  // touching is fine: a ends where b begins
  adjacent.header(2, 0).tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 32).pad_to(32).zeros(64);
  REQUIRE(parse(adjacent.bytes).ok());
}

// ------------------------------------------------------------------------------------------
// Typed getters
// ------------------------------------------------------------------------------------------

TEST_CASE("gguf: typed getters convert what fits and name what does not") {
  Writer writer;
  writer.set("u8", Value::from_u8(200));
  writer.set("i32_positive", Value::from_i32(5));
  writer.set("i32_negative", Value::from_i32(-1));
  writer.set("u32_big", Value::from_u32(3000000000u));
  writer.set("u64_big", Value::from_u64(std::uint64_t{1} << 33));
  writer.set("i64_negative", Value::from_i64(-7));
  writer.set("f32", Value::from_f32(0.5f));
  writer.set("f64", Value::from_f64(0.25));
  writer.set("f64_huge", Value::from_f64(1e300));
  writer.set("bool", Value::from_bool(true));
  writer.set("string", Value::from_string("text"));
  writer.set("strings", Value::from_strings({"a", "b"}));
  writer.set("f64s", Value::from_array(ValueType::float64, {Value::from_f64(1.5), Value::from_f64(-2)}));
  writer.set("f64s_huge", Value::from_array(ValueType::float64, {Value::from_f64(1), Value::from_f64(1e300)}));
  writer.set("u8s", Value::from_array(ValueType::uint8, {Value::from_u8(1), Value::from_u8(255)}));
  writer.set("u32s_big", Value::from_array(ValueType::uint32, {Value::from_u32(1), Value::from_u32(4000000000u)}));
  writer.set("i32s", Value::from_i32s({-3, 4}));
  const std::vector<std::uint8_t> bytes = writer.to_bytes();
  lamina::Result<File> parsed = File::parse(bytes.data(), bytes.size(), "getters.gguf");
  REQUIRE(parsed.ok());
  const File& file = *parsed;

  const auto expect_failure = [](const lamina::Error& error, ErrorCode code, std::vector<std::string> parts) {
    INFO(error.message);
    CHECK(error.code == code);
    CHECK(contains_text(error.message, "getters.gguf"));
    for (const std::string& part : parts) CHECK(contains_text(error.message, part));
  };

  CHECK(file.get_u32("u8").value() == 200);
  CHECK(file.get_i32("u8").value() == 200);
  CHECK(file.get_u64("u8").value() == 200);
  CHECK(file.get_u32("i32_positive").value() == 5);
  CHECK(file.get_i32("i32_negative").value() == -1);
  CHECK(file.get_u64("u64_big").value() == (std::uint64_t{1} << 33));
  CHECK(file.get_u32("u32_big").value() == 3000000000u);
  CHECK(file.get_f32("f32").value() == 0.5f);
  CHECK(file.get_f32("f64").value() == 0.25f);
  CHECK(file.get_bool("bool").value());
  CHECK(file.get_string("string").value() == "text");
  CHECK(file.get_string_array("strings").value() == std::vector<std::string>{"a", "b"});
  CHECK(file.get_f32_array("f64s").value() == std::vector<float>{1.5f, -2.0f});
  CHECK(file.get_i32_array("u8s").value() == std::vector<std::int32_t>{1, 255});
  CHECK(file.get_i32_array("i32s").value() == std::vector<std::int32_t>{-3, 4});

  expect_failure(file.get_u32("absent").error(), ErrorCode::missing, {"key 'absent' not found"});
  expect_failure(file.get_string_array("absent").error(), ErrorCode::missing, {"'absent'"});
  expect_failure(file.get_u32("i32_negative").error(), ErrorCode::type_mismatch, {"'i32_negative'", "-1", "does not fit uint32"});
  expect_failure(file.get_u64("i64_negative").error(), ErrorCode::type_mismatch, {"-7", "does not fit uint64"});
  expect_failure(file.get_i32("u32_big").error(), ErrorCode::type_mismatch, {"3000000000", "does not fit int32"});
  expect_failure(file.get_u32("u64_big").error(), ErrorCode::type_mismatch, {"8589934592", "does not fit uint32"});
  expect_failure(file.get_u32("string").error(), ErrorCode::type_mismatch, {"expected uint32", "found string"});
  expect_failure(file.get_u32("f32").error(), ErrorCode::type_mismatch, {"expected uint32", "found float32"});
  expect_failure(file.get_u32("bool").error(), ErrorCode::type_mismatch, {"found bool"});
  expect_failure(file.get_f32("u8").error(), ErrorCode::type_mismatch, {"expected float32", "found uint8"});
  expect_failure(file.get_f32("f64_huge").error(), ErrorCode::type_mismatch, {"does not fit float32"});
  expect_failure(file.get_bool("u8").error(), ErrorCode::type_mismatch, {"expected bool", "found uint8"});
  expect_failure(file.get_string("strings").error(), ErrorCode::type_mismatch, {"expected string", "found array of string"});
  expect_failure(file.get_string_array("i32s").error(), ErrorCode::type_mismatch,
                 {"expected array of string", "found array of int32"});
  expect_failure(file.get_string_array("string").error(), ErrorCode::type_mismatch, {"found string"});
  expect_failure(file.get_f32_array("i32s").error(), ErrorCode::type_mismatch, {"expected array of float32"});
  expect_failure(file.get_f32_array("f64s_huge").error(), ErrorCode::type_mismatch, {"element 1", "does not fit float32"});
  expect_failure(file.get_i32_array("f64s").error(), ErrorCode::type_mismatch, {"expected array of int32", "found array of float64"});
  expect_failure(file.get_i32_array("u32s_big").error(), ErrorCode::type_mismatch, {"element 1", "4000000000", "does not fit int32"});

  CHECK(file.get_u32_or("absent", 42).value() == 42);
  CHECK(file.get_u32_or("u8", 42).value() == 200);
  CHECK(file.get_f32_or("absent", 1.5f).value() == 1.5f);
  CHECK(file.get_bool_or("absent", true).value());
  CHECK(file.get_string_or("absent", "fallback").value() == "fallback");
  CHECK(file.get_string_or("string", "fallback").value() == "text");
  expect_failure(file.get_u32_or("string", 1).error(), ErrorCode::type_mismatch, {"found string"});
  expect_failure(file.get_f32_or("string", 1).error(), ErrorCode::type_mismatch, {"found string"});
  expect_failure(file.get_bool_or("string", false).error(), ErrorCode::type_mismatch, {"found string"});
  expect_failure(file.get_string_or("u8", "x").error(), ErrorCode::type_mismatch, {"found uint8"});
}
