// NB_MODULE(_core): error mapping, the OpenBLAS interposition, and the per-area bindings.

#include <nanobind/stl/string.h>

#include <stdexcept>
#include <string>

#include "bindings.h"
#include "mlxgp/error.h"
#include "mlxgp/paths.h"

namespace nb = nanobind;

namespace {

// mlxgp::Error -> Python: a missing path is FileNotFoundError, other bad input ValueError, failures
// while running RuntimeError. The message is the C++ one-liner "[component] message".
void translate_error(const std::exception_ptr& p, void*) {
  try {
    std::rethrow_exception(p);
  } catch (const mlxgp::Error& e) {
    std::string what = e.what();
    if (what.find("no such file") != std::string::npos || what.find("does not exist") != std::string::npos)
      PyErr_SetString(PyExc_FileNotFoundError, what.c_str());
    else if (e.kind() == mlxgp::ErrorKind::InvalidInput) PyErr_SetString(PyExc_ValueError, what.c_str());
    else PyErr_SetString(PyExc_RuntimeError, what.c_str());
  }
}

// OpenBLAS path the extension links (CMake); libmlx's gemm slots are pointed at it (blas_rebind.cpp).
int interpose_openblas() {
#ifdef MLXGP_OPENBLAS_PATH
  return mlxgp::py::rebind_mlx_blas(MLXGP_OPENBLAS_PATH);
#else
  return 0;
#endif
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "mlx-gen-parity C++ core (use the mlx_gen_parity package, not this module)";
  nb::register_exception_translator(translate_error);
  m.attr("openblas_interposed") = interpose_openblas() > 0;
#ifdef MLXGP_OPENBLAS_PATH
  m.attr("openblas_library") = MLXGP_OPENBLAS_PATH;
#else
  m.attr("openblas_library") = "";
#endif
  m.def("mlx_sgemm_library", &mlxgp::py::mlx_sgemm_library,
        "the shared library libmlx's fp32 matmuls call in this process (diagnostic)");
  m.attr("__version__") = MLXGP_VERSION;
  m.def("version", &mlxgp::version, "the C++ library's version");
  m.def("cache_dir", &mlxgp::cache_dir);
  m.def("resolve_model_path", &mlxgp::resolve_model_path, nb::arg("spec"));
  mlxgp::py::bind_model(m);
  mlxgp::py::bind_generation(m);
  mlxgp::py::bind_hooks(m);
  mlxgp::py::bind_training(m);
  mlxgp::py::bind_convert(m);
  mlxgp::py::bind_distributed(m);
  mlxgp::py::bind_kernels(m);
}
