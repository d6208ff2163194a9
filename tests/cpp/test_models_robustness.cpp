// Malformed inputs found by trying the loaders as a new user would (issue 20): each gives one
// [component] line instead of loading silently, crashing or exhausting memory.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "mlxgp/loader.h"
#include "mlxgp/model_config.h"
#include "mlxgp/paths.h"
#include "mlxgp/safetensors_io.h"
#include "mlxgp/tokenizer.h"
#include "test_models_util.h"

namespace mx = mlx::core;

using namespace mlxgp;
using namespace mlxgp::testing;

namespace {

// A safetensors file from a header JSON text and `data_bytes` zero bytes of data.
std::string safetensors_bytes(const std::string& header, size_t data_bytes) {
  std::string s(8, '\0');
  uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + std::string(data_bytes, '\0');
}

std::string config_with(const std::string& field, const std::string& value) {
  auto j = nlohmann::json::parse(tiny_config_json());
  j[field] = nlohmann::json::parse(value);
  return j.dump();
}

}  // namespace

TEST(LoadRobustness, SafetensorsRangesMustTileTheDataArea) {
  TempDir t;
  auto path = t / "x.safetensors";
  auto error_for = [&](const std::string& header, size_t data_bytes) {
    write_file(path, safetensors_bytes(header, data_bytes));
    return error_of([&] { load_safetensors_file(path.string()); });
  };
  // Overlapping ranges, as the `safetensors` library rejects them ("invalid offset").
  auto msg = error_for(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                       12);
  EXPECT_EQ(msg, "[safetensors] " + path.string() +
                     ": invalid offset: tensor 'b' data [4, 12) overlaps tensor 'a' (data up to 8)");
  // One tensor sharing another's bytes.
  msg = error_for(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                  8);
  EXPECT_NE(msg.find("invalid offset: tensor 'b' data [0, 8) overlaps tensor 'a'"), std::string::npos) << msg;
  // A gap between tensors, and bytes after the last one.
  msg = error_for(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [12, 20]}})",
                  20);
  EXPECT_NE(msg.find("invalid offset: tensor 'b' data starts at 12 but the previous tensor ends at 8"),
            std::string::npos)
      << msg;
  msg = error_for(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 12);
  EXPECT_NE(msg.find("invalid offset: the tensors end at byte 8 of a 12-byte data area"), std::string::npos) << msg;
  // Exact tiling (zero-size tensors included) loads, in any header order.
  write_file(path, safetensors_bytes(R"({"b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]},
                                         "e": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]},
                                         "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                                     16));
  EXPECT_EQ(load_safetensors_file(path.string()).tensors.size(), 3u);
}

TEST(LoadRobustness, ModelWhoseNormSharesAnotherTensorsBytesIsRejected) {
  TempDir t;
  auto dir = write_tiny_folder(t);
  const auto st = dir / "model.safetensors";
  std::string bytes = read_file(st);
  uint64_t len = 0;
  std::memcpy(&len, bytes.data(), 8);
  auto header = nlohmann::json::parse(bytes.substr(8, len));
  // model.norm.weight now reads layer 0's input norm (same size): the file still fits, but two tensors
  // share bytes and the norm's own bytes belong to no tensor.
  header["model.norm.weight"]["data_offsets"] = header["model.layers.0.input_layernorm.weight"]["data_offsets"];
  std::string h = header.dump();
  ASSERT_LE(h.size(), len);
  h.resize(len, ' ');  // same header length, so the data area is unchanged
  write_file(st, bytes.substr(0, 8) + h + bytes.substr(8 + len));
  auto msg = error_of([&] { load(dir.string()); });
  EXPECT_EQ(msg.rfind("[safetensors] " + st.string() + ": invalid offset: ", 0), 0u) << msg;
}

TEST(LoadRobustness, ConfigValuesThatMakeNoSenseAreRejected) {
  TempDir t;
  auto dir = write_tiny_folder(t);
  auto error_for = [&](const std::string& field, const std::string& value) {
    write_file(dir / "config.json", config_with(field, value));
    return error_of([&] { load(dir.string()); });
  };
  EXPECT_EQ(error_for("rms_norm_eps", "-1"), "[config] field 'rms_norm_eps' must be a finite number > 0, got -1");
  EXPECT_EQ(error_for("rms_norm_eps", "0"), "[config] field 'rms_norm_eps' must be a finite number > 0, got 0");
  EXPECT_EQ(error_for("rms_norm_eps", "1e300"), "[config] field 'rms_norm_eps' must be a finite number > 0, got inf");
  EXPECT_EQ(error_for("rope_theta", "1e300"), "[config] field 'rope_theta' must be a finite number > 0, got inf");
  EXPECT_EQ(error_for("hidden_size", "0"),
            "[config] vocab_size, hidden_size, intermediate_size, num_hidden_layers and num_attention_heads must be "
            "positive");
  EXPECT_EQ(error_for("num_attention_heads", "5"), "[config] hidden_size is not divisible by num_attention_heads");
  EXPECT_EQ(error_for("num_hidden_layers", "-3"), "[config] field 'num_hidden_layers' is out of range");
  EXPECT_EQ(error_for("rope_scaling", R"({"rope_type": "linear", "factor": 1e300})"),
            "[config] field 'rope_scaling.factor' must be a finite number > 0, got inf");
  // Sizes are checked against the weights before anything is allocated for them.
  EXPECT_EQ(error_for("num_hidden_layers", "1000000000"),
            "[model] the config has 1000000000 layers but the weights hold 2 (model.layers.N tensors)");
  // validate_model_config on its own (the GGUF loader uses it too).
  ModelConfig c = parse_model_config(tiny_config_json());
  c.rms_norm_eps = std::nanf("");
  EXPECT_EQ(error_of([&] { validate_model_config(c, "gguf"); }),
            "[gguf] field 'rms_norm_eps' must be a finite number > 0, got nan");
  c = parse_model_config(tiny_config_json());
  c.num_key_value_heads = 0;
  EXPECT_EQ(error_of([&] { validate_model_config(c); }),
            "[config] field 'num_key_value_heads' must be a positive integer, got 0");
}

TEST(LoadRobustness, ConfigListEntriesBeyondIntAreRefusedNotWrapped) {
  // get<int>() of 2^32 + 2 gives 2: an EOS id or a dense layer the file never named.
  EXPECT_EQ(error_of([] { parse_model_config(tiny_config_json("llama", R"(, "eos_token_id": [4294967298])")); }),
            "[config] eos_token_id entries must be integers in [0, 2^31)");
  EXPECT_EQ(error_of([] { parse_model_config(tiny_config_json("llama", R"(, "eos_token_id": 4294967298)")); }),
            "[config] eos_token_id must be an integer in [0, 2^31)");
  EXPECT_EQ(error_of([] {
              parse_model_config(tiny_config_json(
                  "qwen2_moe", R"(, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                               "mlp_only_layers": [4294967297])"));
            }),
            "[config] mlp_only_layers must be a list of layer indices in [0, 2^31)");
  EXPECT_EQ(parse_model_config(tiny_config_json("llama", R"(, "eos_token_id": [2, 5])")).eos_token_id,
            (std::vector<int>{2, 5}));
}

TEST(LoadRobustness, GgufBlockCountBeyondItsTensorsIsRejectedBeforeAllocating) {
  TempDir t;
  auto path = t / "m.gguf";
  // The tiny llama under llama.cpp's tensor names, with a block_count of 10^9.
  auto w = tiny_weights();
  std::unordered_map<std::string, mx::array> g;
  const std::pair<const char*, const char*> names[] = {
      {"input_layernorm", "attn_norm"}, {"post_attention_layernorm", "ffn_norm"},
      {"self_attn.q_proj", "attn_q"},   {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},   {"self_attn.o_proj", "attn_output"},
      {"mlp.gate_proj", "ffn_gate"},    {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"}};
  g.emplace("token_embd.weight", w.at("model.embed_tokens.weight"));
  g.emplace("output.weight", w.at("lm_head.weight"));
  g.emplace("output_norm.weight", w.at("model.norm.weight"));
  for (int i = 0; i < 2; ++i)
    for (auto& [hf, gg] : names)
      g.emplace("blk." + std::to_string(i) + "." + gg + ".weight",
                w.at("model.layers." + std::to_string(i) + "." + hf + ".weight"));
  auto u32 = [](uint32_t v) { return mx::array(v, mx::uint32); };
  auto write = [&](uint32_t blocks, float eps, std::unordered_map<std::string, mx::GGUFMetaData> meta = {}) {
    meta.insert({
        {"general.architecture", std::string("llama")},
        {"llama.embedding_length", u32(32)},
        {"llama.feed_forward_length", u32(64)},
        {"llama.block_count", u32(blocks)},
        {"llama.attention.head_count", u32(4)},
        {"llama.attention.head_count_kv", u32(2)},
        {"llama.attention.layer_norm_rms_epsilon", mx::array(eps)},
    });
    mx::save_gguf(path.string(), g, meta);
  };
  write(2, 1e-5f);
  EXPECT_EQ(load(path.string()).model->config().num_hidden_layers, 2);
  write(1000000000, 1e-5f);
  EXPECT_EQ(error_of([&] { load(path.string()); }),
            "[model] the config has 1000000000 layers but the weights hold 2 (model.layers.N tensors)");
  write(2, -1.0f);
  EXPECT_EQ(error_of([&] { load(path.string()); }), "[gguf] field 'rms_norm_eps' must be a finite number > 0, got -1");
  // Values no int / float holds are named, not cast (the cast was undefined behaviour; found by fuzz_gguf).
  write(2, std::numeric_limits<float>::infinity());
  EXPECT_EQ(error_of([&] { load(path.string()); }),
            "[gguf] metadata 'llama.attention.layer_norm_rms_epsilon' is not a finite float");
  write(2, 1e-5f, {{"tokenizer.ggml.eos_token_id", u32(4177530000u)}});
  EXPECT_EQ(error_of([&] { load(path.string()); }), "[gguf] metadata 'tokenizer.ggml.eos_token_id' is not a token id");
  write(2, 1e-5f, {{"tokenizer.ggml.bos_token_id", mx::array(1.5f)}});
  EXPECT_EQ(error_of([&] { load(path.string()); }), "[gguf] metadata 'tokenizer.ggml.bos_token_id' is not a token id");
  write(2, 1e-5f, {{"tokenizer.ggml.eos_token_id", u32(7)}});
  EXPECT_EQ(load(path.string()).model->config().eos_token_id, std::vector<int>{7});
}

TEST(LoadRobustness, DirectoryWhereAFileIsExpectedIsNamed) {
  TempDir t;
  auto dir = write_tiny_folder(t);
  fs::remove(dir / "config.json");
  fs::create_directories(dir / "config.json");
  EXPECT_EQ(error_of([&] { load(dir.string()); }),
            "[load] '" + (dir / "config.json").string() + "' is a directory, not a file");
  fs::remove(dir / "config.json");
  write_file(dir / "config.json", tiny_config_json());
  fs::create_directories(dir / "tokenizer.json");
  EXPECT_EQ(error_of([&] { load(dir.string()); }),
            "[tokenizer] tokenizer.json '" + (dir / "tokenizer.json").string() + "' is a directory, not a file");
  EXPECT_EQ(error_of([&] { Tokenizer::from_files(t.path.string()); }),
            "[tokenizer] tokenizer.json '" + t.path.string() + "' is a directory, not a file");
  fs::remove(dir / "model.safetensors");
  fs::create_directories(dir / "model.safetensors");
  EXPECT_EQ(error_of([&] { load_safetensors_file((dir / "model.safetensors").string()); }),
            "[safetensors] '" + (dir / "model.safetensors").string() + "' is a directory, not a file");
  EXPECT_EQ(error_of([&] { reject_directory(t.path.string(), "cli", "--config file"); }),
            "[cli] --config file '" + t.path.string() + "' is a directory, not a file");
  reject_directory((t / "missing").string(), "cli");  // missing paths are left to the reader
}
