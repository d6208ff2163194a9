// llama.cpp's DRY, top-n-sigma and XTC samplers (src/llama-sampling.cpp) as logits processors: a
// device apply() and a CPU row kernel each, both reading their state from the ids (XTC's coin comes
// from its own mt19937, drawn on the host at apply() / row_kernel() time, so both forms see the same
// draws). See docs/samplers.md for where they sit in the pipeline.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <unordered_map>

#include "generation/processors/common.h"
#include "generation/processors/row_kernels.h"
#include "mlxgp/error.h"
#include "mlxgp/tokenizer.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

using processors::neg_inf;

// ---- DRY

// head token -> tails (empty: the head alone is a breaker), llama.cpp's dry_processed_breakers.
using BreakerMap = std::unordered_multimap<int32_t, std::vector<int32_t>>;

// Each token's text as llama.cpp's detokenize({id}, special = true) gives it (special tokens as
// their text), cached for the last tokenizer seen: the breakers of a request are built from it.
std::shared_ptr<const std::vector<std::string>> token_texts(const std::shared_ptr<const Tokenizer>& tokenizer) {
  static std::mutex mutex;
  static std::weak_ptr<const Tokenizer> last;
  static std::shared_ptr<const std::vector<std::string>> texts;
  std::lock_guard<std::mutex> lock(mutex);
  if (texts && last.lock() == tokenizer) return texts;
  auto out = std::make_shared<std::vector<std::string>>(tokenizer->vocab_size());
  for (int id = 0; id < tokenizer->vocab_size(); ++id) {
    try {
      (*out)[id] = tokenizer->decode_bytes(std::span<const int>(&id, 1), false);
    } catch (const Error&) {  // an id naming no token
    }
  }
  last = tokenizer;
  texts = out;
  return texts;
}

// llama.cpp get_overlapping_token_sequences: a token whose text contains `s` is a one-token breaker;
// a token whose text ends with a proper prefix of `s` starts one, followed by the tokens of the rest
// of `s` (at most 20).
void add_breaker(const std::vector<std::string>& texts, const Tokenizer& tokenizer, const std::string& s,
                 BreakerMap& out) {
  for (int32_t id = 0; id < static_cast<int32_t>(texts.size()); ++id) {
    const std::string& word = texts[id];
    if (word.find(s) != std::string::npos) {
      out.emplace(id, std::vector<int32_t>());
      continue;
    }
    for (size_t pos = word.find(s[0]); pos != std::string::npos; pos = word.find(s[0], pos + 1)) {
      size_t i = 1;
      while (i < s.size() && pos + i < word.size() && word[pos + i] == s[i]) ++i;
      if (i < s.size() && pos + i < word.size()) continue;  // a mismatch inside the word
      auto ids = tokenizer.encode(s.substr(i), false);
      std::vector<int32_t> tail(ids.begin(), ids.begin() + std::min<size_t>(ids.size(), 20));
      auto [b, e] = out.equal_range(id);
      if (std::none_of(b, e, [&](auto& kv) { return kv.second == tail; })) out.emplace(id, std::move(tail));
    }
  }
}

struct DryParams {
  float multiplier, base;
  int allowed, last_n;
  std::shared_ptr<const BreakerMap> breakers;
};

// The (token, penalty) pairs of one row, llama.cpp's llama_sampler_dry_apply steps 1 to 4.
void dry_penalties(const DryParams& p, std::span<const int32_t> ids, std::vector<std::pair<int32_t, float>>& out) {
  out.clear();
  const int total = static_cast<int>(ids.size());
  const int n = p.last_n < 0 ? total : std::min(total, p.last_n);
  if (n <= p.allowed) return;
  const int32_t* w = ids.data() + (total - n);
  auto back = [&](int i) { return w[n - 1 - i]; };  // i-th token from the end
  const BreakerMap& breakers = *p.breakers;
  // 1. The closest breaker from the end limits the repeat length.
  int rep_limit = n;
  for (int i = 0; i < n; ++i) {
    auto [b, e] = breakers.equal_range(back(i));
    int longest = -1;
    for (auto it = b; it != e; ++it) {
      const int len = static_cast<int>(it->second.size());
      if (len <= longest || len > i) continue;
      bool match = true;
      for (int k = 0; k < len && match; ++k) match = it->second[k] == back(i - k - 1);
      if (match) longest = len;
    }
    if (longest >= 0) {
      rep_limit = i - longest;
      break;
    }
  }
  if (rep_limit < p.allowed) return;
  // 2. z[k]: how many tokens the sequence ending k tokens before the end shares with the end (the
  // Z-algorithm over the reversed window), capped at rep_limit.
  thread_local std::vector<int> z;
  z.assign(n, 0);
  for (int k = 1, l = 0, r = 0; k < n; ++k) {
    if (k < r) z[k] = std::min(r - k, z[k - l]);
    while (k + z[k] < n && back(z[k]) == back(k + z[k])) ++z[k];
    if (k + z[k] > r) l = k, r = k + z[k];
  }
  // 3. The token after each such sequence would extend the repeat: its longest one counts.
  thread_local std::unordered_map<int32_t, int> longest;
  longest.clear();
  for (int k = 1; k < n; ++k) {
    const int len = std::min(z[k], rep_limit);
    if (len < p.allowed) continue;
    const int32_t next = w[n - k];  // follows the sequence ending at window position n - 1 - k
    auto [it, fresh] = longest.emplace(next, len);
    if (!fresh && it->second < len) it->second = len;
  }
  // 4. multiplier * base^(len - allowed), the exponent capped so that the power stays finite; one-token
  // breakers are never penalised.
  const int max_exponent = p.base > 1.000001f ? static_cast<int>(88.7228391f / std::log(p.base)) : 0;
  for (auto [token, len] : longest) {
    auto [b, e] = breakers.equal_range(token);
    if (std::any_of(b, e, [](auto& kv) { return kv.second.empty(); })) continue;
    int exponent = len - p.allowed;
    if (max_exponent > 0 && exponent > max_exponent) exponent = max_exponent;
    out.push_back({token, static_cast<float>(p.multiplier * std::pow(p.base, exponent))});
  }
}

class Dry : public LogitsProcessor {
 public:
  explicit Dry(DryParams p) : p_(std::move(p)) {}
  mx::array apply(const mx::array& logits, const mx::array& ids_in) override {
    // The penalties come from the ids on the host (like the grammar constraint), then one subtraction.
    const int b = logits.shape(0), v = logits.shape(-1);
    auto ids = mx::contiguous(mx::astype(ids_in, mx::int32));
    mx::eval(ids);
    const int t = ids.shape(1);
    std::vector<float> dense(static_cast<size_t>(b) * v, 0.0f);
    std::vector<int32_t> row(t);
    std::vector<std::pair<int32_t, float>> pen;
    const int32_t* data = ids.data<int32_t>();
    for (int r = 0; r < b; ++r) {
      std::copy(data + static_cast<size_t>(r) * t, data + static_cast<size_t>(r + 1) * t, row.begin());
      dry_penalties(p_, row, pen);
      for (auto [token, penalty] : pen)
        if (token >= 0 && token < v) dense[static_cast<size_t>(r) * v + token] = penalty;
    }
    return mx::subtract(logits, mx::array(dense.data(), {b, v}, mx::float32));
  }
  std::optional<RowKernel> row_kernel(int, int num_ids) override {
    if (num_ids <= p_.allowed) return RowKernel{};
    return [p = p_](std::span<float> x, std::span<const int32_t> ids) {
      thread_local std::vector<std::pair<int32_t, float>> pen;
      dry_penalties(p, ids, pen);
      for (auto [token, penalty] : pen)
        if (token >= 0 && token < static_cast<int32_t>(x.size())) x[token] -= penalty;
    };
  }
  bool needs_ids() const override { return true; }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<Dry>(*this); }

 private:
  DryParams p_;
};

// ---- top-n-sigma

class TopNSigma : public LogitsProcessor {
 public:
  explicit TopNSigma(double n) : n_(static_cast<float>(n)) {
    if (!(n > 0) || !std::isfinite(n)) fail("config", "top_n_sigma must be a finite number > 0 for its warper");
  }
  mx::array apply(const mx::array& logits, const mx::array&) override {
    auto finite = mx::not_equal(logits, neg_inf());
    auto count = mx::maximum(mx::sum(finite, -1, true), mx::array(1.0f));
    auto mean = mx::divide(mx::sum(mx::where(finite, logits, mx::array(0.0f)), -1, true), count);
    auto dev = mx::where(finite, mx::square(mx::subtract(logits, mean)), mx::array(0.0f));
    auto sd = mx::sqrt(mx::divide(mx::sum(dev, -1, true), count));
    auto limit = mx::subtract(mx::max(logits, -1, true), mx::multiply(mx::array(n_), sd));
    return mx::where(mx::less(logits, limit), neg_inf(), logits);
  }
  std::optional<RowKernel> row_kernel(int, int) override {
    return [n = n_](std::span<float> x, std::span<const int32_t>) {
      float max = -INFINITY, sum = 0.0f;
      int count = 0;
      for (float f : x)
        if (f != -INFINITY) max = std::max(max, f), sum += f, ++count;
      if (count == 0) return;
      const float mean = sum / count;
      float acc = 0.0f;
      for (float f : x)  // llama.cpp: acc += pow(logit - mean, 2), a double added to a float
        if (f != -INFINITY)
          acc = static_cast<float>(acc + static_cast<double>(f - mean) * static_cast<double>(f - mean));
      const float limit = max - n * std::sqrt(acc / count);
      for (auto& f : x)
        if (f < limit) f = -INFINITY;
    };
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<TopNSigma>(*this); }

 private:
  float n_;
};

// ---- XTC

class Xtc : public LogitsProcessor {
 public:
  Xtc(double probability, double threshold, double temperature, uint32_t seed, int keep)
      : p_(static_cast<float>(probability)),
        threshold_(static_cast<float>(threshold)),
        temperature_(static_cast<float>(temperature)),
        keep_(keep),
        rng_(seed) {
    if (!(probability > 0 && probability <= 1)) fail("config", "xtc_probability must be in (0, 1] for its warper");
    if (!(threshold >= 0 && threshold <= 0.5)) fail("config", "xtc_threshold must be in [0, 0.5]");
  }
  mx::array apply(const mx::array& logits, const mx::array&) override {
    const int b = logits.shape(0);
    auto cut = mx::reshape(mx::array(coins(b).data(), {b}, mx::bool_), {b, 1});
    auto probs = mx::softmax(mx::multiply(logits, mx::array(temperature_)), -1, true);
    // Tokens at -inf are not candidates (llama.cpp's truncation samplers drop them from the array).
    auto finite = mx::not_equal(logits, neg_inf());
    auto above = mx::logical_and(finite, mx::greater_equal(probs, mx::array(threshold_)));
    auto n_above = mx::sum(above, -1, true);
    auto candidates = mx::sum(finite, -1, true);
    auto least = mx::min(mx::where(above, probs, mx::array(INFINITY)), -1, true);
    // llama.cpp keeps the tail from the least likely token above the threshold, when two or more
    // reach it and min_keep candidates stay.
    auto apply_row = mx::logical_and(
        cut,
        mx::logical_and(mx::greater_equal(n_above, mx::array(2)),
                        mx::greater_equal(mx::add(mx::subtract(candidates, n_above), mx::array(1)), mx::array(keep_))));
    auto remove = mx::logical_and(apply_row, mx::logical_and(above, mx::greater(probs, least)));
    return mx::where(remove, neg_inf(), logits);
  }
  void on_prompt(const mx::array& ids) override { rows_ = ids.shape(0); }
  std::optional<RowKernel> row_kernel(int, int) override {
    if (rows_ == 0) return std::nullopt;  // rows unknown (no on_prompt): apply() draws per logits row
    // The kernel runs over the rows in order, once per step: row r takes coin r.
    return [cuts = coins(rows_), threshold = threshold_, t = temperature_, keep = keep_, row = size_t(0)](
               std::span<float> x, std::span<const int32_t>) mutable {
      thread_local std::vector<float> scaled, probs;
      const bool cut = row < cuts.size() ? cuts[row] : false;
      ++row;
      if (!cut) return;
      scaled.assign(x.begin(), x.end());
      for (auto& f : scaled) f *= t;
      processors::softmax_row(scaled, probs);
      int n_above = 0, candidates = 0;
      float least = INFINITY;
      for (size_t i = 0; i < x.size(); ++i) {
        if (x[i] == -INFINITY) continue;
        ++candidates;
        if (probs[i] >= threshold) ++n_above, least = std::min(least, probs[i]);
      }
      if (n_above < 2 || candidates - n_above + 1 < keep) return;
      for (size_t i = 0; i < x.size(); ++i)
        if (x[i] != -INFINITY && probs[i] >= threshold && probs[i] > least) x[i] = -INFINITY;
    };
  }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<Xtc>(*this); }

 private:
  // This step's coins: row r is cut when its uniform draw is <= probability (llama.cpp skips when
  // `chance > probability`).
  std::vector<uint8_t> coins(int rows) {
    std::vector<uint8_t> out;
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    for (int r = 0; r < rows; ++r) out.push_back(uniform(rng_) <= p_);
    return out;
  }
  float p_, threshold_, temperature_;
  int keep_;
  std::mt19937 rng_;
  int rows_ = 0;
};

}  // namespace

std::unique_ptr<LogitsProcessor> make_dry_penalty(double multiplier, double base, int allowed_length, int last_n,
                                                  const std::vector<std::string>& breakers,
                                                  std::shared_ptr<const Tokenizer> tokenizer) {
  if (!(multiplier > 0) || !(base >= 1)) fail("config", "dry_multiplier must be > 0 and dry_base >= 1 for DRY");
  auto map = std::make_shared<BreakerMap>();
  if (!breakers.empty()) {
    if (!tokenizer) fail("config", "dry_sequence_breakers need the tokenizer (their token sequences come from it)");
    auto texts = token_texts(tokenizer);
    for (auto& s : breakers) {
      if (s.empty()) fail("config", "field 'dry_sequence_breakers' must not contain an empty string");
      add_breaker(*texts, *tokenizer, s, *map);
    }
  }
  return std::make_unique<Dry>(
      DryParams{static_cast<float>(multiplier), static_cast<float>(base), allowed_length, last_n, std::move(map)});
}

std::unique_ptr<LogitsProcessor> make_top_n_sigma_warper(double n) { return std::make_unique<TopNSigma>(n); }

std::unique_ptr<LogitsProcessor> make_xtc_warper(double probability, double threshold, double temperature,
                                                 uint32_t seed, int min_tokens_to_keep) {
  return std::make_unique<Xtc>(probability, threshold, temperature, seed, min_tokens_to_keep);
}

}  // namespace mlxgp
