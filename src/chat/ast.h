// The parsed template: expression and statement trees. Every node keeps its source line so that
// runtime errors can name it.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/value.h"

namespace mlxgp::chat {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,  // value
    Name,     // name
    ListLit,  // args (name "tuple" for a parenthesized tuple)
    DictLit,  // args as key, value, key, value...
    Attr,     // a.name
    Item,     // a[b]
    Slice,    // a[b:c:d] (absent parts are null)
    Call,     // a(args, kwargs)
    Filter,   // a | name(args, kwargs)
    Test,     // a is [not] name(args)
    Unary,    // name in {"-", "+", "not"} applied to a
    Binary,   // a name b: + - * / // % ** ~ == != < > <= >= in "not in" and or
    Cond,     // a if b else c (c may be null: undefined)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  bool negated = false;
  ExprPtr a, b, c, d;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum class Kind { Text, Output, If, For, Set, SetBlock, Macro, Break, Continue, Block };
  Kind kind;
  int line = 0;
  std::string text;                                     // Text
  ExprPtr expr;                                         // Output; Set value; For iterable
  std::vector<std::pair<ExprPtr, Body>> branches;       // If: (condition, body)...; null condition = else
  std::vector<std::string> targets;                     // For loop variables; Set/SetBlock target names
  std::string attr;                                     // Set: `set ns.attr = ...`
  ExprPtr filter;                                       // For: `for x in xs if cond`
  Body body, else_body;                                 // For/SetBlock/Macro/Block body; For else
  std::vector<std::pair<std::string, ExprPtr>> params;  // Macro parameters with optional defaults
};

struct Program {
  Body body;
};

// Throws [chat_template] "... at line L".
std::shared_ptr<const Program> parse_program(const std::string& source);

}  // namespace mlxgp::chat
