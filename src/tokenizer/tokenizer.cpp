#include "mlxgp/tokenizer.h"

#include "mlxgp/error.h"
#include "tokenizer/impl.h"
#include "tokenizer/utf8.h"

namespace mlxgp {

void Tokenizer::Impl::finish() {
  int size = 0;
  for (auto& [tok, id] : model->vocab()) size = std::max(size, id + 1);
  auto extra = model->extra_tokens();
  for (auto& [id, tok] : extra) size = std::max(size, id + 1);
  for (auto& a : added) size = std::max(size, a.id + 1);
  id_to_token.assign(size, "");
  present.assign(size, false);
  special.assign(size, false);
  byte_token.assign(size, false);
  for (auto& [id, tok] : extra) {
    id_to_token[id] = tok;
    present[id] = true;
  }
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
      std::string pattern = a.content;
      if (normalizer) normalizer->apply(pattern);
      norm_matcher.add(a, pattern);
    }
  }
  if (decoder && decoder->byte_fallback())
    for (int id = 0; id < size; ++id) byte_token[id] = present[id] && tok::parse_byte_token(id_to_token[id]) >= 0;
  for (const auto* part : {&post.prefix, &post.suffix})
    for (int id : *part)
      if (id < 0 || id >= size || !present[id])
        fail("tokenizer", "post-processor special token id " + std::to_string(id) + " is not in the vocabulary");
}

void Tokenizer::Impl::encode_text(std::string_view text, bool first_at_start, std::vector<int>& out) const {
  std::string normalized;
  std::string_view body = text;
  if (normalizer) {
    normalized.assign(text);
    normalizer->apply(normalized);
    body = normalized;
  }
  std::vector<tok::Segment> segs;
  norm_matcher.split(body, segs, split_special_tokens);
  std::vector<std::string> pieces;
  for (const auto& seg : segs) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    if (seg.text.empty()) continue;  // tokenizers drops empty splits before pre-tokenizing
    pieces.clear();
    pieces.emplace_back(seg.text);
    bool first = first_at_start && seg.text.data() == body.data();
    if (pre_tokenizer) pre_tokenizer->apply(pieces, first);
    for (const auto& p : pieces) model->tokenize(p, out);
  }
}

void Tokenizer::Impl::check_id(int id) const {
  if (id < 0 || id >= static_cast<int>(id_to_token.size()) || !present[id])
    fail("tokenizer", "token id " + std::to_string(id) + " is outside the vocabulary (size " +
                          std::to_string(id_to_token.size()) + ")");
}

std::string Tokenizer::Impl::decode_raw(std::span<const int> ids, bool skip_special_tokens, bool at_start) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int id : ids) {
    check_id(id);
    if (skip_special_tokens && special[id]) continue;
    tokens.push_back(id_to_token[id]);
  }
  if (decoder) return decoder->decode(std::move(tokens), at_start);
  // Without a decoder tokenizers joins the tokens with spaces.
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0 || !at_start) out += ' ';
    out += tokens[i];
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
  impl_->raw_matcher.split(text, segs, impl_->split_special_tokens);
  for (const auto& seg : segs) {
    if (seg.id >= 0) out.push_back(seg.id);
    else if (!seg.text.empty()) impl_->encode_text(seg.text, seg.text.data() == text.data(), out);
  }
  if (add_special_tokens) out.insert(out.end(), impl_->post.suffix.begin(), impl_->post.suffix.end());
  return out;
}

std::string Tokenizer::decode(std::span<const int> ids, bool skip_special_tokens) const {
  return tok::utf8_lossy(impl_->decode_raw(ids, skip_special_tokens, true));
}

std::string Tokenizer::decode_bytes(std::span<const int> ids, bool skip_special_tokens) const {
  return impl_->decode_raw(ids, skip_special_tokens, true);
}

int Tokenizer::vocab_size() const { return static_cast<int>(impl_->id_to_token.size()); }

std::optional<int> Tokenizer::token_to_id(std::string_view token) const {
  if (auto a = impl_->added_ids.find(token); a != impl_->added_ids.end()) return a->second;
  auto it = impl_->model->vocab().find(token);
  if (it == impl_->model->vocab().end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::id_to_token(int id) const {
  impl_->check_id(id);
  return impl_->id_to_token[id];
}

bool Tokenizer::is_special(int id) const { return id >= 0 && id < vocab_size() && impl_->special[id]; }

std::optional<int> Tokenizer::bos_token_id() const { return impl_->bos; }
std::optional<int> Tokenizer::eos_token_id() const { return impl_->eos; }
std::optional<int> Tokenizer::pad_token_id() const { return impl_->pad; }

}  // namespace mlxgp
