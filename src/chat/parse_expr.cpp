// Expression parser: precedence climbing from conditional expressions down to primaries,
// with Jinja's postfix operators, filters and tests.
#include "chat/parser.h"

namespace mlxgp::chat {

ExprPtr ExprParser::parse_expr() {
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

ExprPtr ExprParser::parse_tuple() {
  int line = peek().line;
  ExprPtr e = parse_expr();
  if (!is_op(",")) return e;
  auto t = expr(Expr::Kind::ListLit, line);
  t->name = "tuple";
  t->args.push_back(std::move(e));
  while (skip_op(",")) {
    if (peek().kind == K::VarEnd || peek().kind == K::BlockEnd) break;
    t->args.push_back(parse_expr());
  }
  return t;
}

ExprPtr ExprParser::parse_or() {
  ExprPtr e = parse_and();
  while (is_name("or")) {
    int line = next().line;
    e = binary("or", std::move(e), parse_and(), line);
  }
  return e;
}

ExprPtr ExprParser::parse_and() {
  ExprPtr e = parse_not();
  while (is_name("and")) {
    int line = next().line;
    e = binary("and", std::move(e), parse_not(), line);
  }
  return e;
}

ExprPtr ExprParser::parse_not() {
  Nest nest(*this, peek().line);
  if (is_name("not")) {
    auto e = expr(Expr::Kind::Unary, next().line);
    e->name = "not";
    e->a = parse_not();
    return e;
  }
  return parse_compare();
}

ExprPtr ExprParser::parse_compare() {
  ExprPtr e = parse_math1();
  while (true) {
    int line = peek().line;
    std::string op;
    for (const char* o : {"==", "!=", "<", ">", "<=", ">="})
      if (is_op(o)) op = o;
    if (!op.empty()) next();
    else if (is_name("in")) {
      next();
      op = "in";
    } else if (is_name("not") && is_name("in", 1)) {
      next();
      next();
      op = "not in";
    } else return e;
    e = binary(op, std::move(e), parse_math1(), line);
  }
}

ExprPtr ExprParser::parse_math1() {
  ExprPtr e = parse_concat();
  while (is_op("+") || is_op("-")) {
    const Token& t = next();
    e = binary(t.text, std::move(e), parse_concat(), t.line);
  }
  return e;
}

ExprPtr ExprParser::parse_concat() {
  ExprPtr e = parse_math2();
  while (is_op("~")) {
    int line = next().line;
    e = binary("~", std::move(e), parse_math2(), line);
  }
  return e;
}

ExprPtr ExprParser::parse_math2() {
  ExprPtr e = parse_pow();
  while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
    const Token& t = next();
    e = binary(t.text, std::move(e), parse_pow(), t.line);
  }
  return e;
}

ExprPtr ExprParser::parse_pow() {
  ExprPtr e = parse_unary(true);
  while (is_op("**")) {
    int line = next().line;
    e = binary("**", std::move(e), parse_unary(true), line);
  }
  return e;
}

ExprPtr ExprParser::parse_unary(bool with_filter) {
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

void ExprParser::parse_call_args(Expr& e) {  // after '('
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

ExprPtr ExprParser::parse_primary() {
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
    // A tuple is a list that prints with parentheses (e.g. tojson separators=(',', ':')).
    if (skip_op(")")) {
      auto empty = expr(Expr::Kind::ListLit, line);
      empty->name = "tuple";
      return empty;
    }
    ExprPtr e = parse_expr();
    if (is_op(",")) {
      auto tuple = expr(Expr::Kind::ListLit, line);
      tuple->name = "tuple";
      tuple->args.push_back(std::move(e));
      while (skip_op(",") && !is_op(")")) tuple->args.push_back(parse_expr());
      e = std::move(tuple);
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

ExprPtr ExprParser::parse_postfix(ExprPtr e) {
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

ExprPtr ExprParser::parse_filters(ExprPtr e) {
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
                   (n.kind == K::Name && n.text != "else" && n.text != "or" && n.text != "and") || is_op("(") ||
                   is_op("[") || is_op("{");
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

}  // namespace mlxgp::chat
