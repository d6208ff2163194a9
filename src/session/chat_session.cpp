// ChatSession: re-render the conversation each turn, keep the KV caches, prefill only the suffix
// that differs from what the caches hold (mlx-lm's prompt-cache reuse, by longest common prefix).
#include "mlxgp/chat_session.h"

#include "generation/core/decode_group.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "mlxgp/error.h"

namespace mlxgp {

namespace {

// Offset of the first byte that does not start or continue a valid UTF-8 sequence (overlongs,
// surrogates and code points above U+10FFFF count as invalid), or npos.
size_t invalid_utf8_offset(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return i;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string::npos;
}

}  // namespace

size_t common_prefix_length(const std::vector<int>& a, const std::vector<int>& b) {
  size_t n = std::min(a.size(), b.size()), i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

ChatSession::ChatSession(std::shared_ptr<Model> model, std::shared_ptr<const Tokenizer> tokenizer,
                         GenerationConfig config, ChatSessionOptions options)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), options_(std::move(options)) {
  if (!model_) fail("chat", "no model");
  if (!tokenizer_) fail("chat", "the model has no tokenizer; a chat needs one");
  if (tokenizer_->chat_template().empty()) fail("chat", "the model's tokenizer has no chat template");
  if (options_.generator.prefill_chunk_size < 1) fail("chat", "prefill_chunk_size must be >= 1");
  if (!options_.generator.tokenizer) options_.generator.tokenizer = tokenizer_;  // for stop_strings
  set_generation_config(std::move(config));
  special_ = tokenizer_->special_tokens();  // what apply_chat_template hands the template
  reset();
}

void ChatSession::set_generation_config(GenerationConfig config) {
  config = with_model_defaults(std::move(config), model_->config(), tokenizer_.get());
  validate(config);
  // A conversation continues one reply; several would each need their own history and caches.
  if (config.num_return_sequences != 1) fail("chat", "num_return_sequences must be 1 in a chat");
  // The session decodes its reply with the Generator over the conversation's kept caches: the searches
  // that run their own caches are refused, not ignored (use `generate --chat` for them).
  if (config.num_beams > 1 || config.num_beam_groups > 1)
    fail("chat", "beam search is not available in a chat session (use generate --chat for one reply)");
  if (config.use_speculative || config.prompt_lookup_num_tokens)
    fail("chat", "speculative and prompt-lookup decoding are not available in a chat session (use generate --chat)");
  // A reply carries its text and ids: per-step outputs would be computed and dropped.
  if (config.output_scores || config.output_logits || config.output_logprobs)
    fail("chat", "output_scores, output_logits and output_logprobs are not kept in a chat reply (use generate --json)");
  config_ = std::move(config);
}

void ChatSession::reset() {
  history_.clear();
  if (options_.system_prompt) history_.push_back({"system", *options_.system_prompt});
  caches_.clear();
  cached_ids_.clear();
}

std::string ChatSession::render(const std::vector<ChatMessage>& messages) const {
  return apply_chat_template(tokenizer_->chat_template(), messages, /*add_generation_prompt=*/true, special_);
}

// apply_chat_template(..., tokenize=True): the rendered text already carries its special tokens, so
// it is encoded without adding more.
std::vector<int> ChatSession::encode(const std::vector<ChatMessage>& messages) const {
  return tokenizer_->encode(render(messages), /*add_special_tokens=*/false);
}

std::vector<int> ChatSession::fit_to_context(std::vector<ChatMessage>& messages, int& dropped) const {
  const int context = model_->config().max_position_embeddings;
  dropped = 0;
  while (true) {
    std::vector<int> ids = encode(messages);
    // The prompt must leave room for at least one new token (Generator::prefill's rule).
    if (context <= 0 || static_cast<int>(ids.size()) < context) return ids;
    auto is_user = [](const ChatMessage& m) { return m.role == "user"; };
    auto first =
        std::find_if(messages.begin(), messages.end(), [](const ChatMessage& m) { return m.role != "system"; });
    // The exchange to drop runs from the first non-system message to the next user message.
    auto next_user = first == messages.end() ? first : std::find_if(first + 1, messages.end(), is_user);
    const std::string size = "the conversation has " + std::to_string(ids.size()) + " tokens, the model's context is " +
                             std::to_string(context);
    if (options_.on_overflow == ContextOverflow::Error)
      fail("chat", size +
                       " (reset the conversation, or let old exchanges be dropped: "
                       "ContextOverflow::DropOldestTurns, CLI --drop-old-turns)");
    if (next_user == messages.end()) fail("chat", size + " even with only the last message; send a shorter message");
    messages.erase(first, next_user);
    ++dropped;
  }
}

ChatReply ChatSession::send(const std::string& user_text, const TokenCallback& callback) {
  if (size_t bad = invalid_utf8_offset(user_text); bad != std::string::npos)
    fail("chat", "the message is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
  std::vector<ChatMessage> messages = history_;
  messages.push_back({"user", user_text});
  ChatReply reply;
  std::vector<int> ids = fit_to_context(messages, reply.stats.dropped_turns);
  const int n = static_cast<int>(ids.size());

  if (ids.empty()) fail("chat", "the chat template rendered an empty prompt");
  // Keep the cached prefix that the new rendering shares; the rest (at least the last position,
  // whose logits give the first token) is prefilled. The caches belong to the generator from here
  // on, so a failure below leaves none and the next turn starts afresh.
  int keep = static_cast<int>(std::min(common_prefix_length(cached_ids_, ids), ids.size() - 1));
  KVCacheList caches = std::move(caches_);
  caches_.clear();
  cached_ids_.clear();
  bool reusable = keep > 0;
  for (auto& c : caches) {
    const int extra = c->offset() - keep;
    // (A recurrent layer's state cannot be trimmed: it is reused only when it holds exactly the shared prefix.)
    reusable = reusable && extra >= 0 && (extra == 0 || (c->is_trimmable() && c->trim(extra) == extra));
  }
  if (!reusable) caches.clear();
  reply.stats.prompt_tokens = n;
  reply.stats.reused_tokens = caches.empty() ? 0 : keep;
  reply.stats.prefilled_tokens = n - reply.stats.reused_tokens;

  Generator gen(*model_, config_, options_.generator);
  gen.prefill(ids, std::move(caches));
  TextStreams texts(tokenizer_, 1);
  while (!gen.done()) {
    int token = gen.step();
    // A terminating special EOS token (e.g. <|im_end|>) ends the turn but is not part of the reply text
    // (the template writes its own end-of-turn marker), as generate() shows it.
    std::string piece = texts.push(0, token, gen.finish_reason());
    if (callback) callback(token, piece);
  }
  reply.text = std::move(texts.text(0));

  reply.token_ids = gen.generated();
  reply.finish_reason = gen.finish_reason();
  auto& s = reply.stats;
  s.generated_tokens = static_cast<int>(reply.token_ids.size());
  if (gen.prefill_seconds() > 0) s.prefill_tokens_per_s = s.prefilled_tokens / gen.prefill_seconds();
  if (s.generated_tokens > 1 && gen.decode_seconds() > 0)
    s.decode_tokens_per_s = (s.generated_tokens - 1) / gen.decode_seconds();

  // The caches hold the first cached_tokens() of prompt + reply: remember exactly those ids.
  std::vector<int> all = ids;
  all.insert(all.end(), reply.token_ids.begin(), reply.token_ids.end());
  all.resize(std::min<size_t>(all.size(), gen.cached_tokens()));
  caches_ = std::move(gen.caches());
  cached_ids_ = std::move(all);
  messages.push_back({"assistant", reply.text});
  history_ = std::move(messages);
  return reply;
}

}  // namespace mlxgp
