// convert_to_mlx for mlx_gen_parity.interop.convert_hf_to_mlx (the C++ does the work, as `mlxgp convert`).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"
#include "mlxgp/convert.h"

namespace mlxgp::py {

void bind_convert(nb::module_& m) {
  m.def(
      "convert_to_mlx",
      [](const std::string& hf_dir, const std::string& out_dir, bool quantize, std::optional<int> group_size,
         std::optional<int> bits, std::optional<std::string> dtype, const std::string& mode) {
        ConvertOptions o;
        o.quantize = quantize;
        o.group_size = group_size;
        o.bits = bits;
        o.mode = mode;
        if (dtype) o.dtype = parse_dtype(*dtype);
        ConvertResult r;
        {
          nb::gil_scoped_release release;
          r = convert_to_mlx(hf_dir, out_dir, o);
        }
        nb::dict d;
        d["out_dir"] = r.out_dir;
        d["tensors"] = r.tensors;
        d["quantized_tensors"] = r.quantized_tensors;
        d["copied_files"] = nb::cast(r.copied_files);
        return d;
      },
      nb::arg("hf_dir"), nb::arg("out_dir"), nb::arg("quantize") = false, nb::arg("group_size").none() = nb::none(),
      nb::arg("bits").none() = nb::none(), nb::arg("dtype").none() = nb::none(), nb::arg("mode") = "affine");
}

}  // namespace mlxgp::py
