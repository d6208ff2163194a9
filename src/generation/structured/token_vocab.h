// What each token adds to the text, as bytes, for xgrammar's TokenizerInfo (its RAW vocabulary type):
// byte-level, byte-fallback (<0xNN>) and Metaspace tokens all decoded by mlxgp's own tokenizer.
#pragma once

#include <string>
#include <vector>

#include "mlxgp/tokenizer.h"

namespace mlxgp {

// One entry per token id (tokenizer.vocab_size()). Special tokens (and ids naming no token) are empty
// strings, which xgrammar never allows inside the constrained text.
std::vector<std::string> token_vocab(const Tokenizer& tokenizer);

}  // namespace mlxgp
