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

  // Calls f(name, member) for each token, in transformers' SPECIAL_TOKENS_ATTRIBUTES order.
  template <class F>
  void for_each(F&& f) {
    for (auto [name, member] : kNamed) f(name, this->*member);
  }
  template <class F>
  void for_each(F&& f) const {
    for (auto [name, member] : kNamed) f(name, this->*member);
  }

 private:
  struct Named {
    const char* name;
    std::string SpecialTokens::* member;
  };
  static constexpr Named kNamed[] = {
      {"bos_token", &SpecialTokens::bos_token},  {"eos_token", &SpecialTokens::eos_token},
      {"unk_token", &SpecialTokens::unk_token},  {"sep_token", &SpecialTokens::sep_token},
      {"pad_token", &SpecialTokens::pad_token},  {"cls_token", &SpecialTokens::cls_token},
      {"mask_token", &SpecialTokens::mask_token}};
};

}  // namespace mlxgp
