// lamina batch-logits — several sequences, each with its own adapter stack, evaluated together in
// one batched forward pass; the logits after every token of each sequence go to DIR/<i>.f32.
//
//   lamina batch-logits -m MODEL --spec SPEC.json --out-dir DIR [-t N] [--ctx N]
//
// SPEC: {"sequences": [{"tokens": [1, 2, 3], "adapters": [{"path": "a.gguf", "scale": 0.7}, ...]}, ...]}
// Adapter paths (GGUF files or PEFT directories) are relative to the spec file's directory unless
// absolute; "adapters" and "scale" are optional (no adapters; scale 1). Each output file has the
// reference layout of ../shared: int32 n_vocab, then float32[n_tokens][n_vocab].
#include "backend_option.hpp"
#include "cli_common.hpp"

#include <lamina/io/json_check.hpp>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace lamina_cli {

namespace {

struct SpecSequence {
  std::vector<lamina::Token> tokens;
  std::vector<LoraArgument> adapters;
};

std::string directory_of(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash == 0 ? 1 : slash);
}

// A spec holds at most 65536 token ids and 4096 sequences: a few MiB of JSON at the very most.
constexpr std::size_t max_spec_bytes = std::size_t{16} << 20;

// Reads SPEC without exceptions: every value's type is checked before it is used.
lamina::Result<std::vector<SpecSequence>> read_spec(const std::string& path) {
  // read_regular_file refuses a FIFO or device at once, and a file over the cap before reading it.
  lamina::Result<std::string> text = lamina::read_regular_file(path, max_spec_bytes);
  if (!text) return text.take_error();
  // The syntax first: its error says where and what ("at byte 17: ... number overflow").
  LAMINA_TRY(lamina::check_json_syntax(*text, path));
  const nlohmann::json spec = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  const auto bad = [&](const std::string& what) { return lamina::fail(lamina::ErrorCode::invalid_format, path + ": " + what); };
  if (spec.is_discarded()) return bad("not valid JSON");
  if (!spec.is_object()) return bad("the spec is not a JSON object");
  const auto sequences = spec.find("sequences");
  if (sequences == spec.end() || !sequences->is_array() || sequences->empty()) return bad("\"sequences\" must be a non-empty array");
  if (sequences->size() > 4096) return bad("more than 4096 sequences");
  const std::string base = directory_of(path);
  std::vector<SpecSequence> result;
  for (std::size_t s = 0; s < sequences->size(); ++s) {
    const nlohmann::json& entry = (*sequences)[s];
    const std::string where = "sequences[" + std::to_string(s) + "]";
    if (!entry.is_object()) return bad(where + " is not an object");
    SpecSequence sequence;
    const auto tokens = entry.find("tokens");
    if (tokens == entry.end() || !tokens->is_array() || tokens->empty()) return bad(where + ".tokens must be a non-empty array");
    for (const nlohmann::json& token : *tokens) {
      if (!token.is_number_integer() || token.get<long long>() < 0 || token.get<long long>() > 0x7fffffff) {
        return bad(where + ".tokens holds something that is not a token id");
      }
      sequence.tokens.push_back(static_cast<lamina::Token>(token.get<long long>()));
    }
    const auto adapters = entry.find("adapters");
    if (adapters != entry.end()) {
      if (!adapters->is_array()) return bad(where + ".adapters is not an array");
      for (std::size_t a = 0; a < adapters->size(); ++a) {
        const nlohmann::json& adapter = (*adapters)[a];
        const std::string adapter_where = where + ".adapters[" + std::to_string(a) + "]";
        if (!adapter.is_object()) return bad(adapter_where + " is not an object");
        const auto adapter_path = adapter.find("path");
        if (adapter_path == adapter.end() || !adapter_path->is_string() || adapter_path->get_ref<const std::string&>().empty()) {
          return bad(adapter_where + ".path must be a non-empty string");
        }
        LoraArgument argument;
        argument.path = adapter_path->get<std::string>();
        if (argument.path[0] != '/') argument.path = base + "/" + argument.path;
        const auto scale = adapter.find("scale");
        if (scale != adapter.end()) {
          if (!scale->is_number() || !std::isfinite(scale->get<double>())) return bad(adapter_where + ".scale is not a finite number");
          argument.scale = static_cast<float>(scale->get<double>());
        }
        sequence.adapters.push_back(argument);
      }
    }
    result.push_back(std::move(sequence));
  }
  return result;
}

// Through lamina::OutputFile: written whole or not at all, never over a FIFO or device, and
// every write error reported with the path.
lamina::Result<void> write_logits(const std::string& path, std::uint32_t vocab, const std::vector<float>& logits) {
  lamina::Result<lamina::OutputFile> out = lamina::OutputFile::create(path);
  if (!out) return out.take_error();
  const std::int32_t header = static_cast<std::int32_t>(vocab);
  LAMINA_TRY(out->write(&header, sizeof header));
  LAMINA_TRY(out->write(logits.data(), logits.size() * sizeof(float)));
  return out->commit();
}

}  // namespace

int run_batch_logits(int argc, char** argv) {
  const char* usage = "lamina batch-logits -m MODEL --spec SPEC.json --out-dir DIR [-t N] [--ctx N] [--backend cpu|vulkan] [--device N]";
  const std::vector<Option> options = {help_option, model_option,
                                       {"--spec", nullptr, true, "JSON: {\"sequences\": [{\"tokens\": [..], \"adapters\": [{\"path\": .., \"scale\": ..}]}]}"},
                                       {"--out-dir", nullptr, true, "directory for 0.f32, 1.f32 … (created if missing)"},
                                       threads_option, context_option, backend_option, device_option, pipeline_cache_option};
  lamina::Result<ParsedArguments> arguments = parse_arguments(argc, argv, 2, options);
  if (!arguments) return report(arguments.error());
  if (arguments->has("--help")) return print_help(usage, options), 0;
  if (!arguments->get("--model") || !arguments->get("--spec") || !arguments->get("--out-dir")) {
    return report(usage_error(std::string("missing option; usage: ") + usage));
  }
  lamina::Result<std::vector<SpecSequence>> spec = read_spec(*arguments->get("--spec"));
  if (!spec) return report(spec.error());
  lamina::Result<std::uint32_t> threads = thread_count_option(*arguments);
  if (!threads) return report(threads.error());

  lamina::ModelParams model_params;
  model_params.load_tokenizer = false;
  lamina::Result<std::shared_ptr<const lamina::Model>> model = lamina::Model::load(*arguments->get("--model"), model_params);
  if (!model) return report(model.error());
  std::size_t total_tokens = 0;
  for (const SpecSequence& sequence : *spec) total_tokens += sequence.tokens.size();
  if (total_tokens > 65536) return report(usage_error("the spec holds more than 65536 tokens in all"));
  lamina::Result<std::uint32_t> context_length = context_length_option(*arguments, **model);
  if (!context_length) return report(context_length.error());
  for (std::size_t s = 0; s < spec->size(); ++s) {
    lamina::Result<void> fits = check_fits_context((*spec)[s].tokens.size(), *context_length, *arguments, **model,
                                                   "sequences[" + std::to_string(s) + "]");
    if (!fits) return report(fits.error());
  }

  lamina::SessionParams params;
  params.thread_count = *threads;
  params.sequence_count = static_cast<std::uint32_t>(spec->size());
  params.batch_size = static_cast<std::uint32_t>(total_tokens);
  params.context_length = static_cast<std::uint32_t>(total_tokens);
  params.logits_for_every_token = true;
  lamina::Result<void> backend = apply_backend_options(*arguments, params);
  if (!backend) return report(backend.error());
  lamina::Result<lamina::Session> session = lamina::Session::create(*model, params);
  if (!session) return report(session.error());

  // Each adapter file is loaded once, however many sequences stack it.
  std::vector<std::pair<std::string, std::shared_ptr<const lamina::LoraAdapter>>> loaded;
  lamina::Batch batch;
  for (std::size_t s = 0; s < spec->size(); ++s) {
    lamina::AdapterStack stack;
    for (const LoraArgument& argument : (*spec)[s].adapters) {
      std::shared_ptr<const lamina::LoraAdapter> adapter;
      for (const auto& entry : loaded) if (entry.first == argument.path) adapter = entry.second;
      if (adapter == nullptr) {
        lamina::Result<std::shared_ptr<const lamina::LoraAdapter>> read = lamina::peft::load_adapter(**model, argument.path);
        if (!read) return report(read.error());
        adapter = *read;
        loaded.emplace_back(argument.path, adapter);
      }
      stack.push_back({adapter, argument.scale});
    }
    lamina::Result<void> stacked = session->set_adapters(std::move(stack), static_cast<lamina::SequenceId>(s));
    if (!stacked) return report(stacked.error());
    const std::vector<lamina::Token>& tokens = (*spec)[s].tokens;
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      batch.add(tokens[t], static_cast<lamina::Position>(t), static_cast<lamina::SequenceId>(s), true);
    }
  }
  lamina::Result<void> decoded = session->decode(batch);  // every sequence in one forward pass
  if (!decoded) return report(decoded.error());

  const std::string& directory = *arguments->get("--out-dir");
  if (::mkdir(directory.c_str(), 0777) != 0 && errno != EEXIST) {
    return report(lamina::fail(lamina::ErrorCode::io, directory + ": cannot create directory: " + std::strerror(errno)));
  }
  const std::uint32_t vocab = (*model)->hparams().vocab_size;
  std::size_t output = 0;
  for (std::size_t s = 0; s < spec->size(); ++s) {
    const std::size_t count = (*spec)[s].tokens.size();
    std::vector<float> logits(count * vocab);
    for (std::size_t t = 0; t < count; ++t, ++output) {
      std::memcpy(logits.data() + t * vocab, session->output_logits(output), vocab * sizeof(float));
    }
    lamina::Result<void> written = write_logits(directory + "/" + std::to_string(s) + ".f32", vocab, logits);
    if (!written) return report(written.error());
  }
  std::printf("wrote logits of %zu sequences (%zu tokens, one forward pass) to %s\n", spec->size(), total_tokens, directory.c_str());
  return check_backend_validation(params, 0);
}

}  // namespace lamina_cli
