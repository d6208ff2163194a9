// Python's str case methods over UTF-8 (full Unicode mappings, the final-sigma rule), as Jinja's upper /
// lower / title / capitalize filters and `is upper` / `is lower` tests run them. Tables: case_tables.inc,
// generated from Python itself by scripts/gen_case_tables.py.
#pragma once

#include <string>

namespace mlxgp::chat {

std::string py_upper(const std::string& s);       // str.upper()
std::string py_lower(const std::string& s);       // str.lower()
std::string py_title(const std::string& s);       // str.title()
std::string py_capitalize(const std::string& s);  // str.capitalize()
bool py_isupper(const std::string& s);            // str.isupper()
bool py_islower(const std::string& s);            // str.islower()
// Jinja's |title: each piece between runs of -, whitespace, ( { [ < gets piece[0].upper() + piece[1:].lower().
std::string jinja_title(const std::string& s);

}  // namespace mlxgp::chat
