// Jinja's filters and tests, Python's str/dict/list methods, and attribute/item lookup, as the
// evaluator uses them. Errors are thrown as EvalError (the evaluator adds the line) or, for the
// template's own raise_exception(), as RaiseError (reported verbatim).
#pragma once

#include <string>
#include <vector>

#include "chat/value.h"

namespace mlxgp::chat {

struct EvalError {
  std::string message;
  int line = 0;
};
struct RaiseError {
  std::string message;
};
[[noreturn]] void eval_fail(const std::string& message);

// Jinja environment.getattr (`a.b`): attribute first (methods of str/dict/list), then item.
Value get_attr(const Value& obj, const std::string& name);
// Jinja environment.getitem (`a[b]`): item first, then attribute for string keys.
Value get_item(const Value& obj, const Value& key);
Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
Value call(const Value& fn, std::vector<Value>& args, Kwargs& kwargs);
// Throws EvalError "unsupported filter 'x'" / "unsupported test 'x'" for names it does not know.
Value apply_filter(const std::string& name, const Value& v, std::vector<Value>& args, Kwargs& kwargs);
bool apply_test(const std::string& name, const Value& v, std::vector<Value>& args);
// Whether apply_filter/apply_test know a name: the parser checks names up front, as Jinja does
// when it compiles a template (an unknown filter fails even in a branch that never runs).
bool known_filter(const std::string& name);
bool known_test(const std::string& name);
// Python iteration: lists, dict keys, string characters; undefined is empty; else EvalError.
std::vector<Value> iterate(const Value& v);
// The globals transformers adds: raise_exception, strftime_now, namespace, dict; plus Jinja's range.
Value global_function(const std::string& name);

}  // namespace mlxgp::chat

namespace mlxgp::chat {
// Python binary operators (+ - * / // % ** ~ == != < > <= >= in, not in) on template values.
Value binary_op(const std::string& op, const Value& a, const Value& b);
}  // namespace mlxgp::chat
