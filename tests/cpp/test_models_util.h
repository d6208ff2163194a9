// Helpers for the models tests: a scratch directory and a tiny random llama checkpoint written with
// MLX's own savers, so the loader is exercised on real files.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <mlx/mlx.h>

#include "mlxgp/error.h"
#include "test_util.h"
#include "mlxgp/loader.h"
#include "mlxgp/model.h"

namespace mlxgp::testing {

namespace fs = std::filesystem;
namespace mx = mlx::core;

// The CPU as MLX's default device while in scope (the custom kernels and llama.cpp's blocks as stored
// are the CPU's; a CUDA build's default is the GPU, where the loader makes MLX affine weights and every
// kernel entry point forwards to MLX's op instead).
class CpuDeviceScope {
 public:
  CpuDeviceScope() : previous_(mx::default_device()) { mx::set_default_device(mx::Device::cpu); }
  ~CpuDeviceScope() { mx::set_default_device(previous_); }
  CpuDeviceScope(const CpuDeviceScope&) = delete;
  CpuDeviceScope& operator=(const CpuDeviceScope&) = delete;

 private:
  mx::Device previous_;
};

// Runs each test with the CPU as MLX's default device (CpuDeviceScope).
class CpuDefaultDevice : public ::testing::Test {
 private:
  CpuDeviceScope cpu_;
};

struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("mlxgp_test_models_" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& s) const { return path / s; }
};

inline void write_file(const fs::path& p, const std::string& data) {
  std::ofstream f(p, std::ios::binary);
  f << data;
}

inline std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// config.json text for a tiny llama: hidden 32, intermediate 64, 2 layers, 4 heads, 2 kv heads, vocab 64.
inline std::string tiny_config_json(const std::string& model_type = "llama", const std::string& extra = "") {
  return R"({"model_type": ")" + model_type + R"(", "vocab_size": 64, "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false)" +
         extra + "}";
}

inline WeightMap tiny_weights(uint64_t seed = 0) {
  WeightMap w;
  uint64_t n = 0;
  auto rnd = [&](const mx::Shape& s) { return mx::random::normal(s, 0.0f, 0.2f, mx::random::key(seed * 1000 + ++n)); };
  auto ones = [&](int d) { return mx::add(mx::ones({d}), rnd({d})); };
  w.emplace("model.embed_tokens.weight", rnd({64, 32}));
  w.emplace("lm_head.weight", rnd({64, 32}));
  w.emplace("model.norm.weight", ones(32));
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    w.emplace(p + "input_layernorm.weight", ones(32));
    w.emplace(p + "post_attention_layernorm.weight", ones(32));
    w.emplace(p + "self_attn.q_proj.weight", rnd({32, 32}));
    w.emplace(p + "self_attn.k_proj.weight", rnd({16, 32}));
    w.emplace(p + "self_attn.v_proj.weight", rnd({16, 32}));
    w.emplace(p + "self_attn.o_proj.weight", rnd({32, 32}));
    w.emplace(p + "mlp.gate_proj.weight", rnd({64, 32}));
    w.emplace(p + "mlp.up_proj.weight", rnd({64, 32}));
    w.emplace(p + "mlp.down_proj.weight", rnd({32, 64}));
  }
  return w;
}

// Writes a loadable tiny llama folder (config.json + model.safetensors).
inline fs::path write_tiny_folder(const TempDir& t, const std::string& name = "tiny") {
  auto dir = t / name;
  fs::create_directories(dir);
  write_file(dir / "config.json", tiny_config_json());
  mx::save_safetensors((dir / "model.safetensors").string(), tiny_weights());
  return dir;
}

// A tiny random llama loaded from its own scratch folder.
struct TinyModel {
  TempDir dir;
  std::shared_ptr<Model> model = load(write_tiny_folder(dir).string()).model;
};

// Full-sequence logits [1, T, vocab] of `ids` with fresh caches, evaluated.
inline mx::array logits_of(Model& m, const std::vector<int>& ids) {
  auto caches = m.make_caches();
  auto l = m.forward(mx::array(ids.data(), {1, static_cast<int>(ids.size())}, mx::int32), caches);
  mx::eval(l);
  return l;
}

inline float max_abs_diff(const mx::array& a, const mx::array& b) {
  return mx::max(mx::abs(mx::subtract(a, b))).item<float>();
}

}  // namespace mlxgp::testing
