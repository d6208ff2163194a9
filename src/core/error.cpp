#include "mlxgp/error.h"

#include <new>

namespace mlxgp {

namespace {
std::string format(std::string_view component, std::string_view message) {
  std::string s;
  s.reserve(component.size() + message.size() + 3);
  s.append("[").append(component).append("] ").append(message);
  // One line: the CLI prints what() as is, so embedded newlines would break the contract.
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}
}  // namespace

Error::Error(std::string_view component, std::string_view message, ErrorKind kind)
    : std::runtime_error(format(component, message)), component_(component), kind_(kind) {}

void fail(std::string_view component, std::string_view message) { throw Error(component, message); }

std::string without_component(std::string_view what) {
  if (!what.empty() && what[0] == '[')
    if (auto end = what.find("] "); end != std::string_view::npos) return std::string(what.substr(end + 2));
  return std::string(what);
}

Error as_error(const std::exception& e, std::string_view component) {
  if (const auto* err = dynamic_cast<const Error*>(&e)) return *err;
  if (dynamic_cast<const std::bad_alloc*>(&e)) return Error(component, "out of memory", ErrorKind::Runtime);
  const std::string_view what = e.what();
  if (!what.empty() && what[0] == '[')
    if (auto end = what.find("] "); end != std::string_view::npos && end > 1)
      return Error(what.substr(1, end - 1), what.substr(end + 2), ErrorKind::Runtime);
  return Error(component, what, ErrorKind::Runtime);
}

}  // namespace mlxgp
