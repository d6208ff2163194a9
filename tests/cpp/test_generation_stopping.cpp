// Stopping criteria: stop strings on a hand-made vocabulary (the examples of transformers'
// StopStringCriteria docstring, its look-back window, prompt tokens), EOS lists and the order in which
// reasons are reported.
#include <gtest/gtest.h>

#include <map>

#include "mlxgp/error.h"
#include "mlxgp/stopping.h"
#include "test_util.h"

using namespace mlxgp;
using mlxgp::testing::error_of;

namespace {

// A vocabulary given as strings; ids are indices, and ids past the end name no token.
struct Vocab {
  std::vector<std::string> tokens;
  StopStringMatcher::TokenBytes bytes() const {
    auto copy = tokens;
    return [copy](int id) -> std::optional<std::string> {
      if (id < 0 || id >= static_cast<int>(copy.size())) return std::nullopt;
      return copy[id];
    };
  }
  std::vector<int> ids(const std::vector<std::string>& pieces) {
    std::vector<int> out;
    for (auto& p : pieces) {
      auto it = std::find(tokens.begin(), tokens.end(), p);
      if (it == tokens.end()) {
        tokens.push_back(p);
        it = tokens.end() - 1;
      }
      out.push_back(static_cast<int>(it - tokens.begin()));
    }
    return out;
  }
};

bool stops(const std::vector<std::string>& stop_strings, const std::vector<std::string>& pieces) {
  Vocab v;
  auto ids = v.ids(pieces);
  StopStringMatcher m(stop_strings, v.bytes());
  return m.matches(ids);
}

}  // namespace

TEST(StopStrings, MatchesWhenTheStringEndsInTheLastToken) {
  // transformers StopStringCriteria's docstring: these end generation for "stop" ...
  for (auto pieces : std::vector<std::vector<std::string>>{{"st", "op"},
                                                           {"stop"},
                                                           {"st", "opera"},
                                                           {"sto", "pper"},
                                                           {"las", "topper"},
                                                           {"s", "to", "pped"},
                                                           {"x", "nonstop"},
                                                           {"a", "b", "s", "t", "o", "p"}})
    EXPECT_TRUE(stops({"stop"}, pieces)) << pieces.back();
  // ... and these do not: the string is already complete without the last token, or broken.
  for (auto pieces : std::vector<std::vector<std::string>>{{"stop", "at"},
                                                           {"st", "op", "at"},
                                                           {"st", "opera", "tion"},
                                                           {"s", "x", "top"},
                                                           {"sto", "xp"},
                                                           {"st", "o"},
                                                           {"op"}})
    EXPECT_FALSE(stops({"stop"}, pieces)) << pieces.back();
}

TEST(StopStrings, SeveralStringsAnyOneStops) {
  EXPECT_TRUE(stops({"stop", "end"}, {"the", " e", "nd"}));
  EXPECT_TRUE(stops({"stop", "end"}, {"s", "top"}));
  EXPECT_FALSE(stops({"stop", "end"}, {"en", "d", "."}));
  // A string made of other stop strings' pieces: only whole strings count.
  EXPECT_FALSE(stops({"abc", "xyz"}, {"ab", "yz"}));
}

TEST(StopStrings, PromptTokensTakePartAndOnlyTheLastTokenEnds) {
  // HF matches on the whole input_ids: a stop string begun in the prompt completes in the first new
  // token. A stop string inside the prompt ends nothing: it must end in the newest token.
  Vocab v;
  auto ids = v.ids({"Say", " st", "op"});  // prompt "Say st", first new token "op"
  auto prompt_with_stop = v.ids({"stop", "!"});
  StopStringMatcher m({"stop"}, v.bytes());
  EXPECT_TRUE(m.matches(ids));
  EXPECT_FALSE(m.matches(prompt_with_stop));
}

TEST(StopStrings, LooksBackAtMostTheLongestStringsLengthInTokens) {
  // HF truncates input_ids to max(len(stop string)) tokens first; empty tokens fit anywhere but count
  // towards that window, so "s" + 3 empty tokens + "top" (5 tokens) no longer matches "stop" (4).
  EXPECT_TRUE(stops({"stop"}, {"s", "", "top"}));
  EXPECT_TRUE(stops({"stop"}, {"s", "", "", "top"}));
  EXPECT_FALSE(stops({"stop"}, {"s", "", "", "", "top"}));
  // A longer second string widens the window for every string.
  EXPECT_TRUE(stops({"stop", "0123456789"}, {"s", "", "", "", "top"}));
}

TEST(StopStrings, WorksOnBytesAndIgnoresUnknownIds) {
  // "é" is two bytes; a byte-level token may hold only one of them.
  EXPECT_TRUE(stops({"café"}, {"caf", "\xC3", "\xA9"}));
  EXPECT_TRUE(stops({"é!"}, {"\xC3", "\xA9!"}));
  Vocab v;
  auto ids = v.ids({"st", "op"});
  StopStringMatcher m({"stop"}, v.bytes());
  EXPECT_FALSE(m.matches(std::vector<int>{99, ids[1]}));  // "op" after an id naming no token
  EXPECT_FALSE(m.matches(std::vector<int>{ids[0], 99}));
  EXPECT_FALSE(m.matches(std::vector<int>{}));
  EXPECT_EQ(m.window(), 4);
}

TEST(StopStrings, RejectsEmptyInput) {
  Vocab v;
  EXPECT_EQ(error_of([&] { StopStringMatcher({}, v.bytes()); }),
            "[config] field 'stop_strings' must be a non-empty list");
  EXPECT_EQ(error_of([&] { StopStringMatcher({"a", ""}, v.bytes()); }),
            "[config] field 'stop_strings' must not contain an empty string");
  EXPECT_EQ(error_of([&] { StopStringMatcher({"a"}, std::shared_ptr<const Tokenizer>{}); }),
            "[generate] stop strings need the tokenizer");
}

TEST(StoppingCriteria, EosListsAndTheOrderOfReasons) {
  Vocab v;
  auto ids = v.ids({"a", "st", "op", "<eos>", "<end>"});  // 0 1 2 3 4
  StoppingCriteria c;
  c.eos = {4, 3};  // every EOS id counts
  c.budget = 10;
  EXPECT_EQ(c.check(std::vector<int>{0, 3}, 1, 0), FinishReason::Eos);
  EXPECT_EQ(c.check(std::vector<int>{0, 4}, 1, 0), FinishReason::Eos);
  EXPECT_EQ(c.check(std::vector<int>{0, 1}, 1, 0), FinishReason::None);
  EXPECT_EQ(c.check(std::vector<int>{0, 1}, 10, 0), FinishReason::Length);
  c.max_time = 1.0;
  EXPECT_EQ(c.check(std::vector<int>{0, 1}, 2, 2.0), FinishReason::MaxTime);
  EXPECT_EQ(c.check(std::vector<int>{0, 1}, 10, 2.0), FinishReason::Length);  // length first
  c.stop_strings.emplace(std::vector<std::string>{"stop"}, v.bytes());
  EXPECT_EQ(c.check(std::vector<int>{1, 2}, 10, 2.0), FinishReason::StopString);
  int calls = 0;
  c.callback = [&](std::span<const int> seen) {
    ++calls;
    return seen.size() == 3;
  };
  EXPECT_TRUE(c.needs_ids());
  EXPECT_EQ(c.check(std::vector<int>{0, 0, 0}, 1, 0), FinishReason::StopCallback);
  EXPECT_EQ(c.check(std::vector<int>{0, 1, 2}, 1, 0), FinishReason::StopString);  // string before callback
  EXPECT_EQ(c.check(std::vector<int>{0, 3}, 1, 0), FinishReason::Eos);
  EXPECT_EQ(calls, 1);  // not asked once an earlier criterion fired
  EXPECT_EQ(to_string(FinishReason::StopCallback), "stop_callback");
  EXPECT_EQ(to_string(FinishReason::StopString), "stop_string");
  EXPECT_EQ(to_string(FinishReason::None), "");
}
