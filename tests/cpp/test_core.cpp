#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "mlxgp/error.h"
#include "mlxgp/paths.h"

using mlxgp::Error;

TEST(Error, FormatsComponentAndKeepsOneLine) {
  Error e("gguf", "file is truncated\nat byte 12");
  EXPECT_EQ(std::string(e.what()), "[gguf] file is truncated at byte 12");
  EXPECT_EQ(e.component(), "gguf");
  EXPECT_EQ(e.kind(), mlxgp::ErrorKind::InvalidInput);
}

TEST(Error, FailThrowsInvalidInput) {
  try {
    mlxgp::fail("config", "top_p must be in (0, 1], got 1.5");
    FAIL() << "fail() returned";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "[config] top_p must be in (0, 1], got 1.5");
    EXPECT_EQ(e.kind(), mlxgp::ErrorKind::InvalidInput);
  }
}

TEST(Paths, DefaultModelMissingIsAClearError) {
  ::setenv("MLXGP_CACHE", "/nonexistent-mlxgp-cache", 1);
  try {
    mlxgp::resolve_model_path("default");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[model] the default model is not installed"), std::string::npos);
  }
  ::unsetenv("MLXGP_CACHE");
  EXPECT_EQ(mlxgp::resolve_model_path("/some/dir"), "/some/dir");
}
