// Tokenizer::from_gguf: the tokenizer transformers builds from GGUF metadata (tokenizer.ggml.*)
// for a byte-level BPE ("gpt2") or SentencePiece BPE ("llama") vocabulary, per its
// integrations/gguf byte_level_tokenizer / sentencepiece_tokenizer (+ the phi3 and gemma
// variants), add_gguf_special_tokens and set_split_regex.
#include <algorithm>
#include <set>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "mlxgp/tokenizer.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/impl.h"
#include "tokenizer/load_common.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/utf8.h"

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
      {"llama3", kLlama3Split},       {"llama-v3", kLlama3Split},
      {"llama-bpe", kLlama3Split},    {"falcon3", kLlama3Split},
      {"falcon-h1", kLlama3Split},    {"pixtral", kLlama3Split},
      {"midm-2.0", kLlama3Split},     {"lfm2", kLlama3Split},
      {"jina-v5-nano", kLlama3Split}, {"dbrx", kLlama3Split},
      {"smaug-bpe", kLlama3Split},    {"tekken", kTekkenSplit},
      {"qwen2", kQwen2Split},         {"deepseek-r1-qwen", kQwen2Split},
      {"kormo", kQwen2Split},         {"f2llmv2", kQwen2Split},
      {"megrez", kQwen2Split},        {"qwen35", kQwen35Split},
      {"gpt-4o", kGpt4oSplit},        {"llama4", kGpt4oSplit},
      {"kanana2", kGpt4oSplit},       {"talkie", kGpt4oSplit},
      {"minimax-m2", kGpt4oSplit},
  };
  auto it = table.find(pre);
  return it == table.end() ? nullptr : it->second;
}

// transformers' generate_merges: for each token (first-occurrence order) its splits into two
// vocabulary tokens, ordered by the ids of the halves, then all of them stably sorted by
// (score, length of left, length of right) descending. Lengths are in code points.
std::vector<std::pair<std::string, std::string>> generate_merges(const std::vector<std::string>& tokens,
                                                                 const std::vector<double>& scores,
                                                                 const tok::Vocab& vocab) {
  std::unordered_map<std::string_view, double> score_of;  // last score wins, as dict(zip(...))
  std::vector<std::string_view> order;                    // first-occurrence order
  for (size_t i = 0; i < tokens.size(); ++i) {
    auto [it, fresh] = score_of.insert_or_assign(tokens[i], scores[i]);
    if (fresh) order.push_back(tokens[i]);
  }
  struct Merge {
    std::string_view l, r;
    double score;
    int ll, lr;
  };
  std::vector<Merge> all;
  std::vector<Merge> local;
  for (std::string_view t : order) {
    local.clear();
    size_t i = 0;
    int chars_left = 0, total = 0;
    for (size_t k = 0; k < t.size(); ++total) k += std::max<size_t>(1, tok::utf8_len(static_cast<unsigned char>(t[k])));
    while (i < t.size()) {
      i += tok::utf8_len(static_cast<unsigned char>(t[i]));
      ++chars_left;
      if (i >= t.size()) break;
      std::string_view l = t.substr(0, i), r = t.substr(i);
      if (vocab.find(l) != vocab.end() && vocab.find(r) != vocab.end())
        local.push_back({l, r, score_of[t], chars_left, total - chars_left});
    }
    std::stable_sort(local.begin(), local.end(), [&](const Merge& a, const Merge& b) {
      int al = vocab.find(a.l)->second, bl = vocab.find(b.l)->second;
      if (al != bl) return al < bl;
      return vocab.find(a.r)->second < vocab.find(b.r)->second;
    });
    all.insert(all.end(), local.begin(), local.end());
  }
  std::stable_sort(all.begin(), all.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.ll != b.ll) return a.ll > b.ll;
    return a.lr > b.lr;
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(all.size());
  for (const auto& m : all) out.emplace_back(m.l, m.r);
  return out;
}

// sentencepiece_tokenizer: LlamaTokenizer(vocab, merges) with its defaults (Metaspace with the
// "first" prepend scheme, byte fallback, no unk token, Strip in the decoder); phi3 moves the
// prefix space into a Prepend normalizer; gemma respells all-space tokens as U+2581 runs, takes
// merges ordered by file position and uses GemmaTokenizer's pipeline.
void build_sentencepiece(const Meta& meta, const std::vector<std::string>& raw_tokens,
                         const std::vector<std::string>* merges, Tokenizer::Impl& impl) {
  const std::string* arch = get_string(meta, "general.architecture");
  std::string a = arch ? *arch : "";
  bool gemma = a == "gemma" || a == "gemma2" || a == "gemma3";
  std::vector<std::string> tokens = raw_tokens;
  if (gemma)
    for (auto& t : tokens)
      if (!t.empty() && t.find_first_not_of(' ') == std::string::npos) {
        std::string s;
        for (size_t k = 0; k < t.size(); ++k) s += "\xE2\x96\x81";
        t = s;
      }
  tok::Vocab vocab;
  vocab.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    tok::check_token_utf8(tokens[i], "GGUF vocabulary");
    vocab.insert_or_assign(tokens[i], static_cast<int>(i));
  }
  std::vector<std::pair<std::string, std::string>> pairs;
  if (merges) {
    for (const auto& m : *merges) pairs.push_back(tok::split_merge(m));
  } else {
    std::vector<double> scores(tokens.size());
    if (gemma) {
      for (size_t i = 0; i < tokens.size(); ++i) scores[i] = -static_cast<double>(i);
    } else {
      auto sc = get_array(meta, "tokenizer.ggml.scores");
      if (!sc) fail("tokenizer", "GGUF 'llama' vocabulary has neither merges nor scores");
      auto f = mx::astype(*sc, mx::float64, mx::Device::cpu);
      f.eval();
      if (f.size() != tokens.size()) fail("tokenizer", "GGUF scores and tokens differ in length");
      for (size_t i = 0; i < tokens.size(); ++i) scores[i] = f.data<double>()[i];
    }
    pairs = generate_merges(tokens, scores, vocab);
  }
  tok::BpeOptions opts;
  opts.byte_fallback = true;
  opts.fuse_unk = true;
  if (gemma) {
    if (auto it = vocab.find("<unk>"); it != vocab.end()) opts.unk_id = it->second;
  }
  impl.model = std::make_unique<tok::Bpe>(std::move(vocab), pairs, opts);
  using json = nlohmann::json;
  json replace_dec = json::parse(R"({"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "})");
  json dec = {{"type", "Sequence"}, {"decoders", {replace_dec, {{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  if (gemma) {
    impl.normalizer =
        tok::make_normalizer(json::parse(R"({"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"})"));
    impl.pre_tokenizer = tok::make_pre_tokenizer(json::parse(
        R"({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false})"));
  } else {
    dec["decoders"].push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    if (a == "phi3") {
      impl.normalizer = tok::make_normalizer(json::parse(
          R"({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
              {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]})"));
    } else {
      impl.pre_tokenizer = tok::make_pre_tokenizer(
          json::parse(R"({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": false})"));
    }
  }
  impl.decoder = tok::make_decoder(dec);
}

// llama.cpp's gemma4 vocabulary (Gemma 4's tokenizer.ggml.model "gemma4": a BPE vocabulary with its GEMMA4 pre-type):
// spaces escaped to U+2581, the text split into runs of newlines and runs of anything else ([^\n]+|[\n]+), merges in
// rank order over UTF-8 characters (no byte alphabet), a piece without a token as its <0xNN> byte tokens, a run of
// newlines that is itself a token kept whole (llama.cpp's fix for Gemma 4 in its BPE session).
void build_gemma4(const std::vector<std::string>& tokens, const std::vector<std::string>& merges,
                  Tokenizer::Impl& impl) {
  tok::Vocab vocab;
  vocab.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    tok::check_token_utf8(tokens[i], "GGUF vocabulary");
    vocab.insert_or_assign(tokens[i], static_cast<int>(i));  // (a repeated spelling: the later id, as llama.cpp)
  }
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges.size());
  for (const auto& m : merges) pairs.push_back(tok::split_merge(m));
  tok::BpeOptions opts;
  opts.byte_fallback = true;
  opts.whole_newline_runs = true;
  impl.model = std::make_unique<tok::Bpe>(std::move(vocab), pairs, opts);
  using json = nlohmann::json;
  impl.normalizer =
      tok::make_normalizer(json::parse(R"({"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"})"));
  impl.pre_tokenizer = tok::make_pre_tokenizer(json::parse(
      R"({"type": "Split", "pattern": {"Regex": "[^\\n]+|[\\n]+"}, "behavior": "Isolated", "invert": false})"));
  json replace_dec = json::parse(R"({"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "})");
  impl.decoder = tok::make_decoder(
      {{"type", "Sequence"}, {"decoders", {replace_dec, {{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}});
}

}  // namespace

std::shared_ptr<Tokenizer> Tokenizer::from_gguf(const Meta& meta) {
  const std::string* model = get_string(meta, "tokenizer.ggml.model");
  if (!model) fail("tokenizer", "GGUF file has no tokenizer (tokenizer.ggml.model missing)");
  if (*model != "gpt2" && *model != "llama" && *model != "gemma4")
    fail("tokenizer", "GGUF tokenizer model '" + *model + "' is not supported (only 'gpt2', 'llama' and 'gemma4')");
  const bool gemma4 = *model == "gemma4";
  const bool spm = *model == "llama", byte_level = *model == "gpt2";
  const auto* tokens = get_strings(meta, "tokenizer.ggml.tokens");
  const auto* merges = get_strings(meta, "tokenizer.ggml.merges");
  if (!tokens || tokens->empty()) fail("tokenizer", "GGUF metadata 'tokenizer.ggml.tokens' is missing");
  if (!merges && !spm) fail("tokenizer", "GGUF metadata 'tokenizer.ggml.merges' is missing");  // (gpt2, gemma4)
  std::vector<int64_t> types;
  if (auto a = get_array(meta, "tokenizer.ggml.token_type")) {
    if (a->size() != tokens->size()) fail("tokenizer", "GGUF token_type and tokens differ in length");
    const int64_t* p = a->data<int64_t>();
    types.assign(p, p + a->size());
  }

  auto impl = std::make_unique<Impl>();
  const auto& table = tok::ByteLevelTable::get();
  if (spm) {
    build_sentencepiece(meta, *tokens, merges, *impl);
  } else if (gemma4) {
    build_gemma4(*tokens, *merges, *impl);
  } else {
    // Tokens not spelled in the byte alphabet are respelled byte by byte (byte_level_tokenizer).
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
    impl->model = std::make_unique<tok::Bpe>(std::move(vocab), pairs, tok::BpeOptions{});
    impl->decoder = tok::make_decoder(nlohmann::json{{"type", "ByteLevel"}});
  }
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

  // Special tokens: CONTROL (3) entries (for gpt2: if spelled in the byte alphabet), plus the bos/eos/unk/pad
  // tokens transformers registers as special; USER_DEFINED (4) entries are plain added tokens.
  std::set<int> seen;
  auto add = [&](const std::string& content, bool special) {
    auto it = v.find(content);
    if (it == v.end() || !seen.insert(it->second).second) return;
    impl->added.push_back({it->second, content, false, false, false, false, special});
  };
  for (size_t i = 0; i < types.size(); ++i)
    if (types[i] == 3 && (!byte_level || table.is_spelled((*tokens)[i]))) add((*tokens)[i], true);
  for (auto id : {bos, eos, unk, pad})
    if (id) add((*tokens)[*id], true);
  for (size_t i = 0; i < types.size(); ++i)
    if (types[i] == 4) add((*tokens)[i], false);
  // The flag is the file's, default off for gpt2 and on for llama (get_gguf_tokenizer); transformers drops it if bos
  // is unset. llama.cpp's gemma4 pre-type adds BOS whatever the file says.
  auto flag = [&](const char* key, bool def) { return get_int(meta, key).value_or(def ? 1 : 0) != 0; };
  impl->post = tok::bos_eos_template(gemma4 || flag("tokenizer.ggml.add_bos_token", spm), bos,
                                     flag("tokenizer.ggml.add_eos_token", false), eos);
  impl->finish();

  const std::string* pre = get_string(meta, "tokenizer.ggml.pre");
  const char* split = pre && !gemma4 ? split_for(*pre) : nullptr;
  if (split) impl->pre_tokenizer = tok::make_split_then_byte_level(split);
  else if (byte_level) impl->pre_tokenizer = tok::make_byte_level(false, true);

  impl->bos = bos;
  impl->eos = eos;
  impl->pad = pad;
  // transformers (get_gguf_tokenizer): the named special tokens are the tokens of these ids.
  auto text_of = [&](std::optional<int> id) { return id ? (*tokens)[*id] : std::string(); };
  impl->special_tokens = {text_of(bos), text_of(eos), text_of(unk), text_of(pad)};
  if (const std::string* ct = get_string(meta, "tokenizer.chat_template")) impl->chat_template = *ct;
  return std::make_shared<Tokenizer>(std::move(impl));
}

}  // namespace mlxgp
