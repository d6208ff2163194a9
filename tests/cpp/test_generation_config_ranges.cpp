// Integers beyond a field's type say "out of range (max ...)" rather than "expects an integer" (issue 20).
#include <gtest/gtest.h>

#include "mlxgp/generation_config.h"
#include "test_util.h"

using namespace mlxgp;
using namespace mlxgp::testing;

TEST(GenerationConfigRanges, TextBeyondTheFieldTypeIsOutOfRange) {
  GenerationConfig c;
  EXPECT_EQ(error_of([&] { set_generation_config_field(c, "max_new_tokens", "1000000000000"); }),
            "[config] field 'max_new_tokens' is out of range (max 2147483647), got 1000000000000");
  EXPECT_EQ(error_of([&] { set_generation_config_field(c, "top_k", "-1000000000000"); }),
            "[config] field 'top_k' is out of range (min -2147483648), got -1000000000000");
  EXPECT_EQ(error_of([&] { set_generation_config_field(c, "seed", "-1"); }),
            "[config] field 'seed' is out of range (min 0), got -1");
  EXPECT_EQ(error_of([&] { set_generation_config_field(c, "seed", "99999999999999999999999"); }),
            "[config] field 'seed' is out of range (max 18446744073709551615), got 99999999999999999999999");
  EXPECT_EQ(error_of([&] { set_generation_config_field(c, "top_k", "12x"); }),
            "[config] field 'top_k' expects an integer, got '12x'");
  set_generation_config_field(c, "seed", "18446744073709551615");
  EXPECT_EQ(*c.seed, 18446744073709551615ULL);
}

TEST(GenerationConfigRanges, JsonBeyondInt32IsOutOfRange) {
  GenerationConfig c;
  EXPECT_EQ(
      error_of([&] { apply_generation_config_json(c, R"({"max_new_tokens": 1000000000000})", ConfigSource::User); }),
      "[config] field 'max_new_tokens' is out of range (max 2147483647), got 1000000000000");
  EXPECT_EQ(error_of([&] { apply_generation_config_json(c, R"({"top_k": -3e12})", ConfigSource::User); }),
            "[config] field 'top_k' is out of range (min -2147483648), got -3000000000000.0");
}
