// Text generation: a step-wise Generator (prefill, then one token per step, KV-cached) that
// streaming, chat and speculative decoding reuse, and generate(), the one-call loop on top of it.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>

#include "mlxgp/generation_config.h"
#include "mlxgp/logits_processor.h"
#include "mlxgp/model.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp {

enum class FinishReason { None, Eos, Length, StopString, MaxTime };
// "eos" | "length" | "stop_string" | "max_time" ("" for None).
std::string to_string(FinishReason reason);

struct GeneratorOptions {
  int prefill_chunk_size = 512;  // long prompts are prefilled in chunks of this many tokens
};

// Fills the settings HF takes from the model when the generation config leaves them unset
// (GenerationConfig.from_model_config): eos/bos/pad token ids from the model config, then the tokenizer.
GenerationConfig with_model_defaults(GenerationConfig config, const ModelConfig& model_config,
                                     const Tokenizer* tokenizer);

class Generator {
 public:
  // `config` is validated here (throws [config]). The model must outlive the generator.
  Generator(Model& model, GenerationConfig config, GeneratorOptions options = {});

  // Checks the prompt (ids inside the vocabulary, shorter than the context), prefills the KV cache
  // in chunks and schedules the first token. Throws [generate] on bad input.
  void prefill(const std::vector<int>& prompt_ids);
  // Continues from caches that already hold the first caches[0]->offset() tokens of `prompt_ids`
  // (multi-turn chat, saved prompt caches): only the rest is prefilled, while processors still see the
  // whole prompt. When the caches hold all of it, the last position is trimmed and recomputed.
  // Throws [generate] when the caches hold more than the prompt or cannot be trimmed.
  void prefill(const std::vector<int>& prompt_ids, KVCacheList caches);
  // Returns the next token, waiting only for it (the step after it is already queued, as in
  // mlx-lm's generate_step). Call only while !done().
  int step();

  bool done() const { return finish_ != FinishReason::None; }
  FinishReason finish_reason() const { return finish_; }
  const std::vector<int>& prompt() const { return prompt_; }
  const std::vector<int>& generated() const { return generated_; }
  // Tokens this generation may produce at most (max_new_tokens / max_length / context limit).
  int token_budget() const { return budget_; }
  const GenerationConfig& config() const { return config_; }
  // The KV caches. They hold the first cached_tokens() of prompt() + generated(): the final token is
  // in them only when the step after it was already queued (take them to continue a conversation).
  KVCacheList& caches() { return caches_; }
  int cached_tokens() const { return caches_.empty() ? 0 : caches_[0]->offset(); }

  double prefill_seconds() const { return prefill_seconds_; }  // prefill start -> first token known
  double decode_seconds() const { return decode_seconds_; }    // first token -> last token known

 private:
  mx::array next_token(const mx::array& logits);  // logits [1, V] -> token [1] (lazy)
  mx::array forward_token(const mx::array& token);  // token [1] -> next token [1] (lazy)
  mx::array all_ids() const;

  Model& model_;
  GenerationConfig config_;
  GeneratorOptions options_;
  LogitsProcessorList processors_;
  KVCacheList caches_;
  mx::array key_;
  std::optional<mx::array> pending_;  // the next token, computing
  std::vector<mx::array> history_;    // prompt then one [1, 1] array per generated token (only if needed)
  std::vector<int> prompt_, generated_;
  std::vector<int> eos_;
  int budget_ = 0;
  FinishReason finish_ = FinishReason::None;
  std::chrono::steady_clock::time_point start_, first_token_;
  double prefill_seconds_ = 0, decode_seconds_ = 0;
};

struct GeneratedSequence {
  std::vector<int> token_ids;  // generated tokens only (a final EOS token included, as in HF)
  std::string text;            // decode of token_ids, less a final special EOS token (as mlx-lm prints it)
  FinishReason finish_reason = FinishReason::None;
};

struct GenerationStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_tokens_per_s = 0;  // prompt tokens / time to the first token
  double decode_tokens_per_s = 0;   // tokens after the first / time after the first
  size_t peak_memory_bytes = 0;     // mx::get_peak_memory() over the run
};

struct GenerationResult {
  std::vector<int> prompt_token_ids;
  std::vector<GeneratedSequence> sequences;
  GenerationStats stats;
};

// Called with each token and the text it completes (complete UTF-8 only; may be empty).
using TokenCallback = std::function<void(int token, const std::string& text)>;

// Runs a full generation. `tokenizer` may be null (text stays empty). Config defaults missing from
// `config` are taken from the model (with_model_defaults).
GenerationResult generate(Model& model, std::shared_ptr<const Tokenizer> tokenizer,
                          const std::vector<int>& prompt_ids, const GenerationConfig& config,
                          const TokenCallback& callback = {}, GeneratorOptions options = {});

}  // namespace mlxgp
