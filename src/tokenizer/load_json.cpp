// Tokenizer::from_files: tokenizer.json (+ tokenizer_config.json) as written by HF tokenizers.
// Unsupported components are errors naming the component, never a silent fallback.
#include <cstdint>
#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "mlxgp/paths.h"
#include "mlxgp/tokenizer.h"
#include "tokenizer/impl.h"
#include "tokenizer/load_common.h"

namespace mlxgp {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

json read_json(const std::string& path, const char* what) {
  reject_directory(path, "tokenizer", what);
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("tokenizer", std::string("cannot open ") + what + " '" + path + "'");
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    fail("tokenizer", std::string(what) + " '" + path + "' is not valid JSON: " + e.what());
  }
}

using tok::flag;

std::string type_of(const json& j, const char* where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail("tokenizer", std::string(where) + " must be an object with a string 'type'");
  return j["type"].get<std::string>();
}

// TemplateProcessing's "single" template, or nothing for ByteLevel / null.
void load_post_processor(const json& j, Tokenizer::Impl::Template& t) {
  if (j.is_null()) return;
  std::string type = type_of(j, "post_processor");
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array())
      fail("tokenizer", "Sequence post_processor needs a 'processors' array");
    for (const auto& p : j["processors"]) load_post_processor(p, t);
    return;
  }
  if (type != "TemplateProcessing") fail("tokenizer", "unsupported post_processor '" + type + "'");
  if (!j.contains("single") || !j["single"].is_array())
    fail("tokenizer", "TemplateProcessing post_processor needs a 'single' array");
  const json specials = j.value("special_tokens", json::object());
  bool seen_sequence = false;
  Tokenizer::Impl::Template out;
  for (const auto& item : j["single"]) {
    if (item.contains("Sequence")) {
      if (seen_sequence) fail("tokenizer", "TemplateProcessing 'single' names the sequence twice");
      seen_sequence = true;
      continue;
    }
    if (!item.contains("SpecialToken") || !item["SpecialToken"].contains("id"))
      fail("tokenizer", "TemplateProcessing item must be a Sequence or a SpecialToken");
    std::string name = item["SpecialToken"]["id"].get<std::string>();
    if (!specials.contains(name) || !specials[name].contains("ids") || !specials[name]["ids"].is_array())
      fail("tokenizer", "TemplateProcessing special token '" + name + "' has no ids");
    auto& dst = seen_sequence ? out.suffix : out.prefix;
    for (const auto& id : specials[name]["ids"]) {
      if (!id.is_number_integer() || id.get<long long>() < 0 || id.get<long long>() > INT32_MAX)
        fail("tokenizer", "TemplateProcessing special token ids must be integers in [0, 2^31)");
      dst.push_back(static_cast<int>(id.get<long long>()));
    }
  }
  if (!seen_sequence) fail("tokenizer", "TemplateProcessing 'single' has no Sequence");
  t = out;
}

std::optional<std::string> token_string(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

// tokenizers re-derives added token ids on load rather than trusting the file (it only warns):
// an existing added token or model token keeps its id, a new one goes after the vocabulary.
int added_token_id(const Tokenizer::Impl& impl, const std::string& content) {
  int max_added = -1;
  for (const auto& a : impl.added) {
    if (a.content == content) return a.id;
    max_added = std::max(max_added, a.id);
  }
  const auto& vocab = impl.model->vocab();
  if (auto it = vocab.find(content); it != vocab.end()) return it->second;
  int n = static_cast<int>(vocab.size());
  if (max_added < 0) return n;
  return (max_added >= n || n == 0) ? max_added + 1 : n;
}

// transformers 5 tokenizer classes that rebuild the pipeline in __init__ from the file's vocabulary
// and merges (models/llama/tokenization_llama.py, models/gemma/tokenization_gemma.py). The file's
// post-processor is kept (from_pretrained drops add_bos/eos_token when a tokenizer.json exists).
struct ClassPipeline {
  tok::BpeOverride bpe;
  json normalizer, pre_tokenizer, decoder;
  json default_specials = json::object();  // the class's default named special tokens
};

std::optional<ClassPipeline> class_pipeline(const json& cfg) {
  std::string cls = cfg.contains("tokenizer_class") && cfg["tokenizer_class"].is_string()
                        ? cfg["tokenizer_class"].get<std::string>()
                        : "";
  ClassPipeline p;
  p.bpe.active = true;
  const json replace_dec = json::parse(R"({"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "})");
  p.decoder = {{"type", "Sequence"}, {"decoders", {replace_dec, {{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}};
  if (cls == "LlamaTokenizer" || cls == "LlamaTokenizerFast") {
    bool prefix = !cfg.contains("add_prefix_space") || cfg["add_prefix_space"].is_null() ||
                  flag(cfg, "add_prefix_space", true, "tokenizer_config.json");
    bool legacy = flag(cfg, "legacy", false, "tokenizer_config.json");  // the class default is False
    p.bpe.keep_unk = false;
    p.normalizer = nullptr;
    p.pre_tokenizer = {{"type", "Metaspace"},
                       {"replacement", "\u2581"},
                       {"split", false},
                       {"prepend_scheme", prefix ? (legacy ? "always" : "first") : "never"}};
    if (prefix) p.decoder["decoders"].push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    p.default_specials = {{"unk_token", "<unk>"}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
  } else if (cls == "GemmaTokenizer" || cls == "GemmaTokenizerFast") {
    p.normalizer = json::parse(R"({"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"})");
    p.pre_tokenizer = json::parse(
        R"({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false})");
    p.default_specials = {{"unk_token", "<unk>"},
                          {"bos_token", "<bos>"},
                          {"eos_token", "<eos>"},
                          {"pad_token", "<pad>"},
                          {"mask_token", "<mask>"}};
  } else if (cls == "GPT2Tokenizer" || cls == "GPT2TokenizerFast" || cls == "Qwen2Tokenizer" ||
             cls == "Qwen2TokenizerFast") {
    // Byte-level BPE without unk or byte fallback; add_prefix_space reaches the ByteLevel pre-tokenizer.
    bool gpt2 = cls.rfind("GPT2", 0) == 0;
    bool prefix = flag(cfg, "add_prefix_space", false, "tokenizer_config.json");
    p.bpe.byte_fallback = false;
    p.bpe.fuse_unk = false;
    p.bpe.keep_unk = false;
    p.decoder = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    json byte_level = {
        {"type", "ByteLevel"}, {"add_prefix_space", prefix}, {"trim_offsets", true}, {"use_regex", gpt2}};
    if (gpt2) {
      p.normalizer = nullptr;
      p.pre_tokenizer = byte_level;
      p.default_specials = {
          {"unk_token", "<|endoftext|>"}, {"bos_token", "<|endoftext|>"}, {"eos_token", "<|endoftext|>"}};
    } else {
      p.normalizer = {{"type", "NFC"}};
      // models/qwen2/tokenization_qwen2.py PRETOKENIZE_REGEX
      const char* regex =
          R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
      p.pre_tokenizer = {
          {"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
            byte_level}}};
      p.default_specials = {
          {"unk_token", "<|endoftext|>"}, {"eos_token", "<|endoftext|>"}, {"pad_token", "<|endoftext|>"}};
    }
  } else {
    return std::nullopt;
  }
  return p;
}

// transformers' special_tokens_map: each named token the config sets (or the class defaults when the key is
// absent; an explicit null unsets it).
SpecialTokens special_tokens_map(const json& cfg, const json& defaults) {
  SpecialTokens st;
  st.for_each([&](const char* key, std::string& dst) {
    if (auto s = token_string(cfg, key)) dst = *s;
    else if (!cfg.contains(key) && defaults.contains(key)) dst = defaults[key].get<std::string>();
  });
  return st;
}

// transformers registers the named special tokens (bos/eos/unk/sep/pad/cls/mask, the class's
// defaults for absent keys, and additional/extra special tokens) as special added tokens: an
// existing added token becomes special, any other one is added (matched whole in the text).
void add_named_specials(const json& cfg, const json& defaults, Tokenizer::Impl& impl) {
  std::vector<std::string> names;
  special_tokens_map(cfg, defaults).for_each([&](const char*, const std::string& v) {
    if (!v.empty()) names.push_back(v);
  });
  for (const char* key : {"additional_special_tokens", "extra_special_tokens"})
    if (cfg.contains(key) && cfg[key].is_array())
      for (const auto& t : cfg[key]) {
        if (t.is_string()) names.push_back(t.get<std::string>());
        else if (t.is_object() && t.contains("content") && t["content"].is_string())
          names.push_back(t["content"].get<std::string>());
      }
  for (const auto& n : names) {
    if (n.empty()) continue;
    auto it =
        std::find_if(impl.added.begin(), impl.added.end(), [&](const tok::AddedToken& a) { return a.content == n; });
    if (it != impl.added.end()) {
      it->special = true;
      continue;
    }
    tok::check_token_utf8(n, "special token");
    tok::AddedToken t;
    t.content = n;
    t.id = added_token_id(impl, n);
    t.special = true;
    impl.added.push_back(std::move(t));
  }
}

}  // namespace

std::shared_ptr<Tokenizer> Tokenizer::from_files(const std::string& tokenizer_json_path,
                                                 const std::string& tokenizer_config_path) {
  json j = read_json(tokenizer_json_path, "tokenizer.json");
  if (!j.is_object()) fail("tokenizer", "tokenizer.json must hold a JSON object");
  json cfg = json::object();
  std::string cfg_path = tokenizer_config_path;
  if (cfg_path.empty()) {
    auto sibling = fs::path(tokenizer_json_path).parent_path() / "tokenizer_config.json";
    if (fs::exists(sibling)) cfg_path = sibling.string();
  }
  if (!cfg_path.empty()) cfg = read_json(cfg_path, "tokenizer_config.json");
  if (!cfg.is_object()) fail("tokenizer", "tokenizer_config.json must hold a JSON object");
  // tokenizers applies a file's truncation / padding to every encode; transformers (a tokenizer_config.json
  // beside it) turns them off per call, which is what the tokenizer here does. A bare file: refused.
  for (const char* key : {"truncation", "padding"})
    if (cfg_path.empty() && j.contains(key) && !j[key].is_null())
      fail("tokenizer", std::string("tokenizer.json sets '") + key +
                            "', which tokenizers applies to every encode and mlxgp does not: set it to null, or "
                            "put a tokenizer_config.json beside it (transformers turns it off)");
  std::optional<ClassPipeline> cls;
  try {
    cls = class_pipeline(cfg);
    // The class pipelines are for BPE files; anything else keeps the file's own pipeline.
    if (cls &&
        !(j.contains("model") && j["model"].is_object() && j["model"].value("type", std::string("BPE")) == "BPE"))
      cls.reset();
  } catch (const json::exception& e) {
    fail("tokenizer", std::string("malformed tokenizer_config.json: ") + e.what());
  }

  auto impl = std::make_unique<Impl>();
  try {
    impl->model = tok::load_model_json(j.value("model", json()), cls ? cls->bpe : tok::BpeOverride{});
    impl->normalizer = tok::make_normalizer(cls ? cls->normalizer : j.value("normalizer", json()));
    impl->pre_tokenizer = tok::make_pre_tokenizer(cls ? cls->pre_tokenizer : j.value("pre_tokenizer", json()));
    load_post_processor(j.value("post_processor", json()), impl->post);
    impl->decoder = tok::make_decoder(cls ? cls->decoder : j.value("decoder", json()));
    if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
      if (!j["added_tokens"].is_array()) fail("tokenizer", "'added_tokens' must be an array");
      for (const auto& a : j["added_tokens"]) {
        if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
            !a["content"].is_string())
          fail("tokenizer", "each added token needs an integer 'id' and a string 'content'");
        tok::AddedToken t;
        t.content = a["content"].get<std::string>();
        t.id = added_token_id(*impl, t.content);
        tok::check_token_utf8(t.content, "added token");
        t.single_word = flag(a, "single_word", false, "added token");
        t.lstrip = flag(a, "lstrip", false, "added token");
        t.rstrip = flag(a, "rstrip", false, "added token");
        t.special = flag(a, "special", false, "added token");
        t.normalized = flag(a, "normalized", !t.special, "added token");
        impl->added.push_back(std::move(t));
      }
    }
    if (!cfg_path.empty()) add_named_specials(cfg, cls ? cls->default_specials : json::object(), *impl);
  } catch (const nlohmann::json::exception& e) {
    fail("tokenizer", std::string("malformed tokenizer.json: ") + e.what());
  }
  impl->finish();

  Tokenizer tmp(std::move(impl));  // token_to_id needs a Tokenizer
  auto id_of = [&](const char* key) -> std::optional<int> {
    auto s = token_string(cfg, key);
    return s ? tmp.token_to_id(*s) : std::nullopt;
  };
  auto& im = *tmp.impl_;
  im.bos = id_of("bos_token");
  im.eos = id_of("eos_token");
  im.pad = id_of("pad_token");
  im.special_tokens = special_tokens_map(cfg, cls ? cls->default_specials : json::object());
  im.split_special_tokens = flag(cfg, "split_special_tokens", false, "tokenizer_config.json");
  tok::load_chat_templates(im, fs::path(cfg_path.empty() ? tokenizer_json_path : cfg_path).parent_path(), cfg);
  return std::make_shared<Tokenizer>(std::move(tmp.impl_));
}

}  // namespace mlxgp
