// ChatSession: a multi-turn conversation with an instruct model. Each turn renders the whole
// conversation with the model's chat template (add_generation_prompt=true, as transformers'
// apply_chat_template), tokenizes it, and reuses the KV caches of the previous turn: the caches are
// trimmed to the longest common prefix of the ids they hold and the new ids, and only the rest is
// prefilled. The reply is therefore the one generate() gives on the full rendered prompt.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mlxgp/chat_template.h"
#include "mlxgp/generate.h"
#include "mlxgp/generation_config.h"
#include "mlxgp/kv_cache.h"
#include "mlxgp/model.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp {

// What send() does when the rendered conversation plus room for one new token exceeds the model's
// context (max_position_embeddings).
enum class ContextOverflow {
  Error,           // throw [chat] and leave the conversation unchanged (the default)
  DropOldestTurns  // drop the oldest user/assistant exchanges (never the system message) until it fits
};

struct ChatSessionOptions {
  std::optional<std::string> system_prompt;  // a leading system message, kept across reset()
  ContextOverflow on_overflow = ContextOverflow::Error;
  GeneratorOptions generator;  // prefill chunking
};

struct ChatTurnStats {
  int prompt_tokens = 0;     // tokens of the whole rendered conversation this turn
  int reused_tokens = 0;     // of those, already in the KV caches (common prefix with the last turn)
  int prefilled_tokens = 0;  // computed this turn (prompt_tokens - reused_tokens, at least 1)
  int generated_tokens = 0;
  int dropped_turns = 0;            // exchanges dropped to fit the context (ContextOverflow::DropOldestTurns)
  double prefill_tokens_per_s = 0;  // prefilled tokens / time to the first token
  double decode_tokens_per_s = 0;   // tokens after the first / time after the first
};

struct ChatReply {
  std::string text;            // the reply, less a final special EOS token (as generate() shows it)
  std::vector<int> token_ids;  // generated ids (a final EOS included, as in HF)
  FinishReason finish_reason = FinishReason::None;
  ChatTurnStats stats;
};

// The length of the longest common prefix of two id sequences.
size_t common_prefix_length(const std::vector<int>& a, const std::vector<int>& b);

class ChatSession {
 public:
  // Throws [chat] when the tokenizer is null or has no chat template; validates `config` ([config]).
  // Defaults missing from `config` (eos/bos/pad) come from the model, as in generate().
  ChatSession(std::shared_ptr<Model> model, std::shared_ptr<const Tokenizer> tokenizer, GenerationConfig config,
              ChatSessionOptions options = {});

  // Adds the user message, generates the assistant reply (streaming each token and its text to
  // `callback`), and appends the reply to the history. On any error (template, context overflow,
  // bad config) the conversation is left as it was before the call.
  ChatReply send(const std::string& user_text, const TokenCallback& callback = {});
  // Forgets the conversation and the caches (the system prompt stays).
  void reset();
  // Settings for the following turns (e.g. another temperature); the conversation and caches stay.
  // Validated like the constructor's.
  void set_generation_config(GenerationConfig config);
  const GenerationConfig& generation_config() const { return config_; }

  // The conversation so far: the system message (if any), then user/assistant turns.
  const std::vector<ChatMessage>& history() const { return history_; }
  // Ids the KV caches hold (a prefix of the last rendered conversation + reply).
  const std::vector<int>& cached_ids() const { return cached_ids_; }
  // The conversation as the template renders it (add_generation_prompt=true), and its ids.
  std::string render(const std::vector<ChatMessage>& messages) const;
  std::vector<int> encode(const std::vector<ChatMessage>& messages) const;

 private:
  // Fits `messages` into the context per the overflow policy; returns its ids and dropped exchanges.
  std::vector<int> fit_to_context(std::vector<ChatMessage>& messages, int& dropped) const;

  std::shared_ptr<Model> model_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  GenerationConfig config_;
  ChatSessionOptions options_;
  SpecialTokens special_;
  std::vector<ChatMessage> history_;
  KVCacheList caches_;
  std::vector<int> cached_ids_;
};

}  // namespace mlxgp
