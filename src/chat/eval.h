// Rendering a parsed template with a map of global variables.
#pragma once

#include <string>

#include "chat/ast.h"
#include "chat/value.h"

namespace mlxgp::chat {

// Throws [chat_template] <message> for raise_exception(), else [chat_template] "... at line L".
std::string render_program(const Program& program, Value globals);

}  // namespace mlxgp::chat
