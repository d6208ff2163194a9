// Tokenizer::from_gguf: the tokenizer transformers builds from GGUF metadata (tokenizer.ggml.*)
// for a byte-level BPE ("gpt2") vocabulary, per its integrations/gguf byte_level_tokenizer,
// add_gguf_special_tokens and set_split_regex.
#include <set>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "mlxgp/tokenizer.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/impl.h"
#include "tokenizer/load_common.h"
#include "tokenizer/pre_tokenizer.h"

namespace mlxgp {

namespace {

namespace mx = mlx::core;
using Meta = std::unordered_map<std::string, mx::GGUFMetaData>;

const std::string* get_string(const Meta& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return nullptr;
  if (auto* s = std::get_if<std::string>(&it->second)) return s;
  fail("tokenizer", "GGUF metadata '" + key + "' must be a string");
}

const std::vector<std::string>* get_strings(const Meta& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return nullptr;
  if (auto* s = std::get_if<std::vector<std::string>>(&it->second)) return s;
  fail("tokenizer", "GGUF metadata '" + key + "' must be a string array");
}

std::optional<mx::array> get_array(const Meta& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return std::nullopt;
  if (auto* a = std::get_if<mx::array>(&it->second)) {
    auto r = mx::astype(*a, mx::int64);
    r.eval();
    return r;
  }
  fail("tokenizer", "GGUF metadata '" + key + "' must be numeric");
}

std::optional<long long> get_int(const Meta& m, const std::string& key) {
  auto a = get_array(m, key);
  if (!a) return std::nullopt;
  if (a->size() != 1) fail("tokenizer", "GGUF metadata '" + key + "' must be a single number");
  return a->item<int64_t>();
}

// Pre-tokenizer regexes transformers substitutes for known tokenizer.ggml.pre names
// (GGUF_PRE_TOKENIZER_SPLITS); any other name keeps GPT2Tokenizer's ByteLevel.
const char* kLlama3Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kTekkenSplit =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen2Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen35Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kGpt4oSplit =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const char* split_for(const std::string& pre) {
  static const std::unordered_map<std::string, const char*> table = {
      {"llama3", kLlama3Split},     {"llama-v3", kLlama3Split},   {"llama-bpe", kLlama3Split},
      {"falcon3", kLlama3Split},    {"falcon-h1", kLlama3Split},  {"pixtral", kLlama3Split},
      {"midm-2.0", kLlama3Split},   {"lfm2", kLlama3Split},       {"jina-v5-nano", kLlama3Split},
      {"dbrx", kLlama3Split},       {"smaug-bpe", kLlama3Split},  {"tekken", kTekkenSplit},
      {"qwen2", kQwen2Split},       {"deepseek-r1-qwen", kQwen2Split}, {"kormo", kQwen2Split},
      {"f2llmv2", kQwen2Split},     {"megrez", kQwen2Split},      {"qwen35", kQwen35Split},
      {"gpt-4o", kGpt4oSplit},      {"llama4", kGpt4oSplit},      {"kanana2", kGpt4oSplit},
      {"talkie", kGpt4oSplit},      {"minimax-m2", kGpt4oSplit},
  };
  auto it = table.find(pre);
  return it == table.end() ? nullptr : it->second;
}

}  // namespace

std::shared_ptr<Tokenizer> Tokenizer::from_gguf(const Meta& meta) {
  const std::string* model = get_string(meta, "tokenizer.ggml.model");
  if (!model) fail("tokenizer", "GGUF file has no tokenizer (tokenizer.ggml.model missing)");
  if (*model != "gpt2")
    fail("tokenizer", "GGUF tokenizer model '" + *model + "' is not supported (only byte-level BPE 'gpt2')");
  const auto* tokens = get_strings(meta, "tokenizer.ggml.tokens");
  const auto* merges = get_strings(meta, "tokenizer.ggml.merges");
  if (!tokens || tokens->empty()) fail("tokenizer", "GGUF metadata 'tokenizer.ggml.tokens' is missing");
  if (!merges) fail("tokenizer", "GGUF metadata 'tokenizer.ggml.merges' is missing");
  std::vector<int64_t> types;
  if (auto a = get_array(meta, "tokenizer.ggml.token_type")) {
    if (a->size() != tokens->size()) fail("tokenizer", "GGUF token_type and tokens differ in length");
    const int64_t* p = a->data<int64_t>();
    types.assign(p, p + a->size());
  }

  // Tokens not spelled in the byte alphabet are respelled byte by byte (byte_level_tokenizer).
  const auto& table = tok::ByteLevelTable::get();
  tok::Vocab vocab;
  vocab.reserve(tokens->size());
  for (size_t i = 0; i < tokens->size(); ++i) {
    const std::string& t = (*tokens)[i];
    tok::check_token_utf8(t, "GGUF vocabulary");
    if (table.is_spelled(t)) {
      vocab.insert_or_assign(t, static_cast<int>(i));
    } else {
      std::string s;
      table.encode(t, s);
      vocab.insert_or_assign(s, static_cast<int>(i));
    }
  }
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges->size());
  for (const auto& m : *merges) pairs.push_back(tok::split_merge(m));

  auto impl = std::make_unique<Impl>();
  impl->model = std::make_unique<tok::Bpe>(std::move(vocab), pairs, tok::BpeOptions{});
  const auto& v = impl->model->vocab();

  auto token_id = [&](const char* key) -> std::optional<int> {
    auto id = get_int(meta, key);
    if (!id) return std::nullopt;
    if (*id < 0 || *id >= static_cast<long long>(tokens->size()))
      fail("tokenizer", std::string("GGUF metadata '") + key + "' is outside the vocabulary");
    return static_cast<int>(*id);
  };
  std::optional<int> bos = token_id("tokenizer.ggml.bos_token_id");
  std::optional<int> eos = token_id("tokenizer.ggml.eos_token_id");
  std::optional<int> unk = token_id("tokenizer.ggml.unknown_token_id");
  std::optional<int> pad = token_id("tokenizer.ggml.padding_token_id");

  // Special tokens: CONTROL (3) entries spelled in the byte alphabet, plus the bos/eos/unk/pad
  // tokens transformers registers as special; USER_DEFINED (4) entries are plain added tokens.
  std::set<int> seen;
  auto add = [&](const std::string& content, bool special) {
    auto it = v.find(content);
    if (it == v.end() || !seen.insert(it->second).second) return;
    impl->added.push_back({it->second, content, false, false, false, false, special});
  };
  for (size_t i = 0; i < types.size(); ++i)
    if (types[i] == 3 && table.is_spelled((*tokens)[i])) add((*tokens)[i], true);
  for (auto id : {bos, eos, unk, pad})
    if (id) add((*tokens)[*id], true);
  for (size_t i = 0; i < types.size(); ++i)
    if (types[i] == 4) add((*tokens)[i], false);
  // The flag is the file's, default off (GPT2Tokenizer); transformers drops it if bos is unset.
  auto flag = [&](const char* key) { return get_int(meta, key).value_or(0) != 0; };
  impl->post = tok::bos_eos_template(flag("tokenizer.ggml.add_bos_token"), bos, flag("tokenizer.ggml.add_eos_token"), eos);
  impl->finish();

  const std::string* pre = get_string(meta, "tokenizer.ggml.pre");
  const char* split = pre ? split_for(*pre) : nullptr;
  impl->pre_tokenizer = split ? tok::make_split_then_byte_level(split) : tok::make_byte_level(false, true);

  impl->bos = bos;
  impl->eos = eos;
  impl->pad = pad;
  if (const std::string* ct = get_string(meta, "tokenizer.chat_template")) impl->chat_template = *ct;
  return std::make_shared<Tokenizer>(std::move(impl));
}

}  // namespace mlxgp
