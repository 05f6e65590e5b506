// Loading a model that lamina cannot run gives a clear error naming the key or tensor.
#include <doctest/doctest.h>
#include <lamina/lamina.hpp>

#include "../test_support.hpp"

#include <string>
#include <vector>

namespace {

// Copies every key and tensor of `source` into a writer, skipping `drop_tensor`, replacing the
// architecture when `architecture` is non-empty, and reshaping `reshape_tensor` to a wrong shape.
std::vector<std::uint8_t> rewrite(const lamina::gguf::File& source, const std::string& drop_tensor, const std::string& architecture,
                                  const std::string& reshape_tensor = "") {
  lamina::gguf::Writer writer;
  for (const auto& entry : source.metadata()) {
    if (entry.first == "general.architecture" && !architecture.empty()) {
      writer.set(entry.first, lamina::gguf::Value::from_string(architecture));
    } else {
      writer.set(entry.first, entry.second);
    }
  }
  for (const lamina::gguf::TensorInfo& tensor : source.tensors()) {
    if (tensor.name == drop_tensor) continue;
    std::vector<std::int64_t> shape = tensor.shape;
    if (tensor.name == reshape_tensor) std::swap(shape.front(), shape.back());
    REQUIRE(writer.add_tensor(tensor.name, tensor.dtype, shape, tensor.data, tensor.size_bytes).ok());
  }
  return writer.to_bytes();
}

lamina::Error load_error(const std::vector<std::uint8_t>& bytes) {
  lamina::Result<lamina::gguf::File> file = lamina::gguf::File::parse(bytes.data(), bytes.size(), "edited.gguf");
  REQUIRE(file.ok());
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::from_file(*file);
  REQUIRE(!model.ok());
  return model.error();
}

}  // namespace

TEST_CASE("models lamina cannot run are clean errors") {
  LAMINA_REQUIRE_SHARED("models/stories260K.gguf");
  lamina::Result<lamina::gguf::File> source = lamina::gguf::File::open(lamina_test::shared_path("models/stories260K.gguf"));
  REQUIRE(source.ok());

  SUBCASE("a file that loads unchanged") {
    const std::vector<std::uint8_t> bytes = rewrite(*source, "", "");
    lamina::Result<lamina::gguf::File> file = lamina::gguf::File::parse(bytes.data(), bytes.size(), "copy.gguf");
    REQUIRE(file.ok());
    CHECK(lamina::Model::from_file(*file).ok());
  }
  SUBCASE("unknown architecture") {
    const lamina::Error error = load_error(rewrite(*source, "", "gpt-j"));
    CHECK(error.code == lamina::ErrorCode::unsupported);
    CHECK(error.message.find("gpt-j") != std::string::npos);
  }
  SUBCASE("missing tensor") {
    const lamina::Error error = load_error(rewrite(*source, "blk.3.ffn_up.weight", ""));
    CHECK(error.code == lamina::ErrorCode::missing);
    CHECK(error.message.find("blk.3.ffn_up.weight") != std::string::npos);
  }
  SUBCASE("tensor of the wrong shape") {
    const lamina::Error error = load_error(rewrite(*source, "", "", "blk.1.attn_k.weight"));
    CHECK(error.code == lamina::ErrorCode::type_mismatch);
    CHECK(error.message.find("blk.1.attn_k.weight") != std::string::npos);
  }
  SUBCASE("missing hyperparameter") {
    lamina::gguf::Writer writer;
    for (const auto& entry : source->metadata()) {
      if (entry.first != "llama.block_count") writer.set(entry.first, entry.second);
    }
    const std::vector<std::uint8_t> bytes = writer.to_bytes();
    const lamina::Error error = load_error(bytes);
    CHECK(error.code == lamina::ErrorCode::missing);
    CHECK(error.message.find("llama.block_count") != std::string::npos);
  }
  SUBCASE("a missing file") {
    lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(lamina_test::temp_path("does-not-exist.gguf"));
    REQUIRE(!model.ok());
    CHECK(model.error().code == lamina::ErrorCode::io);
  }
}

TEST_CASE("a model's chat templates: the default one, named ones, and clean errors") {
  LAMINA_REQUIRE_SHARED("models/stories260K.gguf");
  lamina::Result<lamina::gguf::File> source = lamina::gguf::File::open(lamina_test::shared_path("models/stories260K.gguf"));
  REQUIRE(source.ok());
  lamina::Result<std::shared_ptr<const lamina::Model>> plain = lamina::Model::from_file(*source);
  REQUIRE(plain.ok());
  lamina::Result<std::string> none = (*plain)->chat_template();
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == lamina::ErrorCode::missing);
  CHECK(none.error().message.find("tokenizer.chat_template") != std::string::npos);
  lamina::Result<std::vector<std::string>> no_names = (*plain)->chat_template_names();
  REQUIRE(no_names.ok());
  CHECK(no_names->empty());

  lamina::gguf::Writer writer;
  for (const auto& entry : source->metadata()) writer.set(entry.first, entry.second);
  const std::string chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
  writer.set("tokenizer.chat_template", lamina::gguf::Value::from_string(chatml));
  writer.set("tokenizer.chat_template.tool_use", lamina::gguf::Value::from_string("{{ tools | tojson }}"));
  writer.set("tokenizer.chat_templates", lamina::gguf::Value::from_strings({"tool_use"}));
  writer.set("tokenizer.chat_template.broken", lamina::gguf::Value::from_bool(true));
  for (const lamina::gguf::TensorInfo& tensor : source->tensors()) {
    REQUIRE(writer.add_tensor(tensor.name, tensor.dtype, tensor.shape, tensor.data, tensor.size_bytes).ok());
  }
  const std::vector<std::uint8_t> bytes = writer.to_bytes();
  lamina::Result<lamina::gguf::File> file = lamina::gguf::File::parse(bytes.data(), bytes.size(), "chat.gguf");
  REQUIRE(file.ok());
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::from_file(*file);
  REQUIRE(model.ok());
  lamina::Result<std::string> main_template = (*model)->chat_template();
  REQUIRE(main_template.ok());
  CHECK(*main_template == chatml);
  lamina::Result<std::string> tool_use = (*model)->chat_template("tool_use");
  REQUIRE(tool_use.ok());
  CHECK(*tool_use == "{{ tools | tojson }}");
  lamina::Result<std::vector<std::string>> names = (*model)->chat_template_names();
  REQUIRE(names.ok());
  CHECK(*names == std::vector<std::string>{"tool_use"});
  lamina::Result<std::string> absent = (*model)->chat_template("rag");
  REQUIRE_FALSE(absent.ok());
  CHECK(absent.error().message.find("tokenizer.chat_template.rag") != std::string::npos);
  lamina::Result<std::string> wrong_type = (*model)->chat_template("broken");
  REQUIRE_FALSE(wrong_type.ok());
  CHECK(wrong_type.error().code == lamina::ErrorCode::type_mismatch);
}
