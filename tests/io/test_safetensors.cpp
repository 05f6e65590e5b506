// Tests for lamina/io/safetensors.hpp: round trips through the writer, the shared PEFT adapters,
// and hostile files, each of which must give a clean Error that says what and where.
#include <lamina/io/safetensors.hpp>

#include <doctest/doctest.h>

#include "../test_support.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

using lamina::DType;
using lamina::ErrorCode;
namespace st = lamina::safetensors;

namespace {

bool contains_text(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A file from a header text and data bytes (no padding added).
std::vector<std::uint8_t> file_bytes(const std::string& header, const std::vector<std::uint8_t>& data = {},
                                     std::uint64_t length_field = ~std::uint64_t{0}) {
  const std::uint64_t length = length_field == ~std::uint64_t{0} ? header.size() : length_field;
  std::vector<std::uint8_t> bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::uint8_t>(length >> (8 * i)));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

lamina::Result<st::File> parse(const std::vector<std::uint8_t>& bytes) {
  return st::File::parse(bytes.data(), bytes.size(), "hostile.safetensors");
}

// Parses `bytes`, requires the given failure and that the message contains each of `parts`.
std::string expect_error(const std::vector<std::uint8_t>& bytes, ErrorCode code, std::vector<std::string> parts) {
  lamina::Result<st::File> file = parse(bytes);
  REQUIRE_FALSE(file.ok());
  const std::string message = file.error().message;
  INFO(message);
  CHECK(file.error().code == code);
  CHECK(contains_text(message, "hostile.safetensors: "));
  for (const std::string& part : parts) CHECK(contains_text(message, part));
  return message;
}

std::vector<std::uint8_t> zeros(std::size_t count) { return std::vector<std::uint8_t>(count, 0); }

}  // namespace

TEST_CASE("safetensors: write and read back F32, F16 and BF16 tensors with metadata") {
  const std::vector<float> f32 = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-40f};  // [2, 3]
  const std::vector<std::uint16_t> f16 = {lamina::f32_to_f16(0.5f), lamina::f32_to_f16(-65504.0f), lamina::f32_to_f16(1e-7f)};
  const std::vector<std::uint16_t> bf16 = {lamina::f32_to_bf16(3.0f), lamina::f32_to_bf16(-1e30f)};
  const float scalar = 42.0f;
  std::vector<st::WriteTensor> tensors = {
      {"weight \"quoted\"\\ \xc3\xa9", DType::f32, {2, 3}, f32.data()},
      {"half", DType::f16, {3}, f16.data()},
      {"brain", DType::bf16, {1, 2}, bf16.data()},
      {"scalar", DType::f32, {}, &scalar},
      {"empty", DType::f16, {0, 5}, nullptr},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "line\nbreak \"q\" \x01"}};
  const std::string path = lamina_test::temp_path("roundtrip.safetensors");
  REQUIRE(st::write(path, tensors, metadata).ok());

  const std::vector<unsigned char> raw = lamina_test::read_binary_file(path);
  REQUIRE(raw.size() >= 8);
  std::uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | raw[static_cast<std::size_t>(i)];
  CHECK(header_length % 8 == 0);  // padded with spaces, as the reference writer does
  CHECK(raw[8 + header_length - 1] != 0);
  CHECK(raw.size() == 8 + header_length + 24 + 6 + 4 + 4 + 0);

  lamina::Result<st::File> file = st::File::open(path);
  REQUIRE_MESSAGE(file.ok(), file.error().message);
  CHECK(file->name() == path);
  CHECK(file->metadata() == metadata);
  REQUIRE(file->tensors().size() == 5);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    CHECK(file->tensors()[i].name == tensors[i].name);  // in the order written
    CHECK(file->tensors()[i].shape == tensors[i].shape);
    CHECK(file->tensors()[i].dtype == tensors[i].dtype);
    CHECK(file->tensors()[i].supported);
  }
  const st::TensorInfo* weight = file->find(tensors[0].name);
  REQUIRE(weight != nullptr);
  CHECK(weight->dtype_name == "F32");
  CHECK(weight->size_bytes == 24);
  lamina::Result<std::vector<float>> values = st::to_f32(*weight);
  REQUIRE(values.ok());
  CHECK(*values == f32);
  CHECK(std::signbit((*values)[4]));

  values = st::to_f32(*file->find("half"));
  REQUIRE(values.ok());
  REQUIRE(values->size() == 3);
  CHECK((*values)[0] == 0.5f);
  CHECK((*values)[1] == -65504.0f);
  CHECK((*values)[2] == lamina::f16_to_f32(f16[2]));
  CHECK(file->find("half")->dtype_name == "F16");

  values = st::to_f32(*file->find("brain"));
  REQUIRE(values.ok());
  CHECK((*values)[0] == 3.0f);
  CHECK((*values)[1] == lamina::bf16_to_f32(bf16[1]));
  CHECK(file->find("brain")->dtype_name == "BF16");

  CHECK(file->find("scalar")->shape.empty());
  CHECK(file->find("scalar")->element_count() == 1);
  CHECK((*st::to_f32(*file->find("scalar")))[0] == 42.0f);
  CHECK(file->find("empty")->size_bytes == 0);
  CHECK(st::to_f32(*file->find("empty"))->empty());
  CHECK(file->find("missing") == nullptr);

  // Copies share the mapping.
  const st::File copy = *file;
  file = lamina::fail(ErrorCode::missing, "dropped");
  CHECK((*st::to_f32(*copy.find("half")))[0] == 0.5f);
  std::remove(path.c_str());
}

TEST_CASE("safetensors: the writer refuses bad input") {
  const float value = 1.0f;
  const std::map<std::string, std::string> none;
  const auto refused = [&](std::vector<st::WriteTensor> tensors, const std::string& part,
                           const std::map<std::string, std::string>& metadata = {}) {
    lamina::Result<std::vector<std::uint8_t>> bytes = st::serialize(tensors, metadata);
    REQUIRE_FALSE(bytes.ok());
    INFO(bytes.error().message);
    CHECK(bytes.error().code == ErrorCode::invalid_argument);
    CHECK(contains_text(bytes.error().message, part));
  };
  refused({{"a", DType::f32, {1}, &value}, {"a", DType::f32, {1}, &value}}, "duplicate tensor name");
  refused({{"", DType::f32, {1}, &value}}, "empty tensor name");
  refused({{"__metadata__", DType::f32, {1}, &value}}, "__metadata__");
  refused({{"q", DType::q8_0, {32}, &value}}, "cannot be written");
  refused({{"neg", DType::f32, {-1}, &value}}, "must not be negative");
  refused({{"big", DType::f32, {std::numeric_limits<std::int64_t>::max(), 4}, &value}}, "overflow");
  refused({{"null", DType::f32, {2}, nullptr}}, "data is null");
  refused({{"bad\xff", DType::f32, {1}, &value}}, "not UTF-8");
  refused({}, "not UTF-8", {{"k", "\xc0\xaf"}});

  const std::string path = lamina_test::temp_path("no-such-dir/x.safetensors");
  lamina::Result<void> written = st::write(path, {{"a", DType::f32, {1}, &value}}, none);
  REQUIRE_FALSE(written.ok());
  CHECK(written.error().code == ErrorCode::io);
  CHECK(contains_text(written.error().message, path));
}

TEST_CASE("safetensors: the shared PEFT adapters") {
  for (const char* letter : {"a", "b", "c", "d", "e"}) {
    const std::string relative = std::string("adapters/lora-") + letter + "-peft/adapter_model.safetensors";
    LAMINA_REQUIRE_SHARED(relative);
    lamina::Result<st::File> file = st::File::open(lamina_test::shared_path(relative));
    REQUIRE_MESSAGE(file.ok(), file.error().message);
    CHECK(!file->tensors().empty());
    std::size_t total = 0;
    for (const st::TensorInfo& tensor : file->tensors()) {
      CHECK(tensor.dtype_name == "F32");
      CHECK(tensor.supported);
      CHECK(tensor.size_bytes == tensor.element_count() * 4);
      CHECK(contains_text(tensor.name, "base_model.model.model.layers."));
      total += tensor.size_bytes;
    }
    // The tensors tile the data section exactly.
    const std::vector<unsigned char> raw = lamina_test::read_binary_file(lamina_test::shared_path(relative));
    std::uint64_t header_length = 0;
    for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | raw[static_cast<std::size_t>(i)];
    CHECK(8 + header_length + total == raw.size());
  }

  // lora-a: rank 8 on q_proj and v_proj of a 256-wide model. Independently parsed with Python
  // (struct + json + numpy) for the values below.
  const std::string path = lamina_test::shared_path("adapters/lora-a-peft/adapter_model.safetensors");
  lamina::Result<st::File> file = st::File::open(path);
  REQUIRE(file.ok());
  CHECK(file->tensors().size() == 16);
  const st::TensorInfo* a = file->find("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  REQUIRE(a != nullptr);
  CHECK(a->shape == std::vector<std::int64_t>{8, 256});
  CHECK(a->data_begin == 0);
  const st::TensorInfo* b = file->find("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  REQUIRE(b != nullptr);
  CHECK(b->shape == std::vector<std::int64_t>{256, 8});
  CHECK(b->data_begin == 8192);
  lamina::Result<std::vector<float>> values = st::to_f32(*a);
  REQUIRE(values.ok());
  CHECK(values->size() == 2048);
  // The bytes of the first value, read straight from the file at 8 + header length.
  const std::vector<unsigned char> raw = lamina_test::read_binary_file(path);
  float first = 0;
  std::memcpy(&first, raw.data() + 8 + 2016, 4);
  CHECK((*values)[0] == first);

  // lora-d (DoRA) carries magnitude vectors: rank 1.
  lamina::Result<st::File> dora = st::File::open(lamina_test::shared_path("adapters/lora-d-peft/adapter_model.safetensors"));
  REQUIRE(dora.ok());
  const st::TensorInfo* magnitude = dora->find("base_model.model.model.layers.0.mlp.up_proj.lora_magnitude_vector.weight");
  REQUIRE(magnitude != nullptr);
  CHECK(magnitude->shape == std::vector<std::int64_t>{768});

  lamina::Result<st::File> missing = st::File::open(lamina_test::temp_path("does-not-exist.safetensors"));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == ErrorCode::io);
}

TEST_CASE("safetensors: other dtypes parse but do not convert") {
  const std::string header =
      R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"mask":{"dtype":"BOOL","shape":[3],"data_offsets":[16,19]},)"
      R"("fp4":{"dtype":"F4","shape":[2,3],"data_offsets":[19,22]},"fp8":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[22,23]},)"
      R"("d":{"dtype":"F64","shape":[1],"data_offsets":[23,31]}})";
  const std::vector<std::uint8_t> bytes = file_bytes(header, zeros(31));
  lamina::Result<st::File> file = parse(bytes);
  REQUIRE_MESSAGE(file.ok(), file.error().message);
  REQUIRE(file->tensors().size() == 5);
  for (const st::TensorInfo& tensor : file->tensors()) {
    CHECK_FALSE(tensor.supported);
    lamina::Result<std::vector<float>> values = st::to_f32(tensor);
    REQUIRE_FALSE(values.ok());
    CHECK(values.error().code == ErrorCode::unsupported);
    CHECK(contains_text(values.error().message, "'" + tensor.name + "'"));
    CHECK(contains_text(values.error().message, "'" + tensor.dtype_name + "'"));
  }
  CHECK(file->find("ids")->dtype_name == "I64");
  // Four-bit values: 6 of them in 3 bytes; 3 of them would be 12 bits, not whole bytes.
  expect_error(file_bytes(R"({"x":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", zeros(2)), ErrorCode::invalid_format,
               {"'x'", "12 bits"});
}

TEST_CASE("safetensors: unknown keys inside a tensor are skipped; empty files parse") {
  lamina::Result<st::File> file =
      parse(file_bytes(R"(  {"t":{"extra":{"a":[1,{"b":null}]},"dtype":"F32","shape":[1],"data_offsets":[0,4],"more":true}}  )", zeros(4)));
  REQUIRE_MESSAGE(file.ok(), file.error().message);
  CHECK(file->tensors().size() == 1);
  lamina::Result<st::File> empty = parse(file_bytes("{}"));
  REQUIRE(empty.ok());
  CHECK(empty->tensors().empty());
  CHECK(empty->metadata().empty());
}

TEST_CASE("safetensors: hostile files give clean errors that say what and where") {
  SUBCASE("shorter than the length field") {
    expect_error({}, ErrorCode::invalid_format, {"at byte 0", "needs 8 bytes", "has 0"});
    expect_error({1, 2, 3}, ErrorCode::invalid_format, {"has 3"});
  }
  SUBCASE("header length past the end of the file") {
    expect_error(file_bytes("{}", {}, 3), ErrorCode::invalid_format, {"at byte 0", "header length 3", "past the end", "2 bytes"});
    expect_error(file_bytes("{}", {}, ~std::uint64_t{0} - 1), ErrorCode::invalid_format, {"header length 18446744073709551614"});
  }
  SUBCASE("absurd header length") {
    // A file really that large would be needed to get past the first check, so fake one with a
    // buffer whose tail is never touched: the length check comes before any read of the header.
    std::vector<std::uint8_t> big = file_bytes("{}", {}, 200000000);
    big.resize(200000010, ' ');
    expect_error(big, ErrorCode::unsupported, {"header length 200000000", "more than lamina accepts"});
  }
  SUBCASE("header too short") { expect_error(file_bytes("{"), ErrorCode::invalid_format, {"too short"}); }
  SUBCASE("invalid JSON") {
    expect_error(file_bytes(R"({"a":{"dtype":"F32",}})"), ErrorCode::invalid_format, {"header at byte 28", "invalid JSON", "unexpected '}'"});
    expect_error(file_bytes(R"({} trailing)"), ErrorCode::invalid_format, {"invalid JSON"});
    expect_error(file_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}"), ErrorCode::invalid_format, {"invalid JSON"});
  }
  SUBCASE("invalid UTF-8") {
    expect_error(file_bytes("{\"\xff\xfe\":{}}"), ErrorCode::invalid_format, {"invalid JSON", "UTF-8"});
    expect_error(file_bytes("{\"a\xc0\xaf\":{}}"), ErrorCode::invalid_format, {"invalid JSON"});
    expect_error(file_bytes(R"({"\ud800":{}})"), ErrorCode::invalid_format, {"invalid JSON", "surrogate"});
  }
  SUBCASE("deep nesting") {
    std::string deep(100000, '[');
    expect_error(file_bytes(deep), ErrorCode::invalid_format, {"header must be a JSON object, found an array"});
    std::string nested = R"({"t":{"x":)" + std::string(100000, '[') + std::string(100000, ']') + "}}";
    expect_error(file_bytes(nested), ErrorCode::invalid_format, {"nested more than 16 levels"});
  }
  SUBCASE("not an object") {
    expect_error(file_bytes("[1,2]   "), ErrorCode::invalid_format, {"header must be a JSON object, found an array"});
    expect_error(file_bytes("\"text\""), ErrorCode::invalid_format, {"found a string"});
    expect_error(file_bytes("42"), ErrorCode::invalid_format, {"found a number"});
  }
  SUBCASE("entries that are not objects") {
    expect_error(file_bytes(R"({"t":[1]})"), ErrorCode::invalid_format, {"tensor 't'", "must be an object, found an array"});
    expect_error(file_bytes(R"({"t":"F32"})"), ErrorCode::invalid_format, {"tensor 't'", "found a string"});
    expect_error(file_bytes(R"({"t":null})"), ErrorCode::invalid_format, {"tensor 't'", "found null"});
  }
  SUBCASE("missing or ill-typed fields") {
    expect_error(file_bytes(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", zeros(4)), ErrorCode::invalid_format,
                 {"tensor 't'", "missing \"dtype\"", "header near byte"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", zeros(4)), ErrorCode::invalid_format, {"missing \"shape\""});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[1]}})", zeros(4)), ErrorCode::invalid_format, {"missing \"data_offsets\""});
    expect_error(file_bytes(R"({"t":{"dtype":32,"shape":[1],"data_offsets":[0,4]}})", zeros(4)), ErrorCode::invalid_format,
                 {"\"dtype\" must be a string, found a number"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":{"a":1},"data_offsets":[0,4]}})", zeros(4)), ErrorCode::invalid_format,
                 {"\"shape\" must be an array of integers, found an object"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":1,"data_offsets":[0,4]}})", zeros(4)), ErrorCode::invalid_format,
                 {"\"shape\" must be an array of integers, found a number"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", zeros(4)), ErrorCode::invalid_format,
                 {"\"shape\": element 0 is a string"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}})", zeros(4)), ErrorCode::invalid_format,
                 {"element 0 is an array"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":"0"}})", zeros(4)), ErrorCode::invalid_format,
                 {"\"data_offsets\" must be an array of integers, found a string"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", zeros(4)), ErrorCode::invalid_format,
                 {"has 1 elements, expected 2"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", zeros(4)), ErrorCode::invalid_format,
                 {"more than 2 elements"});
    expect_error(file_bytes(R"({"t":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", zeros(4)), ErrorCode::invalid_format,
                 {"unknown dtype 'Q4'"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})", zeros(4)),
                 ErrorCode::invalid_format, {"duplicate key \"dtype\""});
  }
  SUBCASE("bad dimensions") {
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,4]}})", zeros(4)), ErrorCode::invalid_format,
                 {"tensor 't'", "dimension 1 is -1"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", zeros(4)), ErrorCode::invalid_format,
                 {"element 0 is 1.5, not an integer"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[1e400],"data_offsets":[0,4]}})", zeros(4)), ErrorCode::invalid_format,
                 {"invalid JSON"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})", zeros(4)),
                 ErrorCode::invalid_format, {"larger than a signed 64-bit integer"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}})", zeros(4)),
                 ErrorCode::invalid_format, {"not an integer"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", zeros(4)),
                 ErrorCode::invalid_format, {"overflows a signed 64-bit integer at dimension 1"});
    expect_error(file_bytes(R"({"t":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}})", zeros(4)),
                 ErrorCode::invalid_format, {"overflows a 64-bit integer"});
    std::string many = R"({"t":{"dtype":"F32","shape":[)";
    for (int i = 0; i < 65; ++i) many += i ? ",1" : "1";
    expect_error(file_bytes(many + R"(],"data_offsets":[0,4]}})", zeros(4)), ErrorCode::unsupported, {"more than 64 dimensions"});
  }
  SUBCASE("bad offsets") {
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", zeros(4)), ErrorCode::invalid_format,
                 {"offset 0 is -4"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", zeros(4)), ErrorCode::invalid_format,
                 {"tensor 't'", "[4, 0] end before they begin"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", zeros(3)), ErrorCode::invalid_format,
                 {"tensor 't'", "[0, 4] run past the end of the data section (3 bytes"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})", zeros(4)),
                 ErrorCode::invalid_format, {"needs 4 bytes"});
    expect_error(file_bytes(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551611,18446744073709551615]}})", zeros(4)),
                 ErrorCode::invalid_format, {"past the end of the data section"});
  }
  SUBCASE("size does not match the shape") {
    expect_error(file_bytes(R"({"t":{"dtype":"F16","shape":[2,3],"data_offsets":[0,8]}})", zeros(8)), ErrorCode::invalid_format,
                 {"tensor 't'", "hold 8 bytes", "shape [2, 3] of F16 needs 12 bytes"});
  }
  SUBCASE("overlaps, gaps and trailing bytes") {
    expect_error(file_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            zeros(8)),
                 ErrorCode::invalid_format, {"tensor 'b'", "overlap tensor 'a'", "header near byte"});
    expect_error(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", zeros(8)), ErrorCode::invalid_format,
                 {"tensor 'a'", "gap of 4 bytes"});
    expect_error(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", zeros(6)), ErrorCode::invalid_format,
                 {"2 bytes after the last tensor", "at byte"});
  }
  SUBCASE("duplicate names") {
    expect_error(file_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                            zeros(8)),
                 ErrorCode::invalid_format, {"duplicate tensor name 'a'", "header near byte"});
    expect_error(file_bytes(R"({"__metadata__":{"k":"v","k":"w"}})"), ErrorCode::invalid_format, {"duplicate key 'k'"});
    expect_error(file_bytes(R"({"__metadata__":{},"__metadata__":{}})"), ErrorCode::invalid_format, {"appears twice"});
  }
  SUBCASE("metadata that is not an object of strings") {
    expect_error(file_bytes(R"({"__metadata__":{"k":1}})"), ErrorCode::invalid_format,
                 {"\"__metadata__\": the value of key 'k' must be a string, found a number"});
    expect_error(file_bytes(R"({"__metadata__":{"k":{"x":"y"}}})"), ErrorCode::invalid_format, {"key 'k'", "found an object"});
    expect_error(file_bytes(R"({"__metadata__":{"k":["y"]}})"), ErrorCode::invalid_format, {"key 'k'", "found an array"});
    expect_error(file_bytes(R"({"__metadata__":"v"})"), ErrorCode::invalid_format, {"\"__metadata__\" must be an object"});
  }
  SUBCASE("names in messages are quoted and cut") {
    const std::string name(1000, 'n');
    const std::string message =
        expect_error(file_bytes("{\"" + name + "\":3}"), ErrorCode::invalid_format, {"'" + std::string(80, 'n') + "...'"});
    CHECK(message.size() < 300);
  }
}

TEST_CASE("safetensors: JSON errors quote what nlohmann read, escaped") {
  // nlohmann ends its message with the bytes it read ("last read: '...'"), raw: invalid UTF-8 and
  // terminal control bytes would reach the user's terminal or log as they are.
  const auto printable = [](const std::string& message) {
    for (const char c : message) {
      const unsigned char byte = static_cast<unsigned char>(c);
      if (byte < 0x20 || byte >= 0x7f) return false;
    }
    return true;
  };
  // A tensor name with an invalid UTF-8 byte.
  const std::string bad_utf8 = expect_error(file_bytes("{\"a\xff\x1b[31m\":{}}"), ErrorCode::invalid_format,
                                            {"header at byte 11", "invalid JSON", "last read: '\"a\\xff'"});
  CHECK(printable(bad_utf8));
  // A raw control byte inside a string (JSON wants it escaped); nlohmann writes it as <U+001B>.
  const std::string control = expect_error(file_bytes("{\"a\x1b\":{}}"), ErrorCode::invalid_format, {"invalid JSON", "last read"});
  CHECK(printable(control));
  // A hostile 200 kB token (valid UTF-8 up to its last byte) is cut: quote_for_message keeps 80 bytes.
  std::string long_name;
  for (int i = 0; i < 100000; ++i) long_name += "\xc3\xa9";  // U+00E9
  const std::string long_token =
      expect_error(file_bytes("{\"" + long_name + "\xff\":{}}"), ErrorCode::invalid_format, {"last read: '\"\\xc3\\xa9", "..."});
  CHECK(printable(long_token));
  CHECK(long_token.size() < 800);
}
