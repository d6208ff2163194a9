// Helpers shared by the unit tests of every module.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include <mlx/mlx.h>

#include "mlxgp/error.h"

namespace mlxgp::testing {

// Runs `f` and returns the Error's message; fails the test if nothing (or something else) is thrown.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected mlxgp::Error, got std::exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected an mlxgp::Error";
  return "";
}

// A scratch directory private to this test process: ctest runs tests in parallel processes, and a
// shared fixed name in /tmp lets one process read a file another is rewriting.
inline std::string process_temp_dir() {
  auto dir = std::filesystem::path(::testing::TempDir()) / ("mlxgp_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

// Row-major [rows, n / rows] scores (float32) and token ids (int32) for processor tests.
inline mlx::core::array scores(std::vector<float> v, int rows = 1) {
  return mlx::core::array(v.data(), {rows, static_cast<int>(v.size()) / rows});
}
inline mlx::core::array ids(std::vector<int> v, int rows = 1) {
  return mlx::core::array(v.data(), {rows, static_cast<int>(v.size()) / rows}, mlx::core::int32);
}

// The array's values as float32 on the host.
inline std::vector<float> to_vec(const mlx::core::array& a) {
  auto c = mlx::core::astype(a, mlx::core::float32);
  mlx::core::eval(c);
  return {c.data<float>(), c.data<float>() + c.size()};
}

}  // namespace mlxgp::testing
