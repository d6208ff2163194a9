#include "mlxgp/tokenizer.h"

#include "tokenizer/impl.h"
#include "tokenizer/utf8.h"

namespace mlxgp {

// The decoders are local except at a few places, so text is final once the ids seen so far can
// be cut: not inside a run of byte-fallback tokens (decoded as a whole), not in an unfinished
// UTF-8 sequence, and not before any text came out (Metaspace drops the first token's leading
// replacement and Strip trims the start of the whole text). Ids after a cut are decoded as a
// continuation, so each id is decoded a bounded number of times.
StreamingDetokenizer::StreamingDetokenizer(std::shared_ptr<const Tokenizer> tokenizer, bool skip_special_tokens)
    : tokenizer_(std::move(tokenizer)), skip_special_(skip_special_tokens) {}

std::string StreamingDetokenizer::push(int id) {
  const auto& impl = *tokenizer_->impl_;
  impl.check_id(id);
  if (skip_special_ && impl.special[id]) return "";
  window_.push_back(id);
  if (impl.decoder && !impl.decoder->streamable()) return "";
  if (impl.byte_token[id]) return "";
  std::string raw = impl.decode_raw(window_, false, !started_);
  if (tok::complete_utf8_prefix(raw) < raw.size()) return "";
  if (raw.empty() && !started_) return "";
  window_.clear();
  started_ = true;
  return tok::utf8_lossy(raw);
}

std::string StreamingDetokenizer::flush() {
  std::string raw = tokenizer_->impl_->decode_raw(window_, false, !started_);
  window_.clear();
  if (!raw.empty()) started_ = true;
  return tok::utf8_lossy(raw);
}

}  // namespace mlxgp
