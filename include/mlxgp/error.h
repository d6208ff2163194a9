// The project's one error type. Messages read "[component] what went wrong" (MLX's convention),
// so the CLI can print what() as a single line.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mlxgp {

enum class ErrorKind {
  InvalidInput,  // the user's input or settings are wrong: CLI exit code 2
  Runtime,       // the input was fine but something failed while running: CLI exit code 1
};

class Error : public std::runtime_error {
 public:
  Error(std::string_view component, std::string_view message, ErrorKind kind = ErrorKind::InvalidInput);
  const std::string& component() const { return component_; }
  ErrorKind kind() const { return kind_; }

 private:
  std::string component_;
  ErrorKind kind_;
};

// Throws Error(component, message, InvalidInput).
[[noreturn]] void fail(std::string_view component, std::string_view message);

// An error line's message without its "[component] " prefix (for a face that adds its own context:
// a file name and line, an HTTP error object).
std::string without_component(std::string_view what);

// Any exception as an Error: an Error as it is; another (MLX's "[malloc] ...", std::bad_alloc) as a
// Runtime error keeping its own "[component] " prefix, or `component` where it has none. For the code
// that ends one request with its failure while the others go on (the batch engine's lanes).
Error as_error(const std::exception& e, std::string_view component);

}  // namespace mlxgp
