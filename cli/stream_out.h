// Streamed text on stdout, and the line it may leave open: an error printed on stderr after it would
// start in the middle of that line on a terminal ("no"[generate] ...).
#pragma once

#include <string_view>

namespace mlxgp::cli {

// Writes and flushes `text` to stdout, remembering whether it left a line open.
void stream_text(std::string_view text);
// Ends the open line on stdout when stdout and stderr are both a terminal (piped output is left as streamed).
void end_streamed_line();

}  // namespace mlxgp::cli
