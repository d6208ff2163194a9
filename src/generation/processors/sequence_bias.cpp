// transformers SequenceBiasLogitsProcessor and NoBadWordsLogitsProcessor (a sequence bias of -inf):
// a one-token sequence biases its token always; a longer one biases its last token only when the
// sequence ends with the rest of it. Host loops run over the (few) biased sequences, never the vocabulary.
#include <algorithm>
#include <limits>
#include <map>
#include <string>

#include "generation/processors/common.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

class SequenceBiasProcessor : public LogitsProcessor {
 public:
  // `field`: the setting the ids came from, for messages (sequence_bias, bad_words_ids).
  SequenceBiasProcessor(const std::vector<std::pair<std::vector<int>, double>>& biases, const char* field)
      : field_(field) {
    // HF turns the list into a dict keyed by the sequence: a repeated sequence keeps its last bias.
    std::map<std::vector<int>, double> unique;
    for (auto& [seq, b] : biases) {
      if (seq.empty()) fail("config", "a biased token sequence must not be empty");
      unique[seq] = b;
    }
    for (auto& [seq, b] : unique) {
      if (seq.size() == 1) {
        single_ids_.push_back(seq[0]);
        single_bias_.push_back(static_cast<float>(b));
      } else {
        multi_.push_back({std::vector<int>(seq.begin(), seq.end() - 1), seq.back(), static_cast<float>(b)});
      }
    }
  }

  mx::array apply(const mx::array& logits, const mx::array& ids_in) override {
    const int b = logits.shape(0), v = logits.shape(-1);
    const int t = multi_.empty() ? 0 : ids_in.shape(1);  // ids are a placeholder when !needs_ids()
    check_vocabulary(v);
    auto bias = mx::zeros({v}, mx::float32);
    if (!single_ids_.empty()) {
      auto idx = mx::array(single_ids_.data(), {static_cast<int>(single_ids_.size())}, mx::int32);
      auto val = mx::array(single_bias_.data(), {static_cast<int>(single_bias_.size())}, mx::float32);
      bias = mx::put_along_axis(bias, idx, val, 0);
    }
    auto full = mx::broadcast_to(mx::reshape(bias, {1, v}), {b, v});
    std::vector<mx::array> adds;
    std::vector<int> lasts;
    auto ids = mx::astype(ids_in, mx::int32);
    for (auto& m : multi_) {
      const int len = static_cast<int>(m.prefix.size());
      if (len > t) continue;  // HF: a prefix longer than the context cannot match
      auto tail = mx::slice(ids, {0, t - len}, {b, t});
      auto prefix = mx::array(m.prefix.data(), {1, len}, mx::int32);
      auto match = mx::all(mx::equal(tail, prefix), -1, true);  // [B, 1]
      adds.push_back(mx::where(match, mx::array(m.bias), mx::array(0.0f)));
      lasts.push_back(m.last);
    }
    if (!adds.empty()) {
      auto values = mx::concatenate(adds, 1);  // [B, E]
      auto idx = mx::broadcast_to(mx::array(lasts.data(), {1, static_cast<int>(lasts.size())}, mx::int32),
                                  {b, static_cast<int>(lasts.size())});
      full = mx::scatter_add_axis(full, idx, values, 1);  // index_add: biases on one token add up
    }
    return mx::add(logits, mx::astype(full, logits.dtype()));
  }
  std::optional<RowKernel> row_kernel(int vocab, int) override {
    check_vocabulary(vocab);
    return [this_copy = *this](std::span<float> x, std::span<const int32_t> ids) {
      // Sum each token's biases first, then add once: the device path adds one bias vector.
      thread_local std::vector<std::pair<int, float>> adds;
      adds.clear();
      auto add = [&](int id, float b) {
        for (auto& [i, total] : adds)
          if (i == id) {
            total += b;
            return;
          }
        adds.push_back({id, b});
      };
      for (size_t i = 0; i < this_copy.single_ids_.size(); ++i)
        add(this_copy.single_ids_[i], this_copy.single_bias_[i]);
      const int t = static_cast<int>(ids.size());
      for (auto& m : this_copy.multi_) {
        const int len = static_cast<int>(m.prefix.size());
        if (len > t) continue;
        if (std::equal(m.prefix.begin(), m.prefix.end(), ids.end() - len)) add(m.last, m.bias);
      }
      for (auto& [id, b] : adds) x[id] += b;
    };
  }
  bool needs_ids() const override { return !multi_.empty(); }
  std::unique_ptr<LogitsProcessor> clone() const override { return std::make_unique<SequenceBiasProcessor>(*this); }

 private:
  struct Multi {
    std::vector<int> prefix;
    int last;
    float bias;
  };
  void check_vocabulary(int v) const override {
    auto bad = [&](int id) {
      if (id >= v)
        fail("generate", std::string(field_) + " token id " + std::to_string(id) + " is outside the vocabulary (size " +
                             std::to_string(v) + ")");
    };
    for (int id : single_ids_) bad(id);
    for (auto& m : multi_) {
      for (int id : m.prefix) bad(id);
      bad(m.last);
    }
  }
  std::vector<int> single_ids_;
  std::vector<float> single_bias_;
  std::vector<Multi> multi_;
  const char* field_;
};

}  // namespace

std::unique_ptr<LogitsProcessor> make_bad_words(const std::vector<std::vector<int>>& bad_words_ids,
                                                const std::vector<int>& eos) {
  std::vector<std::pair<std::vector<int>, double>> biases;
  for (auto& seq : bad_words_ids) {
    // HF drops a bad word that is exactly one EOS token (EOS must stay reachable).
    bool is_eos = seq.size() == 1 && std::find(eos.begin(), eos.end(), seq[0]) != eos.end();
    if (!is_eos) biases.push_back({seq, -std::numeric_limits<double>::infinity()});
  }
  return std::make_unique<SequenceBiasProcessor>(biases, "bad_words_ids");
}

std::unique_ptr<LogitsProcessor> make_sequence_bias(const std::vector<std::pair<std::vector<int>, double>>& biases) {
  return std::make_unique<SequenceBiasProcessor>(biases, "sequence_bias");
}

}  // namespace mlxgp
