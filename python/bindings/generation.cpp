// GenerationConfig through its C++ field list (names, help, defaults, JSON), and generate(): the GIL
// is released while C++ generates and re-acquired only for the Python token / stop callbacks.
#include <type_traits>

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <nlohmann/json.hpp>

#include <mlx/mlx.h>

#include "bindings.h"
#include "mlxgp/error.h"
#include "mlxgp/batch_engine.h"
#include "mlxgp/generate.h"
#include "mlxgp/result_json.h"
#include "mlxgp/speculative.h"
#include "mlxgp/generation_config.h"
#include "mlxgp/steering.h"

namespace mlxgp::py {

namespace mx = mlx::core;

namespace {

struct CallbackRaised {};  // unwinds generate() after a Python callback raised

// The CLI's layering: the model's generation_config.json (loose), then the user's settings (strict:
// unknown or unimplemented fields raise), then validation.
GenerationConfig merged_config(const PyModel* model, const std::string& user_json, std::vector<std::string>* warnings,
                               bool check = true) {
  GenerationConfig config;
  if (model && !model->generation_config_json.empty()) {
    auto w = apply_generation_config_json(config, model->generation_config_json, ConfigSource::Model);
    if (warnings) *warnings = std::move(w);
  }
  if (!user_json.empty()) apply_generation_config_json(config, user_json, ConfigSource::User);
  if (check) validate(config);
  return config;
}

// The library's JSON form of a result (result_json.h: the same object `mlxgp generate --json` prints),
// plus what JSON cannot carry: each sequence's full per-step arrays [n, V] as mx.array under
// "step_scores" / "step_logits" (output_scores / output_logits).
nb::dict result_dict(const GenerationResult& r, const GenerationConfig& config) {
  nb::dict out = nb::cast<nb::dict>(nb::module_::import_("json").attr("loads")(result_json(r, config)));
  nb::list seqs = nb::cast<nb::list>(out["sequences"]);
  for (size_t i = 0; i < r.sequences.size(); ++i) {
    nb::dict d = nb::cast<nb::dict>(seqs[i]);
    if (r.sequences[i].scores) d["step_scores"] = nb::cast(*r.sequences[i].scores);
    if (r.sequences[i].logits) d["step_logits"] = nb::cast(*r.sequences[i].logits);
  }
  return out;
}

// What one Python generate call sets up around the C++ call: hooks attached for the call only
// (detached, with the GIL held, even when generation throws), Python callbacks that re-acquire the
// GIL and unwind the C++ call when they raise, and the generator options.
struct CallScope {
  Model& model;
  std::vector<int> handles;
  std::optional<nb::python_error> raised;
  GeneratorOptions options;

  CallScope(Model& m, const std::vector<std::shared_ptr<Hook>>& hooks, nb::object stop_callback,
            std::optional<std::vector<int>> negative_prompt_ids, int prefill_chunk_size)
      : model(m) {
    for (auto& h : hooks) handles.push_back(add_hook(model, h));
    options.prefill_chunk_size = prefill_chunk_size;
    options.negative_prompt_ids = std::move(negative_prompt_ids);
    if (!stop_callback.is_none()) {
      // Borrowed handles: std::function copies them while the GIL is released, which touches no
      // reference count.
      nb::handle fn = stop_callback;
      options.stop_callback = [fn, this](std::span<const int> ids) {
        return guarded([&] { return nb::cast<bool>(fn(std::vector<int>(ids.begin(), ids.end()))); });
      };
    }
  }
  ~CallScope() {
    for (int h : handles) model.hooks().remove(h);
  }
  // Runs Python code from a C++ callback: with the GIL, a Python exception kept and C++ unwound.
  template <class F>
  std::invoke_result_t<F> guarded(F&& f) {
    nb::gil_scoped_acquire gil;
    try {
      return f();
    } catch (nb::python_error& e) {
      raised.emplace(std::move(e));
      throw CallbackRaised{};
    }
  }
  // Runs the C++ call with the GIL released; re-raises a callback's Python exception.
  template <class F>
  void run(F&& f) {
    bool aborted = false;
    {
      nb::gil_scoped_release release;
      try {
        f();
      } catch (const CallbackRaised&) {
        aborted = true;
      }
    }
    if (aborted && raised) throw std::move(*raised);
  }
};

nb::dict run_generate(PyModel& pm, std::shared_ptr<Tokenizer> tokenizer, const std::vector<int>& prompt_ids,
                      const std::string& user_json, nb::object callback, nb::object stop_callback,
                      const std::vector<std::shared_ptr<Hook>>& hooks,
                      std::optional<std::vector<int>> negative_prompt_ids, int prefill_chunk_size,
                      const PyModel* draft) {
  std::vector<std::string> warnings;
  GenerationConfig config = merged_config(&pm, user_json, &warnings);
  for (auto& w : warnings) PyErr_WarnEx(PyExc_UserWarning, w.c_str(), 1);
  CallScope scope(*pm.model, hooks, stop_callback, std::move(negative_prompt_ids), prefill_chunk_size);
  TokenCallback on_token;
  if (!callback.is_none()) {
    nb::handle fn = callback;
    on_token = [fn, &scope](int token, const std::string& text) {
      scope.guarded([&] { fn(token, nb::str(text.data(), text.size())); });
    };
  }
  GenerationResult result;
  scope.run([&] {
    // A loaded draft model (GenerationConfig(draft_model_id=<model>)) goes to speculative decoding as it is.
    result = draft
                 ? speculative_generate(*pm.model, tokenizer, prompt_ids, config, on_token, scope.options, draft->model)
                 : generate(*pm.model, tokenizer, prompt_ids, config, on_token, scope.options);
  });
  return result_dict(result, config);
}

// Many prompts: one config (JSON) per prompt, or one for all; callback(index, row, token, text).
nb::list run_generate_batch(PyModel& pm, std::shared_ptr<Tokenizer> tokenizer,
                            const std::vector<std::vector<int>>& prompts, const std::vector<std::string>& user_jsons,
                            nb::object callback, nb::object stop_callback,
                            const std::vector<std::shared_ptr<Hook>>& hooks,
                            std::optional<std::vector<int>> negative_prompt_ids, int prefill_chunk_size,
                            int batch_size) {
  std::vector<GenerationConfig> configs;
  for (auto& j : user_jsons) {
    std::vector<std::string> warnings;
    configs.push_back(merged_config(&pm, j, &warnings));
    if (configs.size() == 1)
      for (auto& w : warnings) PyErr_WarnEx(PyExc_UserWarning, w.c_str(), 1);
  }
  CallScope scope(*pm.model, hooks, stop_callback, std::move(negative_prompt_ids), prefill_chunk_size);
  BatchGenerateOptions options;
  options.batch_size = batch_size;
  options.options = scope.options;
  if (!callback.is_none()) {
    nb::handle fn = callback;
    options.on_token = [fn, &scope](int index, int row, int token, const std::string& text) {
      scope.guarded([&] { fn(index, row, token, nb::str(text.data(), text.size())); });
    };
  }
  std::vector<std::string> alone;
  options.on_alone = [&alone](int request, const std::string& why) {
    alone.push_back("[generate] request " + std::to_string(request) + " runs alone: " + why);
  };
  std::vector<GenerationResult> results;
  scope.run([&] { results = generate_batch(*pm.model, tokenizer, prompts, configs, options); });
  for (auto& w : alone) PyErr_WarnEx(PyExc_UserWarning, w.c_str(), 1);
  nb::list out;
  for (size_t i = 0; i < results.size(); ++i)
    out.append(result_dict(results[i], configs.size() == 1 ? configs[0] : configs[i]));
  return out;
}

}  // namespace

void bind_generation(nb::module_& m) {
  m.def(
      "generation_config_fields",
      [] {
        std::vector<std::tuple<std::string, std::string, std::string, bool>> out;
        for (auto& f : generation_config_fields()) out.emplace_back(f.name, f.help, f.default_text, f.is_flag);
        return out;
      },
      "(name, help, default_text, is_flag) of every GenerationConfig field, in declaration order");
  m.def(
      "generation_config_defaults", [] { return to_json(GenerationConfig{}).dump(); },
      "every field's default as a JSON object");
  m.def(
      "check_generation_config",
      [](const std::string& user_json, bool check) {
        return to_json(merged_config(nullptr, user_json, nullptr, check)).dump();
      },
      nb::arg("user_json"), nb::arg("validate") = true,
      "applies the user's settings (JSON object) strictly, validates unless told not to; returns all fields as JSON");
  m.def(
      "set_generation_config_field",
      [](const std::string& user_json, const std::string& name, const std::string& text) {
        GenerationConfig c;
        if (!user_json.empty()) apply_generation_config_json(c, user_json, ConfigSource::User);
        set_generation_config_field(c, name, text);
        return to_json(c).dump();
      },
      nb::arg("user_json"), nb::arg("name"), nb::arg("text"),
      "sets one field from CLI-style text; returns all fields as JSON");
  m.def(
      "effective_generation_config",
      [](PyModel& pm, const std::string& user_json) {
        auto c = merged_config(&pm, user_json, nullptr);
        return describe(with_model_defaults(c, pm.model->config(), nullptr));
      },
      nb::arg("model"), nb::arg("user_json"), "the merged settings (model file < user) as 'name = value' lines");
  m.def("generate", &run_generate, nb::arg("model"), nb::arg("tokenizer").none(), nb::arg("prompt_ids"),
        nb::arg("user_json"), nb::arg("callback").none() = nb::none(), nb::arg("stop_callback").none() = nb::none(),
        nb::arg("hooks") = std::vector<std::shared_ptr<Hook>>{}, nb::arg("negative_prompt_ids").none() = nb::none(),
        nb::arg("prefill_chunk_size") = 512, nb::arg("draft").none() = nb::none());
  m.def("generate_batch", &run_generate_batch, nb::arg("model"), nb::arg("tokenizer").none(), nb::arg("prompts"),
        nb::arg("user_jsons"), nb::arg("callback").none() = nb::none(), nb::arg("stop_callback").none() = nb::none(),
        nb::arg("hooks") = std::vector<std::shared_ptr<Hook>>{}, nb::arg("negative_prompt_ids").none() = nb::none(),
        nb::arg("prefill_chunk_size") = 512, nb::arg("batch_size") = 16);
}

}  // namespace mlxgp::py
