// Parser internals shared by the statement parser (parser.cpp) and the expression parser
// (parse_expr.cpp). Operator precedence and the grammar of tests, filters and assignment targets
// follow jinja2.parser.Parser (semantics only).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "chat/ast.h"
#include "chat/lexer.h"
#include "mlxgp/error.h"

namespace mlxgp::chat {

class ExprParser {
 public:
  explicit ExprParser(std::vector<Token> toks) : t_(std::move(toks)) {}

 protected:
  using K = Token::Kind;
  std::vector<Token> t_;
  size_t pos_ = 0;
  int depth_ = 0;  // nesting of expressions and blocks: bounded so malformed input cannot overflow the stack

  struct Nest {
    ExprParser& p;
    Nest(ExprParser& parser, int line) : p(parser) {
      if (++p.depth_ > 200) p.error("template nesting is too deep", line);
    }
    ~Nest() { --p.depth_; }
  };

  [[noreturn]] void error(const std::string& what, int line) {
    fail("chat_template", what + " at line " + std::to_string(line));
  }
  const Token& peek(size_t ahead = 0) const { return t_[std::min(pos_ + ahead, t_.size() - 1)]; }
  const Token& next() {
    const Token& tok = t_[pos_];
    if (pos_ + 1 < t_.size()) ++pos_;
    return tok;
  }
  bool is_op(const char* op, size_t ahead = 0) const { return peek(ahead).kind == K::Op && peek(ahead).text == op; }
  bool is_name(const char* n, size_t ahead = 0) const { return peek(ahead).kind == K::Name && peek(ahead).text == n; }
  bool skip_op(const char* op) { return is_op(op) ? (next(), true) : false; }
  bool skip_name(const char* n) { return is_name(n) ? (next(), true) : false; }
  void expect(K kind, const std::string& what) {
    if (peek().kind != kind) error("expected " + what + ", got " + describe(peek()), peek().line);
    next();
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) error(std::string("expected '") + op + "', got " + describe(peek()), peek().line);
  }
  std::string expect_name() {
    if (peek().kind != K::Name) error("expected a name, got " + describe(peek()), peek().line);
    return next().text;
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case K::VarEnd:
        return "'}}'";
      case K::BlockEnd:
        return "'%}'";
      case K::Eof:
        return "end of template";
      case K::String:
        return "a string";
      default:
        return "'" + t.text + "'";
    }
  }
  static NodePtr node(Node::Kind k, int line) {
    auto n = std::make_unique<Node>();
    n->kind = k;
    n->line = line;
    return n;
  }
  static ExprPtr expr(Expr::Kind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }
  static ExprPtr binary(std::string op, ExprPtr a, ExprPtr b, int line) {
    auto e = expr(Expr::Kind::Binary, line);
    e->name = std::move(op);
    e->a = std::move(a);
    e->b = std::move(b);
    return e;
  }

  // expression := or ['if' or ['else' expression]]
  ExprPtr parse_expr();
  ExprPtr parse_or();
  // expression [',' expression ...]: a bare tuple, as in `{{ a, b }}` or `{% set t = a, b %}`
  ExprPtr parse_tuple();

 private:
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  void parse_call_args(Expr& e);
  ExprPtr parse_primary();
  ExprPtr parse_postfix(ExprPtr e);
  ExprPtr parse_filters(ExprPtr e);
};

}  // namespace mlxgp::chat
