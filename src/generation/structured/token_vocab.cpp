#include "generation/structured/token_vocab.h"

#include <array>
#include <cstdio>

#include "mlxgp/error.h"

namespace mlxgp {

std::vector<std::string> token_vocab(const Tokenizer& tokenizer) {
  const int n = tokenizer.vocab_size();
  // A token's bytes mid-text: decoded after a plain token and cut after that token's text, because
  // decoders treat the first token specially (a Metaspace decoder drops its leading space).
  std::optional<int> anchor;
  for (const char* s : {"a", "x", "0"}) {
    auto ids = tokenizer.encode(s, false);
    if (ids.size() == 1 && !tokenizer.is_special(ids[0])) {
      anchor = ids[0];
      break;
    }
  }
  std::string prefix;
  if (anchor) prefix = tokenizer.decode_bytes(std::array<int, 1>{*anchor});
  std::vector<std::string> out(n);
  for (int id = 0; id < n; ++id) {
    if (tokenizer.is_special(id)) continue;
    // A byte-fallback token (<0xNN>) is that one byte; the ByteFallback decoder turns a byte that is no
    // whole UTF-8 character into U+FFFD, which is not what the token adds to a longer text.
    const std::string piece = tokenizer.id_to_token(id);
    unsigned byte = 0;
    char tail = 0;
    if (piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%2X%c", &byte, &tail) == 2 && tail == '>') {
      out[id] = std::string(1, static_cast<char>(byte));
      continue;
    }
    try {
      if (anchor) {
        std::string both = tokenizer.decode_bytes(std::array<int, 2>{*anchor, id});
        if (both.compare(0, prefix.size(), prefix) == 0) {
          out[id] = both.substr(prefix.size());
          continue;
        }
      }
      out[id] = tokenizer.decode_bytes(std::array<int, 1>{id});
    } catch (const Error&) {
      // an id naming no token (a gap in the vocabulary): never allowed
    }
  }
  return out;
}

}  // namespace mlxgp
