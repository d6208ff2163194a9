// Tokenizer::from_files: tokenizer.json (+ tokenizer_config.json) as written by HF tokenizers.
// Only byte-level BPE pipelines are supported; anything else is an error naming the component.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "mlxgp/tokenizer.h"
#include "tokenizer/impl.h"
#include "tokenizer/load_common.h"

namespace mlxgp {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr long long kMaxVocabId = 1 << 22;

json read_json(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("tokenizer", std::string("cannot open ") + what + " '" + path + "'");
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    fail("tokenizer", std::string(what) + " '" + path + "' is not valid JSON: " + e.what());
  }
}

bool flag(const json& j, const char* key, bool def, const char* where) {
  if (!j.contains(key) || j[key].is_null()) return def;
  if (!j[key].is_boolean()) fail("tokenizer", std::string(where) + " field '" + key + "' must be a boolean");
  return j[key].get<bool>();
}

std::string type_of(const json& j, const char* where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    fail("tokenizer", std::string(where) + " must be an object with a string 'type'");
  return j["type"].get<std::string>();
}

std::unique_ptr<tok::Bpe> load_model(const json& m) {
  if (!m.is_object()) fail("tokenizer", "tokenizer.json has no 'model' object");
  std::string type = m.value("type", std::string("BPE"));
  if (type != "BPE") fail("tokenizer", "unsupported model type '" + type + "' (only BPE)");
  if (m.contains("dropout") && !m["dropout"].is_null() && !(m["dropout"].is_number() && m["dropout"].get<double>() == 0.0))
    fail("tokenizer", "unsupported BPE option: dropout");
  if (flag(m, "byte_fallback", false, "model")) fail("tokenizer", "unsupported BPE option: byte_fallback");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(key) && !m[key].is_null() && !(m[key].is_string() && m[key].get<std::string>().empty()))
      fail("tokenizer", std::string("unsupported BPE option: ") + key);
  if (!m.contains("vocab") || !m["vocab"].is_object()) fail("tokenizer", "BPE model has no 'vocab' object");
  tok::Vocab vocab;
  vocab.reserve(m["vocab"].size());
  for (auto& [k, v] : m["vocab"].items()) {
    if (!v.is_number_integer() || v.get<long long>() < 0)
      fail("tokenizer", "BPE vocab entry '" + k + "' must have a non-negative integer id");
    // Ids index a dense table, so an absurd id must not turn into an absurd allocation.
    if (v.get<long long>() >= kMaxVocabId)
      fail("tokenizer", "BPE vocab entry '" + k + "' has id " + std::to_string(v.get<long long>()) +
                            ", beyond the supported " + std::to_string(kMaxVocabId));
    tok::check_token_utf8(k, "BPE vocab");
    vocab.insert_or_assign(k, v.get<int>());
  }
  std::vector<std::pair<std::string, std::string>> merges;
  if (m.contains("merges") && !m["merges"].is_null()) {
    if (!m["merges"].is_array()) fail("tokenizer", "BPE 'merges' must be an array");
    merges.reserve(m["merges"].size());
    for (const auto& e : m["merges"]) {
      if (e.is_string()) {
        merges.push_back(tok::split_merge(e.get<std::string>()));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      } else {
        fail("tokenizer", "BPE merge entries must be \"a b\" strings or [a, b] pairs");
      }
    }
  }
  tok::BpeOptions opts;
  opts.ignore_merges = flag(m, "ignore_merges", false, "model");
  opts.fuse_unk = flag(m, "fuse_unk", false, "model");
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    auto it = vocab.find(m["unk_token"].get<std::string>());
    if (it != vocab.end()) opts.unk_id = it->second;
  }
  return std::make_unique<tok::Bpe>(std::move(vocab), merges, opts);
}

Tokenizer::Impl::Normalizer load_normalizer(const json& j) {
  if (j.is_null()) return Tokenizer::Impl::Normalizer::None;
  std::string type = type_of(j, "normalizer");
  if (type == "NFC") return Tokenizer::Impl::Normalizer::NFC;
  if (type == "Sequence" && j.contains("normalizers") && j["normalizers"].is_array()) {
    auto n = Tokenizer::Impl::Normalizer::None;
    for (const auto& item : j["normalizers"]) {
      auto k = load_normalizer(item);
      if (k != Tokenizer::Impl::Normalizer::None) {
        if (n != Tokenizer::Impl::Normalizer::None) fail("tokenizer", "unsupported normalizer: Sequence of several");
        n = k;
      }
    }
    return n;
  }
  fail("tokenizer", "unsupported normalizer '" + type + "'");
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
      if (!id.is_number_integer()) fail("tokenizer", "TemplateProcessing special token ids must be integers");
      dst.push_back(id.get<int>());
    }
  }
  if (!seen_sequence) fail("tokenizer", "TemplateProcessing 'single' has no Sequence");
  t = out;
}

bool load_decoder(const json& j) {
  if (j.is_null()) fail("tokenizer", "unsupported decoder: null (only ByteLevel)");
  std::string type = type_of(j, "decoder");
  if (type == "ByteLevel") return true;
  fail("tokenizer", "unsupported decoder '" + type + "' (only ByteLevel)");
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

}  // namespace

std::shared_ptr<Tokenizer> Tokenizer::from_files(const std::string& tokenizer_json_path,
                                                 const std::string& tokenizer_config_path) {
  json j = read_json(tokenizer_json_path, "tokenizer.json");
  if (!j.is_object()) fail("tokenizer", "tokenizer.json must hold a JSON object");
  auto impl = std::make_unique<Impl>();
  try {
    impl->model = load_model(j.value("model", json()));
    impl->normalizer = load_normalizer(j.value("normalizer", json()));
    impl->pre_tokenizer = tok::make_pre_tokenizer(j.value("pre_tokenizer", json()));
    load_post_processor(j.value("post_processor", json()), impl->post);
    impl->byte_level_decoder = load_decoder(j.value("decoder", json()));
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
  } catch (const nlohmann::json::exception& e) {
    fail("tokenizer", std::string("malformed tokenizer.json: ") + e.what());
  }
  impl->finish();

  json cfg = json::object();
  std::string cfg_path = tokenizer_config_path;
  if (cfg_path.empty()) {
    auto sibling = fs::path(tokenizer_json_path).parent_path() / "tokenizer_config.json";
    if (fs::exists(sibling)) cfg_path = sibling.string();
  }
  if (!cfg_path.empty()) cfg = read_json(cfg_path, "tokenizer_config.json");
  if (!cfg.is_object()) fail("tokenizer", "tokenizer_config.json must hold a JSON object");
  Tokenizer tmp(std::move(impl));  // token_to_id needs a Tokenizer
  auto id_of = [&](const char* key) -> std::optional<int> {
    auto s = token_string(cfg, key);
    return s ? tmp.token_to_id(*s) : std::nullopt;
  };
  auto& im = *tmp.impl_;
  im.bos = id_of("bos_token");
  im.eos = id_of("eos_token");
  im.pad = id_of("pad_token");
  // add_bos_token / add_eos_token in the config are ignored: with a tokenizer.json present,
  // transformers drops them and keeps the file's post-processor.
  // A chat_template.jinja file takes priority over the config's chat_template (transformers).
  auto jinja = fs::path(cfg_path.empty() ? tokenizer_json_path : cfg_path).parent_path() / "chat_template.jinja";
  if (fs::exists(jinja)) {
    std::ifstream f(jinja, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    im.chat_template = ss.str();
  } else if (cfg.contains("chat_template")) {
    im.chat_template = tok::pick_chat_template(cfg["chat_template"]);
  }
  return std::make_shared<Tokenizer>(std::move(tmp.impl_));
}

}  // namespace mlxgp
