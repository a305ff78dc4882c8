// Chat templates: the Jinja lexer (see chat_template_lexer.h).
#include "tokenizer/chat_template_lexer.h"

#include <cctype>

#include "core/error.h"

namespace nf::chat {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

int count_lines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class lexer {
 public:
  explicit lexer(std::string_view source) : src_(source) {
    // keep_trailing_newline=False: one trailing newline of the source is dropped.
    if (!src_.empty() && src_.back() == '\n') src_.remove_suffix(1);
  }

  std::vector<token> run() {
    while (pos_ < src_.size()) {
      size_t open = find_tag(pos_);
      std::string_view text = src_.substr(pos_, open - pos_);
      if (open == src_.size()) {
        emit_text(text, false, line_);
        line_ += count_lines(text);
        break;
      }
      char kind = src_[open + 1];  // '{', '%' or '#'
      bool strip_before = open + 2 < src_.size() && src_[open + 2] == '-';
      bool plus_before = open + 2 < src_.size() && src_[open + 2] == '+';
      if (strip_before) {
        while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
      } else if (kind != '{' && !plus_before) {
        // lstrip_blocks: spaces and tabs between the line start and a block or comment tag go.
        size_t k = text.size();
        while (k > 0 && (text[k - 1] == ' ' || text[k - 1] == '\t')) --k;
        bool at_line_start = k == 0 ? (open - text.size() == 0 || src_[open - text.size() - 1] == '\n') : text[k - 1] == '\n';
        if (at_line_start) text = text.substr(0, k);
      }
      emit_text(text, false, line_);
      line_ += count_lines(src_.substr(pos_, open - pos_));
      pos_ = open + 2 + ((strip_before || plus_before) ? 1 : 0);
      if (kind == '#') {
        lex_comment();
      } else if (kind == '{') {
        lex_tag(token_kind::expr_open, token_kind::expr_close, '}');
      } else {
        if (try_raw()) continue;
        lex_tag(token_kind::block_open, token_kind::block_close, '%');
      }
    }
    tokens_.push_back({token_kind::eof, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return src_.size();
  }

  void emit_text(std::string_view text, bool, int line) {
    if (strip_next_) {
      while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
      strip_next_ = false;
    } else if (trim_next_newline_) {
      if (text.starts_with("\r\n")) text.remove_prefix(2);
      else if (text.starts_with("\n")) text.remove_prefix(1);
    }
    trim_next_newline_ = false;
    if (!text.empty()) tokens_.push_back({token_kind::text, std::string(text), line});
  }

  // After a closing `%}` or `#}`: `-` strips all following whitespace, else trim_blocks drops one newline.
  void after_close(bool strip_after, bool is_block) {
    strip_next_ = strip_after;
    trim_next_newline_ = !strip_after && is_block;
  }

  void lex_comment() {
    size_t end = src_.find("#}", pos_);
    if (end == std::string_view::npos) fail("chat template line {}: unterminated comment", line_);
    bool strip_after = end > pos_ && src_[end - 1] == '-';
    line_ += count_lines(src_.substr(pos_, end + 2 - pos_));
    pos_ = end + 2;
    after_close(strip_after, true);
  }

  // `{% raw %}...{% endraw %}`: the body is text, untouched by the tag rules.
  bool try_raw() {
    size_t p = pos_;
    while (p < src_.size() && is_space(src_[p])) ++p;
    if (src_.substr(p, 3) != "raw" || (p + 3 < src_.size() && is_name_char(src_[p + 3]))) return false;
    p += 3;
    while (p < src_.size() && is_space(src_[p])) ++p;
    bool strip_after = false;
    if (p < src_.size() && src_[p] == '-') {
      strip_after = true;
      ++p;
    }
    if (src_.substr(p, 2) != "%}") fail("chat template line {}: malformed raw tag", line_);
    p += 2;
    size_t search = p;
    while (true) {
      size_t open = src_.find("{%", search);
      if (open == std::string_view::npos) fail("chat template line {}: raw block without endraw", line_);
      size_t q = open + 2;
      bool strip_before = q < src_.size() && src_[q] == '-';
      if (strip_before || (q < src_.size() && src_[q] == '+')) ++q;
      while (q < src_.size() && is_space(src_[q])) ++q;
      if (src_.substr(q, 6) != "endraw") {
        search = open + 2;
        continue;
      }
      q += 6;
      while (q < src_.size() && is_space(src_[q])) ++q;
      bool strip_end = false;
      if (q < src_.size() && src_[q] == '-') {
        strip_end = true;
        ++q;
      }
      if (src_.substr(q, 2) != "%}") fail("chat template line {}: malformed endraw tag", line_);
      std::string_view body = src_.substr(p, open - p);
      if (strip_after) {
        while (!body.empty() && is_space(body.front())) body.remove_prefix(1);
      } else if (body.starts_with("\n")) {
        body.remove_prefix(1);  // trim_blocks after the raw tag
      }
      if (strip_before) {
        while (!body.empty() && is_space(body.back())) body.remove_suffix(1);
      }
      strip_next_ = false;
      trim_next_newline_ = false;
      if (!body.empty()) tokens_.push_back({token_kind::text, std::string(body), line_});
      line_ += count_lines(src_.substr(pos_, q + 2 - pos_));
      pos_ = q + 2;
      after_close(strip_end, true);
      return true;
    }
  }

  void lex_tag(token_kind open_kind, token_kind close_kind, char close_char) {
    int open_line = line_;
    tokens_.push_back({open_kind, "", line_});
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) {
        line_ += src_[pos_] == '\n';
        ++pos_;
      }
      if (pos_ >= src_.size()) fail("chat template line {}: unterminated tag", open_line);
      char c = src_[pos_];
      // Closing delimiter, with optional '-' (strip) or '+' marker.
      if ((c == '-' || c == '+') && pos_ + 2 < src_.size() + 0 && src_[pos_ + 1] == close_char && src_[pos_ + 2] == '}') {
        tokens_.push_back({close_kind, "", line_});
        pos_ += 3;
        after_close(c == '-', close_kind == token_kind::block_close && c != '+');
        if (c == '+') trim_next_newline_ = false;
        return;
      }
      if (c == close_char && pos_ + 1 < src_.size() && src_[pos_ + 1] == '}') {
        tokens_.push_back({close_kind, "", line_});
        pos_ += 2;
        after_close(false, close_kind == token_kind::block_close);
        return;
      }
      if (is_name_start(c)) {
        size_t b = pos_;
        while (pos_ < src_.size() && is_name_char(src_[pos_])) ++pos_;
        tokens_.push_back({token_kind::name, std::string(src_.substr(b, pos_ - b)), line_});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number();
      } else if (c == '"' || c == '\'') {
        lex_string(c);
      } else {
        static constexpr std::string_view two[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string_view rest = src_.substr(pos_);
        bool matched = false;
        for (std::string_view op : two) {
          if (rest.starts_with(op)) {
            tokens_.push_back({token_kind::op, std::string(op), line_});
            pos_ += 2;
            matched = true;
            break;
          }
        }
        if (matched) continue;
        if (std::string_view("()[]{},.:|~+-*/%=<>").find(c) == std::string_view::npos) {
          fail("chat template line {}: unexpected character '{}'", line_, c);
        }
        tokens_.push_back({token_kind::op, std::string(1, c), line_});
        ++pos_;
      }
    }
  }

  void lex_number() {
    size_t b = pos_;
    bool is_float = false;
    while (pos_ < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t q = pos_ + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
        is_float = true;
        pos_ = q;
        while (pos_ < src_.size() && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
      }
    }
    std::string text;
    for (char ch : src_.substr(b, pos_ - b)) {
      if (ch != '_') text += ch;
    }
    tokens_.push_back({is_float ? token_kind::floating : token_kind::integer, text, line_});
  }

  void lex_string(char quote) {
    int start_line = line_;
    ++pos_;
    std::string out;
    while (true) {
      if (pos_ >= src_.size()) fail("chat template line {}: unterminated string", start_line);
      char c = src_[pos_++];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= src_.size()) fail("chat template line {}: unterminated string", start_line);
      char e = src_[pos_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case 'a': out += '\a'; break;
        case '0': out += '\0'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': ++line_; break;
        case 'x':
        case 'u':
        case 'U': {
          size_t num_digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (pos_ + num_digits > src_.size()) fail("chat template line {}: bad \\{} escape", line_, e);
          uint32_t cp = 0;
          for (size_t i = 0; i < num_digits; ++i) {
            char h = src_[pos_ + i];
            if (!std::isxdigit(static_cast<unsigned char>(h))) fail("chat template line {}: bad \\{} escape", line_, e);
            cp = cp * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
          }
          pos_ += num_digits;
          append_utf8(out, cp);
          break;
        }
        default:  // Python keeps unknown escapes as written
          out += '\\';
          out += e;
      }
    }
    tokens_.push_back({token_kind::string, std::move(out), start_line});
  }

  std::string_view src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool strip_next_ = false;
  bool trim_next_newline_ = false;
  std::vector<token> tokens_;
};

}  // namespace

std::vector<token> tokenize(std::string_view source) { return lexer(source).run(); }

}  // namespace nf::chat
