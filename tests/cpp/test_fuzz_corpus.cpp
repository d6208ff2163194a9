// Regression test of the fuzz targets (fuzz/): every kept input in tests/data/fuzz/<target>/ (the seed
// corpora and the inputs that once crashed a target) goes through the target's body, as libFuzzer
// would run it. Bad input must end in mlxgp::Error (swallowed by the body); any other exception
// escaping fails the test, and a memory error fails it in the sanitizer builds (make test-asan).
#include <gtest/gtest.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "fuzz_targets.h"

namespace {

namespace fs = std::filesystem;
const std::string kData = MLXGP_FUZZ_DATA_DIR;

void run_corpus(const std::string& target, const std::function<int(const uint8_t*, size_t)>& body) {
  mlx::core::set_default_device(mlx::core::Device::cpu);
  const fs::path dir = fs::path(kData) / target;
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  std::vector<fs::path> files;
  for (auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty()) << "no inputs in " << dir;
  for (auto& p : files) {
    std::ifstream f(p, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(f)), {});
    SCOPED_TRACE(p.string());
    try {
      body(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    } catch (const std::exception& e) {
      ADD_FAILURE() << p << ": a non-mlxgp exception escaped: " << e.what();
    }
  }
}

using namespace mlxgp::fuzz;

TEST(FuzzCorpus, Gguf) { run_corpus("gguf", fuzz_gguf); }
TEST(FuzzCorpus, Safetensors) { run_corpus("safetensors", fuzz_safetensors); }
TEST(FuzzCorpus, ModelConfig) { run_corpus("model_config", fuzz_model_config); }
TEST(FuzzCorpus, TokenizerJson) { run_corpus("tokenizer_json", fuzz_tokenizer_json); }
TEST(FuzzCorpus, TokenizerText) {
  run_corpus("tokenizer_text", [](const uint8_t* d, size_t n) { return fuzz_tokenizer_text(d, n, kData); });
}
TEST(FuzzCorpus, ChatTemplate) { run_corpus("chat_template", fuzz_chat_template); }
TEST(FuzzCorpus, ToolCalls) { run_corpus("tool_calls", fuzz_tool_calls); }
TEST(FuzzCorpus, GenerationConfig) { run_corpus("generation_config", fuzz_generation_config); }
TEST(FuzzCorpus, PromptCache) { run_corpus("prompt_cache", fuzz_prompt_cache); }
TEST(FuzzCorpus, Checkpoint) { run_corpus("checkpoint", fuzz_checkpoint); }
TEST(FuzzCorpus, ServerRequest) {
  run_corpus("server_request", [](const uint8_t* d, size_t n) { return fuzz_server_request(d, n, kData); });
}

}  // namespace
