#include "mlxgp/tokenizer.h"

#include "tokenizer/utf8.h"

namespace mlxgp {

// Decoding is per-token bytes followed by one lossy UTF-8 pass, so text is final once the bytes
// end on a complete sequence: only the unfinished tail is held back, O(1) work per token.
StreamingDetokenizer::StreamingDetokenizer(std::shared_ptr<const Tokenizer> tokenizer, bool skip_special_tokens)
    : tokenizer_(std::move(tokenizer)), skip_special_(skip_special_tokens) {}

std::string StreamingDetokenizer::push(int id) {
  int one[1] = {id};
  pending_ += tokenizer_->decode_bytes(one, skip_special_);
  size_t ready = tok::complete_utf8_prefix(pending_);
  std::string out = tok::utf8_lossy(std::string_view(pending_).substr(0, ready));
  pending_.erase(0, ready);
  return out;
}

std::string StreamingDetokenizer::flush() {
  std::string out = tok::utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace mlxgp
