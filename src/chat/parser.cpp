// Recursive-descent parser for the Jinja subset. Operator precedence and the grammar of tests,
// filters and assignment targets follow jinja2.parser.Parser (semantics only).
#include <set>

#include "chat/ast.h"
#include "chat/lexer.h"
#include "mlxgp/error.h"

namespace mlxgp::chat {

namespace {

using K = Token::Kind;

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Body parse_body(const std::set<std::string>& end_tags, std::string* ended_by) {
    Body body;
    while (true) {
      const Token& tok = peek();
      if (tok.kind == K::Eof) {
        if (!end_tags.empty()) {
          std::string want = *end_tags.begin();
          for (auto& t : end_tags)
            if (t.rfind("end", 0) == 0) want = t;
          error("unexpected end of template, expected '" + want + "'", tok.line);
        }
        return body;
      }
      if (tok.kind == K::Text) {
        auto n = node(Node::Kind::Text, tok.line);
        n->text = tok.text;
        next();
        body.push_back(std::move(n));
      } else if (tok.kind == K::VarBegin) {
        next();
        auto n = node(Node::Kind::Output, tok.line);
        n->expr = parse_expr();
        expect(K::VarEnd, "'}}'");
        body.push_back(std::move(n));
      } else {  // BlockBegin
        const Token& kw = t_[pos_ + 1];
        if (kw.kind != K::Name) error("expected a statement name after '{%'", kw.line);
        if (end_tags.count(kw.text)) {
          pos_ += 2;
          *ended_by = kw.text;
          return body;
        }
        next();
        body.push_back(parse_statement());
      }
    }
  }

 private:
  std::vector<Token> t_;
  size_t pos_ = 0;
  int depth_ = 0;  // nesting of expressions and blocks: bounded so malformed input cannot overflow the stack

  struct Nest {
    Parser& p;
    Nest(Parser& parser, int line) : p(parser) {
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
      case K::VarEnd: return "'}}'";
      case K::BlockEnd: return "'%}'";
      case K::Eof: return "end of template";
      case K::String: return "a string";
      default: return "'" + t.text + "'";
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

  Body parse_until(const std::set<std::string>& tags, std::string* ended_by) {
    std::string dummy;
    Body b = parse_body(tags, ended_by ? ended_by : &dummy);
    return b;
  }

  NodePtr parse_statement() {
    const Token& kw = next();
    int line = kw.line;
    const std::string k = kw.text;
    Nest nest(*this, line);
    if (k.rfind("end", 0) == 0 || k == "elif" || k == "else")
      error("unexpected '" + k + "' with no open block", line);
    if (k == "if") {
      auto n = node(Node::Kind::If, line);
      ExprPtr cond = parse_or();
      while (true) {
        expect(K::BlockEnd, "'%}'");
        std::string end;
        Body b = parse_until({"elif", "else", "endif"}, &end);
        n->branches.emplace_back(std::move(cond), std::move(b));
        if (end == "elif") {
          cond = parse_or();
        } else if (end == "else") {
          expect(K::BlockEnd, "'%}'");
          n->branches.emplace_back(nullptr, parse_until({"endif"}, nullptr));
          break;
        } else break;
      }
      expect(K::BlockEnd, "'%}'");
      return n;
    }
    if (k == "for") {
      auto n = node(Node::Kind::For, line);
      bool paren = skip_op("(");
      do n->targets.push_back(expect_name());
      while (skip_op(","));
      if (paren) expect_op(")");
      if (!skip_name("in")) error("expected 'in' in for loop, got " + describe(peek()), peek().line);
      n->expr = parse_or();
      if (is_name("recursive")) error("unsupported 'recursive' for loop", line);
      if (skip_name("if")) n->filter = parse_expr();
      expect(K::BlockEnd, "'%}'");
      std::string end;
      n->body = parse_until({"else", "endfor"}, &end);
      if (end == "else") {
        expect(K::BlockEnd, "'%}'");
        n->else_body = parse_until({"endfor"}, nullptr);
      }
      expect(K::BlockEnd, "'%}'");
      return n;
    }
    if (k == "set") {
      std::string target = expect_name();
      std::string attr;
      std::vector<std::string> targets{target};
      if (skip_op(".")) attr = expect_name();
      else
        while (skip_op(",")) targets.push_back(expect_name());
      if (skip_op("=")) {
        auto n = node(Node::Kind::Set, line);
        n->targets = targets;
        n->attr = attr;
        n->expr = parse_expr();
        expect(K::BlockEnd, "'%}'");
        return n;
      }
      if (!attr.empty() || targets.size() != 1) error("expected '=' in set", peek().line);
      auto n = node(Node::Kind::SetBlock, line);
      n->targets = targets;
      if (is_op("|")) error("unsupported filtered block set", line);
      expect(K::BlockEnd, "'%}'");
      n->body = parse_until({"endset"}, nullptr);
      expect(K::BlockEnd, "'%}'");
      return n;
    }
    if (k == "macro") {
      auto n = node(Node::Kind::Macro, line);
      n->targets.push_back(expect_name());
      expect_op("(");
      while (!is_op(")")) {
        std::string p = expect_name();
        ExprPtr def;
        if (skip_op("=")) def = parse_expr();
        n->params.emplace_back(p, std::move(def));
        if (!skip_op(",")) break;
      }
      expect_op(")");
      expect(K::BlockEnd, "'%}'");
      n->body = parse_until({"endmacro"}, nullptr);
      expect(K::BlockEnd, "'%}'");
      return n;
    }
    if (k == "break" || k == "continue") {
      expect(K::BlockEnd, "'%}'");
      return node(k == "break" ? Node::Kind::Break : Node::Kind::Continue, line);
    }
    if (k == "generation") {  // transformers' AssistantTracker tag: renders its body unchanged
      expect(K::BlockEnd, "'%}'");
      auto n = node(Node::Kind::Block, line);
      n->body = parse_until({"endgeneration"}, nullptr);
      expect(K::BlockEnd, "'%}'");
      return n;
    }
    error("unsupported statement '" + k + "'", line);
  }

  // expression := or ['if' or ['else' expression]]
  ExprPtr parse_expr() {
    Nest nest(*this, peek().line);
    ExprPtr e = parse_or();
    while (is_name("if")) {
      int line = next().line;
      auto c = expr(Expr::Kind::Cond, line);
      c->b = parse_or();
      if (skip_name("else")) c->c = parse_expr();
      c->a = std::move(e);
      e = std::move(c);
    }
    return e;
  }
  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      int line = next().line;
      e = binary("or", std::move(e), parse_and(), line);
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      int line = next().line;
      e = binary("and", std::move(e), parse_not(), line);
    }
    return e;
  }
  ExprPtr parse_not() {
    Nest nest(*this, peek().line);
    if (is_name("not")) {
      auto e = expr(Expr::Kind::Unary, next().line);
      e->name = "not";
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    ExprPtr e = parse_math1();
    while (true) {
      int line = peek().line;
      std::string op;
      for (const char* o : {"==", "!=", "<", ">", "<=", ">="})
        if (is_op(o)) op = o;
      if (!op.empty()) next();
      else if (is_name("in")) { next(); op = "in"; }
      else if (is_name("not") && is_name("in", 1)) { next(); next(); op = "not in"; }
      else return e;
      e = binary(op, std::move(e), parse_math1(), line);
    }
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      e = binary(t.text, std::move(e), parse_concat(), t.line);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      int line = next().line;
      e = binary("~", std::move(e), parse_math2(), line);
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      e = binary(t.text, std::move(e), parse_pow(), t.line);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      int line = next().line;
      e = binary("**", std::move(e), parse_unary(true), line);
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    Nest nest(*this, peek().line);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      e = expr(Expr::Kind::Unary, t.line);
      e->name = t.text;
      e->a = parse_unary(false);
    } else {
      e = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filters(std::move(e)) : std::move(e);
  }

  void parse_call_args(Expr& e) {  // after '('
    while (!is_op(")")) {
      if (peek().kind == K::Name && is_op("=", 1)) {
        std::string key = next().text;
        next();
        e.kwargs.emplace_back(key, parse_expr());
      } else {
        if (!e.kwargs.empty()) error("positional argument after keyword argument", peek().line);
        e.args.push_back(parse_expr());
      }
      if (!skip_op(",")) break;
    }
    expect_op(")");
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    int line = t.line;
    if (t.kind == K::Name) {
      next();
      auto e = expr(Expr::Kind::Literal, line);
      if (t.text == "true" || t.text == "True") e->value = Value::boolean(true);
      else if (t.text == "false" || t.text == "False") e->value = Value::boolean(false);
      else if (t.text == "none" || t.text == "None") e->value = Value::none();
      else {
        e->kind = Expr::Kind::Name;
        e->name = t.text;
      }
      return e;
    }
    if (t.kind == K::String) {
      std::string s;
      while (peek().kind == K::String) s += next().text;  // adjacent literals concatenate
      auto e = expr(Expr::Kind::Literal, line);
      e->value = Value::string(s);
      return e;
    }
    if (t.kind == K::Int || t.kind == K::Float) {
      next();
      auto e = expr(Expr::Kind::Literal, line);
      try {
        e->value = t.kind == K::Int ? Value::integer(std::stoll(t.text)) : Value::number(std::stod(t.text));
      } catch (const std::exception&) {
        error("number '" + t.text + "' out of range", line);
      }
      return e;
    }
    if (skip_op("(")) {
      // Tuples evaluate as lists: templates only pass them as arguments (e.g. tojson separators).
      if (skip_op(")")) return expr(Expr::Kind::ListLit, line);
      ExprPtr e = parse_expr();
      if (is_op(",")) {
        auto t = expr(Expr::Kind::ListLit, line);
        t->args.push_back(std::move(e));
        while (skip_op(",") && !is_op(")")) t->args.push_back(parse_expr());
        e = std::move(t);
      }
      expect_op(")");
      return e;
    }
    if (skip_op("[")) {
      auto e = expr(Expr::Kind::ListLit, line);
      while (!is_op("]")) {
        e->args.push_back(parse_expr());
        if (!skip_op(",")) break;
      }
      expect_op("]");
      return e;
    }
    if (skip_op("{")) {
      auto e = expr(Expr::Kind::DictLit, line);
      while (!is_op("}")) {
        e->args.push_back(parse_expr());
        expect_op(":");
        e->args.push_back(parse_expr());
        if (!skip_op(",")) break;
      }
      expect_op("}");
      return e;
    }
    error("unexpected " + describe(t), line);
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      int line = peek().line;
      if (skip_op(".")) {
        if (peek().kind == K::Int) {
          auto it = expr(Expr::Kind::Item, line);
          it->a = std::move(e);
          it->b = expr(Expr::Kind::Literal, line);
          it->b->value = Value::integer(std::stoll(next().text));
          e = std::move(it);
          continue;
        }
        auto at = expr(Expr::Kind::Attr, line);
        at->name = expect_name();
        at->a = std::move(e);
        e = std::move(at);
      } else if (skip_op("[")) {
        ExprPtr parts[3];
        int n = 0;
        bool slice = false;
        while (true) {
          if (!is_op(":") && !is_op("]")) parts[n] = parse_expr();
          if (n < 2 && skip_op(":")) {
            slice = true;
            ++n;
            continue;
          }
          break;
        }
        expect_op("]");
        auto it = expr(slice ? Expr::Kind::Slice : Expr::Kind::Item, line);
        if (!slice && !parts[0]) error("empty subscript", line);
        it->a = std::move(e);
        it->b = std::move(parts[0]);
        it->c = std::move(parts[1]);
        it->d = std::move(parts[2]);
        e = std::move(it);
      } else if (skip_op("(")) {
        auto call = expr(Expr::Kind::Call, line);
        call->a = std::move(e);
        parse_call_args(*call);
        e = std::move(call);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_filters(ExprPtr e) {
    while (true) {
      int line = peek().line;
      if (skip_op("|")) {
        auto f = expr(Expr::Kind::Filter, line);
        f->name = expect_name();
        while (skip_op(".")) f->name += "." + expect_name();
        f->a = std::move(e);
        if (skip_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (skip_name("is")) {
        auto t = expr(Expr::Kind::Test, line);
        t->negated = skip_name("not");
        t->name = expect_name();
        t->a = std::move(e);
        if (skip_op("(")) {
          parse_call_args(*t);
        } else {
          const Token& n = peek();
          bool arg = n.kind == K::String || n.kind == K::Int || n.kind == K::Float ||
                     (n.kind == K::Name && n.text != "else" && n.text != "or" && n.text != "and") ||
                     is_op("(") || is_op("[") || is_op("{");
          if (arg) {
            if (n.kind == K::Name && n.text == "is") error("cannot chain multiple tests with 'is'", n.line);
            t->args.push_back(parse_postfix(parse_primary()));
          }
        }
        e = std::move(t);
      } else if (skip_op("(")) {
        auto call = expr(Expr::Kind::Call, line);
        call->a = std::move(e);
        parse_call_args(*call);
        e = std::move(call);
      } else {
        return e;
      }
    }
  }
};

}  // namespace

std::shared_ptr<const Program> parse_program(const std::string& source) {
  Parser p(lex(source));
  auto prog = std::make_shared<Program>();
  std::string end;
  prog->body = p.parse_body({}, &end);
  return prog;
}

}  // namespace mlxgp::chat
