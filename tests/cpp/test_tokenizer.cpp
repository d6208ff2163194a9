// Tokenizer unit tests: error paths, the streaming detokenizer invariant, malformed files, and a
// bounded fuzz. Token-for-token parity with HF lives in tests/parity/test_tokenizer_parity.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <atomic>
#include <random>
#include <thread>
#include <string>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "io/checkpoint_files.h"
#include "mlxgp/error.h"
#include "test_util.h"
#include "mlxgp/tokenizer.h"

namespace mx = mlx::core;

using mlxgp::Error;
using mlxgp::StreamingDetokenizer;
using mlxgp::Tokenizer;
using mlxgp::testing::process_temp_dir;
using nlohmann::json;

namespace {

std::shared_ptr<Tokenizer> default_tokenizer() {
  static std::shared_ptr<Tokenizer> tok = [] {
    std::string path = std::string(MLXGP_CACHE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!std::filesystem::exists(path))
      throw std::runtime_error("default model missing at " + path + ": run scripts/setup.sh");
    return Tokenizer::from_gguf(mlxgp::io::load_gguf_metadata(path));  // the loaders' checked reader
  }();
  return tok;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "tokenizer");
    return e.what();
  }
  ADD_FAILURE() << "no mlxgp::Error thrown";
  return "";
}

bool valid_utf8(const std::string& s) {
  // Decoded text is always valid UTF-8; encode() is the validator under test elsewhere, so use a
  // tokenizer-independent check here.
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!n || i + n > s.size()) return false;
    for (int k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

std::string stream_all(std::shared_ptr<Tokenizer> tok, const std::vector<int>& ids, bool skip = false) {
  StreamingDetokenizer sd(tok, skip);
  std::string out;
  for (int id : ids) {
    std::string piece = sd.push(id);
    EXPECT_TRUE(valid_utf8(piece));
    out += piece;
  }
  return out + sd.flush();
}

// A minimal valid byte-level BPE tokenizer.json (single bytes of "ab" plus one merge).
json tiny_json() {
  return json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null,
    "added_tokens": [{"id": 3, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false,
                      "normalized": false, "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}], "pair": [],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [3], "tokens": ["<s>"]}}},
    "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
              "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
  })");
}

std::string write_temp(const std::string& name, const std::string& content) {
  auto path = std::filesystem::path(process_temp_dir()) / name;
  std::ofstream(path, std::ios::binary) << content;
  return path.string();
}

}  // namespace

TEST(Tokenizer, InvalidUtf8NamesTheByteOffset) {
  auto tok = default_tokenizer();
  const std::pair<std::string, int> cases[] = {
      {"abc\xff def", 3},   {"\x80", 0},
      {"ok\xC0\x80", 2},  // stray / overlong
      {"x\xED\xA0\x80", 1}, {"\xF4\x90\x80\x80", 0},
      {"caf\xC3", 3},  // surrogate / > U+10FFFF / cut
      {"\xE2\x82", 0},      {"\xF5\x80\x80\x80", 0},
  };
  for (auto& [text, off] : cases)
    EXPECT_EQ(error_of([&] { tok->encode(text); }),
              "[tokenizer] input is not valid UTF-8 (byte offset " + std::to_string(off) + ")");
  EXPECT_NO_THROW(tok->encode("caf\xC3\xA9 \xF0\x9F\x98\x80"));
}

TEST(Tokenizer, DecodeRejectsIdsOutsideTheVocabulary) {
  auto tok = default_tokenizer();
  int v = tok->vocab_size();
  EXPECT_EQ(v, 49152);
  for (int bad : {-1, v, v + 100, std::numeric_limits<int>::max()}) {
    std::vector<int> ids = {1, bad};
    EXPECT_EQ(error_of([&] { tok->decode(ids); }), "[tokenizer] token id " + std::to_string(bad) +
                                                       " is outside the vocabulary (size " + std::to_string(v) + ")");
    StreamingDetokenizer sd(tok);
    EXPECT_THROW(sd.push(bad), Error);
  }
}

TEST(Tokenizer, RoundTripsTextAndSpecialTokens) {
  auto tok = default_tokenizer();
  std::string text = "<|im_start|>user\nHéllo 😀 世界\t\t 12345<|im_end|>";
  auto ids = tok->encode(text);
  EXPECT_EQ(ids.front(), 1);  // <|im_start|> is matched whole
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_EQ(tok->decode(ids, true), "user\nHéllo 😀 世界\t\t 12345");
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_FALSE(tok->is_special(ids[1]));
  EXPECT_EQ(tok->token_to_id("<|im_end|>"), 2);
  EXPECT_EQ(tok->bos_token_id(), 1);
  EXPECT_EQ(tok->eos_token_id(), 2);
  EXPECT_NE(tok->chat_template().find("<|im_start|>"), std::string::npos);
}

TEST(StreamingDetokenizer, HoldsBackSplitCharactersAndMatchesDecode) {
  auto tok = default_tokenizer();
  // "😀" spelled as its 4 single-byte tokens: nothing is emitted until the last byte arrives.
  std::vector<int> bytes;
  for (std::string b : {"ðŁ", "ĺ", "Ģ"}) {
    auto id = tok->token_to_id(b);
    ASSERT_TRUE(id) << b;
    bytes.push_back(*id);
  }
  auto f0 = tok->token_to_id("ð"), f1 = tok->token_to_id("Ł");
  ASSERT_TRUE(f0 && f1);
  std::vector<int> ids = {*f0, *f1, bytes[1], bytes[2]};
  ASSERT_EQ(tok->decode(ids), "😀");
  StreamingDetokenizer sd(tok);
  EXPECT_EQ(sd.push(ids[0]), "");
  EXPECT_EQ(sd.push(ids[1]), "");
  EXPECT_EQ(sd.push(ids[2]), "");
  EXPECT_EQ(sd.push(ids[3]), "😀");
  EXPECT_EQ(sd.flush(), "");
  // A sequence cut short is only settled (as U+FFFD, like decode) at flush.
  std::vector<int> cut = {tok->encode("a")[0], *f0, *f1};
  StreamingDetokenizer sd2(tok);
  EXPECT_EQ(sd2.push(cut[0]), "a");
  EXPECT_EQ(sd2.push(cut[1]), "");
  EXPECT_EQ(sd2.push(cut[2]), "");
  EXPECT_EQ("a" + sd2.flush(), tok->decode(cut));
  // Whole texts with multi-byte characters split across tokens.
  for (std::string text : {"日本語のテキスト 👨‍👩‍👧‍👦 🇫🇷 مرحبا",
                           "<|im_start|>assistant\nça va? ½ 😀😀"}) {
    auto t = tok->encode(text, false);
    EXPECT_EQ(stream_all(tok, t), text);
    EXPECT_EQ(stream_all(tok, t, true), tok->decode(t, true));
  }
}

TEST(TokenizerFiles, LoadsAMinimalTokenizerJson) {
  auto path = write_temp("tiny.json", tiny_json().dump());
  auto tok = Tokenizer::from_files(path);
  EXPECT_EQ(tok->encode("abab"), (std::vector<int>{3, 2, 2}));
  EXPECT_EQ(tok->encode("abab", false), (std::vector<int>{2, 2}));
  EXPECT_EQ(tok->decode(std::vector<int>{3, 2, 0}), "<s>aba");
  EXPECT_EQ(tok->vocab_size(), 4);
}

// A folder with tiny_json() as tokenizer.json and `config` as tokenizer_config.json.
std::string write_folder(const std::string& name, const json& config) {
  auto dir = std::filesystem::path(process_temp_dir()) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tiny_json().dump();
  std::ofstream(dir / "tokenizer_config.json") << config.dump();
  return dir.string();
}

TEST(TokenizerFiles, NamedChatTemplatesArePickedAsTransformersDoes) {
  json named = json::array({json{{"name", "default"}, {"template", "D"}}, json{{"name", "tool_use"}, {"template", "T"}},
                            json{{"name", "rag"}, {"template", "R"}}});
  auto dir = write_folder("named", {{"chat_template", named}});
  auto tok = Tokenizer::from_files(dir + "/tokenizer.json");
  EXPECT_EQ(tok->chat_template(), "D");
  EXPECT_EQ(tok->select_chat_template(), "D");
  EXPECT_EQ(tok->select_chat_template("", /*with_tools=*/true), "T");
  EXPECT_EQ(tok->select_chat_template("rag", true), "R");
  EXPECT_EQ(tok->select_chat_template("{{ x }}"), "{{ x }}");  // not a name: the template itself
  EXPECT_EQ(tok->named_chat_templates().size(), 3u);
  // additional_chat_templates/*.jinja and chat_template.jinja replace the config's templates.
  std::filesystem::create_directories(dir + "/additional_chat_templates");
  std::ofstream(dir + "/additional_chat_templates/tool_use.jinja") << "FILE_T";
  tok = Tokenizer::from_files(dir + "/tokenizer.json");
  EXPECT_EQ(tok->select_chat_template("", true), "FILE_T");
  try {  // no default among them: transformers raises naming the templates
    (void)tok->chat_template();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "chat_template");
    EXPECT_NE(std::string(e.what()).find("(tool_use)"), std::string::npos) << e.what();
  }
  std::ofstream(dir + "/chat_template.jinja") << "FILE_D";
  tok = Tokenizer::from_files(dir + "/tokenizer.json");
  EXPECT_EQ(tok->chat_template(), "FILE_D");
  EXPECT_EQ(tok->select_chat_template("", true), "FILE_T");
  auto single = Tokenizer::from_files(write_folder("single", {{"chat_template", "S"}}) + "/tokenizer.json");
  EXPECT_EQ(single->select_chat_template("", true), "S");
  EXPECT_EQ(single->select_chat_template("default"), "default");  // a single template has no names
  EXPECT_TRUE(single->named_chat_templates().empty());
  json twice =
      json::array({json{{"name", "default"}, {"template", "A"}}, json{{"name", "default"}, {"template", "B"}}});
  auto dup = Tokenizer::from_files(write_folder("dup", {{"chat_template", twice}}) + "/tokenizer.json");
  EXPECT_EQ(dup->chat_template(), "B");  // a dict: the last one wins
  EXPECT_EQ(dup->select_chat_template("default"), "B");
  EXPECT_EQ(dup->named_chat_templates().size(), 1u);
}

TEST(TokenizerFiles, SpecialTokensMapFollowsTheConfig) {
  json cfg = {{"bos_token", "<s>"},
              {"unk_token", json{{"content", "<unk>"}}},
              {"pad_token", "<pad>"},
              {"mask_token", "<mask>"},
              {"sep_token", nullptr}};
  auto tok = Tokenizer::from_files(write_folder("specials", cfg) + "/tokenizer.json");
  const auto& st = tok->special_tokens();
  EXPECT_EQ(st.bos_token, "<s>");
  EXPECT_EQ(st.eos_token, "");
  EXPECT_EQ(st.unk_token, "<unk>");
  EXPECT_EQ(st.pad_token, "<pad>");
  EXPECT_EQ(st.mask_token, "<mask>");
  EXPECT_EQ(st.sep_token, "");
  // A class's defaults fill absent keys (GPT2Tokenizer: <|endoftext|>); an explicit null stays unset.
  tok = Tokenizer::from_files(
      write_folder("gpt2_defaults", {{"tokenizer_class", "GPT2Tokenizer"}, {"bos_token", nullptr}}) +
      "/tokenizer.json");
  EXPECT_EQ(tok->special_tokens().bos_token, "");
  EXPECT_EQ(tok->special_tokens().eos_token, "<|endoftext|>");
  EXPECT_EQ(tok->special_tokens().unk_token, "<|endoftext|>");
}

TEST(TokenizerFiles, SplitSpecialTokensEncodesThemAsText) {
  json j = tiny_json();  // "<", "s", ">" in the vocabulary; <s> (special) after it
  j["model"]["vocab"].update(json{{"<", 3}, {"s", 4}, {">", 5}});
  j["added_tokens"][0]["id"] = 6;
  j["post_processor"]["special_tokens"]["<s>"]["ids"] = json::array({6});
  auto dir = write_folder("split", {{"split_special_tokens", true}});
  std::ofstream(dir + "/tokenizer.json") << j.dump();
  auto tok = Tokenizer::from_files(dir + "/tokenizer.json");
  EXPECT_EQ(tok->encode("<s>ab", false), (std::vector<int>{3, 4, 5, 2}));
  EXPECT_EQ(tok->encode("ab"), (std::vector<int>{6, 2}));  // the post-processor still adds it
  std::ofstream(dir + "/tokenizer_config.json") << "{}";
  EXPECT_EQ(Tokenizer::from_files(dir + "/tokenizer.json")->encode("<s>ab", false), (std::vector<int>{6, 2}));
}

TEST(TokenizerFiles, BareFileTruncationAndPaddingAreRefused) {
  for (const char* key : {"truncation", "padding"}) {
    json j = tiny_json();
    j[key] = json{{"max_length", 2}};
    auto path = write_temp("bare_" + std::string(key) + ".json", j.dump());
    EXPECT_NE(error_of([&] { Tokenizer::from_files(path); }).find("sets '" + std::string(key) + "'"),
              std::string::npos);
  }
}

TEST(TokenizerFiles, MalformedFilesAreClearErrors) {
  auto load = [](const std::string& content) {
    auto path = write_temp("bad.json", content);
    return error_of([&] { Tokenizer::from_files(path); });
  };
  auto with = [](const char* ptr, json v) {
    json j = tiny_json();
    j[json::json_pointer(ptr)] = std::move(v);
    return j.dump();
  };
  EXPECT_NE(load("{not json").find("is not valid JSON"), std::string::npos);
  EXPECT_NE(load("[1, 2]").find("must hold a JSON object"), std::string::npos);
  EXPECT_NE(load("{}").find("no 'model' object"), std::string::npos);
  EXPECT_NE(load(with("/model/type", "WordPiece")).find("unsupported model type 'WordPiece'"), std::string::npos);
  EXPECT_NE(load(with("/model/dropout", 0.1)).find("unsupported BPE option: dropout"), std::string::npos);
  EXPECT_NE(load(with("/model/type", "Unigram")).find("no 'vocab' array"), std::string::npos);
  EXPECT_NE(load(with("/model/vocab", json::array())).find("no 'vocab' object"), std::string::npos);
  EXPECT_NE(load(with("/model/vocab/a", "zero")).find("integer id"), std::string::npos);
  EXPECT_NE(load(with("/model/merges", json::array({"a c"}))).find("missing from the vocabulary"), std::string::npos);
  EXPECT_NE(load(with("/model/merges", json::array({"abc"}))).find("two tokens"), std::string::npos);
  EXPECT_NE(load(with("/model/merges", json::array({7}))).find("merge entries"), std::string::npos);
  EXPECT_NE(load(with("/normalizer", json{{"type", "BertNormalizer"}})).find("unsupported normalizer 'BertNormalizer'"),
            std::string::npos);
  EXPECT_NE(
      load(with("/pre_tokenizer", json{{"type", "UnicodeScripts"}})).find("unsupported pre-tokenizer 'UnicodeScripts'"),
      std::string::npos);
  EXPECT_NE(load(with("/pre_tokenizer",
                      json{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}}))
                .find("cannot compile regex"),
            std::string::npos);
  EXPECT_NE(
      load(with("/pre_tokenizer", json{{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}}))
          .find("behavior 'Sideways'"),
      std::string::npos);
  EXPECT_NE(load(with("/post_processor", json{{"type", "BertProcessing"}})).find("unsupported post_processor"),
            std::string::npos);
  // 2^32 + 3 would wrap to 3 through get<int>().
  EXPECT_NE(load(with("/post_processor/special_tokens/<s>/ids/0", 4294967299LL))
                .find("TemplateProcessing special token ids must be integers in [0, 2^31)"),
            std::string::npos);
  EXPECT_NE(load(with("/decoder", json{{"type", "WordPiece"}})).find("unsupported decoder 'WordPiece'"),
            std::string::npos);
  EXPECT_NE(load(with("/added_tokens/0/id", "x")).find("added token"), std::string::npos);
  EXPECT_NE(load(with("/added_tokens", json{{"a", 1}})).find("'added_tokens' must be an array"), std::string::npos);
  EXPECT_NE(load("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\\u00ff\": 0}, \"merges\": null},"
                 "\"decoder\": {\"type\": \"ByteLevel\"}, \"pre_tokenizer\": 5}")
                .find("pre_tokenizer must be an object"),
            std::string::npos);
  EXPECT_NE(error_of([] { Tokenizer::from_files("/nonexistent/tokenizer.json"); }).find("cannot open"),
            std::string::npos);
}

TEST(TokenizerFuzz, RandomBytesAndIdsNeverCrash) {
  auto tok = default_tokenizer();
  std::mt19937 rng(1234);
  const std::vector<std::string> alphabet = {"a",     " ",    "\n",   "\t",   "Z",       "9",
                                             "'",     "é",    "日",   "😀",   "\u200d",  "<|im_start|>",
                                             "<|im_", "\xff", "\xC3", "\x80", "\xE2\x82"};
  int valid = 0;
  for (int it = 0; it < 3000; ++it) {
    std::string s;
    int n = rng() % 24;
    for (int k = 0; k < n; ++k) {
      if (rng() % 3 == 0) s += static_cast<char>(rng() % 256);
      else s += alphabet[rng() % alphabet.size()];
    }
    std::vector<int> ids;
    try {
      ids = tok->encode(s, it % 2 == 0);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not valid UTF-8"), std::string::npos);
      continue;
    }
    ++valid;
    // Byte-level BPE without a normalizer is lossless, except that (like HF) bytes missing from the
    // vocabulary are dropped: this one lacks some C0 controls.
    bool controls = std::any_of(s.begin(), s.end(),
                                [](char c) { return c >= 0 && c < 0x20 && c != '\t' && c != '\n' && c != '\r'; });
    if (!controls) {
      EXPECT_EQ(tok->decode(ids), s);
    }
    EXPECT_EQ(stream_all(tok, ids), tok->decode(ids));
  }
  EXPECT_GT(valid, 100);
  for (int it = 0; it < 3000; ++it) {
    std::vector<int> ids(rng() % 16);
    bool in_range = true;
    for (int& id : ids) {
      id = static_cast<int>(rng() % 60000) - 100;
      in_range = in_range && id >= 0 && id < tok->vocab_size();
    }
    if (!in_range) {
      EXPECT_THROW(tok->decode(ids), Error);
      continue;
    }
    std::string text = tok->decode(ids, it % 2 == 1);
    EXPECT_TRUE(valid_utf8(text));
    EXPECT_EQ(stream_all(tok, ids, it % 2 == 1), text);
  }
}

TEST(TokenizerGguf, BadMetadataIsAClearError) {
  namespace mx = mlx::core;
  using Meta = std::unordered_map<std::string, mx::GGUFMetaData>;
  auto good = [] {
    Meta m;
    m["tokenizer.ggml.model"] = std::string("gpt2");
    m["tokenizer.ggml.tokens"] = std::vector<std::string>{"a", "b", "ab", "<s>"};
    m["tokenizer.ggml.merges"] = std::vector<std::string>{"a b"};
    m["tokenizer.ggml.token_type"] = mx::array({1, 1, 1, 3});
    m["tokenizer.ggml.bos_token_id"] = mx::array(3);
    m["tokenizer.ggml.add_bos_token"] = mx::array(true);
    return m;
  };
  auto tok = Tokenizer::from_gguf(good());
  EXPECT_EQ(tok->encode("abab<s>a"), (std::vector<int>{3, 2, 2, 3, 0}));
  EXPECT_TRUE(tok->is_special(3));
  auto err = [&](auto edit) {
    Meta m = good();
    edit(m);
    return error_of([&] { Tokenizer::from_gguf(m); });
  };
  EXPECT_NE(err([](Meta& m) { m.erase("tokenizer.ggml.model"); }).find("has no tokenizer"), std::string::npos);
  EXPECT_NE(err([](Meta& m) {
              m["tokenizer.ggml.model"] = std::string("bert");
            }).find("GGUF tokenizer model 'bert' is not supported"),
            std::string::npos);
  EXPECT_NE(err([](Meta& m) { m["tokenizer.ggml.model"] = mx::array(1); }).find("must be a string"), std::string::npos);
  EXPECT_NE(err([](Meta& m) { m.erase("tokenizer.ggml.tokens"); }).find("tokens' is missing"), std::string::npos);
  EXPECT_NE(err([](Meta& m) { m.erase("tokenizer.ggml.merges"); }).find("merges' is missing"), std::string::npos);
  EXPECT_NE(err([](Meta& m) {
              m["tokenizer.ggml.merges"] = std::vector<std::string>{"a z"};
            }).find("missing from the vocabulary"),
            std::string::npos);
  EXPECT_NE(err([](Meta& m) { m["tokenizer.ggml.token_type"] = mx::array({1, 1}); }).find("differ in length"),
            std::string::npos);
  EXPECT_NE(err([](Meta& m) { m["tokenizer.ggml.bos_token_id"] = mx::array(99); }).find("outside the vocabulary"),
            std::string::npos);
  EXPECT_NE(err([](Meta& m) {
              m["tokenizer.ggml.tokens"] = std::vector<std::string>{"a", "b", "ab", "\xff"};
            }).find("not valid UTF-8"),
            std::string::npos);
}

TEST(TokenizerFiles, AbsurdIdsAreRejectedNotAllocated) {
  json j = tiny_json();
  j["model"]["vocab"]["ab"] = 2000000000;
  auto p1 = write_temp("huge.json", j.dump());
  EXPECT_NE(error_of([&] { Tokenizer::from_files(p1); }).find("beyond the supported"), std::string::npos);
  json k = tiny_json();
  k["post_processor"]["special_tokens"]["<s>"]["ids"] = json::array({12345});
  auto p2 = write_temp("badpost.json", k.dump());
  EXPECT_NE(error_of([&] { Tokenizer::from_files(p2); }).find("post-processor special token id 12345"),
            std::string::npos);
}

TEST(TokenizerFuzz, MutatedTokenizerJsonLoadsOrFailsCleanly) {
  // Every field of a valid file replaced by values of every JSON type: loading either works or
  // throws mlxgp::Error, never anything else.
  json base = tiny_json();
  json flat = base.flatten();
  const json replacements[] = {
      nullptr, 1, -7, 2.5, "x", "", true, json::array(), json::object(), json::array({1, "a"})};
  auto path = std::filesystem::path(process_temp_dir()) / "mutated.json";
  int loaded = 0, rejected = 0;
  for (auto& [ptr, value] : flat.items()) {
    for (const json& r : replacements) {
      json f = flat;
      f[ptr] = r;
      json j;
      try {
        j = f.unflatten();
      } catch (const json::exception&) {
        continue;  // not representable as a document
      }
      std::ofstream(path, std::ios::binary) << j.dump();
      try {
        auto tok = Tokenizer::from_files(path.string());
        tok->decode(tok->encode("ab <s> ba"));
        ++loaded;
      } catch (const Error&) {
        ++rejected;
      } catch (const std::exception& e) {
        ADD_FAILURE() << ptr << " = " << r.dump() << " leaked " << e.what();
      }
    }
  }
  EXPECT_GT(loaded, 10);
  EXPECT_GT(rejected, 10);
}

TEST(Tokenizer, EncodeIsSafeAcrossThreads) {
  auto tok = default_tokenizer();
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i)
    texts.push_back("text " + std::to_string(i * 7919) + " 日本 😀 word" + std::to_string(i));
  std::vector<std::vector<int>> expected;
  for (auto& t : texts) expected.push_back(tok->encode(t));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&] {
      for (int rep = 0; rep < 20; ++rep)
        for (size_t i = 0; i < texts.size(); ++i)
          if (tok->encode(texts[i]) != expected[i]) ++mismatches;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}
