// Structured outputs: the token texts handed to xgrammar (byte-level and Metaspace/byte-fallback
// tokenizers), and the mask processor: every chosen token keeps the text inside the constraint, EOS
// comes only where it may end, rows keep their own matchers, and bad constraints fail in one line.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <regex>

#include <nlohmann/json.hpp>

#include <mlx/mlx.h>

#include "generation/structured/grammar_constraint.h"
#include "io/checkpoint_files.h"
#include "generation/structured/token_vocab.h"
#include "mlxgp/error.h"
#include "mlxgp/tokenizer.h"

namespace mlxgp {
namespace {

namespace mx = mlx::core;

std::shared_ptr<const Tokenizer> smollm() {
  static std::shared_ptr<const Tokenizer> tok = [] {
    auto path = std::filesystem::path(MLXGP_CACHE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
    return std::shared_ptr<const Tokenizer>(Tokenizer::from_gguf(io::load_gguf_metadata(path.string())));
  }();
  return tok;
}

TEST(StructuredVocab, TokenBytesAreWhatEachTokenAddsMidText) {
  auto tok = smollm();
  auto vocab = token_vocab(*tok);
  ASSERT_EQ(static_cast<int>(vocab.size()), tok->vocab_size());
  auto one = [&](const std::string& text) {
    auto ids = tok->encode(text, false);
    EXPECT_EQ(ids.size(), 1u) << text;
    return ids[0];
  };
  EXPECT_EQ(vocab[one(" hello")], " hello");
  EXPECT_EQ(vocab[one("{")], "{");
  EXPECT_EQ(vocab[*tok->eos_token_id()], "");  // special: never inside the text
  // Metaspace + byte fallback (Llama 2): the leading space of a word piece is kept, <0x0A> is a newline.
  auto llama = Tokenizer::from_files(std::string(MLXGP_CACHE_DIR) + "/tokenizers/llama2/tokenizer.json");
  auto lv = token_vocab(*llama);
  // The tokens of a text add up to it (Metaspace: with the space it prepends to the first word).
  auto join = [](const std::vector<std::string>& v, const std::vector<int>& ids) {
    std::string s;
    for (int id : ids) s += v[id];
    return s;
  };
  EXPECT_EQ(join(lv, llama->encode("a hello, wörld", false)), " a hello, wörld");
  EXPECT_EQ(join(vocab, tok->encode("Hello wörld, {\"a\": 1}\n", false)), "Hello wörld, {\"a\": 1}\n");
  ASSERT_TRUE(llama->token_to_id("<0x0A>") && llama->token_to_id("<0xE2>"));
  EXPECT_EQ(lv[*llama->token_to_id("<0x0A>")], "\n");
  EXPECT_EQ(lv[*llama->token_to_id("<0xE2>")], "\xE2");  // a lone UTF-8 lead byte stays a raw byte
}

// All rows' ids so far (a 3-token prompt of zeros, then each row's tokens), as the decode loop passes them.
mx::array ids_of(const std::vector<std::vector<int>>& generated) {
  std::vector<int> flat;
  for (auto& g : generated) {
    flat.insert(flat.end(), {0, 0, 0});
    flat.insert(flat.end(), g.begin(), g.end());
  }
  const int rows = static_cast<int>(generated.size());
  return mx::array(flat.data(), {rows, static_cast<int>(flat.size()) / rows}, mx::int32);
}

// Drives the processor like the decode loop: random logits, argmax of the masked ones.
std::vector<std::vector<int>> drive(LogitsProcessor& p, int rows, int vocab, int steps, int eos, unsigned seed) {
  p.on_prompt(mx::zeros({rows, 3}, mx::int32));
  std::vector<std::vector<int>> all(rows), out(rows);
  std::vector<bool> ended(rows, false);
  for (int s = 0; s < steps; ++s) {
    auto logits = mx::random::normal({rows, vocab}, mx::float32, 0.0f, 1.0f, mx::random::key(seed + s));
    auto masked = p.apply(logits, ids_of(all));
    auto tokens = mx::astype(mx::argmax(masked, -1), mx::int32);
    tokens.eval();
    for (int r = 0; r < rows; ++r) {
      all[r].push_back(tokens.data<int32_t>()[r]);
      if (ended[r]) continue;
      out[r].push_back(all[r].back());
      ended[r] = out[r].back() == eos;
    }
  }
  return out;
}

TEST(GrammarConstraint, EveryRowStaysInsideTheRegexAndEndsOnlyWhereItMay) {
  auto tok = smollm();
  GenerationConfig c;
  c.regex = "(yes|no)-[0-9]{2,4}";
  const int eos = *tok->eos_token_id();
  c.eos_token_id = std::vector<int>{eos};
  const int vocab = tok->vocab_size() + 64;  // the model may have more logits than the tokenizer has tokens
  auto p = make_grammar_constraint(c, tok, vocab);
  auto rows = drive(*p, 3, vocab, 16, eos, 5);
  const std::regex re("(yes|no)-[0-9]{2,4}");
  for (auto& ids : rows) {
    ASSERT_FALSE(ids.empty());
    const bool ended = ids.back() == eos;
    std::vector<int> body(ids.begin(), ids.end() - (ended ? 1 : 0));
    for (int id : body) EXPECT_LT(id, tok->vocab_size());
    const std::string text = tok->decode(body);
    if (ended) EXPECT_TRUE(std::regex_match(text, re)) << text;
    else EXPECT_TRUE(std::regex_match(text, std::regex("(y|ye|yes|n|no)(-[0-9]{0,4})?"))) << text;
  }
  // Rows are matched by their ids, whatever order they come in (beams reorder and duplicate rows): the
  // first row's tokens given as three rows get the first row's mask three times.
  std::vector<std::vector<int>> first(3, rows[0]);
  if (first[0].back() == eos)
    for (auto& f : first) f.pop_back();
  auto q = p->clone();
  auto masks = mx::isinf(q->apply(mx::zeros({3, vocab}), ids_of(first)));
  auto alone = mx::isinf(p->apply(mx::zeros({1, vocab}), ids_of({first[0]})));
  EXPECT_TRUE(mx::array_equal(masks, mx::repeat(alone, 3, 0)).item<bool>());
}

TEST(GrammarConstraint, JsonSchemaRowsProduceValidPrefixes) {
  auto tok = smollm();
  GenerationConfig c;
  c.json_schema = R"({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
                      "additionalProperties": false})";
  const int eos = *tok->eos_token_id();
  c.eos_token_id = std::vector<int>{eos};
  auto p = make_grammar_constraint(c, tok, tok->vocab_size());
  auto rows = drive(*p, 2, tok->vocab_size(), 40, eos, 11);
  for (auto& ids : rows) {
    if (ids.back() != eos) continue;
    ids.pop_back();
    auto j = nlohmann::json::parse(tok->decode(ids));
    ASSERT_TRUE(j.is_object());
    EXPECT_TRUE(j["n"].is_number_integer());
    EXPECT_EQ(j.size(), 1u);
  }
}

TEST(GrammarConstraint, BadConstraintsFailInOneLine) {
  auto tok = smollm();
  auto expect_fail = [&](GenerationConfig c, const std::string& prefix) {
    c.eos_token_id = std::vector<int>{*tok->eos_token_id()};
    try {
      make_grammar_constraint(c, tok, tok->vocab_size());
      FAIL() << "expected " << prefix;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(prefix, 0), 0u) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  };
  GenerationConfig regex;
  regex.regex = "(unclosed";
  expect_fail(regex, "[grammar] invalid regex");
  GenerationConfig schema;
  schema.json_schema = "{not json";
  expect_fail(schema, "[grammar] invalid json_schema");
  GenerationConfig grammar;
  grammar.grammar = "root ::= missing_rule";
  expect_fail(grammar, "[grammar] invalid grammar");
  // A schema xgrammar would enforce only in part is refused, naming the construct, every time.
  GenerationConfig unique;
  unique.json_schema = R"({"type": "array", "items": {"type": "integer"}, "uniqueItems": true})";
  expect_fail(unique, "[grammar] json_schema: the keyword 'uniqueItems'");
  GenerationConfig all_of;
  all_of.json_schema = R"({"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}},
                                     {"type": "object", "properties": {"b": {"type": "integer"}}}]})";
  expect_fail(all_of, "[grammar] json_schema cannot be enforced exactly: Support for allOf");
  expect_fail(all_of, "[grammar] json_schema cannot be enforced exactly: Support for allOf");
  GenerationConfig named_not;  // a property called "not" is a name, not the keyword
  named_not.json_schema = R"({"type": "object", "properties": {"not": {"type": "integer"}}})";
  named_not.eos_token_id = std::vector<int>{*tok->eos_token_id()};
  EXPECT_NO_THROW(make_grammar_constraint(named_not, tok, tok->vocab_size()));
  GenerationConfig no_eos;
  no_eos.json_object = true;
  no_eos.eos_token_id = std::vector<int>{};
  EXPECT_THROW(make_grammar_constraint(no_eos, tok, tok->vocab_size()), Error);
  // A setting that leaves no allowed token is named at the step it happens, not a silent token 0.
  GenerationConfig digits;
  digits.regex = "[0-9]+";
  digits.eos_token_id = std::vector<int>{*tok->eos_token_id()};
  auto p = make_grammar_constraint(digits, tok, tok->vocab_size());
  p->on_prompt(mx::zeros({1, 3}, mx::int32));
  p->apply(mx::zeros({1, tok->vocab_size()}), ids_of({{}}));
  try {
    p->apply(mx::zeros({1, tok->vocab_size()}), ids_of({{tok->encode("x", false)[0]}}));
    FAIL() << "expected [grammar]";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("[grammar] generated token 1", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace mlxgp
