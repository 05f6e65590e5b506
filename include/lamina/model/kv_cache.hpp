// lamina/model/kv_cache.hpp — the key/value cache shared by all sequences of a session.
//
// The cache is a pool of cells. A cell holds, for every layer, the key and value vectors of
// one token ([kv_width] values each, F16 by default, or F32), and remembers which sequence that token belongs to and
// its position in it. A token attends to the cells of its own sequence whose position is at
// most its own. Removing a sequence's tail frees its cells for reuse by any sequence.
#pragma once

#include "../config.hpp"
#include "../core/dtype.hpp"
#include "../core/result.hpp"
#include "hparams.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

LAMINA_NAMESPACE_BEGIN

using SequenceId = std::int32_t;
using Position = std::int32_t;

class KvCache {
 public:
  static constexpr SequenceId free_cell = -1;

  KvCache() = default;

  // Allocates `cell_count` cells for the model's layers: 2 × block_count × cell_count × kv_width
  // values of `element_type` (F16 or F32). With `first_data_layer` > 0 the cache keeps no data
  // for the layers before it (a device holds those: partial offload), only the bookkeeping.
  static Result<KvCache> create(const ModelHparams& hparams, std::uint32_t cell_count, DType element_type = DType::f16,
                                std::uint32_t first_data_layer = 0) {
    if (cell_count == 0) return fail(ErrorCode::invalid_argument, "KV cache: cell count must be positive");
    if (element_type != DType::f16 && element_type != DType::f32) {
      return fail(ErrorCode::invalid_argument, std::string("KV cache: element type ") + dtype_name(element_type) + " is not supported (f16, f32)");
    }
    KvCache cache;
    cache.element_type_ = element_type;
    cache.element_bytes_ = element_type == DType::f16 ? 2 : 4;
    cache.first_data_layer_ = first_data_layer < hparams.block_count ? first_data_layer : hparams.block_count;
    cache.layer_count_ = hparams.block_count - cache.first_data_layer_;
    cache.cell_count_ = cell_count;
    cache.kv_width_ = hparams.kv_width();
    const std::size_t bytes = static_cast<std::size_t>(cache.layer_count_) * cell_count * cache.kv_width_ * cache.element_bytes_;
    cache.keys_.assign(bytes, 0);
    cache.values_.assign(bytes, 0);
    cache.cell_sequence_.assign(cell_count, free_cell);
    cache.cell_position_.assign(cell_count, 0);
    return cache;
  }

  // What create() allocates, computed in floating point so that no count can overflow it.
  static double bytes_needed(const ModelHparams& hparams, std::uint32_t cell_count, DType element_type = DType::f16,
                             std::uint32_t first_data_layer = 0) {
    const double element_bytes = element_type == DType::f32 ? 4.0 : 2.0;
    const double layers = first_data_layer < hparams.block_count ? hparams.block_count - first_data_layer : 0;
    return 2.0 * layers * static_cast<double>(cell_count) * hparams.kv_width() * element_bytes +
           static_cast<double>(cell_count) * (sizeof(SequenceId) + sizeof(Position));
  }

  std::uint32_t cell_count() const { return cell_count_; }
  std::uint32_t kv_width() const { return kv_width_; }
  DType element_type() const { return element_type_; }
  std::uint32_t first_data_layer() const { return first_data_layer_; }
  std::size_t size_bytes() const { return keys_.size() + values_.size(); }

  // [kv_width] values of element_type(): the key / value of layer `layer` stored in cell `cell`.
  // Precondition: layer >= first_data_layer().
  void* key(std::uint32_t layer, std::uint32_t cell) { return keys_.data() + offset(layer, cell); }
  void* value(std::uint32_t layer, std::uint32_t cell) { return values_.data() + offset(layer, cell); }
  const void* key(std::uint32_t layer, std::uint32_t cell) const { return keys_.data() + offset(layer, cell); }
  const void* value(std::uint32_t layer, std::uint32_t cell) const { return values_.data() + offset(layer, cell); }

  // Bytes of one cell's key (or value) in one layer.
  std::size_t row_bytes() const { return static_cast<std::size_t>(kv_width_) * element_bytes_; }
  // Copies the keys and values of every layer with data from cell `from` to cell `to`.
  void copy_cell(std::uint32_t from, std::uint32_t to) {
    for (std::uint32_t layer = first_data_layer_; layer < first_data_layer_ + layer_count_; ++layer) {
      std::memcpy(key(layer, to), key(layer, from), row_bytes());
      std::memcpy(value(layer, to), value(layer, from), row_bytes());
    }
  }
  // The cells of `sequence` with position below `end`, by position.
  std::vector<std::uint32_t> cells_of(SequenceId sequence, Position end = std::numeric_limits<Position>::max()) const {
    std::vector<std::uint32_t> cells;
    for (std::uint32_t cell = 0; cell < cell_count_; ++cell) {
      if (cell_sequence_[cell] == sequence && cell_position_[cell] < end) cells.push_back(cell);
    }
    std::sort(cells.begin(), cells.end(), [&](std::uint32_t a, std::uint32_t b) { return cell_position_[a] < cell_position_[b]; });
    return cells;
  }

  SequenceId cell_sequence(std::uint32_t cell) const { return cell_sequence_[cell]; }
  Position cell_position(std::uint32_t cell) const { return cell_position_[cell]; }

  // Claims one free cell per token and labels it with the token's sequence and position.
  // cells_out: [token_count]. Fails, claiming nothing, when too few cells are free.
  Result<void> claim_cells(const SequenceId* sequences, const Position* positions, std::size_t token_count,
                           std::uint32_t* cells_out) {
    std::size_t found = 0;
    for (std::uint32_t cell = 0; cell < cell_count_ && found < token_count; ++cell) {
      if (cell_sequence_[cell] == free_cell) cells_out[found++] = cell;
    }
    if (found < token_count) {
      return fail(ErrorCode::invalid_state, "KV cache full: " + std::to_string(token_count) + " tokens need cells, " +
                                                std::to_string(found) + " of " + std::to_string(cell_count_) +
                                                " are free (remove old tokens or create the session with a longer context)");
    }
    for (std::size_t i = 0; i < token_count; ++i) {
      cell_sequence_[cells_out[i]] = sequences[i];
      cell_position_[cells_out[i]] = positions[i];
    }
    return success();
  }

  // Frees the cells of `sequence` with position in [from, to). Use to rewind a sequence
  // (from = new length) or drop it entirely (from = 0).
  void remove(SequenceId sequence, Position from = 0, Position to = std::numeric_limits<Position>::max()) {
    for (std::uint32_t cell = 0; cell < cell_count_; ++cell) {
      if (cell_sequence_[cell] == sequence && cell_position_[cell] >= from && cell_position_[cell] < to) {
        cell_sequence_[cell] = free_cell;
      }
    }
  }

  void clear() { cell_sequence_.assign(cell_count_, free_cell); }

  // One past the highest position `sequence` holds (0 when it holds none): where it continues.
  Position next_position(SequenceId sequence) const {
    Position next = 0;
    for (std::uint32_t cell = 0; cell < cell_count_; ++cell) {
      if (cell_sequence_[cell] == sequence && cell_position_[cell] + 1 > next) next = cell_position_[cell] + 1;
    }
    return next;
  }

  std::uint32_t used_cell_count() const {
    std::uint32_t used = 0;
    for (SequenceId sequence : cell_sequence_) used += sequence != free_cell ? 1u : 0u;
    return used;
  }

 private:
  std::size_t offset(std::uint32_t layer, std::uint32_t cell) const {
    LAMINA_ASSERT(layer >= first_data_layer_, "KvCache: this layer's keys and values live on a device");
    return ((static_cast<std::size_t>(layer - first_data_layer_) * cell_count_ + cell) * kv_width_) * element_bytes_;
  }

  DType element_type_ = DType::f16;
  std::size_t element_bytes_ = 2;
  std::uint32_t first_data_layer_ = 0;
  std::uint32_t layer_count_ = 0;  // layers with data: first_data_layer_ .. block_count - 1
  std::uint32_t cell_count_ = 0;
  std::uint32_t kv_width_ = 0;
  std::vector<std::uint8_t> keys_;    // [layer][cell][kv_width] of element_type_
  std::vector<std::uint8_t> values_;  // [layer][cell][kv_width] of element_type_
  std::vector<SequenceId> cell_sequence_;  // [cell], free_cell when unused
  std::vector<Position> cell_position_;    // [cell]
};

LAMINA_NAMESPACE_END
