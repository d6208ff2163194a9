// The named special tokens a chat template may read: transformers' tokenizer.special_tokens_map, which
// apply_chat_template passes to every template. Shared by the tokenizer (which knows them) and the chat
// engine (which renders them), so neither module depends on the other.
#pragma once

#include <string>

namespace mlxgp {

// Empty = not set (the template sees that name as undefined, like a tokenizer without that token).
struct SpecialTokens {
  std::string bos_token;
  std::string eos_token;
  std::string unk_token;
  std::string pad_token;
  std::string sep_token;
  std::string cls_token;
  std::string mask_token;
};

}  // namespace mlxgp
