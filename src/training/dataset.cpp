// Dataset loading and batching (see include/mlxgp/dataset.h).
#include "mlxgp/dataset.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "mlxgp/paths.h"

namespace mx = mlx::core;

namespace mlxgp {

namespace {

void check_ids(const std::vector<int>& ids, const DatasetOptions& o, const std::string& where) {
  for (int id : ids)
    if (id < 0 || (o.vocab_size > 0 && id >= o.vocab_size))
      fail("data", where + ": token id " + std::to_string(id) + " is outside the vocabulary");
}

// JSON integers that fit int32: a float, a bool or a wider number would be truncated or wrapped into
// some other token.
std::vector<int> token_ids(const nlohmann::json& v, const std::string& where) {
  if (!v.is_array()) fail("data", where + ": \"input_ids\" must be an array of token ids");
  std::vector<int> ids;
  ids.reserve(v.size());
  for (const auto& x : v) {
    if (!x.is_number_integer()) fail("data", where + ": token id " + x.dump() + " is not an integer");
    const bool fits = x.is_number_unsigned() ? x.get<uint64_t>() <= INT32_MAX
                                             : x.get<int64_t>() >= INT32_MIN && x.get<int64_t>() <= INT32_MAX;
    if (!fits) fail("data", where + ": token id " + x.dump() + " is outside the int32 range");
    ids.push_back(static_cast<int>(x.get<int64_t>()));
  }
  return ids;
}

std::string read_all(const std::string& path) {
  reject_directory(path, "data");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("data", "cannot read '" + path + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const Tokenizer& need(const Tokenizer* t, const std::string& where) {
  if (!t) fail("data", where + ": text needs a tokenizer, and the model has none (give input_ids)");
  return *t;
}

}  // namespace

std::vector<Example> load_dataset(const std::string& path, const Tokenizer* tokenizer, const DatasetOptions& o) {
  if (o.seq_len < 2) fail("data", "seq_len must be >= 2");
  if (o.max_context > 0 && o.seq_len > o.max_context)
    fail("data", "seq_len " + std::to_string(o.seq_len) + " is longer than the model's context (" +
                     std::to_string(o.max_context) + ")");
  const std::string text = read_all(path);
  std::vector<Example> out;
  if (ends_with(path, ".txt")) {
    auto ids = need(tokenizer, path).encode(text, o.add_special_tokens);
    check_ids(ids, o, path);
    // Packing: consecutive blocks of seq_len tokens; a last partial block is kept if it has 2+ tokens.
    for (size_t i = 0; i + 1 < ids.size(); i += o.seq_len) {
      size_t end = std::min(ids.size(), i + o.seq_len);
      out.push_back({{ids.begin() + i, ids.begin() + end}, std::vector<uint8_t>(end - i, 1)});
    }
  } else if (ends_with(path, ".jsonl")) {
    std::istringstream lines(text);
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
      ++n;
      const std::string where = path + ":" + std::to_string(n);
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail("data", where + (std::string(e.what()).find("UTF-8") != std::string::npos ? ": not valid UTF-8"
                                                                                       : ": malformed JSON"));
      }
      if (!j.is_object()) fail("data", where + ": each line must be a JSON object");
      Example ex;
      try {
        if (j.contains("input_ids")) {
          ex.ids = token_ids(j.at("input_ids"), where);
          ex.target.assign(ex.ids.size(), 1);
        } else if (j.contains("text")) {
          ex.ids = need(tokenizer, where).encode(j.at("text").get<std::string>(), o.add_special_tokens);
          ex.target.assign(ex.ids.size(), 1);
        } else if (j.contains("prompt") && j.contains("completion")) {
          const auto& tok = need(tokenizer, where);
          auto p = tok.encode(j.at("prompt").get<std::string>(), o.add_special_tokens);
          auto c = tok.encode(j.at("completion").get<std::string>(), false);
          ex.ids = p;
          ex.ids.insert(ex.ids.end(), c.begin(), c.end());
          ex.target.assign(p.size(), 0);
          ex.target.resize(ex.ids.size(), 1);
        } else {
          fail("data", where + ": expected \"text\", \"prompt\"+\"completion\" or \"input_ids\"");
        }
      } catch (const nlohmann::json::exception&) {
        fail("data", where + ": wrongly typed field");
      }
      if (ex.ids.size() < 2) fail("data", where + ": an example needs at least 2 tokens");
      if (static_cast<int>(ex.ids.size()) > o.seq_len)
        fail("data", where + ": example has " + std::to_string(ex.ids.size()) + " tokens, more than --seq-len " +
                         std::to_string(o.seq_len));
      check_ids(ex.ids, o, where);
      out.push_back(std::move(ex));
    }
  } else {
    fail("data", "'" + path + "': expected a .txt or .jsonl file");
  }
  if (out.empty()) fail("data", "'" + path + "' holds no training examples");
  return out;
}

std::vector<int> epoch_order(size_t n, uint64_t seed, int epoch, bool shuffle) {
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  if (shuffle) {
    std::mt19937_64 rng(seed * 1000003ULL + static_cast<uint64_t>(epoch));
    // Fisher-Yates with our own index draw: std::shuffle's output differs between standard libraries.
    for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  }
  return order;
}

Batch make_batch(const std::vector<Example>& examples, const std::vector<int>& order, size_t begin, int n, int pad_id) {
  if (examples.empty() || n < 1) fail("data", "empty batch");
  std::vector<const Example*> rows;
  size_t T = 0;
  for (int i = 0; i < n; ++i) {
    rows.push_back(&examples[order[(begin + i) % order.size()]]);
    T = std::max(T, rows.back()->ids.size());
  }
  std::vector<int> ids(n * T, pad_id);
  std::vector<int32_t> mask(n * T, 0), real(n * T, 0);
  for (int r = 0; r < n; ++r)
    for (size_t t = 0; t < rows[r]->ids.size(); ++t) {
      ids[r * T + t] = rows[r]->ids[t];
      mask[r * T + t] = rows[r]->target[t];
      real[r * T + t] = 1;
    }
  const int Ti = static_cast<int>(T);
  return Batch{mx::array(ids.data(), {n, Ti}, mx::int32), std::nullopt, mx::array(mask.data(), {n, Ti}, mx::int32),
               mx::array(real.data(), {n, Ti}, mx::int32)};
}

}  // namespace mlxgp
