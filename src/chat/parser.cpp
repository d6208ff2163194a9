// Statement parser: text, {{ }} output and the {% %} statements of the Jinja subset.
#include <set>

#include "chat/builtins.h"
#include "chat/parser.h"

namespace mlxgp::chat {

namespace {

class Parser : public ExprParser {
 public:
  using ExprParser::ExprParser;

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
        n->expr = parse_tuple();
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
    if (k.rfind("end", 0) == 0 || k == "elif" || k == "else") error("unexpected '" + k + "' with no open block", line);
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
        n->expr = parse_tuple();
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
};

// Jinja resolves filter and test names when it compiles a template, so an unknown name fails the
// whole template, except inside an `if` or an inline `x if c else y`, where the check waits until
// the filter runs (jinja2.compiler "soft" frames; loop, macro and block-set bodies are not soft).
void check_names(const Expr* e, bool soft) {
  if (!e) return;
  soft = soft || e->kind == Expr::Kind::Cond;
  if (!soft && e->kind == Expr::Kind::Filter && !known_filter(e->name))
    fail("chat_template", "unsupported filter '" + e->name + "' at line " + std::to_string(e->line));
  if (!soft && e->kind == Expr::Kind::Test && !known_test(e->name))
    fail("chat_template", "unsupported test '" + e->name + "' at line " + std::to_string(e->line));
  for (const Expr* c : {e->a.get(), e->b.get(), e->c.get(), e->d.get()}) check_names(c, soft);
  for (auto& a : e->args) check_names(a.get(), soft);
  for (auto& [k, a] : e->kwargs) check_names(a.get(), soft);
}

void check_names(const Body& body, bool soft) {
  for (auto& n : body) {
    check_names(n->expr.get(), soft);
    for (auto& [cond, b] : n->branches) {
      check_names(cond.get(), true);
      check_names(b, true);
    }
    check_names(n->filter.get(), false);
    check_names(n->body, n->kind == Node::Kind::Block && soft);
    check_names(n->else_body, false);
    for (auto& [p, dflt] : n->params) check_names(dflt.get(), false);
  }
}

}  // namespace

std::shared_ptr<const Program> parse_program(const std::string& source) {
  auto prog = std::make_shared<Program>();
  try {
    Parser p(lex(source));
    std::string end;
    prog->body = p.parse_body({}, &end);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {  // e.g. std::stoll on an over-long number
    fail("chat_template", std::string("malformed template: ") + e.what());
  }
  check_names(prog->body, false);
  return prog;
}

}  // namespace mlxgp::chat
