// NB_MODULE(_core): error mapping, the OpenBLAS promotion, and the per-area bindings.
#include <dlfcn.h>

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
    else if (e.kind() == mlxgp::ErrorKind::InvalidInput)
      PyErr_SetString(PyExc_ValueError, what.c_str());
    else
      PyErr_SetString(PyExc_RuntimeError, what.c_str());
  }
}

// The extension links OpenBLAS (like the mlxgp executable) but Python loads extensions RTLD_LOCAL, so
// libmlx (loaded earlier by `import mlx.core`) would still bind cblas_sgemm to its bundled reference
// BLAS. Re-opening OpenBLAS with RTLD_NOLOAD | RTLD_GLOBAL puts it in the global scope, which the
// dynamic linker searches first when libmlx's lazy PLT entry is resolved at its first call.
bool promote_openblas() {
#ifdef MLXGP_OPENBLAS_PATH
  return dlopen(MLXGP_OPENBLAS_PATH, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL) != nullptr;
#else
  return false;
#endif
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "mlx-gen-parity C++ core (use the mlx_gen_parity package, not this module)";
  nb::register_exception_translator(translate_error);
  m.attr("openblas_interposed") = promote_openblas();
  m.attr("__version__") = MLXGP_VERSION;
  m.def("version", &mlxgp::version, "the C++ library's version");
  m.def("cache_dir", &mlxgp::cache_dir);
  m.def("resolve_model_path", &mlxgp::resolve_model_path, nb::arg("spec"));
  mlxgp::py::bind_model(m);
  mlxgp::py::bind_generation(m);
  mlxgp::py::bind_hooks(m);
  mlxgp::py::bind_training(m);
  mlxgp::py::bind_convert(m);
}
