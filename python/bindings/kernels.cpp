// _ggml_matmul: the llama.cpp block product (kernels::ggml_matmul) on arrays, for the parity tests that
// hold it against llama.cpp's own dot products (tests/parity/test_int8_activations.py). Not public API.
#include <nanobind/nanobind.h>

#include <mlx/mlx.h>

#include "bindings.h"
#include "kernels/kernels.h"

namespace mx = mlx::core;

namespace mlxgp::py {

void bind_kernels(nb::module_& m) {
  m.def(
      "_ggml_matmul",
      [](const mx::array& x, const mx::array& w, uint32_t type, bool int8_activations) {
        nb::gil_scoped_release release;
        auto y = kernels::ggml_matmul(x, w, type, int8_activations);
        mx::eval(y);
        return y;
      },
      nb::arg("x"), nb::arg("w"), nb::arg("type"), nb::arg("int8_activations"));
}

}  // namespace mlxgp::py
