// What check_same_on_all_ranks compares for a model and for files, and rank 0's values (tensors, text, seeds)
// sent to every rank.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include <mlx/mlx.h>

#include "mlxgp/distributed.h"
#include "mlxgp/error.h"

namespace mx = mlx::core;

namespace mlxgp {

std::string model_fingerprint(Model& model) {
  const auto& c = model.config();
  std::ostringstream o;
  o << c.model_type << " layers=" << c.num_hidden_layers << " hidden=" << c.hidden_size
    << " heads=" << c.num_attention_heads << "/" << c.num_key_value_heads << " head_dim=" << c.head_dim
    << " inter=" << c.intermediate_size << " vocab=" << c.vocab_size << " theta=" << c.rope_theta
    << " eps=" << c.rms_norm_eps << " tied=" << c.tie_word_embeddings << "\n";
  std::vector<std::string> names;
  for (auto& [name, w] : model.parameters()) names.push_back(name);
  std::sort(names.begin(), names.end());
  for (auto& n : names) {
    const auto& w = model.parameters().at(n);
    o << n << " " << w.dtype() << " [";
    for (int d : w.shape()) o << d << ",";
    o << "]\n";
  }
  return o.str();
}

namespace {

// 64-bit words mixed one after another (each step depends on the previous state, so order counts):
// murmur-style multiply / rotate, about 1 ns per 8 bytes.
struct Hasher {
  uint64_t h = 0x9e3779b97f4a7c15ULL;
  void word(uint64_t w) {
    w *= 0x87c37b91114253d5ULL;
    w = (w << 31) | (w >> 33);
    w *= 0x4cf5ad432745937fULL;
    h ^= w;
    h = ((h << 27) | (h >> 37)) * 5 + 0x52dce729;
  }
  void bytes(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      word(w);
    }
    uint64_t tail = 0;
    if (n > i) std::memcpy(&tail, p + i, n - i);
    word(tail ^ (static_cast<uint64_t>(n - i) << 56));
    word(n);  // the length ends each piece, so pieces cannot run into each other
  }
  void text(const std::string& s) { bytes(s.data(), s.size()); }
  uint64_t done() const {
    uint64_t x = h;  // final avalanche (splitmix64's)
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }
};

}  // namespace

uint64_t model_weights_hash(Model& model) { return weights_hash(model.parameters()); }

uint64_t weights_hash(const WeightMap& weights) {
  std::vector<std::string> names;
  for (auto& [name, w] : weights) names.push_back(name);
  std::sort(names.begin(), names.end());
  Hasher h;
  for (auto& name : names) {
    // Row-major bytes whatever the array's layout: the same values hash alike.
    auto w = mx::contiguous(weights.at(name));
    mx::eval(w);
    std::ostringstream head;
    head << name << " " << w.dtype() << " [";
    for (int d : w.shape()) head << d << ",";
    head << "]";
    h.text(head.str());
    h.bytes(w.data<unsigned char>(), w.nbytes());
  }
  return h.done();
}

uint64_t file_content_hash(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::pair<std::string, fs::path>> files;  // relative name, path
  if (fs::is_directory(path, ec)) {
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_regular_file(ec)) files.emplace_back(fs::relative(it->path(), path, ec).generic_string(), it->path());
    std::sort(files.begin(), files.end());
  } else {
    files.emplace_back("", path);
  }
  if (ec) fail("distributed", "cannot read " + path + ": " + ec.message());
  Hasher h;
  std::vector<char> buffer(1 << 20);
  for (auto& [name, file] : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) fail("distributed", "cannot read " + file.string());
    h.text(name);
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      if (in.gcount() > 0) h.bytes(buffer.data(), static_cast<size_t>(in.gcount()));
    }
    if (in.bad()) fail("distributed", "cannot read " + file.string());
  }
  return h.done();
}

uint64_t tokenizer_hash(const Tokenizer& tokenizer) {
  Hasher h;
  const int n = tokenizer.vocab_size();
  h.word(static_cast<uint64_t>(n));
  for (int id = 0; id < n; ++id) {
    try {
      h.text(tokenizer.id_to_token(id));
      h.word(tokenizer.is_special(id));
    } catch (const Error&) {
      h.word(~0ULL);  // an id that names no token
    }
  }
  for (auto id : {tokenizer.bos_token_id(), tokenizer.eos_token_id(), tokenizer.pad_token_id()})
    h.word(id ? static_cast<uint64_t>(*id) : ~0ULL);
  try {
    h.text(tokenizer.chat_template());
  } catch (const Error&) {
    h.word(~1ULL);  // named templates without a default
  }
  for (auto& [name, source] : tokenizer.named_chat_templates()) h.text(name + "\n" + source);
  return h.done();
}

uint64_t fresh_random_seed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

std::vector<uint64_t> agreed_random_seeds(const DistGroup& group, int n) {
  std::vector<uint64_t> seeds(n, 0);
  if (group.size() == 1 || group.rank() == 0)
    for (auto& s : seeds) s = fresh_random_seed();
  if (group.size() == 1 || n == 0) return seeds;
  // As broadcast_from_rank0: rank 0's words plus zeros, in int32 (which every backend sums).
  std::vector<int32_t> words(2 * n, 0);
  for (int i = 0; i < n; ++i) {
    words[2 * i] = static_cast<int32_t>(seeds[i] & 0xffffffffu);
    words[2 * i + 1] = static_cast<int32_t>(seeds[i] >> 32);
  }
  auto all = mx::distributed::all_sum(mx::array(words.data(), {2 * n}, mx::int32), group);
  mx::eval(all);
  const auto* d = all.data<int32_t>();
  for (int i = 0; i < n; ++i)
    seeds[i] = static_cast<uint64_t>(static_cast<uint32_t>(d[2 * i])) |
               (static_cast<uint64_t>(static_cast<uint32_t>(d[2 * i + 1])) << 32);
  return seeds;
}

WeightMap broadcast_from_rank0(const DistGroup& group, const WeightMap& values) {
  if (group.size() == 1) return values;
  // all_sum of rank 0's values and zeros elsewhere is rank 0's values, bit for bit (x + 0 == x).
  WeightMap out;
  std::vector<mx::array> to_eval;
  for (auto& [name, v] : values) {
    auto mine = group.rank() == 0 ? v : mx::zeros_like(v);
    auto s = mx::distributed::all_sum(mine, group);
    out.insert_or_assign(name, s);
    to_eval.push_back(s);
  }
  mx::eval(to_eval);
  return out;
}

std::string broadcast_text_from_rank0(const DistGroup& group, const std::string& text) {
  if (group.size() == 1) return text;
  const bool root = group.rank() == 0;
  auto length = mx::distributed::all_sum(mx::array({root ? static_cast<int32_t>(text.size()) : 0}), group);
  mx::eval(length);
  const int n = length.item<int32_t>();
  if (n == 0) return {};
  std::vector<int32_t> bytes(n, 0);  // int32 per byte: every backend sums int32
  if (root)
    for (int i = 0; i < n; ++i) bytes[i] = static_cast<unsigned char>(text[i]);
  auto all = mx::distributed::all_sum(mx::array(bytes.data(), {n}, mx::int32), group);
  mx::eval(all);
  std::string out(n, '\0');
  const int32_t* d = all.data<int32_t>();
  for (int i = 0; i < n; ++i) out[i] = static_cast<char>(d[i]);
  return out;
}

void shard_model(Model& model, const DistGroup& group) { model.shard(group); }

}  // namespace mlxgp
