#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <stdexcept>
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

TEST(Error, AsErrorKeepsErrorsAndNamesOtherExceptions) {
  // An Error as it is (its kind too).
  Error own("config", "bad");
  EXPECT_EQ(std::string(mlxgp::as_error(own, "batch").what()), "[config] bad");
  EXPECT_EQ(mlxgp::as_error(own, "batch").kind(), mlxgp::ErrorKind::InvalidInput);
  // MLX's own "[component] message" keeps its component; the input was fine: Runtime.
  auto mlx = mlxgp::as_error(std::runtime_error("[malloc] Unable to allocate 64 bytes."), "batch");
  EXPECT_EQ(std::string(mlx.what()), "[malloc] Unable to allocate 64 bytes.");
  EXPECT_EQ(mlx.component(), "malloc");
  EXPECT_EQ(mlx.kind(), mlxgp::ErrorKind::Runtime);
  EXPECT_EQ(std::string(mlxgp::as_error(std::bad_alloc(), "batch").what()), "[batch] out of memory");
  EXPECT_EQ(std::string(mlxgp::as_error(std::invalid_argument("odd\nthing"), "batch").what()), "[batch] odd thing");
  EXPECT_EQ(std::string(mlxgp::as_error(std::runtime_error("[] x"), "batch").what()), "[batch] [] x");
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
