// The byte-pair merge loop shared by tokenizer.json BPE (merge ranks) and SentencePiece BPE (piece
// scores): repeatedly merge the best adjacent pair, leftmost first on ties, with a priority queue over a
// linked list of symbols, so a word of n symbols costs O(n log n).
#pragma once

#include <cstdint>
#include <optional>
#include <queue>
#include <vector>

namespace nf {

// One symbol of a word: bytes [begin, end) of the word and its vocabulary id (-1 if none).
struct bpe_symbol {
  uint32_t begin = 0;
  uint32_t end = 0;
  int32_t id = -1;
  bool frozen = false;  // never merged (SentencePiece user-defined symbols)
};

// What merging two adjacent symbols gives: a priority (lower merges first) and the merged id.
struct bpe_candidate {
  double priority = 0;
  int32_t id = -1;
};

// rank(left, right) -> std::optional<bpe_candidate>: nullopt when the pair does not merge.
// symbols is replaced by the merged symbols, in order.
template <typename rank_fn>
void bpe_merge(std::vector<bpe_symbol>& symbols, rank_fn&& rank) {
  const int num_symbols = static_cast<int>(symbols.size());
  if (num_symbols < 2) return;
  std::vector<int> prev(num_symbols);  // [num_symbols] linked list of live symbols
  std::vector<int> next(num_symbols);  // [num_symbols]
  std::vector<bool> alive(num_symbols, true);
  for (int i = 0; i < num_symbols; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < num_symbols ? i + 1 : -1;
  }
  struct entry {
    double priority;
    int left;
    int right;
    uint32_t begin;
    uint32_t end;
    int32_t id;
    bool operator<(const entry& o) const {  // max-heap inverted: lower priority, then leftmost, first
      if (priority != o.priority) return priority > o.priority;
      return begin > o.begin;
    }
  };
  std::priority_queue<entry> queue;
  const auto push = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const bpe_symbol& a = symbols[left];
    const bpe_symbol& b = symbols[right];
    if (a.frozen || b.frozen) return;
    if (const std::optional<bpe_candidate> c = rank(a, b)) {
      queue.push(entry{c->priority, left, right, a.begin, b.end, c->id});
    }
  };
  for (int i = 0; i + 1 < num_symbols; ++i) push(i, i + 1);
  while (!queue.empty()) {
    const entry e = queue.top();
    queue.pop();
    if (!alive[e.left] || !alive[e.right] || next[e.left] != e.right) continue;
    if (symbols[e.left].begin != e.begin || symbols[e.right].end != e.end) continue;
    symbols[e.left].end = e.end;
    symbols[e.left].id = e.id;
    alive[e.right] = false;
    next[e.left] = next[e.right];
    if (next[e.right] >= 0) prev[next[e.right]] = e.left;
    push(prev[e.left], e.left);
    push(e.left, next[e.left]);
  }
  std::vector<bpe_symbol> merged;
  for (int i = 0; i >= 0; i = next[i]) merged.push_back(symbols[i]);
  symbols = std::move(merged);
}

}  // namespace nf
