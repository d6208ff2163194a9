// Loading: HF folders (single and sharded safetensors), dtype options, and every bad-input case
// giving one [component] error instead of a crash.
#include <gtest/gtest.h>

#include <cstring>

#include "kernels/ggml_blocks.h"
#include "kernels/ggml_rows.h"
#include "mlxgp/loader.h"
#include "mlxgp/paths.h"
#include "test_models_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using namespace mlxgp::testing;

namespace {

void write_u32(std::string& s, uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }
void write_u64(std::string& s, uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); }
void write_str(std::string& s, const std::string& v) {
  write_u64(s, v.size());
  s += v;
}

// A hand-made GGUF v3 header with one tensor of the given ggml type and shape [n0, n1].
std::string gguf_with_tensor(uint32_t ggml_type, uint64_t n0, uint64_t n1, uint64_t data_bytes) {
  std::string s = "GGUF";
  write_u32(s, 3);
  write_u64(s, 1);  // tensors
  write_u64(s, 1);  // metadata
  write_str(s, "general.architecture");
  write_u32(s, 8);
  write_str(s, "llama");
  write_str(s, "token_embd.weight");
  write_u32(s, 2);
  write_u64(s, n0);
  write_u64(s, n1);
  write_u32(s, ggml_type);
  write_u64(s, 0);
  s.resize((s.size() + 31) / 32 * 32, '\0');
  s.append(data_bytes, '\0');
  return s;
}

}  // namespace

TEST(Load, TinyFolderLoadsWithoutTokenizer) {
  TempDir t;
  auto dir = write_tiny_folder(t);
  write_file(dir / "generation_config.json", R"({"do_sample": true, "temperature": 0.5})");
  auto m = load(dir.string());
  EXPECT_EQ(m.model->config().model_type, "llama");
  EXPECT_EQ(m.tokenizer, nullptr);
  EXPECT_EQ(m.generation_config_json, R"({"do_sample": true, "temperature": 0.5})");
  EXPECT_EQ(m.source, dir.string());
  auto l = logits_of(*m.model, {1, 2, 3});
  EXPECT_EQ(l.shape(), (mx::Shape{1, 3, 64}));
  EXPECT_EQ(l.dtype(), mx::float32);
}

TEST(Load, ShardedFolderMatchesSingleFile) {
  TempDir t;
  auto single = write_tiny_folder(t, "single");
  auto sharded = t / "sharded";
  fs::create_directories(sharded);
  write_file(sharded / "config.json", tiny_config_json());
  auto w = tiny_weights();
  WeightMap a, b;
  std::string map;
  for (auto& [k, v] : w) {
    bool first = k.find("layers.1.") == std::string::npos;
    (first ? a : b).emplace(k, v);
    map += (map.empty() ? "" : ",") + ("\"" + k + "\": \"model-0000" + (first ? "1" : "2") + "-of-00002.safetensors\"");
  }
  mx::save_safetensors((sharded / "model-00001-of-00002.safetensors").string(), a);
  mx::save_safetensors((sharded / "model-00002-of-00002.safetensors").string(), b);
  write_file(sharded / "model.safetensors.index.json", "{\"metadata\": {}, \"weight_map\": {" + map + "}}");
  auto l1 = logits_of(*load(single.string()).model, {5, 6, 7, 8});
  auto l2 = logits_of(*load(sharded.string()).model, {5, 6, 7, 8});
  EXPECT_EQ(max_abs_diff(l1, l2), 0.0f);
  fs::remove(sharded / "model-00002-of-00002.safetensors");
  EXPECT_NE(error_of([&] { load(sharded.string()); }).find("[safetensors] shard"), std::string::npos);
}

TEST(Load, DtypeOptionCastsWeightsAndKeepsFloat32Logits) {
  TempDir t;
  auto dir = write_tiny_folder(t);
  auto ref = logits_of(*load(dir.string()).model, {1, 2, 3, 4});
  for (auto dt : {mx::bfloat16, mx::float16}) {
    auto m = load(dir.string(), LoadOptions{dt});
    EXPECT_EQ(m.model->parameters().at("model.norm.weight").dtype(), dt);
    auto l = logits_of(*m.model, {1, 2, 3, 4});
    EXPECT_EQ(l.dtype(), mx::float32);
    EXPECT_LT(max_abs_diff(l, ref), 0.1f);
    EXPECT_GT(max_abs_diff(l, ref), 0.0f);  // really computed in the lower precision
  }
  EXPECT_EQ(error_of([] { parse_dtype("float8"); }),
            "[load] unknown dtype 'float8' (supported: float32, bfloat16, float16)");
}

TEST(LoadErrors, MissingPathAndFolderWithoutConfig) {
  TempDir t;
  EXPECT_EQ(error_of([&] { load((t / "nope").string()); }), "[load] no such file or folder: " + (t / "nope").string());
  fs::create_directories(t / "empty");
  EXPECT_EQ(error_of([&] { load((t / "empty").string()); }),
            "[load] folder " + (t / "empty").string() + " has no config.json");
  write_file(t / "empty" / "config.json", tiny_config_json());
  EXPECT_EQ(error_of([&] { load((t / "empty").string()); }),
            "[load] folder " + (t / "empty").string() + " has no model.safetensors");
  write_file(t / "weights.bin", "x");
  EXPECT_NE(error_of([&] { load((t / "weights.bin").string()); }).find("neither a model folder nor a .gguf"),
            std::string::npos);
}

TEST(LoadErrors, MalformedAndIncompleteConfig) {
  TempDir t;
  auto dir = write_tiny_folder(t);
  write_file(dir / "config.json", R"({"model_type": "llama", "hidden_size": )");
  EXPECT_EQ(error_of([&] { load(dir.string()); }).rfind("[config] malformed config.json", 0), 0u);
  write_file(dir / "config.json", R"({"model_type": "llama", "vocab_size": 64})");
  EXPECT_EQ(error_of([&] { load(dir.string()); }), "[config] config.json is missing required field 'hidden_size'");
  write_file(dir / "config.json", tiny_config_json("llama", R"(, "num_key_value_heads": 3)"));
  EXPECT_EQ(error_of([&] { load(dir.string()); }),
            "[config] num_attention_heads must be a multiple of num_key_value_heads");
  write_file(dir / "config.json", tiny_config_json("rwkv"));
  std::string list;  // the registry's own list (Registry.ListsBuiltinsAndRejectsUnknown pins it)
  for (auto& type : supported_model_types()) list += (list.empty() ? "" : ", ") + type;
  EXPECT_EQ(error_of([&] { load(dir.string()); }), "[model] unknown model_type 'rwkv' (supported: " + list + ")");
}

TEST(LoadErrors, CorruptSafetensors) {
  TempDir t;
  auto dir = write_tiny_folder(t);
  const auto st = dir / "model.safetensors";
  const std::string good = read_file(st);
  auto expect = [&](const std::string& data, const std::string& fragment) {
    write_file(st, data);
    auto msg = error_of([&] { load(dir.string()); });
    EXPECT_EQ(msg.rfind("[safetensors] ", 0), 0u) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  };
  expect(good.substr(0, good.size() / 2), "outside");  // truncated data
  expect(good.substr(0, 5), "truncated");              // no header
  expect(good.substr(0, 100), "header length");        // truncated header
  std::string huge = good;
  uint64_t len = 1ULL << 60;
  std::memcpy(huge.data(), &len, 8);
  expect(huge, "header length");
  std::string bad_json = good;
  bad_json[8] = '[';
  bad_json[9] = '!';
  expect(bad_json, "not valid JSON");
  std::string h = R"({"model.norm.weight": {"dtype": "F32", "shape": [32], "data_offsets": [0, 64]}})";
  std::string crafted(8, '\0');
  uint64_t hl = h.size();
  std::memcpy(crafted.data(), &hl, 8);
  expect(crafted + h + std::string(64, '\0'), "data size does not match");
  h = R"({"x": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}})";
  hl = h.size();
  std::memcpy(crafted.data(), &hl, 8);
  expect(crafted + h + std::string(4, '\0'), "unsupported dtype");
}

TEST(LoadErrors, MissingTensorAndWrongShapeAreNamed) {
  TempDir t;
  auto dir = t / "m";
  fs::create_directories(dir);
  write_file(dir / "config.json", tiny_config_json());
  auto w = tiny_weights();
  w.erase("model.norm.weight");
  mx::save_safetensors((dir / "model.safetensors").string(), w);
  EXPECT_EQ(error_of([&] { load(dir.string()); }), "[model] missing tensor 'model.norm.weight'");
  w = tiny_weights();
  w.insert_or_assign("model.layers.1.self_attn.k_proj.weight", mx::zeros({15, 32}));
  mx::save_safetensors((dir / "model.safetensors").string(), w);
  EXPECT_EQ(error_of([&] { load(dir.string()); }),
            "[model] tensor 'model.layers.1.self_attn.k_proj.weight' has shape [15, 32], expected [16, 32]");
}

TEST(LoadErrors, CorruptGguf) {
  TempDir t;
  auto path = t / "m.gguf";
  auto expect = [&](const std::string& data, const std::string& fragment) {
    write_file(path, data);
    auto msg = error_of([&] { load(path.string()); });
    EXPECT_EQ(msg.rfind("[gguf] ", 0), 0u) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  };
  // A well-formed F32 file that loads up to the missing-tensor check proves the walker accepts it.
  const std::string good = gguf_with_tensor(0, 32, 4, 32 * 4 * 4);
  write_file(path, good);
  auto msg = error_of([&] { load(path.string()); });
  EXPECT_EQ(msg.rfind("[gguf] ", 0), 0u) << msg;
  EXPECT_NE(msg.find("metadata 'llama.embedding_length' is missing"), std::string::npos) << msg;

  expect(good.substr(0, good.size() - 1), "truncated");
  expect(good.substr(0, 40), "truncated");
  expect("GG", "truncated");
  expect("GGML" + good.substr(4), "bad magic");
  std::string v1 = good;
  v1[4] = 1;
  expect(v1, "unsupported GGUF version 1");
  std::string huge = good;
  uint64_t n = 1ULL << 50;
  std::memcpy(huge.data() + 8, &n, 8);
  expect(huge, "counts exceed");
  // llama.cpp's other block types load (Q6_K: its data must be there); IQ and ternary ones are named.
  expect(gguf_with_tensor(14, 256, 1, 210), "metadata 'llama.embedding_length' is missing");
  expect(gguf_with_tensor(14, 256, 2, 210), "truncated");
  expect(gguf_with_tensor(17, 256, 1, 66), "tensor 'token_embd.weight' has type IQ2_XS, which mlxgp does not load");
  expect(gguf_with_tensor(35, 256, 1, 66), "has type TQ2_0, which mlxgp does not load");
  expect(gguf_with_tensor(2, 33, 1, 64), "block size");
  expect(gguf_with_tensor(99, 32, 1, 64), "unknown ggml type 99");
}

TEST(LoadErrors, DefaultModelLoadsWhenInstalled) {
  auto path = fs::path(MLXGP_CACHE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "default model not installed";
  const CpuDeviceScope cpu;  // the layout checked below is the CPU's (the GPU loads MLX affine weights)
  auto m = load(path.string());
  const auto& c = m.model->config();
  EXPECT_EQ(c.num_hidden_layers, 30);
  EXPECT_EQ(c.num_key_value_heads, 3);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FLOAT_EQ(c.rope_theta, 100000.0f);
  ASSERT_NE(m.tokenizer, nullptr);
  // Quantized weights stay packed by default: llama.cpp's Q4_1 blocks as stored where the fused block
  // kernel runs (AVX-512), MLX affine triples elsewhere.
  const auto& q = m.model->parameters().at("model.layers.0.self_attn.q_proj.weight");
  if (mlxgp::kernels::ggml_simd_supported(mlxgp::kernels::kGgmlQ4_1)) {
    EXPECT_EQ(q.dtype(), mx::uint8);
    EXPECT_EQ(q.shape(1), 576 / 32 * 20);  // 20-byte blocks of 32 values
    EXPECT_TRUE(m.model->parameters().count("model.layers.0.self_attn.q_proj.ggml_type"));
  } else {
    EXPECT_EQ(q.dtype(), mx::uint32);
    EXPECT_TRUE(m.model->parameters().count("model.layers.0.self_attn.q_proj.scales"));
  }
  // Truncating the real file anywhere in its data is caught before MLX reads it.
  TempDir t;
  const std::string data = read_file(path);
  write_file(t / "cut.gguf", data.substr(0, data.size() - 1000));
  EXPECT_NE(error_of([&] { load((t / "cut.gguf").string()); }).find("[gguf]"), std::string::npos);
}
