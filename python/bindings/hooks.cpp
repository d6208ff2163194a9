// Hooks (persona logit bias, residual injection, soft prompt, activation capture) and steering-vector
// extraction. A vector is an mlx array or the name of an extra parameter (model["_persona_v"]).
#include <variant>

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <mlx/mlx.h>

#include "bindings.h"
#include "mlxgp/error.h"
#include "mlxgp/steering.h"

namespace mlxgp::py {

namespace mx = mlx::core;

namespace {

using VectorArg = std::variant<mx::array, std::string>;
using LayersArg = std::variant<int, std::vector<int>>;

VectorSource source_of(const std::string& hook, const std::optional<VectorArg>& vector,
                       const std::optional<std::string>& param_key) {
  if (vector.has_value() == param_key.has_value())
    fail("hooks", hook + " needs exactly one of vector= (an array or an extra parameter's name) and param_key=");
  if (param_key) return VectorSource(*param_key);
  if (auto* a = std::get_if<mx::array>(&*vector)) return VectorSource(*a);
  return VectorSource(std::get<std::string>(*vector));
}

std::vector<int> layers_of(const LayersArg& l) {
  if (auto* i = std::get_if<int>(&l)) return {*i};
  return std::get<std::vector<int>>(l);
}

}  // namespace

void bind_hooks(nb::module_& m) {
  nb::class_<Hook>(m, "Hook", "base of the hooks a model runs inside every forward");

  // The vector as an array or an extra parameter's name (`vector=`), or the name as `param_key=`; the
  // layers as `layers=` (one or a list) or `layer=`.
  nb::class_<LogitBiasHook, Hook>(m, "LogitBiasHook", "adds alpha * lm_head(v) to the logits (persona bias)")
      .def(
          "__init__",
          [](LogitBiasHook* self, std::optional<VectorArg> vector, double alpha, std::optional<std::string> param_key) {
            new (self) LogitBiasHook(source_of("LogitBiasHook", vector, param_key), alpha);
          },
          nb::arg("vector").none() = nb::none(), nb::arg("alpha") = 1.0, nb::kw_only(),
          nb::arg("param_key").none() = nb::none());

  nb::class_<ResidualInjectionHook, Hook>(m, "ResidualInjectionHook",
                                          "adds alpha * v to the residual stream after the given blocks")
      .def(
          "__init__",
          [](ResidualInjectionHook* self, std::optional<LayersArg> layers, std::optional<VectorArg> vector,
             double alpha, const std::string& positions, std::optional<LayersArg> layer,
             std::optional<std::string> param_key) {
            if (layers.has_value() == layer.has_value())
              fail("hooks", "ResidualInjectionHook needs exactly one of layers= and layer=");
            new (self) ResidualInjectionHook(layers_of(layers ? *layers : *layer),
                                             source_of("ResidualInjectionHook", vector, param_key), alpha,
                                             parse_hook_positions(positions));
          },
          nb::arg("layers").none() = nb::none(), nb::arg("vector").none() = nb::none(), nb::arg("alpha") = 1.0,
          nb::arg("positions") = "all", nb::kw_only(), nb::arg("layer").none() = nb::none(),
          nb::arg("param_key").none() = nb::none())
      .def_prop_ro("layers", &ResidualInjectionHook::layers);

  nb::class_<SoftPromptHook, Hook>(m, "SoftPromptHook",
                                   "prepends n_virtual learned embeddings (extra parameter param_key) to the prompt")
      .def(nb::init<int, std::string>(), nb::arg("n_virtual"), nb::arg("param_key") = "_soft_prompt")
      .def_prop_ro("n_virtual", &SoftPromptHook::n_virtual)
      .def_prop_ro("param_key", &SoftPromptHook::param_key);

  nb::class_<ActivationCaptureHook, Hook>(m, "ActivationCaptureHook", "records the residual stream after blocks")
      .def(
          "__init__",
          [](ActivationCaptureHook* self, const LayersArg& layers, const std::string& reduce) {
            new (self) ActivationCaptureHook(layers_of(layers), parse_capture_reduce(reduce));
          },
          nb::arg("layers"), nb::arg("reduce") = "last")
      .def("captured", &ActivationCaptureHook::captured, nb::arg("layer"))
      .def("clear", &ActivationCaptureHook::clear);

  m.def(
      "add_hook", [](PyModel& pm, std::shared_ptr<Hook> hook) { return add_hook(*pm.model, std::move(hook)); },
      nb::arg("model"), nb::arg("hook"), "attaches a hook until remove_hook(handle); returns the handle");
  m.def(
      "extract_steering_vector",
      [](PyModel& pm, const std::vector<std::vector<int>>& positive, const std::vector<std::vector<int>>& negative,
         int layer, const std::string& reduce) {
        auto r = parse_capture_reduce(reduce);
        nb::gil_scoped_release release;
        auto v = extract_steering_vector(*pm.model, positive, negative, layer, r);
        mx::eval(v);
        return v;
      },
      nb::arg("model"), nb::arg("positive"), nb::arg("negative"), nb::arg("layer"), nb::arg("reduce") = "last");
}

}  // namespace mlxgp::py
