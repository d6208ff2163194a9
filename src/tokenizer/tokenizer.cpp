#include "mlxgp/tokenizer.h"

#include "mlxgp/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/impl.h"
#include "tokenizer/utf8.h"

namespace mlxgp {

void Tokenizer::Impl::finish() {
  int size = 0;
  for (auto& [tok, id] : model->vocab()) size = std::max(size, id + 1);
  for (auto& a : added) size = std::max(size, a.id + 1);
  id_to_token.assign(size, "");
  present.assign(size, false);
  special.assign(size, false);
  for (auto& [tok, id] : model->vocab()) {
    id_to_token[id] = tok;
    present[id] = true;
  }
  raw_matcher = {};
  norm_matcher = {};
  added_ids.clear();
  for (auto& a : added) {
    added_ids.insert_or_assign(a.content, a.id);
    // An added token's content is what decode() shows for its id, even if the model vocabulary
    // spells that id differently (tokenizers' AddedVocabulary takes precedence).
    id_to_token[a.id] = a.content;
    present[a.id] = true;
    special[a.id] = a.special;
    if (!a.normalized) {
      raw_matcher.add(a, a.content);
    } else {
      // tokenizers matches normalized tokens by their normalized content.
      std::string pattern;
      if (normalizer == Normalizer::NFC) tok::nfc(a.content, pattern);
      else pattern = a.content;
      norm_matcher.add(a, std::move(pattern));
    }
  }
  for (const auto* part : {&post.prefix, &post.suffix})
    for (int id : *part)
      if (id < 0 || id >= size || !present[id])
        fail("tokenizer", "post-processor special token id " + std::to_string(id) + " is not in the vocabulary");
}

void Tokenizer::Impl::encode_text(std::string_view text, std::vector<int>& out) const {
  std::string normalized;
  std::string_view body = text;
  if (normalizer == Normalizer::NFC) {
    tok::nfc(text, normalized);
    body = normalized;
  }
  std::vector<tok::Segment> segs;
  norm_matcher.split(body, segs);
  std::vector<std::string> pieces;
  for (const auto& seg : segs) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    pieces.clear();
    pieces.emplace_back(seg.text);
    if (pre_tokenizer) pre_tokenizer->apply(pieces);
    for (const auto& p : pieces) model->tokenize(p, out);
  }
}

std::string Tokenizer::Impl::decode_bytes(std::span<const int> ids, bool skip_special_tokens) const {
  std::string out;
  const auto& table = tok::ByteLevelTable::get();
  for (int id : ids) {
    if (id < 0 || id >= static_cast<int>(id_to_token.size()) || !present[id])
      fail("tokenizer", "token id " + std::to_string(id) + " is outside the vocabulary (size " +
                            std::to_string(id_to_token.size()) + ")");
    if (skip_special_tokens && special[id]) continue;
    if (byte_level_decoder) table.decode_token(id_to_token[id], out);
    else out += id_to_token[id];
  }
  return out;
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::vector<int> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (auto bad = tok::first_invalid_utf8(text))
    fail("tokenizer", "input is not valid UTF-8 (byte offset " + std::to_string(*bad) + ")");
  std::vector<int> out;
  if (add_special_tokens) out = impl_->post.prefix;
  std::vector<tok::Segment> segs;
  impl_->raw_matcher.split(text, segs);
  for (const auto& seg : segs) {
    if (seg.id >= 0) out.push_back(seg.id);
    else impl_->encode_text(seg.text, out);
  }
  if (add_special_tokens) out.insert(out.end(), impl_->post.suffix.begin(), impl_->post.suffix.end());
  return out;
}

std::string Tokenizer::decode(std::span<const int> ids, bool skip_special_tokens) const {
  return tok::utf8_lossy(impl_->decode_bytes(ids, skip_special_tokens));
}

std::string Tokenizer::decode_bytes(std::span<const int> ids, bool skip_special_tokens) const {
  return impl_->decode_bytes(ids, skip_special_tokens);
}

int Tokenizer::vocab_size() const { return static_cast<int>(impl_->id_to_token.size()); }

std::optional<int> Tokenizer::token_to_id(std::string_view token) const {
  if (auto a = impl_->added_ids.find(token); a != impl_->added_ids.end()) return a->second;
  auto it = impl_->model->vocab().find(token);
  if (it == impl_->model->vocab().end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::id_to_token(int id) const {
  if (id < 0 || id >= vocab_size() || !impl_->present[id])
    fail("tokenizer", "token id " + std::to_string(id) + " is outside the vocabulary (size " +
                          std::to_string(vocab_size()) + ")");
  return impl_->id_to_token[id];
}

bool Tokenizer::is_special(int id) const {
  return id >= 0 && id < vocab_size() && impl_->special[id];
}

std::optional<int> Tokenizer::bos_token_id() const { return impl_->bos; }
std::optional<int> Tokenizer::eos_token_id() const { return impl_->eos; }
std::optional<int> Tokenizer::pad_token_id() const { return impl_->pad; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }

}  // namespace mlxgp
