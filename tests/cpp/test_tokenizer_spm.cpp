// SentencePiece-style tokenizers (BPE with byte fallback + Metaspace, Unigram): streaming around
// Metaspace/Strip and byte-fallback runs, hand-computed Unigram segmentations, and a bounded
// fuzz over every tokenizer kind. Parity with HF is in tests/parity/test_tokenizer_spm.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "io/checkpoint_files.h"
#include "mlxgp/error.h"
#include "test_util.h"
#include "mlxgp/tokenizer.h"

using mlxgp::Error;
using mlxgp::StreamingDetokenizer;
using mlxgp::Tokenizer;
using mlxgp::testing::process_temp_dir;
using nlohmann::json;

namespace {

std::string cache(const std::string& rel) {
  std::string path = std::string(MLXGP_CACHE_DIR) + "/" + rel;
  if (!std::filesystem::exists(path))
    throw std::runtime_error(path + " missing: run scripts/setup.sh (scripts/fetch_tokenizers.sh)");
  return path;
}

// The Llama-2 tokenizer.json alone (the file's pipeline: Prepend+Replace normalizer, byte
// fallback, Replace/ByteFallback/Fuse/Strip decoder).
std::shared_ptr<Tokenizer> llama2() {
  static auto tok = [] {
    auto dir = std::filesystem::path(process_temp_dir()) / "llama2_solo";
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(cache("tokenizers/llama2/tokenizer.json"), dir / "tokenizer.json",
                               std::filesystem::copy_options::overwrite_existing);
    return Tokenizer::from_files((dir / "tokenizer.json").string());
  }();
  return tok;
}

std::string write_temp(const std::string& name, const std::string& content) {
  auto path = std::filesystem::path(process_temp_dir()) / name;
  std::ofstream(path, std::ios::binary) << content;
  return path.string();
}

// A handmade Unigram model: "ab" (-1.5) beats "a" + "b" (-1 + -1), "abc" is one piece, "c" alone
// is unknown, and Metaspace marks word starts.
std::shared_ptr<Tokenizer> tiny_unigram(bool byte_fallback) {
  json vocab = json::array({json::array({"<unk>", 0.0}), json::array({"a", -1.0}), json::array({"b", -1.0}),
                            json::array({"ab", -1.5}), json::array({"\u2581", -2.0}), json::array({"\u2581ab", -1.0}),
                            json::array({"bab", -4.0}), json::array({"<0x63>", -5.0})});
  json j = {
      {"model", {{"type", "Unigram"}, {"unk_id", 0}, {"vocab", vocab}, {"byte_fallback", byte_fallback}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "always"}, {"split", true}}},
      {"post_processor", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         json::array(
             {{{"type", "ByteFallback"}},
              {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "always"}, {"split", true}}})}}},
      {"added_tokens", json::array()}};
  return Tokenizer::from_files(write_temp(byte_fallback ? "uni_bf.json" : "uni.json", j.dump()));
}

std::vector<std::string> chunks(std::shared_ptr<Tokenizer> tok, const std::vector<int>& ids) {
  StreamingDetokenizer sd(tok);
  std::vector<std::string> out;
  for (int id : ids) out.push_back(sd.push(id));
  out.push_back(sd.flush());
  return out;
}

}  // namespace

TEST(TokenizerSpm, MetaspaceStreamingKeepsSpacesExactlyOnce) {
  auto tok = llama2();
  // "▁Hello ▁world": the decoder's Strip drops the first leading space only.
  EXPECT_EQ(tok->decode(std::vector<int>{22557, 1526}), "Hello world");
  EXPECT_EQ(chunks(tok, {22557, 1526}), (std::vector<std::string>{"Hello", " world", ""}));
  // A lone "▁" first: nothing is final until a visible character arrives.
  EXPECT_EQ(tok->decode(std::vector<int>{28705, 28705, 22557}), "  Hello");
  EXPECT_EQ(chunks(tok, {28705, 28705, 22557}), (std::vector<std::string>{"", " ", " Hello", ""}));
  // BOS is skipped when asked and does not count as the first token.
  StreamingDetokenizer sd(tok, true);
  EXPECT_EQ(sd.push(1), "");
  EXPECT_EQ(sd.push(22557), "Hello");
}

TEST(TokenizerSpm, ByteFallbackRunsAreHeldUntilSettled) {
  auto tok = llama2();
  // 中 = E4 B8 AD as three byte tokens.
  EXPECT_EQ(tok->decode(std::vector<int>{22557, 231, 187, 176}), "Hello中");
  EXPECT_EQ(chunks(tok, {22557, 231, 187, 176, 1526}), (std::vector<std::string>{"Hello", "", "", "", "中 world", ""}));
  // A run that is not valid UTF-8 becomes one U+FFFD per byte, even its valid bytes (tokenizers'
  // ByteFallback); 'A' (0x41) followed by a cut character turns into two replacement characters.
  EXPECT_EQ(tok->decode(std::vector<int>{68, 231, 1526}), "\xEF\xBF\xBD\xEF\xBF\xBD world");
  auto c = chunks(tok, {68, 231, 1526});
  EXPECT_EQ(c[0] + c[1], "");
  EXPECT_EQ(c[2] + c[3], "\xEF\xBF\xBD\xEF\xBF\xBD world");
  // Byte fallback encodes characters missing from the vocabulary.
  auto ids = tok->encode("\xF0\x9F\xA6\x9C", false);  // 🦜
  EXPECT_EQ(ids.size(), 5u);                          // "▁" + 4 bytes
  EXPECT_EQ(tok->decode(ids), "\xF0\x9F\xA6\x9C");
}

TEST(TokenizerSpm, UnigramPicksTheBestSegmentation) {
  auto tok = tiny_unigram(false);
  // "ab" -> "▁ab" (-1) beats "▁"+"ab" (-3.5); "bab" (-4) loses to "b"+"ab" (-2.5).
  EXPECT_EQ(tok->encode("ab"), (std::vector<int>{5}));
  EXPECT_EQ(tok->encode("ab bab"), (std::vector<int>{5, 4, 2, 3}));
  // Unknown characters become one fused unk (score min - 10).
  EXPECT_EQ(tok->encode("abcc"), (std::vector<int>{5, 0}));
  EXPECT_EQ(tok->decode(std::vector<int>{5, 4, 2, 3}), "ab bab");
  // With byte fallback the unknown run is spelled in bytes when all bytes exist ("cc"), else unk.
  auto bf = tiny_unigram(true);
  EXPECT_EQ(bf->encode("abcc"), (std::vector<int>{5, 7, 7}));
  EXPECT_EQ(bf->encode("ab\xC3\xA9"), (std::vector<int>{5, 0}));
  EXPECT_EQ(bf->decode(std::vector<int>{5, 7, 7}), "abcc");
}

TEST(TokenizerSpm, UnigramErrorsAreClear) {
  auto load = [](json model) {
    json j = {{"model", model}, {"decoder", nullptr}};
    try {
      Tokenizer::from_files(write_temp("bad_uni.json", j.dump()));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(load({{"type", "Unigram"}, {"vocab", json::array({json::array({"a", "x"})})}}).find("[piece, score]"),
            std::string::npos);
  EXPECT_NE(load({{"type", "Unigram"}, {"unk_id", 3}, {"vocab", json::array({json::array({"a", 0.0})})}})
                .find("unk_id 3 is outside"),
            std::string::npos);
  // No unk_id and an unknown character: tokenizers errors, and so do we (not a crash).
  auto path = write_temp(
      "uni_nounk.json",
      json({{"model", {{"type", "Unigram"}, {"vocab", json::array({json::array({"a", 0.0})})}}}, {"decoder", nullptr}})
          .dump());
  auto tok = Tokenizer::from_files(path);
  EXPECT_EQ(tok->encode("aa"), (std::vector<int>{0, 0}));
  EXPECT_THROW(tok->encode("ab"), Error);
}

TEST(TokenizerFuzz, EveryKindSurvivesRandomBytesAndIds) {
  std::vector<std::shared_ptr<Tokenizer>> toks = {
      llama2(),
      tiny_unigram(false),
      tiny_unigram(true),
      Tokenizer::from_files(cache("tokenizers/gpt2/tokenizer.json")),
      Tokenizer::from_files(cache("tokenizers/llama2/tokenizer.json")),  // transformers' LlamaTokenizer pipeline
      Tokenizer::from_gguf(mlxgp::io::load_gguf_metadata(cache("models/SmolLM2-135M-Instruct.Q4_1.gguf")))};
  std::mt19937 rng(77);
  const std::vector<std::string> alphabet = {"a",  " ",  "  ",     "\n", "\xE2\x96\x81", "<s>",  "</s>", "<unk>", "é",
                                             "中", "😀", "\u200d", "ab", "<0x41>",       "\xff", "\xC3", "\x80"};
  for (size_t k = 0; k < toks.size(); ++k) {
    auto& tok = toks[k];
    int valid = 0;
    for (int it = 0; it < 600; ++it) {
      std::string s;
      int n = rng() % 20;
      for (int i = 0; i < n; ++i)
        s += rng() % 3 == 0 ? std::string(1, static_cast<char>(rng() % 256)) : alphabet[rng() % alphabet.size()];
      std::vector<int> ids;
      try {
        ids = tok->encode(s, it % 2 == 0);
      } catch (const Error& e) {
        // Invalid UTF-8 is the only way encode may fail on these models.
        EXPECT_NE(std::string(e.what()).find("[tokenizer] input is not valid UTF-8 (byte offset "), std::string::npos)
            << k;
        continue;
      }
      ++valid;
      std::string text = tok->decode(ids);
      StreamingDetokenizer sd(tok);
      std::string streamed;
      for (int id : ids) streamed += sd.push(id);
      EXPECT_EQ(streamed + sd.flush(), text) << k;
    }
    EXPECT_GT(valid, 50) << k;
    for (int it = 0; it < 600; ++it) {
      std::vector<int> ids(rng() % 24);
      for (int& id : ids) id = static_cast<int>(rng() % (tok->vocab_size() + 20)) - 10;
      bool skip = it % 2 == 1;
      std::string text;
      try {
        text = tok->decode(ids, skip);
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("is outside the vocabulary"), std::string::npos);
        continue;
      }
      StreamingDetokenizer sd(tok, skip);
      std::string streamed;
      for (int id : ids) streamed += sd.push(id);
      EXPECT_EQ(streamed + sd.flush(), text) << k;
    }
  }
}
