// Splits a template into text and tag tokens, applying Jinja's whitespace control as transformers
// configures it (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False) plus the
// `-` / `+` modifiers, and tokenizes the expressions inside tags.
#pragma once

#include <string>
#include <vector>

namespace mlxgp::chat {

struct Token {
  enum class Kind { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };
  Kind kind;
  std::string text;  // Text: the (already stripped) data; String: the unescaped value; else the spelling
  int line;
};

// Throws [chat_template] "... at line L" on unterminated tags/strings or unknown characters.
std::vector<Token> lex(const std::string& source);

}  // namespace mlxgp::chat
