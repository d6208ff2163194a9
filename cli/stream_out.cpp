#include "stream_out.h"

#include <unistd.h>

#include <cstdio>

namespace mlxgp::cli {

namespace {
bool line_open = false;
}

void stream_text(std::string_view text) {
  if (text.empty()) return;
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  line_open = text.back() != '\n';
}

void end_streamed_line() {
  if (!line_open || !isatty(STDOUT_FILENO) || !isatty(STDERR_FILENO)) return;
  std::fputc('\n', stdout);
  std::fflush(stdout);
  line_open = false;
}

}  // namespace mlxgp::cli
