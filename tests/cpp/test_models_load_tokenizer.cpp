// load_tokenizer(): the tokenizer of a model path without building the model.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "mlxgp/error.h"
#include "mlxgp/loader.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

std::string error_of(const std::string& path) {
  return mlxgp::testing::error_of([&] { mlxgp::load_tokenizer(path); });
}

}  // namespace

TEST(LoadTokenizer, MissingPathAndFolderWithoutTokenizerAreClearErrors) {
  EXPECT_EQ(error_of("/nonexistent/model.gguf"), "[load] no such file or folder: /nonexistent/model.gguf");
  auto dir = fs::temp_directory_path() / "mlxgp_load_tokenizer_empty";
  fs::create_directories(dir);
  EXPECT_EQ(error_of(dir.string()), "[tokenizer] no tokenizer.json in " + dir.string());
  fs::remove_all(dir);
}

TEST(LoadTokenizer, TruncatedGgufIsRejectedBeforeMlxReadsIt) {
  auto file = fs::temp_directory_path() / "mlxgp_load_tokenizer_truncated.gguf";
  {
    std::ofstream out(file, std::ios::binary);
    out.write("GGUF\x03\x00\x00\x00", 8);  // magic and version, then nothing
  }
  std::string err = error_of(file.string());
  EXPECT_EQ(err.rfind("[gguf] ", 0), 0u) << err;
  fs::remove(file);
}

TEST(LoadTokenizer, DefaultModelHasItsVocabularyAndChatTemplate) {
  auto gguf = fs::path(MLXGP_CACHE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(gguf)) GTEST_SKIP() << "default model not installed";
  auto tok = mlxgp::load_tokenizer(gguf.string());
  EXPECT_EQ(tok->vocab_size(), 49152);
  EXPECT_FALSE(tok->chat_template().empty());
  EXPECT_EQ(tok->decode(tok->encode("Hello world", false)), "Hello world");
}
