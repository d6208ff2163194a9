// Renders a parsed template. Scoping follows Jinja: `for` bodies and macros get their own scope
// (assignments inside do not leak out, hence namespace()), `if` does not.
#include "chat/eval.h"

#include <cmath>
#include <unordered_map>

#include "chat/builtins.h"
#include "mlxgp/error.h"

namespace mlxgp::chat {

namespace {

constexpr size_t kMaxOutput = size_t(256) << 20;  // rendering past this is a runaway template
constexpr int kMaxCallDepth = 64;

enum class Flow { Normal, Break, Continue };

class Renderer {
 public:
  explicit Renderer(Value globals) { scopes_.push_back(std::move(globals)); }

  void exec_body(const Body& body, std::string& out, Flow& flow) {
    for (auto& n : body) {
      exec(*n, out, flow);
      if (flow != Flow::Normal) return;
    }
  }

 private:
  std::vector<Value> scopes_;  // maps, innermost last
  int depth_ = 0;

  void exec(const Node& n, std::string& out, Flow& flow) {
    try {
      exec_inner(n, out, flow);
    } catch (EvalError& e) {
      if (e.line == 0) e.line = n.line;
      throw;
    } catch (const mlxgp::Error& e) {
      std::string msg = e.what();
      const std::string prefix = "[chat_template] ";
      if (msg.rfind(prefix, 0) == 0) msg = msg.substr(prefix.size());
      throw EvalError{msg, n.line};
    } catch (const std::exception& e) {  // a library failure (e.g. a number out of range) stays one line
      throw EvalError{std::string("error while rendering: ") + e.what(), n.line};
    }
    if (out.size() > kMaxOutput) throw EvalError{"rendered output exceeds 256 MiB", n.line};
  }

  void exec_inner(const Node& n, std::string& out, Flow& flow) {
    switch (n.kind) {
      case Node::Kind::Text:
        out += n.text;
        return;
      case Node::Kind::Output:
        out += to_str(eval(*n.expr));
        return;
      case Node::Kind::If:
        for (auto& [cond, body] : n.branches)
          if (!cond || truthy(eval(*cond))) {
            exec_body(body, out, flow);
            return;
          }
        return;
      case Node::Kind::For:
        return exec_for(n, out, flow);
      case Node::Kind::Set: {
        Value v = eval(*n.expr);
        if (!n.attr.empty()) {
          Value ns = lookup(n.targets[0]);
          if (ns.kind != Value::Kind::Namespace) eval_fail("cannot assign attribute on non-namespace object");
          if (n.attr[0] == '_') eval_fail("Chat templates cannot store underscore-prefixed attributes on a namespace");
          ns.set(Value::string(n.attr), v);
        } else if (n.targets.size() == 1) {
          assign(n.targets[0], v);
        } else {
          auto xs = iterate(v);
          if (xs.size() != n.targets.size()) eval_fail("cannot unpack: wrong number of values");
          for (size_t k = 0; k < xs.size(); ++k) assign(n.targets[k], xs[k]);
        }
        return;
      }
      case Node::Kind::SetBlock: {
        std::string captured;
        Flow f = Flow::Normal;
        exec_body(n.body, captured, f);
        assign(n.targets[0], Value::string(captured));
        return;
      }
      case Node::Kind::Macro:
        return define_macro(n);
      case Node::Kind::Break:
        flow = Flow::Break;
        return;
      case Node::Kind::Continue:
        flow = Flow::Continue;
        return;
      case Node::Kind::Block:
        return exec_body(n.body, out, flow);
    }
  }

  void assign(const std::string& name, Value v) { scopes_.back().set(Value::string(name), std::move(v)); }

  Value lookup(const std::string& name) {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it)
      if (const Value* v = it->find(name)) return *v;
    Value g = global_function(name);
    if (!g.is_undefined()) return g;
    return Value::undefined("'" + name + "' is undefined");
  }

  void exec_for(const Node& n, std::string& out, Flow& flow) {
    Value seq = eval(*n.expr);
    std::vector<Value> items = iterate(seq);
    if (n.filter) {  // `for x in xs if cond`: the filter runs first, so loop.length counts kept items
      std::vector<Value> kept;
      for (auto& x : items) {
        scopes_.push_back(Value::make_map());
        bind_targets(n, x);
        bool keep = false;
        try {
          keep = truthy(eval(*n.filter));
        } catch (...) {
          scopes_.pop_back();
          throw;
        }
        scopes_.pop_back();
        if (keep) kept.push_back(x);
      }
      items = std::move(kept);
    }
    if (items.empty()) {
      exec_body(n.else_body, out, flow);
      return;
    }
    int64_t len = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < len; ++k) {
      Value loop = Value::make_map({
          {Value::string("index"), Value::integer(k + 1)},
          {Value::string("index0"), Value::integer(k)},
          {Value::string("revindex"), Value::integer(len - k)},
          {Value::string("revindex0"), Value::integer(len - k - 1)},
          {Value::string("first"), Value::boolean(k == 0)},
          {Value::string("last"), Value::boolean(k == len - 1)},
          {Value::string("length"), Value::integer(len)},
          {Value::string("depth"), Value::integer(1)},
          {Value::string("depth0"), Value::integer(0)},
      });
      if (k > 0) loop.set(Value::string("previtem"), items[k - 1]);
      if (k + 1 < len) loop.set(Value::string("nextitem"), items[k + 1]);
      loop.set(Value::string("cycle"), Value::callable([k](std::vector<Value>& a, Kwargs&) {
                 if (a.empty()) eval_fail("no items for cycling given");
                 return a[k % a.size()];
               }));
      scopes_.push_back(Value::make_map({{Value::string("loop"), loop}}));
      Flow f = Flow::Normal;
      try {
        bind_targets(n, items[k]);
        exec_body(n.body, out, f);
      } catch (...) {
        scopes_.pop_back();
        throw;
      }
      scopes_.pop_back();
      if (f == Flow::Break) break;
    }
  }

  void bind_targets(const Node& n, const Value& item) {
    if (n.targets.size() == 1) return assign(n.targets[0], item);
    auto xs = iterate(item);
    if (xs.size() != n.targets.size()) eval_fail("cannot unpack loop item: wrong number of values");
    for (size_t k = 0; k < xs.size(); ++k) assign(n.targets[k], xs[k]);
  }

  void define_macro(const Node& n) {
    const Node* node = &n;
    Renderer* self = this;
    assign(
        n.targets[0], Value::callable([self, node](std::vector<Value>& args, Kwargs& kw) {
          if (args.size() > node->params.size())
            eval_fail("macro '" + node->targets[0] + "' takes " + std::to_string(node->params.size()) + " arguments");
          if (self->depth_ >= kMaxCallDepth) eval_fail("macro recursion is too deep");
          Value scope = Value::make_map();
          for (size_t k = 0; k < node->params.size(); ++k) {
            auto& [pname, dflt] = node->params[k];
            Value v;
            if (k < args.size()) v = args[k];
            else if (!kw.take(pname, v))
              v = dflt ? self->eval(*dflt) : Value::undefined("'" + pname + "' is undefined");
            scope.set(Value::string(pname), v);
          }
          if (!kw.items.empty())
            eval_fail("macro '" + node->targets[0] + "' got an unexpected keyword argument '" + kw.items[0].first +
                      "'");
          // A macro sees the template's top-level names and its parameters, not the caller's locals.
          std::vector<Value> saved(self->scopes_.begin() + 1, self->scopes_.end());
          self->scopes_.resize(1);
          self->scopes_.push_back(scope);
          ++self->depth_;
          std::string out;
          Flow f = Flow::Normal;
          try {
            self->exec_body(node->body, out, f);
          } catch (...) {
            --self->depth_;
            self->scopes_.resize(1);
            self->scopes_.insert(self->scopes_.end(), saved.begin(), saved.end());
            throw;
          }
          --self->depth_;
          self->scopes_.resize(1);
          self->scopes_.insert(self->scopes_.end(), saved.begin(), saved.end());
          return Value::string(out);
        }));
  }

  void eval_args(const Expr& e, std::vector<Value>& args, Kwargs& kw) {
    for (auto& a : e.args) args.push_back(eval(*a));
    for (auto& [k, a] : e.kwargs) kw.items.emplace_back(k, eval(*a));
  }

 public:
  Value eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::Literal:
        return e.value;
      case Expr::Kind::Name:
        return lookup(e.name);
      case Expr::Kind::ListLit: {
        List xs;
        for (auto& a : e.args) xs.push_back(eval(*a));
        return e.name == "tuple" ? Value::make_tuple(std::move(xs)) : Value::make_list(std::move(xs));
      }
      case Expr::Kind::DictLit: {
        Value m = Value::make_map();
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) m.set(eval(*e.args[k]), eval(*e.args[k + 1]));
        return m;
      }
      case Expr::Kind::Attr:
        return get_attr(eval(*e.a), e.name);
      case Expr::Kind::Item:
        return get_item(eval(*e.a), eval(*e.b));
      case Expr::Kind::Slice: {
        Value obj = eval(*e.a);
        auto part = [&](const ExprPtr& p) { return p ? eval(*p) : Value::none(); };
        return slice(obj, part(e.b), part(e.c), part(e.d));
      }
      case Expr::Kind::Call: {
        Value fn = eval(*e.a);
        std::vector<Value> args;
        Kwargs kw;
        eval_args(e, args, kw);
        return call(fn, args, kw);
      }
      case Expr::Kind::Filter: {
        Value v = eval(*e.a);
        std::vector<Value> args;
        Kwargs kw;
        eval_args(e, args, kw);
        return apply_filter(e.name, v, args, kw);
      }
      case Expr::Kind::Test: {
        Value v = eval(*e.a);
        std::vector<Value> args;
        Kwargs kw;
        eval_args(e, args, kw);
        if (!kw.items.empty()) eval_fail("tests take no keyword arguments");
        return Value::boolean(apply_test(e.name, v, args) != e.negated);
      }
      case Expr::Kind::Unary: {
        Value v = eval(*e.a);
        if (e.name == "not") return Value::boolean(!truthy(v));
        if (v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool) {
          int64_t x = v.kind == Value::Kind::Int ? v.i : v.b;
          if (e.name == "-" && x == INT64_MIN) eval_fail("integer overflow");
          return Value::integer(e.name == "-" ? -x : x);
        }
        if (v.kind == Value::Kind::Float) return Value::number(e.name == "-" ? -v.f : v.f);
        eval_fail("bad operand type for unary " + e.name + ": '" + type_name(v) + "'");
      }
      case Expr::Kind::Binary:
        return eval_binary(e);
      case Expr::Kind::Cond:
        if (truthy(eval(*e.b))) return eval(*e.a);
        return e.c ? eval(*e.c)
                   : Value::undefined("the inline if-expression evaluated to false and no else section was defined");
    }
    eval_fail("unknown expression");
  }

 private:
  Value eval_binary(const Expr& e) {
    Value a = eval(*e.a);
    // `and` / `or` short-circuit and return an operand, as in Python.
    if (e.name == "and") return truthy(a) ? eval(*e.b) : a;
    if (e.name == "or") return truthy(a) ? a : eval(*e.b);
    return binary_op(e.name, a, eval(*e.b));
  }
};

}  // namespace

std::string render_program(const Program& program, Value globals) {
  Renderer r(std::move(globals));
  std::string out;
  Flow flow = Flow::Normal;
  try {
    r.exec_body(program.body, out, flow);
  } catch (const RaiseError& e) {
    fail("chat_template", e.message);
  } catch (const EvalError& e) {
    fail("chat_template", e.message + " at line " + std::to_string(e.line));
  }
  return out;
}

}  // namespace mlxgp::chat
