// Python str operations on UTF-8 strings (strip, split, replace; case: case.h), as chat templates call them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mlxgp::chat {

// str.strip/lstrip/rstrip: side 1 = left, 2 = right, 3 = both; chars null = Unicode whitespace.
std::string py_strip(const std::string& s, const std::string* chars, int side);
// str.split(sep, maxsplit) / str.rsplit(sep, maxsplit); sep must not be empty.
std::vector<std::string> py_split(const std::string& s, const std::string& sep, int64_t maxsplit, bool from_right);
// str.split() with no separator: runs of whitespace, no empty parts.
std::vector<std::string> py_split_ws(const std::string& s, int64_t maxsplit, bool from_right);
std::string py_replace(const std::string& s, const std::string& old, const std::string& repl, int64_t count);
bool is_py_space(uint32_t cp);

}  // namespace mlxgp::chat
