// The "model" section of tokenizer.json: BPE (byte-level or with byte fallback) and Unigram.
#include <charconv>
#include <cmath>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/load_common.h"
#include "tokenizer/unigram.h"

namespace mlxgp::tok {

namespace {

using json = nlohmann::json;

// Ids index a dense table, so an absurd id must not turn into an absurd allocation.
constexpr long long kMaxVocabId = 1 << 22;

// tokenizers reads tokenizer.json with serde_json, whose default float parsing (no
// float_roundtrip) computes (significand as f64) / 10^k: up to 1 ulp away from the correctly
// rounded value nlohmann gives. Unigram paths whose scores tie mathematically are decided by that
// last bit, so scores are re-read the way serde_json reads them, from the shortest decimal
// spelling of the value (which is how tokenizers and Python write these files).
double serde_json_f64(double v) {
  if (v == 0 || !std::isfinite(v)) return v;
  static const std::vector<double> pow10 = [] {
    std::vector<double> p(309);
    for (int k = 0; k <= 308; ++k) p[k] = std::strtod(("1e" + std::to_string(k)).c_str(), nullptr);
    return p;
  }();
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, std::abs(v));  // shortest round-trip spelling
  std::string_view s(buf, static_cast<size_t>(res.ptr - buf));
  uint64_t sig = 0;  // at most 17 digits: no u64 overflow
  int exp = 0;
  bool frac = false;
  size_t i = 0;
  for (; i < s.size() && s[i] != 'e'; ++i) {
    if (s[i] == '.') {
      frac = true;
      continue;
    }
    sig = sig * 10 + static_cast<uint64_t>(s[i] - '0');
    if (frac) --exp;
  }
  if (i < s.size()) exp += std::atoi(std::string(s.substr(i + 1)).c_str());
  double f = static_cast<double>(sig);
  while (true) {
    int a = exp < 0 ? -exp : exp;
    if (a <= 308) {
      f = exp >= 0 ? f * pow10[a] : f / pow10[a];
      break;
    }
    if (exp >= 0) return v;  // cannot happen for a finite value
    f /= 1e308;
    exp += 308;
  }
  return v < 0 ? -f : f;
}

std::unique_ptr<Model> load_bpe(const json& m, const BpeOverride& ov) {
  if (m.contains("dropout") && !m["dropout"].is_null() &&
      !(m["dropout"].is_number() && m["dropout"].get<double>() == 0.0))
    fail("tokenizer", "unsupported BPE option: dropout");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(key) && !m[key].is_null() && !(m[key].is_string() && m[key].get<std::string>().empty()))
      fail("tokenizer", std::string("unsupported BPE option: ") + key);
  if (!m.contains("vocab") || !m["vocab"].is_object()) fail("tokenizer", "BPE model has no 'vocab' object");
  Vocab vocab;
  vocab.reserve(m["vocab"].size());
  for (auto& [k, v] : m["vocab"].items()) {
    if (!v.is_number_integer() || v.get<long long>() < 0)
      fail("tokenizer", "BPE vocab entry '" + k + "' must have a non-negative integer id");
    if (v.get<long long>() >= kMaxVocabId)
      fail("tokenizer", "BPE vocab entry '" + k + "' has id " + std::to_string(v.get<long long>()) +
                            ", beyond the supported " + std::to_string(kMaxVocabId));
    check_token_utf8(k, "BPE vocab");
    vocab.insert_or_assign(k, v.get<int>());
  }
  std::vector<std::pair<std::string, std::string>> merges;
  if (m.contains("merges") && !m["merges"].is_null()) {
    if (!m["merges"].is_array()) fail("tokenizer", "BPE 'merges' must be an array");
    merges.reserve(m["merges"].size());
    for (const auto& e : m["merges"]) {
      if (e.is_string()) {
        merges.push_back(split_merge(e.get<std::string>()));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      } else {
        fail("tokenizer", "BPE merge entries must be \"a b\" strings or [a, b] pairs");
      }
    }
  }
  BpeOptions opts;
  opts.ignore_merges = ov.active ? false : flag(m, "ignore_merges", false, "model");
  opts.fuse_unk = ov.active ? ov.fuse_unk : flag(m, "fuse_unk", false, "model");
  opts.byte_fallback = ov.active ? ov.byte_fallback : flag(m, "byte_fallback", false, "model");
  if (m.contains("unk_token") && m["unk_token"].is_string() && ov.keep_unk) {
    auto it = vocab.find(m["unk_token"].get<std::string>());
    if (it != vocab.end()) opts.unk_id = it->second;
  }
  return std::make_unique<Bpe>(std::move(vocab), merges, opts);
}

std::unique_ptr<Model> load_unigram(const json& m) {
  if (!m.contains("vocab") || !m["vocab"].is_array()) fail("tokenizer", "Unigram model has no 'vocab' array");
  if (m["vocab"].size() >= static_cast<size_t>(kMaxVocabId)) fail("tokenizer", "Unigram vocabulary is too large");
  std::vector<std::pair<std::string, double>> pieces;
  pieces.reserve(m["vocab"].size());
  for (const auto& e : m["vocab"]) {
    if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number())
      fail("tokenizer", "Unigram vocab entries must be [piece, score] pairs");
    check_token_utf8(e[0].get<std::string>(), "Unigram vocab");
    pieces.emplace_back(e[0].get<std::string>(), serde_json_f64(e[1].get<double>()));
  }
  std::optional<int> unk;
  if (m.contains("unk_id") && !m["unk_id"].is_null()) {
    if (!m["unk_id"].is_number_integer()) fail("tokenizer", "Unigram 'unk_id' must be an integer");
    long long u = m["unk_id"].get<long long>();
    if (u < 0 || u >= static_cast<long long>(pieces.size()))
      fail("tokenizer", "Unigram unk_id " + std::to_string(u) + " is outside the vocabulary");
    unk = static_cast<int>(u);
  }
  return std::make_unique<Unigram>(std::move(pieces), unk, flag(m, "byte_fallback", false, "model"));
}

}  // namespace

std::unique_ptr<Model> load_model_json(const json& m, const BpeOverride& ov) {
  if (!m.is_object()) fail("tokenizer", "tokenizer.json has no 'model' object");
  std::string type = m.contains("type") && m["type"].is_string() ? m["type"].get<std::string>() : "BPE";
  if (type == "BPE") return load_bpe(m, ov);
  if (type == "Unigram") return load_unigram(m);
  fail("tokenizer", "unsupported model type '" + type + "' (BPE and Unigram are supported)");
}

}  // namespace mlxgp::tok
