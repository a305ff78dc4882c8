// SentencePiece model reading (a minimal protobuf wire-format parser) and BPE encoding.
#include "tokenizer/sentencepiece_tokenizer.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "tokenizer/bpe_merge.h"
#include "tokenizer/utf8.h"

namespace nf {
namespace {

constexpr std::string_view space_symbol = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// Protobuf wire format: a reader over one message's bytes.
class proto_reader {
 public:
  explicit proto_reader(std::string_view data) : data_(data) {}
  bool done() const { return pos_ >= data_.size(); }

  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) fail("truncated varint");
      const auto b = static_cast<unsigned char>(data_[pos_++]);
      value |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (b < 0x80) return value;
    }
    fail("varint too long");
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > data_.size() - pos_) fail("length-delimited field runs past the end");
    const std::string_view out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  float fixed32_float() {
    if (data_.size() - pos_ < 4) fail("truncated fixed32");
    uint32_t bits = 0;
    for (int i = 0; i < 4; ++i) bits |= static_cast<uint32_t>(static_cast<unsigned char>(data_[pos_ + i])) << (8 * i);
    pos_ += 4;
    float f = 0;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case 0: varint(); break;
      case 1: advance(8); break;
      case 2: bytes(); break;
      case 5: advance(4); break;
      default: fail("unsupported protobuf wire type {}", wire_type);
    }
  }

 private:
  void advance(size_t n) {
    if (data_.size() - pos_ < n) fail("truncated field");
    pos_ += n;
  }
  std::string_view data_;
  size_t pos_ = 0;
};

int byte_piece_value(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  return static_cast<int>(std::strtol(std::string(piece.substr(3, 2)).c_str(), nullptr, 16));
}

}  // namespace

std::unique_ptr<sentencepiece_tokenizer> sentencepiece_tokenizer::from_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open tokenizer file {}", path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  try {
    return std::make_unique<sentencepiece_tokenizer>(buffer.str());
  } catch (const error& e) {
    fail("{} is not a usable SentencePiece model: {}", path.string(), e.what());
  }
}

sentencepiece_tokenizer::sentencepiece_tokenizer(std::string_view model_proto) {
  int model_type = 1;  // UNIGRAM is the protobuf default
  int64_t unk_id = 0;
  int64_t bos_id = 1;
  int64_t eos_id = 2;
  std::string_view charsmap;
  proto_reader model(model_proto);
  while (!model.done()) {
    const uint64_t key = model.varint();
    const int field = static_cast<int>(key >> 3);
    const int wire = static_cast<int>(key & 7);
    if (field == 1 && wire == 2) {  // SentencePiece pieces
      proto_reader p(model.bytes());
      std::string piece;
      float score = 0;
      int type = 1;
      while (!p.done()) {
        const uint64_t k = p.varint();
        if ((k >> 3) == 1 && (k & 7) == 2) piece = std::string(p.bytes());
        else if ((k >> 3) == 2 && (k & 7) == 5) score = p.fixed32_float();
        else if ((k >> 3) == 3 && (k & 7) == 0) type = static_cast<int>(p.varint());
        else p.skip(static_cast<int>(k & 7));
      }
      if (type < 1 || type > 6) fail("piece '{}' has unknown type {}", piece, type);
      pieces_.push_back(std::move(piece));
      scores_.push_back(score);
      types_.push_back(static_cast<piece_type>(type));
    } else if (field == 2 && wire == 2) {  // TrainerSpec
      proto_reader t(model.bytes());
      while (!t.done()) {
        const uint64_t k = t.varint();
        const int f = static_cast<int>(k >> 3);
        if ((k & 7) != 0) {
          t.skip(static_cast<int>(k & 7));
          continue;
        }
        const auto v = static_cast<int64_t>(t.varint());
        if (f == 3) model_type = static_cast<int>(v);
        else if (f == 24 && v != 0) fail("treat_whitespace_as_suffix is not supported");
        else if (f == 35) byte_fallback_ = v != 0;
        else if (f == 40) unk_id = static_cast<int32_t>(v);
        else if (f == 41) bos_id = static_cast<int32_t>(v);
        else if (f == 42) eos_id = static_cast<int32_t>(v);
      }
    } else if (field == 3 && wire == 2) {  // NormalizerSpec
      proto_reader n(model.bytes());
      while (!n.done()) {
        const uint64_t k = n.varint();
        const int f = static_cast<int>(k >> 3);
        if (f == 2 && (k & 7) == 2) charsmap = n.bytes();
        else if (f == 3 && (k & 7) == 0) add_dummy_prefix_ = n.varint() != 0;
        else if (f == 4 && (k & 7) == 0) remove_extra_whitespaces_ = n.varint() != 0;
        else if (f == 5 && (k & 7) == 0) escape_whitespaces_ = n.varint() != 0;
        else n.skip(static_cast<int>(k & 7));
      }
    } else {
      model.skip(wire);
    }
  }
  if (pieces_.empty()) fail("no pieces");
  if (model_type != 2) fail("model type {} is not supported (only BPE, type 2)", model_type);
  if (!charsmap.empty()) fail("normalization rules with a precompiled charsmap are not supported");
  const auto num_pieces = static_cast<int64_t>(pieces_.size());
  if (unk_id < 0 || unk_id >= num_pieces) fail("unk_id {} is out of range", unk_id);
  unk_id_ = static_cast<int32_t>(unk_id);
  if (bos_id >= 0 && bos_id < num_pieces) bos_id_ = static_cast<int32_t>(bos_id);
  if (eos_id >= 0 && eos_id < num_pieces) eos_id_ = static_cast<int32_t>(eos_id);

  byte_ids_.assign(256, -1);
  token_bytes_.resize(pieces_.size());
  for (size_t id = 0; id < pieces_.size(); ++id) {
    const std::string& p = pieces_[id];
    const auto i = static_cast<int32_t>(id);
    switch (types_[id]) {
      case piece_type::normal:
      case piece_type::user_defined:
      case piece_type::unused: {
        mergeable_.emplace(p, i);
        if (types_[id] == piece_type::user_defined) user_defined_.push_back(p);
        std::string bytes = p;
        size_t pos = 0;
        while ((pos = bytes.find(space_symbol, pos)) != std::string::npos) bytes.replace(pos, space_symbol.size(), " ");
        token_bytes_[id] = std::move(bytes);
        break;
      }
      case piece_type::byte: {
        const int b = byte_piece_value(p);
        if (b < 0) fail("byte piece '{}' is not <0xNN>", p);
        byte_ids_[b] = i;
        token_bytes_[id] = std::string(1, static_cast<char>(b));
        break;
      }
      case piece_type::unknown:
        token_bytes_[id] = " \xE2\x81\x87 ";  // SentencePiece's default unk surface " ⁇ "
        break;
      case piece_type::control:
        break;  // invisible
    }
  }
  std::stable_sort(user_defined_.begin(), user_defined_.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
}

std::string sentencepiece_tokenizer::normalize(std::string_view text) const {
  std::string s;
  s.reserve(text.size() + 8);
  if (remove_extra_whitespaces_) {
    bool pending_space = false;
    for (const char c : text) {
      if (c == ' ') {
        pending_space = !s.empty();
        continue;
      }
      if (pending_space) s.push_back(' ');
      pending_space = false;
      s.push_back(c);
    }
  } else {
    s.assign(text);
  }
  if (s.empty()) return s;
  if (add_dummy_prefix_) s.insert(s.begin(), ' ');
  if (!escape_whitespaces_) return s;
  std::string out;
  out.reserve(s.size() * 3);
  for (const char c : s) {
    if (c == ' ') out.append(space_symbol);
    else out.push_back(c);
  }
  return out;
}

std::vector<int32_t> sentencepiece_tokenizer::encode_text(std::string_view text) const {
  const std::string normalized = normalize(text);
  std::vector<bpe_symbol> symbols;  // [num_symbols] characters and user-defined symbols
  size_t pos = 0;
  while (pos < normalized.size()) {
    bool user_defined = false;
    size_t len = 0;
    for (const std::string& u : user_defined_) {
      if (normalized.compare(pos, u.size(), u) == 0) {
        len = u.size();
        user_defined = true;
        break;
      }
    }
    if (!user_defined) {
      len = utf8_sequence_length(normalized, pos);
      if (len == 0) len = 1;
    }
    const auto it = mergeable_.find(normalized.substr(pos, len));
    symbols.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(pos + len),
                       it == mergeable_.end() ? -1 : it->second, user_defined});
    pos += len;
  }
  std::string joined;
  bpe_merge(symbols, [&](const bpe_symbol& a, const bpe_symbol& b) -> std::optional<bpe_candidate> {
    joined.assign(normalized, a.begin, b.end - a.begin);
    const auto it = mergeable_.find(joined);
    if (it == mergeable_.end()) return std::nullopt;
    return bpe_candidate{-static_cast<double>(scores_[it->second]), it->second};
  });
  std::vector<int32_t> ids;
  for (const bpe_symbol& s : symbols) {
    if (s.id >= 0 && types_[s.id] != piece_type::unused) {
      ids.push_back(s.id);
    } else if (byte_fallback_) {
      for (uint32_t i = s.begin; i < s.end; ++i) {
        const int32_t b = byte_ids_[static_cast<unsigned char>(normalized[i])];
        ids.push_back(b >= 0 ? b : unk_id_);
      }
    } else {
      ids.push_back(unk_id_);
    }
  }
  return ids;
}

tokenizer::special_affixes sentencepiece_tokenizer::special_tokens_around_text() const {
  special_affixes affixes;
  if (bos_id_) affixes.prefix.push_back(*bos_id_);
  return affixes;
}

std::string_view sentencepiece_tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("token id {} is out of range (vocab size {})", id, vocab_size());
  return token_bytes_[id];
}

std::string_view sentencepiece_tokenizer::piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("token id {} is out of range (vocab size {})", id, vocab_size());
  return pieces_[id];
}

std::optional<int32_t> sentencepiece_tokenizer::id_of(std::string_view piece) const {
  for (size_t i = 0; i < pieces_.size(); ++i) {
    if (pieces_[i] == piece) return static_cast<int32_t>(i);
  }
  return std::nullopt;
}

bool sentencepiece_tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && types_[id] == piece_type::control;
}

}  // namespace nf
