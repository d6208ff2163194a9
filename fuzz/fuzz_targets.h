// The bodies of the libFuzzer targets (fuzz/<target>.cpp), as plain functions so the regression test
// (tests/cpp/test_fuzz_corpus.cpp) feeds the kept inputs in tests/data/fuzz/<target>/ through the same
// code without libFuzzer.
//
// Each body returns normally for any input: mlxgp::Error (and the server's ApiError) is the expected
// answer to bad input and is swallowed; anything else escaping (a raw library exception such as
// nlohmann::json's, std::bad_alloc, std::out_of_range) is a bug, and libFuzzer reports it as a crash
// (an uncaught exception aborts).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "io/checkpoint_files.h"
#include "io/gguf_model.h"
#include "mlxgp/chat_template.h"
#include "mlxgp/checkpoint.h"
#include "mlxgp/error.h"
#include "mlxgp/generation_config.h"
#include "mlxgp/loader.h"
#include "mlxgp/model.h"
#include "mlxgp/model_config.h"
#include "mlxgp/prompt_cache.h"
#include "mlxgp/reasoning.h"
#include "mlxgp/safetensors_io.h"
#include "mlxgp/server.h"
#include "mlxgp/tokenizer.h"
#include "mlxgp/tool_calls.h"
#include "server/request.h"

namespace mlxgp::fuzz {

namespace fs = std::filesystem;
namespace mx = mlx::core;

// The input as a file the path-taking readers can open: an anonymous memory file (memfd_create),
// named /proc/self/fd/N. Nothing touches the disk and nothing is left behind.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = memfd_create("mlxgp-fuzz", MFD_CLOEXEC);
    if (fd_ < 0) std::abort();
    for (size_t done = 0; done < size;) {
      ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Splits an input into parts at a marker line, for targets that read several files or fields.
inline std::vector<std::string> split_parts(const uint8_t* data, size_t size, size_t max_parts) {
  static constexpr std::string_view kSep = "\n--mlxgp-fuzz--\n";
  std::string_view s(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  while (parts.size() + 1 < max_parts) {
    auto at = s.find(kSep);
    if (at == std::string_view::npos) break;
    parts.emplace_back(s.substr(0, at));
    s.remove_prefix(at + kSep.size());
  }
  parts.emplace_back(s);
  return parts;
}

// A scratch folder per process, removed at exit.
inline const fs::path& scratch_dir() {
  struct Dir {
    fs::path path;
    Dir() {
      std::random_device rd;
      path = fs::temp_directory_path() / ("mlxgp_fuzz_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
      fs::create_directories(path);
    }
    ~Dir() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  };
  static Dir dir;
  return dir.path;
}

inline void write_file(const fs::path& p, std::string_view data) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Deterministic weights for `c` (zeros, norms of ones), as the models expect them; nullopt when the
// config is too large to build in a fuzzing run or is quantized.
inline std::optional<WeightMap> small_weights(const ModelConfig& c) {
  const int head_dim = c.head_dim;
  const long q_out = static_cast<long>(c.num_attention_heads) * head_dim;
  const long kv_out = static_cast<long>(c.num_key_value_heads) * head_dim;
  if (c.quantization || c.vocab_size > 512 || c.hidden_size > 128 || c.intermediate_size > 256 ||
      c.num_hidden_layers > 3 || q_out > 256 || kv_out > 256 || head_dim > 128)
    return std::nullopt;
  WeightMap w;
  auto zeros = [](std::initializer_list<int> s) { return mx::zeros(mx::Shape(s), mx::float32); };
  auto ones = [](int d) { return mx::ones({d}, mx::float32); };
  const int h = c.hidden_size, inter = c.intermediate_size, q = static_cast<int>(q_out), kv = static_cast<int>(kv_out);
  w.emplace("model.embed_tokens.weight", mx::full({c.vocab_size, h}, 0.01f));
  if (!c.tie_word_embeddings) w.emplace("lm_head.weight", mx::full({c.vocab_size, h}, 0.01f));
  w.emplace("model.norm.weight", ones(h));
  const bool qkv_bias = c.attention_bias || c.model_type == "qwen2";
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    w.emplace(p + "input_layernorm.weight", ones(h));
    w.emplace(p + "post_attention_layernorm.weight", ones(h));
    w.emplace(p + "self_attn.q_proj.weight", zeros({q, h}));
    w.emplace(p + "self_attn.k_proj.weight", zeros({kv, h}));
    w.emplace(p + "self_attn.v_proj.weight", zeros({kv, h}));
    w.emplace(p + "self_attn.o_proj.weight", zeros({h, q}));
    if (qkv_bias) {
      w.emplace(p + "self_attn.q_proj.bias", zeros({q}));
      w.emplace(p + "self_attn.k_proj.bias", zeros({kv}));
      w.emplace(p + "self_attn.v_proj.bias", zeros({kv}));
    }
    if (c.attention_bias) w.emplace(p + "self_attn.o_proj.bias", zeros({h}));
    if (c.model_type == "qwen3") {
      w.emplace(p + "self_attn.q_norm.weight", ones(head_dim));
      w.emplace(p + "self_attn.k_norm.weight", ones(head_dim));
    }
    w.emplace(p + "mlp.gate_proj.weight", zeros({inter, h}));
    w.emplace(p + "mlp.up_proj.weight", zeros({inter, h}));
    w.emplace(p + "mlp.down_proj.weight", zeros({h, inter}));
    if (c.mlp_bias) {
      w.emplace(p + "mlp.gate_proj.bias", zeros({inter}));
      w.emplace(p + "mlp.up_proj.bias", zeros({inter}));
      w.emplace(p + "mlp.down_proj.bias", zeros({h}));
    }
  }
  return w;
}

// A tiny llama (vocab 300 to cover the small tokenizers' ids, hidden 16, one layer), built once.
inline std::shared_ptr<Model> tiny_model() {
  static std::shared_ptr<Model> model = [] {
    auto c = parse_model_config(R"({"model_type": "llama", "vocab_size": 300, "hidden_size": 16,
      "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
      "max_position_embeddings": 256})");
    return std::shared_ptr<Model>(create_model(c, *small_weights(c)));
  }();
  return model;
}

// ---- targets ----

// config.json: parse and validate; a small enough config is built into a model (deterministic
// weights of the shapes it asks for) and run on three tokens.
inline int fuzz_model_config(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    auto c = parse_model_config(text);
    validate_model_config(c);
    auto w = small_weights(c);
    if (!w) return 0;
    auto model = create_model(c, std::move(*w));
    auto caches = model->make_caches();
    std::vector<int> ids = {0, 1 % c.vocab_size, 2 % c.vocab_size};
    auto logits = model->forward(mx::array(ids.data(), {1, 3}, mx::int32), caches);
    mx::eval(logits);
  } catch (const Error&) {
  }
  return 0;
}

// Encodes, decodes and stream-decodes `text` with `tok`; ids made from the text's bytes are decoded
// too (most outside the vocabulary).
inline void exercise_tokenizer(const std::shared_ptr<Tokenizer>& tok, std::string_view text) {
  try {
    auto ids = tok->encode(text, true);
    (void)tok->decode(ids, false);
    (void)tok->decode(ids, true);
    StreamingDetokenizer stream(tok);
    for (int id : ids) (void)stream.push(id);
    (void)stream.flush();
  } catch (const Error&) {
  }
  std::vector<int> raw;
  for (size_t i = 0; i + 1 < text.size() && raw.size() < 64; i += 2)
    raw.push_back((static_cast<uint8_t>(text[i]) << 8 | static_cast<uint8_t>(text[i + 1])) % (tok->vocab_size() + 8) -
                  4);
  try {
    (void)tok->decode(raw, false);
  } catch (const Error&) {
  }
  try {
    (void)tok->decode_bytes(raw, true);
  } catch (const Error&) {
  }
  try {
    StreamingDetokenizer stream(tok, true);
    for (int id : raw) (void)stream.push(id);
    (void)stream.flush();
  } catch (const Error&) {
  }
}

// GGUF reader: the checked header walk, then the tensors, and the metadata-only path.
inline int fuzz_gguf(const uint8_t* data, size_t size) {
  MemFile f(data, size);
  try {
    auto meta = io::load_gguf_metadata(f.path());
    (void)meta;
  } catch (const Error&) {
    return 0;
  }
  try {
    auto loaded = io::load_gguf_checked(f.path());
    for (auto& [name, a] : loaded.first) mx::eval(a);
    // The loader's next steps: the config from the metadata, then the HF-named weights.
    auto config = io::gguf_config(loaded.second, loaded.first);
    validate_model_config(config, "gguf");
    auto weights = io::gguf_weights(config, loaded.first);
    for (auto& [name, a] : weights) mx::eval(a);
  } catch (const Error&) {
  }
  try {
    auto meta = io::load_gguf_metadata(f.path());
    if (meta.count("tokenizer.ggml.model"))
      exercise_tokenizer(Tokenizer::from_gguf(meta), "Hello, world! \xc3\xa9 1234");
  } catch (const Error&) {
  }
  return 0;
}

// Safetensors reader: validation, load, then every tensor evaluated.
inline int fuzz_safetensors(const uint8_t* data, size_t size) {
  MemFile f(data, size);
  try {
    auto contents = load_safetensors_file(f.path());
    for (auto& [name, a] : contents.tensors) {
      mx::eval(a);
      if (mx::issubdtype(a.dtype(), mx::floating)) require_finite(a, "fuzz", name);
    }
  } catch (const Error&) {
  }
  return 0;
}

// tokenizer.json loading (part 1; part 2, when present, is tokenizer_config.json), then a few fixed
// texts through it. (Without part 2 no config is read: /proc/self/fd has no tokenizer_config.json.)
inline int fuzz_tokenizer_json(const uint8_t* data, size_t size) {
  auto parts = split_parts(data, size, 2);
  MemFile f(reinterpret_cast<const uint8_t*>(parts[0].data()), parts[0].size());
  std::optional<MemFile> cfg;
  if (parts.size() > 1) cfg.emplace(reinterpret_cast<const uint8_t*>(parts[1].data()), parts[1].size());
  std::shared_ptr<Tokenizer> tok;
  try {
    tok = Tokenizer::from_files(f.path(), cfg ? cfg->path() : "");
  } catch (const Error&) {
    return 0;
  }
  for (std::string_view text :
       {std::string_view("Hello, world! 123 \xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87  \n\t x"),
        std::string_view("<s></s><|endoftext|> a"), std::string_view("")})
    exercise_tokenizer(tok, text);
  return 0;
}

// The tokenizers tokenizer_text uses: the seeds of tokenizer_json (a byte-level BPE, a SentencePiece-style
// BPE with byte fallback, a Unigram), loaded from MLXGP_FUZZ_DATA_DIR/tokenizer_json/.
inline std::vector<std::shared_ptr<Tokenizer>>& fixed_tokenizers(const std::string& data_dir) {
  static std::vector<std::shared_ptr<Tokenizer>> toks = [&] {
    std::vector<std::shared_ptr<Tokenizer>> out;
    for (const char* name : {"bytelevel_bpe.json", "spm_bpe.json", "unigram.json"}) {
      auto p = fs::path(data_dir) / "tokenizer_json" / name;
      out.push_back(Tokenizer::from_files(p.string()));
    }
    return out;
  }();
  return toks;
}

// Arbitrary bytes through fixed tokenizers: the first byte picks the tokenizer.
inline int fuzz_tokenizer_text(const uint8_t* data, size_t size, const std::string& data_dir) {
  if (size == 0) return 0;
  auto& toks = fixed_tokenizers(data_dir);
  exercise_tokenizer(toks[data[0] % toks.size()], std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  return 0;
}

// A chat template (part 1) rendered with messages (part 2, JSON; fixed messages when it is not an
// array) with and without the generation prompt.
inline int fuzz_chat_template(const uint8_t* data, size_t size) {
  auto parts = split_parts(data, size, 2);
  nlohmann::ordered_json messages = nlohmann::ordered_json::array({{{"role", "system"}, {"content", "Be brief."}},
                                                                   {{"role", "user"}, {"content", "Hi"}},
                                                                   {{"role", "assistant"}, {"content", "Hello."}},
                                                                   {{"role", "user"}, {"content", "Bye"}}});
  if (parts.size() > 1) {
    auto j = nlohmann::ordered_json::parse(parts[1], nullptr, false);
    if (j.is_array()) messages = std::move(j);
  }
  SpecialTokens special{"<s>", "</s>", "<unk>", ""};
  for (bool gen : {false, true}) {
    try {
      (void)apply_chat_template(parts[0], messages, gen, special);
    } catch (const Error&) {
    }
  }
  return 0;
}

// generation_config.json: both sources, then validate().
inline int fuzz_generation_config(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  for (auto source : {ConfigSource::Model, ConfigSource::User}) {
    GenerationConfig c;
    try {
      (void)apply_generation_config_json(c, text, source);
      validate(c);
    } catch (const Error&) {
    }
  }
  return 0;
}

// A saved prompt cache read against the tiny model.
inline int fuzz_prompt_cache(const uint8_t* data, size_t size) {
  MemFile f(data, size);
  auto model = tiny_model();
  try {
    auto cache = load_prompt_cache(f.path(), *model);
    check_prompt_cache_use(cache, *model);
    auto caches = clone_caches(cache);
    check_prompt_prefix(cache, cache.token_ids);
  } catch (const Error&) {
  }
  return 0;
}

// A training checkpoint folder: part 1 meta.json, parts 2-3 adapters.safetensors and
// optimizer.safetensors, part 4 (if any) a `latest` file in the parent naming the folder.
inline int fuzz_checkpoint(const uint8_t* data, size_t size) {
  auto parts = split_parts(data, size, 4);
  const fs::path root = scratch_dir() / "checkpoint";
  std::error_code ec;
  fs::remove_all(root, ec);
  const fs::path dir = root / "checkpoint-1";
  fs::create_directories(dir);
  write_file(dir / "meta.json", parts[0]);
  if (parts.size() > 1) write_file(dir / "adapters.safetensors", parts[1]);
  if (parts.size() > 2) write_file(dir / "optimizer.safetensors", parts[2]);
  try {
    auto c = load_checkpoint(dir.string());
    for (auto& [file, weights] : c.files)
      for (auto& [name, a] : weights) mx::eval(a);
  } catch (const Error&) {
  }
  return 0;
}

// The server's request parsing: part 1 picks the endpoint ("chat" or anything else), part 2 is the body.
inline int fuzz_server_request(const uint8_t* data, size_t size, const std::string& data_dir) {
  static LoadedModel model = [&] {
    LoadedModel m;
    m.model = tiny_model();
    m.tokenizer = fixed_tokenizers(data_dir)[0];
    return m;
  }();
  static GenerationConfig base;
  static const std::string chatml =
      "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  auto parts = split_parts(data, size, 2);
  const auto endpoint =
      parts.size() > 1 && parts[0] == "chat" ? server::Endpoint::ChatCompletions : server::Endpoint::Completions;
  server::RequestLimits limits;
  limits.max_tokens_cap = 64;
  limits.chat_template = chatml;
  limits.tool_format = ToolCallFormat::Hermes;  // tools / tool_choice "auto" are read too
  try {
    auto r = server::parse_request(endpoint, parts.back(), model, base, "tiny", limits);
    (void)r;
  } catch (const server::ApiError&) {
  } catch (const Error&) {
  }
  return 0;
}

// The reply parsers (tool calls, <think>): byte 0 picks the rules, the rest is a reply. Any text parses
// (nothing throws), and streaming it in pieces (sizes from the reply's own bytes) gives what the whole
// reply gives; a difference aborts.
inline int fuzz_tool_calls(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ToolCallRules rules;
  const int mode = data[0] % 5;
  rules.kind = mode == 3 ? ToolCallRules::Kind::Array : mode == 4 ? ToolCallRules::Kind::Named : rules.kind;
  rules.format = mode == 1 ? ToolCallFormat::Hermes : mode == 2 ? ToolCallFormat::Llama3 : ToolCallFormat::None;
  rules.name = "f";
  rules.max_calls = (data[0] >> 4) & 1;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const ParsedToolCalls whole = parse_tool_calls(rules, text);
  ToolCallParser parser(rules);
  ParsedToolCalls streamed;
  auto take = [&](const std::vector<ToolCallEvent>& events) {
    for (auto& e : events) {
      if (!e.is_call) {
        streamed.content += e.text;
      } else if (e.index == static_cast<int>(streamed.calls.size())) {
        streamed.calls.push_back({e.name, e.arguments});
      } else if (e.index >= 0 && e.index < static_cast<int>(streamed.calls.size())) {
        streamed.calls[e.index].arguments += e.arguments;
      } else {
        std::abort();
      }
    }
  };
  for (size_t i = 0; i < text.size();) {
    const size_t n = 1 + static_cast<unsigned char>(text[i]) % 9;
    take(parser.push(text.substr(i, n)));
    i += n;
  }
  take(parser.finish());
  if (streamed.content != whole.content || streamed.calls.size() != whole.calls.size()) std::abort();
  for (size_t i = 0; i < whole.calls.size(); ++i)
    if (streamed.calls[i].name != whole.calls[i].name || streamed.calls[i].arguments != whole.calls[i].arguments)
      std::abort();
  const SplitReasoning split = split_reasoning(text, (data[0] >> 5) & 1);
  ReasoningParser reasoning((data[0] >> 5) & 1);
  std::string r, c;
  for (size_t i = 0; i <= text.size(); i += 3)
    for (auto& e : reasoning.push(text.substr(i, 3))) (e.reasoning ? r : c) += e.text;
  for (auto& e : reasoning.finish()) (e.reasoning ? r : c) += e.text;
  if (r != split.reasoning || c != split.content) std::abort();
  return 0;
}

}  // namespace mlxgp::fuzz
