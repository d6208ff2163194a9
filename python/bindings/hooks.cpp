// Hooks (persona logit bias, residual injection, soft prompt, activation capture) and steering-vector
// extraction. A vector is an mlx array or the name of an extra parameter (model["_persona_v"]).
#include <variant>

#include <nanobind/nanobind.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <mlx/mlx.h>

#include "bindings.h"
#include "mlxgp/steering.h"

namespace mlxgp::py {

namespace mx = mlx::core;

namespace {

using VectorArg = std::variant<mx::array, std::string>;

VectorSource source_of(const VectorArg& v) {
  if (auto* a = std::get_if<mx::array>(&v)) return VectorSource(*a);
  return VectorSource(std::get<std::string>(v));
}

std::vector<int> layers_of(const std::variant<int, std::vector<int>>& l) {
  if (auto* i = std::get_if<int>(&l)) return {*i};
  return std::get<std::vector<int>>(l);
}

}  // namespace

void bind_hooks(nb::module_& m) {
  nb::class_<Hook>(m, "Hook", "base of the hooks a model runs inside every forward");

  nb::class_<LogitBiasHook, Hook>(m, "LogitBiasHook", "adds alpha * lm_head(v) to the logits (persona bias)")
      .def("__init__", [](LogitBiasHook* self, const VectorArg& vector, double alpha) {
        new (self) LogitBiasHook(source_of(vector), alpha);
      }, nb::arg("vector"), nb::arg("alpha") = 1.0);

  nb::class_<ResidualInjectionHook, Hook>(m, "ResidualInjectionHook",
                                          "adds alpha * v to the residual stream after the given blocks")
      .def("__init__", [](ResidualInjectionHook* self, const std::variant<int, std::vector<int>>& layers,
                          const VectorArg& vector, double alpha, const std::string& positions) {
        new (self) ResidualInjectionHook(layers_of(layers), source_of(vector), alpha, parse_hook_positions(positions));
      }, nb::arg("layers"), nb::arg("vector"), nb::arg("alpha") = 1.0, nb::arg("positions") = "all")
      .def_prop_ro("layers", &ResidualInjectionHook::layers);

  nb::class_<SoftPromptHook, Hook>(m, "SoftPromptHook",
                                   "prepends n_virtual learned embeddings (extra parameter param_key) to the prompt")
      .def(nb::init<int, std::string>(), nb::arg("n_virtual"), nb::arg("param_key") = "_soft_prompt")
      .def_prop_ro("n_virtual", &SoftPromptHook::n_virtual)
      .def_prop_ro("param_key", &SoftPromptHook::param_key);

  nb::class_<ActivationCaptureHook, Hook>(m, "ActivationCaptureHook", "records the residual stream after blocks")
      .def("__init__", [](ActivationCaptureHook* self, const std::variant<int, std::vector<int>>& layers,
                          const std::string& reduce) {
        new (self) ActivationCaptureHook(layers_of(layers), parse_capture_reduce(reduce));
      }, nb::arg("layers"), nb::arg("reduce") = "last")
      .def("captured", &ActivationCaptureHook::captured, nb::arg("layer"))
      .def("clear", &ActivationCaptureHook::clear);

  m.def("add_hook", [](PyModel& pm, std::shared_ptr<Hook> hook) { return add_hook(*pm.model, std::move(hook)); },
        nb::arg("model"), nb::arg("hook"), "attaches a hook until remove_hook(handle); returns the handle");
  m.def("extract_steering_vector", [](PyModel& pm, const std::vector<std::vector<int>>& positive,
                                      const std::vector<std::vector<int>>& negative, int layer, const std::string& reduce) {
    auto r = parse_capture_reduce(reduce);
    nb::gil_scoped_release release;
    auto v = extract_steering_vector(*pm.model, positive, negative, layer, r);
    mx::eval(v);
    return v;
  }, nb::arg("model"), nb::arg("positive"), nb::arg("negative"), nb::arg("layer"), nb::arg("reduce") = "last");
}

}  // namespace mlxgp::py
