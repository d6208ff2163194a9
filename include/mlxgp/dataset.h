// Training data: .txt (one document, tokenized and cut into seq_len + 1 blocks, as language-model
// packing does) or .jsonl (one example per line: {"text": ...}, {"prompt": ..., "completion": ...}
// with the loss on the completion only, or {"input_ids": [...]}) -> right-padded batches.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mlxgp/loss.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp {

struct Example {
  std::vector<int> ids;
  std::vector<uint8_t> target;  // 1 where the token is a training target (prompt tokens are 0)
};

struct DatasetOptions {
  int seq_len = 512;    // tokens per example (txt blocks hold seq_len tokens)
  int vocab_size = 0;   // ids must lie below it (0: not checked)
  int max_context = 0;  // the model's context: longer examples are an error (0: not checked)
  bool add_special_tokens = true;
};

// Throws [data] naming the file and line: missing/empty file, malformed JSON, unknown fields, empty
// examples, ids outside the vocabulary, examples longer than seq_len or the context.
std::vector<Example> load_dataset(const std::string& path, const Tokenizer* tokenizer, const DatasetOptions& options);

// Examples [begin, begin + n) (wrapping around) as one right-padded batch; pad positions are not targets
// and are 0 in its attention_mask.
Batch make_batch(const std::vector<Example>& examples, const std::vector<int>& order, size_t begin, int n, int pad_id);

// A deterministic order for epoch `epoch` (seeded shuffle; identity when !shuffle).
std::vector<int> epoch_order(size_t n, uint64_t seed, int epoch, bool shuffle);

}  // namespace mlxgp
