// GenerationConfig: defaults, JSON layers, rejection of unknown/unimplemented fields, validation.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mlxgp/error.h"
#include "mlxgp/generation_config.h"
#include "test_util.h"

using namespace mlxgp;
using mlxgp::testing::error_of;

namespace {

GenerationConfig from_user(const std::string& json) {
  GenerationConfig c;
  apply_generation_config_json(c, json, ConfigSource::User);
  return c;
}

GenerationConfig with(const std::string& field, const std::string& value) {
  GenerationConfig c;
  set_generation_config_field(c, field, value);
  return c;
}

}  // namespace

TEST(GenerationConfig, DefaultsMatchHf) {
  GenerationConfig c;
  EXPECT_FALSE(c.max_new_tokens);
  EXPECT_EQ(c.max_length, 20);
  EXPECT_FALSE(c.do_sample);
  EXPECT_EQ(c.temperature, 1.0);
  EXPECT_EQ(c.top_k, 50);
  EXPECT_EQ(c.top_p, 1.0);
  EXPECT_FALSE(c.eos_token_id);
  EXPECT_EQ(c.num_return_sequences, 1);
  EXPECT_FALSE(c.seed);
  EXPECT_NO_THROW(validate(c));
}

TEST(GenerationConfig, LoadsHfJsonAndIgnoresMetadata) {
  auto c = from_user(R"({"max_new_tokens": 7, "do_sample": true, "temperature": 0.7, "top_k": 0, "top_p": 0.9,
    "eos_token_id": [2, 5], "pad_token_id": 2, "bos_token_id": 1, "seed": 42,
    "transformers_version": "4.42.0", "_from_model_config": true, "use_cache": true})");
  EXPECT_EQ(c.max_new_tokens, 7);
  EXPECT_TRUE(c.do_sample);
  EXPECT_DOUBLE_EQ(c.temperature, 0.7);
  EXPECT_EQ(c.top_k, 0);
  EXPECT_DOUBLE_EQ(c.top_p, 0.9);
  EXPECT_EQ(*c.eos_token_id, (std::vector<int>{2, 5}));
  EXPECT_EQ(c.pad_token_id, 2);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.seed, 42u);
  EXPECT_NO_THROW(validate(c));
}

TEST(GenerationConfig, EosAsIntOrEmptyListAndNullResets) {
  EXPECT_EQ(*from_user(R"({"eos_token_id": 3})").eos_token_id, std::vector<int>{3});
  EXPECT_TRUE(from_user(R"({"eos_token_id": []})").eos_token_id->empty());
  GenerationConfig c;
  apply_generation_config_json(c, R"({"max_new_tokens": 4, "top_k": 3})", ConfigSource::User);
  apply_generation_config_json(c, R"({"max_new_tokens": null, "top_k": null})", ConfigSource::User);
  EXPECT_FALSE(c.max_new_tokens);
  EXPECT_EQ(c.top_k, 50);
}

TEST(GenerationConfig, LayersOverrideInOrder) {
  GenerationConfig c;
  apply_generation_config_json(c, R"({"top_k": 10, "top_p": 0.5})", ConfigSource::Model);
  apply_generation_config_json(c, R"({"top_k": 20})", ConfigSource::User);
  set_generation_config_field(c, "top_p", "0.8");
  EXPECT_EQ(c.top_k, 20);
  EXPECT_DOUBLE_EQ(c.top_p, 0.8);
}

TEST(GenerationConfig, MalformedJsonAndWrongTypes) {
  EXPECT_NE(error_of([] { from_user("{\"top_k\": 5"); }).find("[config] malformed generation config JSON"),
            std::string::npos);
  EXPECT_NE(error_of([] { from_user("[1, 2]"); }).find("[config] generation config JSON must be an object"),
            std::string::npos);
  EXPECT_NE(error_of([] { from_user(R"({"temperature": "hot"})"); }).find("field 'temperature' expects a number"),
            std::string::npos);
  EXPECT_NE(error_of([] { from_user(R"({"top_k": 2.5})"); }).find("field 'top_k' expects an integer"),
            std::string::npos);
  EXPECT_NE(error_of([] { from_user(R"({"do_sample": 1})"); }).find("field 'do_sample' expects true or false"),
            std::string::npos);
  EXPECT_NE(error_of([] { from_user(R"({"eos_token_id": ["a"]})"); }).find("field 'eos_token_id'"), std::string::npos);
  EXPECT_NE(error_of([] { from_user(R"({"seed": -1})"); }).find("field 'seed'"), std::string::npos);
}

TEST(GenerationConfig, UnknownFieldRejectedByName) {
  EXPECT_EQ(error_of([] { from_user(R"({"x": 1})"); }), "[config] unknown field 'x'");
  EXPECT_EQ(error_of([] { from_user(R"({"top_kk": 1})"); }), "[config] unknown field 'top_kk'");
}

TEST(GenerationConfig, UnimplementedFieldRejectedByNameUnlessNeutral) {
  EXPECT_EQ(error_of([] { from_user(R"({"penalty_alpha": 0.6})"); }),
            "[config] field 'penalty_alpha' is not implemented yet");
  EXPECT_EQ(error_of([] { from_user(R"({"dola_layers": "low"})"); }),
            "[config] field 'dola_layers' is not implemented yet");
  EXPECT_EQ(error_of([] { from_user(R"({"encoder_repetition_penalty": 1.5})"); }),
            "[config] field 'encoder_repetition_penalty' is not implemented yet");
  // Neutral values change nothing, so they are accepted (HF configs often spell them out).
  EXPECT_NO_THROW(from_user(R"({"num_beams": 1, "repetition_penalty": 1.0, "min_p": null,
                                "suppress_tokens": [], "output_scores": false, "typical_p": 1})"));
}

TEST(GenerationConfig, ModelConfigWarnsInsteadOfFailing) {
  GenerationConfig c;
  std::vector<std::string> warnings;
  ASSERT_NO_THROW(warnings = apply_generation_config_json(
                      c, R"({"encoder_repetition_penalty": 1.1, "zzz": 3, "top_k": 7})", ConfigSource::Model));
  ASSERT_EQ(warnings.size(), 2u);
  std::string all = warnings[0] + warnings[1];
  EXPECT_NE(all.find("'encoder_repetition_penalty'"), std::string::npos);
  EXPECT_NE(all.find("'zzz'"), std::string::npos);
  for (auto& w : warnings) EXPECT_EQ(w.find('\n'), std::string::npos);
  EXPECT_EQ(c.top_k, 7);
}

TEST(GenerationConfig, ValidationNamesEachBadSetting) {
  struct Case {
    const char* field;
    const char* value;
    const char* expected;
  };
  const Case cases[] = {
      {"temperature", "-0.5", "[config] field 'temperature' must be >= 0, got -0.5"},
      {"top_p", "0", "[config] field 'top_p' must be in (0, 1], got 0"},
      {"top_p", "1.5", "[config] field 'top_p' must be in (0, 1], got 1.5"},
      {"top_k", "-1", "[config] field 'top_k' must be >= 0, got -1"},
      {"max_new_tokens", "0", "[config] field 'max_new_tokens' must be >= 1, got 0"},
      {"max_new_tokens", "-3", "[config] field 'max_new_tokens' must be >= 1, got -3"},
      {"max_length", "0", "[config] field 'max_length' must be >= 1, got 0"},
      {"eos_token_id", "2,-1", "[config] field 'eos_token_id' must be >= 0, got -1"},
      {"pad_token_id", "-2", "[config] field 'pad_token_id' must be >= 0, got -2"},
      {"max_time", "0", "[config] field 'max_time' must be > 0, got 0"},
      {"num_return_sequences", "2",
       "[config] field 'num_return_sequences' > 1 needs do_sample=true or num_beams > 1 (greedy search would return "
       "identical "
       "sequences)"},
      {"num_return_sequences", "0", "[config] field 'num_return_sequences' must be >= 1, got 0"},
      {"temperature", "nan", "[config] field 'temperature' must be a finite number, got nan"},
      {"top_p", "inf", "[config] field 'top_p' must be a finite number, got inf"},
  };
  for (auto& c : cases) {
    auto cfg = with(c.field, c.value);
    EXPECT_EQ(error_of([&] { validate(cfg); }), c.expected) << c.field << "=" << c.value;
  }
  GenerationConfig greedy_t0;
  greedy_t0.temperature = 0;
  EXPECT_NO_THROW(validate(greedy_t0));  // temperature is unused when greedy
  greedy_t0.do_sample = true;
  EXPECT_NE(error_of([&] { validate(greedy_t0); }).find("'temperature' must be > 0 when do_sample"), std::string::npos);
}

TEST(GenerationConfig, TextValuesAndUnknownNames) {
  EXPECT_EQ(*with("eos_token_id", "2,3").eos_token_id, (std::vector<int>{2, 3}));
  EXPECT_TRUE(with("do_sample", "1").do_sample);
  EXPECT_EQ(with("seed", "18446744073709551615").seed, 18446744073709551615ull);
  EXPECT_EQ(error_of([] { with("top_k", "5x"); }), "[config] field 'top_k' expects an integer, got '5x'");
  EXPECT_EQ(error_of([] { with("top_p", ""); }), "[config] field 'top_p' expects a number, got ''");
  EXPECT_EQ(error_of([] { with("beams", "2"); }), "[config] unknown field 'beams'");
}

TEST(GenerationConfig, JsonRoundTripAndFieldList) {
  auto c = from_user(R"({"max_new_tokens": 9, "eos_token_id": [4], "top_p": 0.25, "seed": 3})");
  auto j = to_json(c);
  auto back = from_user(j.dump());
  EXPECT_EQ(to_json(back), j);
  EXPECT_TRUE(j["pad_token_id"].is_null());
  auto fields = generation_config_fields();
  ASSERT_EQ(fields.size(), j.size());  // every field has JSON, a flag and help
  for (auto& f : fields) {
    EXPECT_TRUE(j.contains(f.name)) << f.name;
    EXPECT_FALSE(f.help.empty()) << f.name;
    EXPECT_NE(describe(c).find(f.name + " = "), std::string::npos);
  }
}
