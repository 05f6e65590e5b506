// lamina/text/token_tables.hpp — the tokenizer's tables: token texts, BPE merges, special tokens.
//
// Two open-addressing hash tables (text -> id, and a pair of piece ids -> merge rank) and a byte
// trie that finds the special tokens starting at a byte. All three store small integers only, so
// a Tokenizer can be copied and moved freely. Internals of text/tokenizer.hpp (lamina::detail::text).
#pragma once

#include "../config.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace detail {
namespace text {

inline std::uint64_t hash_text(std::string_view text) noexcept {
  std::uint64_t hash = 0x9E3779B97F4A7C15ull ^ (text.size() * 0xD6E8FEB86659FD93ull);
  std::size_t offset = 0;
  for (; offset + 8 <= text.size(); offset += 8) {
    std::uint64_t chunk;
    std::memcpy(&chunk, text.data() + offset, 8);
    hash = (hash ^ chunk) * 0xFF51AFD7ED558CCDull;
    hash ^= hash >> 32;
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, text.data() + offset, text.size() - offset);
  hash = (hash ^ tail) * 0xC4CEB9FE1A85EC53ull;
  hash ^= hash >> 29;
  return hash;
}

// Texts with dense ids 0, 1, 2 ... and an open-addressing index text -> id.
// The tokenizer keeps its tokens here (ids = token ids) followed by texts that only occur in
// merges (intermediate BPE pieces that are not tokens themselves).
class TextTable {
 public:
  std::int32_t find(std::string_view text) const noexcept {
    if (slots_.empty()) return -1;
    const std::size_t mask = slots_.size() - 1;
    for (std::size_t slot = hash_text(text) & mask;; slot = (slot + 1) & mask) {
      const std::int32_t id = slots_[slot];
      if (id < 0) return -1;
      if (texts_[static_cast<std::size_t>(id)] == text) return id;
    }
  }
  // Returns the id of `text`, adding it with the next id when absent.
  std::int32_t add(std::string text) {
    const std::int32_t existing = find(text);
    if (existing >= 0) return existing;
    if ((texts_.size() + 1) * 2 > slots_.size()) rehash(slots_.empty() ? 64 : slots_.size() * 2);
    const auto id = static_cast<std::int32_t>(texts_.size());
    texts_.push_back(std::move(text));
    place(id);
    return id;
  }
  void reserve(std::size_t count) {
    texts_.reserve(count);
    std::size_t capacity = 64;
    while (capacity < count * 2) capacity *= 2;
    if (capacity > slots_.size()) rehash(capacity);
  }
  const std::string& text(std::int32_t id) const { return texts_[static_cast<std::size_t>(id)]; }
  std::size_t size() const noexcept { return texts_.size(); }

 private:
  void place(std::int32_t id) {
    const std::size_t mask = slots_.size() - 1;
    std::size_t slot = hash_text(texts_[static_cast<std::size_t>(id)]) & mask;
    while (slots_[slot] >= 0) slot = (slot + 1) & mask;
    slots_[slot] = id;
  }
  void rehash(std::size_t capacity) {
    slots_.assign(capacity, -1);
    for (std::size_t id = 0; id < texts_.size(); ++id) place(static_cast<std::int32_t>(id));
  }
  std::vector<std::string> texts_;
  std::vector<std::int32_t> slots_;  // power-of-two size, at most half full; -1 = empty
};

// BPE merge ranks: (left piece id, right piece id) -> (rank, id of the merged piece).
class MergeTable {
 public:
  struct Merge {
    std::int32_t rank = -1;
    std::int32_t result = -1;
  };
  // Keeps the first (best) rank of a pair listed twice, as llama.cpp does.
  void add(std::int32_t left, std::int32_t right, Merge merge) {
    if ((count_ + 1) * 2 > entries_.size()) rehash(entries_.empty() ? 1024 : entries_.size() * 2);
    if (insert(key_of(left, right), merge)) ++count_;
  }
  Merge find(std::int32_t left, std::int32_t right) const noexcept {
    if (entries_.empty()) return {};
    const std::uint64_t key = key_of(left, right);
    const std::size_t mask = entries_.size() - 1;
    for (std::size_t slot = mix(key) & mask;; slot = (slot + 1) & mask) {
      if (entries_[slot].key == key) return entries_[slot].merge;
      if (entries_[slot].key == empty_key) return {};
    }
  }
  std::size_t size() const noexcept { return count_; }

 private:
  struct Entry {
    std::uint64_t key = ~std::uint64_t{0};
    Merge merge;
  };
  static constexpr std::uint64_t empty_key = ~std::uint64_t{0};
  static std::uint64_t key_of(std::int32_t left, std::int32_t right) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }
  static std::uint64_t mix(std::uint64_t key) noexcept {
    key ^= key >> 33;
    key *= 0xFF51AFD7ED558CCDull;
    key ^= key >> 33;
    return key;
  }
  bool insert(std::uint64_t key, Merge merge) {
    const std::size_t mask = entries_.size() - 1;
    for (std::size_t slot = mix(key) & mask;; slot = (slot + 1) & mask) {
      if (entries_[slot].key == key) return false;
      if (entries_[slot].key == empty_key) {
        entries_[slot].key = key;
        entries_[slot].merge = merge;
        return true;
      }
    }
  }
  void rehash(std::size_t capacity) {
    std::vector<Entry> old(capacity);
    old.swap(entries_);
    for (const Entry& entry : old) {
      if (entry.key != empty_key) insert(entry.key, entry.merge);
    }
  }
  std::vector<Entry> entries_;
  std::size_t count_ = 0;
};

// A byte trie over the special tokens' texts: which of them start at a given byte of a text.
// Built once; the children of a node lie next to each other, sorted by byte, so a step down is
// a binary search (an all-user-defined vocabulary puts tens of thousands of texts here, and a
// node such as "t" has a hundred children).
class SpecialTokenTrie {
 public:
  // Text i gets the value i. Empty texts are left out (they would occur everywhere).
  void build(const std::vector<std::string_view>& texts) {
    nodes_.assign(1, Node{});
    root_children_.fill(-1);
    std::vector<std::int32_t> order;  // the non-empty texts, sorted: a prefix comes before its extensions
    for (std::size_t i = 0; i < texts.size(); ++i) {
      if (!texts[i].empty()) order.push_back(static_cast<std::int32_t>(i));
    }
    std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
      return texts[static_cast<std::size_t>(a)] < texts[static_cast<std::size_t>(b)];
    });
    const auto byte_at = [&](std::size_t sorted, std::size_t depth) {
      return static_cast<unsigned char>(texts[static_cast<std::size_t>(order[sorted])][depth]);
    };
    // Depth first with an explicit stack (a vocabulary may hold a very long text). A node stands
    // for the texts order[first, last), which share its `depth` first bytes.
    struct Pending {
      std::int32_t node;
      std::size_t first, last, depth;
    };
    std::vector<Pending> pending{{0, 0, order.size(), 0}};
    while (!pending.empty()) {
      const Pending current = pending.back();
      pending.pop_back();
      std::size_t first = current.first;
      if (first < current.last && texts[static_cast<std::size_t>(order[first])].size() == current.depth) {
        nodes_[static_cast<std::size_t>(current.node)].value = order[first++];
      }
      const auto first_child = static_cast<std::int32_t>(nodes_.size());
      while (first < current.last) {
        const unsigned char byte = byte_at(first, current.depth);
        std::size_t group_end = first + 1;
        while (group_end < current.last && byte_at(group_end, current.depth) == byte) ++group_end;
        Node child;
        child.byte = byte;
        pending.push_back({static_cast<std::int32_t>(nodes_.size()), first, group_end, current.depth + 1});
        nodes_.push_back(child);
        first = group_end;
      }
      Node& node = nodes_[static_cast<std::size_t>(current.node)];
      node.first_child = first_child;
      node.child_count = static_cast<std::uint16_t>(nodes_.size() - static_cast<std::size_t>(first_child));
    }
    const Node& root = nodes_[0];
    for (std::int32_t child = root.first_child; child < root.first_child + root.child_count; ++child) {
      root_children_[nodes_[static_cast<std::size_t>(child)].byte] = child;
    }
  }

  // Calls found(value, length) for each text that starts at text[start], shortest first.
  // Returns the bytes it looked at.
  template <class Found>
  std::size_t for_each_at(std::string_view text, std::size_t start, Found&& found) const {
    std::int32_t node = root_children_[static_cast<unsigned char>(text[start])];
    std::size_t position = start + 1;
    std::size_t looked_at = 1;
    while (node >= 0) {
      const Node& current = nodes_[static_cast<std::size_t>(node)];
      if (current.value >= 0) found(current.value, position - start);
      if (position >= text.size() || current.child_count == 0) break;
      node = find_child(current, static_cast<unsigned char>(text[position++]));
      ++looked_at;
    }
    return looked_at;
  }

 private:
  struct Node {
    std::int32_t first_child = 0;   // children: nodes_[first_child, first_child + child_count), by byte
    std::uint16_t child_count = 0;  // up to 256
    unsigned char byte = 0;         // the byte leading here from the parent
    std::int32_t value = -1;        // the text ending here, or -1
  };
  std::int32_t find_child(const Node& parent, unsigned char byte) const noexcept {
    std::int32_t low = parent.first_child, high = parent.first_child + parent.child_count;
    while (low < high) {
      const std::int32_t middle = low + (high - low) / 2;
      if (nodes_[static_cast<std::size_t>(middle)].byte < byte) low = middle + 1;
      else high = middle;
    }
    return low < parent.first_child + parent.child_count && nodes_[static_cast<std::size_t>(low)].byte == byte ? low : -1;
  }
  std::vector<Node> nodes_;
  std::array<std::int32_t, 256> root_children_ = filled_root();
  static std::array<std::int32_t, 256> filled_root() {
    std::array<std::int32_t, 256> children{};
    children.fill(-1);
    return children;
  }
};

}  // namespace text
}  // namespace detail
LAMINA_NAMESPACE_END
