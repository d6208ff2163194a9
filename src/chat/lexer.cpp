// Template lexer. Whitespace rules match jinja2.lexer.Lexer.tokeniter: `{%-`/`-%}` strip all
// whitespace on that side; trim_blocks drops the one newline after a block or comment tag;
// lstrip_blocks drops spaces/tabs between a line start and a block or comment tag (unless `{%+`).
#include "chat/lexer.h"

#include <cctype>
#include <cstdio>
#include <cstring>

#include "chat/value.h"
#include "mlxgp/error.h"

namespace mlxgp::chat {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

[[noreturn]] void lex_error(const std::string& what, int line) {
  fail("chat_template", what + " at line " + std::to_string(line));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Python string-literal escapes, as Jinja decodes literals with "unicode-escape".
std::string unescape(const std::string& raw, int line) {
  std::string out;
  for (size_t k = 0; k < raw.size(); ++k) {
    char c = raw[k];
    if (c != '\\' || k + 1 == raw.size()) {
      out += c;
      continue;
    }
    char e = raw[++k];
    switch (e) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'v':
        out += '\v';
        break;
      case '\n':
        break;   // line continuation
      case 'N':  // Python decodes \N{NAME} from the Unicode name database, which is not kept here
        lex_error("\\N{...} escapes (Unicode character names) are not supported", line);
      case 'x':
      case 'u':
      case 'U': {
        int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        if (k + n >= raw.size()) lex_error("truncated \\" + std::string(1, e) + " escape", line);
        uint32_t cp = 0;
        for (int m = 1; m <= n; ++m) {
          int h = hex_value(raw[k + m]);
          if (h < 0) lex_error("bad \\" + std::string(1, e) + " escape", line);
          cp = cp * 16 + h;
        }
        if (cp > 0x10ffff) lex_error("escape out of the Unicode range", line);
        append_utf8(out, cp);
        k += n;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = e - '0';
          for (int m = 0; m < 2 && k + 1 < raw.size() && raw[k + 1] >= '0' && raw[k + 1] <= '7'; ++m)
            cp = cp * 8 + (raw[++k] - '0');
          append_utf8(out, cp);
        } else {
          out += '\\';  // unknown escapes stay as written, as in Python
          out += e;
        }
    }
  }
  return out;
}

const char* const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                            ">",  "(",  ")",  "[",  "]",  "{",  "}", ",", ".", ":", "|", "=", ";"};

}  // namespace

std::vector<Token> lex(const std::string& input) {
  // Normalize newlines and drop one trailing newline, like Jinja with keep_trailing_newline=False.
  std::string src;
  src.reserve(input.size());
  for (size_t k = 0; k < input.size(); ++k) {
    if (input[k] == '\r') {
      src += '\n';
      if (k + 1 < input.size() && input[k + 1] == '\n') ++k;
    } else src += input[k];
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  // Templates are Python str in transformers, so they are always valid text.
  for (size_t k = 0, ln = 1; k < src.size(); ++k) {
    ln += src[k] == '\n';
    unsigned char c = src[k];
    if (c < 0x80) continue;
    size_t n = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n && k + n <= src.size();
    for (size_t m = 1; ok && m < n; ++m) ok = (static_cast<unsigned char>(src[k + m]) & 0xc0) == 0x80;
    if (!ok) lex_error("template is not valid UTF-8", static_cast<int>(ln));
    k += n - 1;
  }

  std::vector<Token> out;
  size_t pos = 0;
  int line = 1;
  bool line_starting = true;
  auto count_lines = [&](size_t a, size_t b) {
    for (size_t k = a; k < b; ++k) line += src[k] == '\n';
  };
  while (pos < src.size()) {
    size_t open = pos;
    while (true) {
      open = src.find('{', open);
      if (open == std::string::npos || open + 1 >= src.size()) {
        open = std::string::npos;
        break;
      }
      char n = src[open + 1];
      if (n == '{' || n == '%' || n == '#') break;
      ++open;
    }
    std::string text = src.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    int text_line = line;
    if (open == std::string::npos) {
      if (!text.empty()) out.push_back({Token::Kind::Text, text, text_line});
      break;
    }
    char kind = src[open + 1];
    char sign = open + 2 < src.size() ? src[open + 2] : 0;
    if (sign == '-') {
      size_t end = text.size();
      while (end > 0 && is_space(text[end - 1])) --end;
      text.resize(end);
    } else if (sign != '+' && kind != '{') {
      size_t l_pos = text.rfind('\n');
      l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
      if (l_pos > 0 || line_starting) {
        bool blank = l_pos < text.size();
        for (size_t k = l_pos; k < text.size(); ++k) blank = blank && is_space(text[k]);
        if (blank) text.resize(l_pos);
      }
    }
    count_lines(pos, open);
    if (!text.empty()) out.push_back({Token::Kind::Text, text, text_line});
    pos = open + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
    int tag_line = line;

    // After a tag: `-` eats all following whitespace; trim_blocks eats one newline after %} and #}.
    auto after_tag = [&](size_t end_pos, bool minus, bool plus, bool block) {
      size_t p = end_pos;
      if (minus) {
        while (p < src.size() && is_space(src[p])) ++p;
      } else if (block && !plus && p < src.size() && src[p] == '\n') {
        ++p;
      }
      count_lines(pos, p);
      line_starting = p > 0 && src[p - 1] == '\n';
      pos = p;
    };

    if (kind == '#') {
      size_t close = src.find("#}", pos);
      if (close == std::string::npos) lex_error("unterminated comment", tag_line);
      bool minus = close > pos && src[close - 1] == '-';
      bool plus = close > pos && src[close - 1] == '+';
      after_tag(close + 2, minus, plus, true);
      continue;
    }
    bool block = kind == '%';
    out.push_back({block ? Token::Kind::BlockBegin : Token::Kind::VarBegin, "", tag_line});
    int depth = 0;  // open brackets: `}}` inside a dict literal does not end the tag
    while (true) {
      while (pos < src.size() && is_space(src[pos])) {
        line += src[pos] == '\n';
        ++pos;
      }
      if (pos >= src.size()) lex_error(std::string("unterminated ") + (block ? "{%" : "{{") + " tag", tag_line);
      const char* end = block ? "%}" : "}}";
      auto at = [&](size_t p, const char* s) { return src.compare(p, std::strlen(s), s) == 0; };
      if (depth == 0) {
        // `+%}` keeps the newline trim_blocks would drop; Jinja has no `+}}`.
        bool minus = at(pos, "-") && at(pos + 1, end), plus = block && at(pos, "+") && at(pos + 1, end);
        if (minus || plus || at(pos, end)) {
          out.push_back({block ? Token::Kind::BlockEnd : Token::Kind::VarEnd, "", line});
          after_tag(pos + 2 + (minus || plus), minus, plus, block);
          break;
        }
      }
      char c = src[pos];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t b = pos;
        while (pos < src.size() && (std::isalnum(static_cast<unsigned char>(src[pos])) || src[pos] == '_')) ++pos;
        out.push_back({Token::Kind::Name, src.substr(b, pos - b), line});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t b = pos;
        bool is_float = false;
        while (pos < src.size() && (std::isdigit(static_cast<unsigned char>(src[pos])) || src[pos] == '_')) ++pos;
        if (pos + 1 < src.size() && src[pos] == '.' && std::isdigit(static_cast<unsigned char>(src[pos + 1]))) {
          is_float = true;
          ++pos;
          while (pos < src.size() && (std::isdigit(static_cast<unsigned char>(src[pos])) || src[pos] == '_')) ++pos;
        }
        if (pos < src.size() && (src[pos] == 'e' || src[pos] == 'E')) {
          size_t q = pos + 1;
          if (q < src.size() && (src[q] == '+' || src[q] == '-')) ++q;
          if (q < src.size() && std::isdigit(static_cast<unsigned char>(src[q]))) {
            is_float = true;
            pos = q;
            while (pos < src.size() && std::isdigit(static_cast<unsigned char>(src[pos]))) ++pos;
          }
        }
        std::string num;
        for (size_t k = b; k < pos; ++k)
          if (src[k] != '_') num += src[k];
        out.push_back({is_float ? Token::Kind::Float : Token::Kind::Int, num, line});
      } else if (c == '\'' || c == '"') {
        size_t b = ++pos;
        int start_line = line;
        while (pos < src.size() && src[pos] != c) {
          if (src[pos] == '\\' && pos + 1 < src.size()) ++pos;
          line += src[pos] == '\n';
          ++pos;
        }
        if (pos >= src.size()) lex_error("unterminated string", start_line);
        out.push_back({Token::Kind::String, unescape(src.substr(b, pos - b), start_line), start_line});
        ++pos;
      } else {
        const char* op = nullptr;
        for (const char* o : kOps)
          if (at(pos, o)) {
            op = o;
            break;
          }
        if (!op) {
          // Name the whole UTF-8 character (or the stray byte), so the message stays valid UTF-8.
          unsigned char u = static_cast<unsigned char>(c);
          size_t n = u < 0x80 ? 1 : (u >> 5) == 6 ? 2 : (u >> 4) == 14 ? 3 : (u >> 3) == 30 ? 4 : 0;
          std::string shown;
          try {
            if (n && pos + n <= src.size() && decode_utf8(src.substr(pos, n)).size() == 1) shown = src.substr(pos, n);
          } catch (const Error&) {
          }
          if (shown.empty() || (n == 1 && u < 0x20)) {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", u);
            shown = b;
          }
          lex_error("unexpected character '" + shown + "'", line);
        }
        if (*op == '(' || *op == '[' || *op == '{') ++depth;
        if ((*op == ')' || *op == ']' || *op == '}') && depth > 0) --depth;
        out.push_back({Token::Kind::Op, op, line});
        pos += std::strlen(op);
      }
    }
  }
  out.push_back({Token::Kind::Eof, "", line});
  return out;
}

}  // namespace mlxgp::chat
