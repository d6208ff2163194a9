// Small helpers shared by the tokenizer.json and GGUF loaders.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/impl.h"

namespace mlxgp::tok {

// A boolean field of a JSON object (absent or null: def); throws [tokenizer] naming `where`.
bool flag(const nlohmann::json& j, const char* key, bool def, const char* where);

// What a transformers tokenizer class with its own __init__ imposes on the file's BPE model.
struct BpeOverride {
  bool active = false;
  bool byte_fallback = true, fuse_unk = true;
  bool keep_unk = true;  // LlamaTokenizer builds its BPE without unk_token
};
// The tokenizer.json "model" (BPE or Unigram). Throws [tokenizer] naming unsupported options.
std::unique_ptr<Model> load_model_json(const nlohmann::json& m, const BpeOverride& ov);

// "a b" -> {"a", "b"}; throws [tokenizer] unless there is exactly one space.
std::pair<std::string, std::string> split_merge(const std::string& merge);
// Throws [tokenizer] if a vocabulary entry is not valid UTF-8.
void check_token_utf8(const std::string& token, const char* where);
// transformers' update_post_processor: "<bos> $A <eos>" with the flags that are on.
Tokenizer::Impl::Template bos_eos_template(bool add_bos, std::optional<int> bos, bool add_eos, std::optional<int> eos);
// The chat templates of a tokenizer folder (src/tokenizer/chat_templates.cpp): its .jinja files, else the
// config's chat_template. Throws [tokenizer] on a malformed chat_template value.
void load_chat_templates(Tokenizer::Impl& impl, const std::filesystem::path& folder, const nlohmann::json& cfg);

}  // namespace mlxgp::tok
