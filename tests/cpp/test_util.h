// Helpers shared by the unit tests of every module.
#pragma once

#include <gtest/gtest.h>

#include <exception>
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

// The array's values as float32 on the host.
inline std::vector<float> to_vec(const mlx::core::array& a) {
  auto c = mlx::core::astype(a, mlx::core::float32);
  mlx::core::eval(c);
  return {c.data<float>(), c.data<float>() + c.size()};
}

}  // namespace mlxgp::testing
