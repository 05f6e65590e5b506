// lamina explain — watch a forward pass happen.
//
//   lamina explain -m MODEL (--prompt TEXT | --tokens IDS) --out-dir DIR [--top N]
//
// Runs the prompt through the model one token at a time with the plain scalar operations of
// lamina/kernels/reference.hpp (no SIMD, no threads, no batching: every step is a loop you can
// read), and for the prompt's last token prints each step with the shape of every tensor,
// what each attention head looks at, and what a "logit lens" reads after every layer (the
// final norm and output matrix applied early: the tokens the model would predict if it stopped
// there). Then it picks the next token (greedy).
//
// It writes PNG heatmaps to DIR:
//   attention-layerNN-HHheads.png   one per layer: for each head side by side, the attention
//                                   weights of every prompt position (rows: the query position,
//                                   columns: the position attended to; causal, so a triangle)
//   logit-lens-layerNN.png          one per layer: rows are the 16 tokens the model ranks
//                                   highest at the end, columns the prompt positions; each cell
//                                   the probability the lens gives that token after that layer
//
// This is the teaching example: for speed use lamina::Session, which computes the same thing.
#pragma once

#include <lamina/lamina.hpp>

// stb_image_write (Debian: libstb-dev). One file of the program defines
// STB_IMAGE_WRITE_IMPLEMENTATION (and STB_IMAGE_WRITE_STATIC) before including this header.
#include <stb/stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace lamina_explain {

// --- images --------------------------------------------------------------------------------

// An RGB image, row-major, 3 bytes per pixel.
struct Image {
  int width = 0, height = 0;
  std::vector<unsigned char> pixels;
  Image(int w, int h) : width(w), height(h), pixels(static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 3, 255) {}
  void fill(int x, int y, int w, int h, const unsigned char (&rgb)[3]) {
    for (int row = y; row < y + h && row < height; ++row) {
      for (int column = x; column < x + w && column < width; ++column) {
        unsigned char* pixel = &pixels[(static_cast<std::size_t>(row) * static_cast<std::size_t>(width) + static_cast<std::size_t>(column)) * 3];
        pixel[0] = rgb[0], pixel[1] = rgb[1], pixel[2] = rgb[2];
      }
    }
  }
};

// 0 -> dark blue, 0.5 -> teal, 1 -> yellow (a viridis-like ramp, readable in grey too).
inline void heat_color(float value, unsigned char (&rgb)[3]) {
  const float v = std::min(1.0f, std::max(0.0f, value));
  static const float stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  const float at = v * 4.0f;
  const int low = std::min(3, static_cast<int>(at));
  const float mix = at - static_cast<float>(low);
  for (int c = 0; c < 3; ++c) rgb[c] = static_cast<unsigned char>(stops[low][c] + (stops[low + 1][c] - stops[low][c]) * mix + 0.5f);
}

// Encodes the PNG in memory and writes it with lamina::write_regular_file: whole or not at all,
// never over a FIFO or a device, and an error that names the file and says why.
inline lamina::Result<void> write_png(const std::string& path, const Image& image) {
  std::vector<unsigned char> png;
  const auto append = [](void* context, void* data, int size) {
    auto* out = static_cast<std::vector<unsigned char>*>(context);
    out->insert(out->end(), static_cast<unsigned char*>(data), static_cast<unsigned char*>(data) + size);
  };
  if (stbi_write_png_to_func(append, &png, image.width, image.height, 3, image.pixels.data(), image.width * 3) == 0) {
    return lamina::fail(lamina::ErrorCode::invalid_argument, path + ": the PNG encoder failed");
  }
  return lamina::write_regular_file(path, png.data(), png.size());
}

// --- the forward pass, one token at a time ---------------------------------------------------

// What the walk through the model records for the pictures and the printout.
struct Trace {
  // attention[layer][head][query position][key position]: softmax weights (0 above the diagonal)
  std::vector<std::vector<std::vector<float>>> attention;  // [layers][heads] -> [positions * positions]
  // lens[layer][position][vocab]: probabilities the logit lens reads after each layer
  std::vector<std::vector<std::vector<float>>> lens;
  std::vector<float> final_logits;  // [vocab] after the last prompt token
};

class Explainer {
 public:
  Explainer(const lamina::Model& model, bool verbose) : model_(model), hp_(model.hparams()), w_(model.weights()), verbose_(verbose) {}

  // Runs `tokens` through the model; prints the steps of the last one.
  Trace run(const std::vector<lamina::Token>& tokens) {
    const std::size_t n = tokens.size(), dim = hp_.embedding_length, heads = hp_.head_count, kv_heads = hp_.head_count_kv;
    const std::size_t head_size = hp_.head_size, q_width = hp_.query_width(), kv_width = hp_.kv_width(), ffn = hp_.feed_forward_length;
    const std::size_t vocab = hp_.vocab_size;
    Trace trace;
    trace.attention.assign(hp_.block_count, std::vector<std::vector<float>>(heads, std::vector<float>(n * n, 0.0f)));
    trace.lens.assign(hp_.block_count, std::vector<std::vector<float>>(n));
    // The KV cache: keys and values of every position, per layer. [layers][positions * kv_width]
    std::vector<std::vector<float>> keys(hp_.block_count, std::vector<float>(n * kv_width)), values = keys;
    std::vector<float> x(dim), h(dim), q(q_width), k(kv_width), v(kv_width), attended(q_width), projected(dim), gate(ffn), up(ffn);
    std::vector<float> scores(n), logits(vocab), scratch(std::max<std::size_t>(ffn, std::max(dim, q_width)));
    const lamina::reference::RopeParams rope = lamina::rope_params(hp_, w_.rope_frequency_factors.empty() ? nullptr : w_.rope_frequency_factors.data());

    for (std::size_t p = 0; p < n; ++p) {
      const bool show = verbose_ && p + 1 == n;
      // 1. The token's embedding row is the residual stream x.
      lamina::reference::row_to_f32(w_.token_embedding.dtype, w_.token_embedding.row(tokens[p]), x.data(), dim);
      if (show) {
        std::printf("token %d %s at position %zu\n", tokens[p], quoted_piece(tokens[p]).c_str(), p);
        std::printf("  embedding: row %d of token_embd [%u, %zu] -> x [%zu]\n", tokens[p], hp_.vocab_size, dim, dim);
      }
      for (std::uint32_t layer = 0; layer < hp_.block_count; ++layer) {
        const lamina::LayerWeights& l = w_.layers[layer];
        if (show) std::printf("layer %u\n", layer);
        // 2. Attention. Normalize, project to queries, keys and values.
        lamina::reference::rms_norm(x.data(), l.attention_norm.data(), h.data(), dim, hp_.rms_norm_epsilon);
        lamina::reference::matmul(l.query, h.data(), q.data(), 1, scratch.data());
        lamina::reference::matmul(l.key, h.data(), k.data(), 1, scratch.data());
        lamina::reference::matmul(l.value, h.data(), v.data(), 1, scratch.data());
        add_bias(q, l.query_bias), add_bias(k, l.key_bias), add_bias(v, l.value_bias);
        // Rotate queries and keys by the position (RoPE): attention scores then depend on how
        // far apart two tokens are.
        lamina::reference::rope(q.data(), static_cast<int>(heads), static_cast<int>(head_size), static_cast<float>(p), rope, hp_.rope_style);
        lamina::reference::rope(k.data(), static_cast<int>(kv_heads), static_cast<int>(head_size), static_cast<float>(p), rope, hp_.rope_style);
        std::copy(k.begin(), k.end(), keys[layer].begin() + static_cast<std::ptrdiff_t>(p * kv_width));
        std::copy(v.begin(), v.end(), values[layer].begin() + static_cast<std::ptrdiff_t>(p * kv_width));
        if (show) {
          std::printf("  attn_norm: rms_norm(x) * attn_norm [%zu] -> h [%zu]\n", dim, dim);
          std::printf("  q = attn_q [%zu, %zu] · h -> [%zu heads × %zu]; k, v = attn_k, attn_v [%zu, %zu] · h -> [%zu kv heads × %zu]\n",
                      q_width, dim, heads, head_size, kv_width, dim, kv_heads, head_size);
          std::printf("  RoPE: q and k rotated by position %zu (%u of %zu dimensions per head)\n", p, hp_.rope_dimension_count, head_size);
          std::printf("  cache: k and v stored at position %zu; %zu positions to attend to\n", p, p + 1);
        }
        // Each query head scores every cached key of its KV head (grouped-query attention:
        // heads / kv_heads query heads share one), softmax, and mixes the values.
        for (std::size_t head = 0; head < heads; ++head) {
          const std::size_t kv_head = head / (heads / kv_heads);
          const float* query = q.data() + head * head_size;
          for (std::size_t j = 0; j <= p; ++j) {
            scores[j] = lamina::reference::dot(query, keys[layer].data() + j * kv_width + kv_head * head_size, head_size) /
                        std::sqrt(static_cast<float>(head_size));
          }
          lamina::reference::softmax(scores.data(), p + 1);
          float* out = attended.data() + head * head_size;
          std::fill(out, out + head_size, 0.0f);
          for (std::size_t j = 0; j <= p; ++j) {
            const float* value = values[layer].data() + j * kv_width + kv_head * head_size;
            for (std::size_t i = 0; i < head_size; ++i) out[i] += scores[j] * value[i];
          }
          std::copy(scores.begin(), scores.begin() + static_cast<std::ptrdiff_t>(p + 1), trace.attention[layer][head].begin() + static_cast<std::ptrdiff_t>(p * n));
          if (show && head < 8) {
            const std::size_t strongest = static_cast<std::size_t>(std::max_element(scores.begin(), scores.begin() + static_cast<std::ptrdiff_t>(p + 1)) - scores.begin());
            std::printf("  head %zu (kv head %zu): softmax(q·k / sqrt(%zu)) over %zu positions; strongest: position %zu %s (%.2f)\n", head, kv_head,
                        head_size, p + 1, strongest, quoted_piece(tokens[strongest]).c_str(), static_cast<double>(scores[strongest]));
          }
        }
        lamina::reference::matmul(l.attention_output, attended.data(), projected.data(), 1, scratch.data());
        for (std::size_t i = 0; i < dim; ++i) x[i] += projected[i];
        if (show) std::printf("  attention output: attn_output [%zu, %zu] · (the heads' mixes [%zu]) added to x\n", dim, q_width, q_width);
        // 3. Feed-forward (SwiGLU): two projections up, one gates the other, one back down.
        lamina::reference::rms_norm(x.data(), l.ffn_norm.data(), h.data(), dim, hp_.rms_norm_epsilon);
        lamina::reference::matmul(l.ffn_gate, h.data(), gate.data(), 1, scratch.data());
        lamina::reference::matmul(l.ffn_up, h.data(), up.data(), 1, scratch.data());
        lamina::reference::silu_mul(gate.data(), up.data(), ffn);
        lamina::reference::matmul(l.ffn_down, gate.data(), projected.data(), 1, scratch.data());
        for (std::size_t i = 0; i < dim; ++i) x[i] += projected[i];
        if (show) {
          std::printf("  feed-forward: ffn_norm, gate = ffn_gate [%zu, %zu] · h, up = ffn_up · h, silu(gate) * up [%zu], ffn_down [%zu, %zu] -> added to x\n",
                      ffn, dim, ffn, dim, ffn);
        }
        // 4. The logit lens: what would the model predict if it stopped after this layer?
        output_logits(x, h, logits, scratch);
        lamina::reference::softmax(logits.data(), vocab);
        trace.lens[layer][p] = logits;
        if (show) std::printf("  logit lens after layer %u: %s\n", layer, top_tokens(logits, top_).c_str());
      }
      if (p + 1 == n) {
        output_logits(x, h, trace.final_logits, scratch);
        if (show) std::printf("output: rms_norm(x) * output_norm, then output [%u, %zu] · -> logits [%u]\n", hp_.vocab_size, dim, hp_.vocab_size);
      }
    }
    return trace;
  }

  void set_top(std::size_t top) { top_ = top; }

  std::string quoted_piece(lamina::Token token) const {
    std::string text = model_.has_tokenizer() ? model_.tokenizer().token_to_piece(token) : std::to_string(token);
    std::string shown = "'";
    for (char c : text) {
      if (c == '\n') shown += "\\n";
      else if (static_cast<unsigned char>(c) < 0x20) shown += '?';
      else shown += c;
    }
    return shown + "'";
  }

  // "'the' 0.31, 'a' 0.12, …": the `count` most probable tokens of `probabilities`.
  std::string top_tokens(const std::vector<float>& probabilities, std::size_t count) const {
    std::vector<std::size_t> order(probabilities.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    count = std::min(count, order.size());
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count), order.end(),
                      [&](std::size_t a, std::size_t b) { return probabilities[a] > probabilities[b]; });
    std::string text;
    for (std::size_t i = 0; i < count; ++i) {
      char number[32];
      std::snprintf(number, sizeof number, " %.3f", static_cast<double>(probabilities[order[i]]));
      text += (i ? ", " : "") + quoted_piece(static_cast<lamina::Token>(order[i])) + number;
    }
    return text;
  }

 private:
  static void add_bias(std::vector<float>& y, const std::vector<float>& bias) {
    for (std::size_t i = 0; i < bias.size(); ++i) y[i] += bias[i];
  }
  // logits [vocab] = output · (rms_norm(x) * output_norm)
  void output_logits(const std::vector<float>& x, std::vector<float>& normed, std::vector<float>& logits, std::vector<float>& scratch) const {
    logits.resize(hp_.vocab_size);
    lamina::reference::rms_norm(x.data(), w_.output_norm.data(), normed.data(), x.size(), hp_.rms_norm_epsilon);
    lamina::reference::matmul(w_.output, normed.data(), logits.data(), 1, scratch.data());
  }

  const lamina::Model& model_;
  const lamina::ModelHparams& hp_;
  const lamina::ModelWeights& w_;
  bool verbose_ = true;
  std::size_t top_ = 5;
};

// --- the pictures ----------------------------------------------------------------------------

inline std::string two_digits(std::size_t value) {
  return (value < 10 ? "0" : "") + std::to_string(value);
}

// Writes the heatmaps of `trace` to `directory`; returns the paths written, or the first error.
inline lamina::Result<std::vector<std::string>> write_heatmaps(const Trace& trace, std::size_t positions, const std::string& directory) {
  std::vector<std::string> written;
  if (trace.attention.empty() || positions == 0) return written;
  const std::size_t heads = trace.attention[0].size();
  // Cells of at least 4 pixels, images of at most about 1024 pixels per head.
  const int cell = static_cast<int>(std::max<std::size_t>(4, std::min<std::size_t>(32, 256 / positions)));
  const int gap = 4, side = static_cast<int>(positions) * cell;
  unsigned char rgb[3];
  const unsigned char separator[3] = {255, 255, 255};
  for (std::size_t layer = 0; layer < trace.attention.size(); ++layer) {
    Image image(static_cast<int>(heads) * (side + gap) - gap, side);
    for (std::size_t head = 0; head < heads; ++head) {
      const int left = static_cast<int>(head) * (side + gap);
      for (std::size_t query = 0; query < positions; ++query) {
        for (std::size_t key = 0; key < positions; ++key) {
          // sqrt stretches the small weights, so that more than the strongest cell shows.
          heat_color(std::sqrt(trace.attention[layer][head][query * positions + key]), rgb);
          image.fill(left + static_cast<int>(key) * cell, static_cast<int>(query) * cell, cell, cell, rgb);
        }
      }
      if (head + 1 < heads) image.fill(left + side, 0, gap, side, separator);
    }
    const std::string path = directory + "/attention-layer" + two_digits(layer) + "-" + two_digits(heads) + "heads.png";
    LAMINA_TRY(write_png(path, image));
    written.push_back(path);
  }
  // The logit lens: the 16 tokens ranked highest at the output, by position and layer.
  const std::vector<float>& final_logits = trace.final_logits;
  std::vector<std::size_t> tracked(final_logits.size());
  for (std::size_t i = 0; i < tracked.size(); ++i) tracked[i] = i;
  const std::size_t rows = std::min<std::size_t>(16, tracked.size());
  std::partial_sort(tracked.begin(), tracked.begin() + static_cast<std::ptrdiff_t>(rows), tracked.end(),
                    [&](std::size_t a, std::size_t b) { return final_logits[a] > final_logits[b]; });
  for (std::size_t layer = 0; layer < trace.lens.size(); ++layer) {
    Image image(static_cast<int>(positions) * cell * 2, static_cast<int>(rows) * cell * 2);
    for (std::size_t row = 0; row < rows; ++row) {
      for (std::size_t position = 0; position < positions; ++position) {
        heat_color(std::sqrt(trace.lens[layer][position][tracked[row]]), rgb);
        image.fill(static_cast<int>(position) * cell * 2, static_cast<int>(row) * cell * 2, cell * 2, cell * 2, rgb);
      }
    }
    const std::string path = directory + "/logit-lens-layer" + two_digits(layer) + ".png";
    LAMINA_TRY(write_png(path, image));
    written.push_back(path);
  }
  return written;
}

}  // namespace lamina_explain
