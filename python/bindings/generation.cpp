// GenerationConfig through its C++ field list (names, help, defaults, JSON), and generate(): the GIL
// is released while C++ generates and re-acquired only for the Python token / stop callbacks.
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
#include "mlxgp/generate.h"
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

nb::dict sequence_dict(const GeneratedSequence& s) {
  nb::dict d;
  d["token_ids"] = nb::cast(s.token_ids);
  d["text"] = nb::cast(s.text);
  d["finish_reason"] = nb::cast(to_string(s.finish_reason));
  if (s.sequence_score) {
    d["score"] = nb::cast(*s.sequence_score);
    d["beam_indices"] = nb::cast(s.beam_indices);
  }
  if (s.scores) d["scores"] = nb::cast(*s.scores);
  if (s.logits) d["logits"] = nb::cast(*s.logits);
  if (!s.token_scores.empty()) d["token_scores"] = nb::cast(s.token_scores);
  if (!s.token_logits.empty()) d["token_logits"] = nb::cast(s.token_logits);
  if (!s.logprobs.empty()) d["logprobs"] = nb::cast(s.logprobs);
  return d;
}

nb::dict result_dict(const GenerationResult& r) {
  nb::list seqs;
  for (auto& s : r.sequences) seqs.append(sequence_dict(s));
  const auto& st = r.stats;
  nb::dict stats;
  stats["prompt_tokens"] = st.prompt_tokens;
  stats["generated_tokens"] = st.generated_tokens;
  stats["prefill_tokens_per_s"] = st.prefill_tokens_per_s;
  stats["decode_tokens_per_s"] = st.decode_tokens_per_s;
  stats["peak_memory_bytes"] = st.peak_memory_bytes;
  if (auto& sp = st.speculative) {
    nb::dict spec;
    spec["drafted_tokens"] = sp->drafted_tokens;
    spec["accepted_tokens"] = sp->accepted_tokens;
    spec["acceptance_rate"] = sp->acceptance_rate();
    spec["target_forwards"] = sp->target_forwards;
    spec["tokens_per_target_forward"] = sp->tokens_per_target_forward();
    stats["speculative"] = spec;
  }
  nb::dict out;
  out["prompt_token_ids"] = nb::cast(r.prompt_token_ids);
  out["sequences"] = seqs;
  out["stats"] = stats;
  return out;
}

nb::dict run_generate(PyModel& pm, std::shared_ptr<Tokenizer> tokenizer, const std::vector<int>& prompt_ids,
                      const std::string& user_json, nb::object callback, nb::object stop_callback,
                      const std::vector<std::shared_ptr<Hook>>& hooks,
                      std::optional<std::vector<int>> negative_prompt_ids, int prefill_chunk_size) {
  std::vector<std::string> warnings;
  GenerationConfig config = merged_config(&pm, user_json, &warnings);
  for (auto& w : warnings) PyErr_WarnEx(PyExc_UserWarning, w.c_str(), 1);

  // Hooks attached for this call only; detached (with the GIL held: a hook created in Python is
  // released through its Python object) even when generation throws.
  Model& model = *pm.model;
  struct Detach {
    Model& m;
    std::vector<int> handles;
    ~Detach() {
      for (int h : handles) m.hooks().remove(h);
    }
  } guard{model, {}};
  for (auto& h : hooks) guard.handles.push_back(add_hook(model, h));

  // Callbacks hold borrowed handles: std::function copies them while the GIL is released, and copying
  // a handle touches no reference count.
  std::optional<nb::python_error> raised;
  TokenCallback on_token;
  if (!callback.is_none()) {
    nb::handle fn = callback;
    on_token = [fn, &raised](int token, const std::string& text) {
      nb::gil_scoped_acquire gil;
      try {
        fn(token, nb::str(text.data(), text.size()));
      } catch (nb::python_error& e) {
        raised.emplace(std::move(e));
        throw CallbackRaised{};
      }
    };
  }
  GeneratorOptions options;
  options.prefill_chunk_size = prefill_chunk_size;
  options.negative_prompt_ids = std::move(negative_prompt_ids);
  if (!stop_callback.is_none()) {
    nb::handle fn = stop_callback;
    options.stop_callback = [fn, &raised](std::span<const int> ids) {
      nb::gil_scoped_acquire gil;
      try {
        return nb::cast<bool>(fn(std::vector<int>(ids.begin(), ids.end())));
      } catch (nb::python_error& e) {
        raised.emplace(std::move(e));
        throw CallbackRaised{};
      }
    };
  }

  GenerationResult result;
  bool aborted = false;
  {
    nb::gil_scoped_release release;
    try {
      result = generate(model, tokenizer, prompt_ids, config, on_token, std::move(options));
    } catch (const CallbackRaised&) {
      aborted = true;
    }
  }
  if (aborted && raised) throw std::move(*raised);
  return result_dict(result);
}

}  // namespace

void bind_generation(nb::module_& m) {
  m.def("generation_config_fields", [] {
    std::vector<std::tuple<std::string, std::string, std::string, bool>> out;
    for (auto& f : generation_config_fields()) out.emplace_back(f.name, f.help, f.default_text, f.is_flag);
    return out;
  }, "(name, help, default_text, is_flag) of every GenerationConfig field, in declaration order");
  m.def("generation_config_defaults", [] { return to_json(GenerationConfig{}).dump(); },
        "every field's default as a JSON object");
  m.def("check_generation_config", [](const std::string& user_json, bool check) {
    return to_json(merged_config(nullptr, user_json, nullptr, check)).dump();
  }, nb::arg("user_json"), nb::arg("validate") = true,
     "applies the user's settings (JSON object) strictly, validates unless told not to; returns all fields as JSON");
  m.def("set_generation_config_field", [](const std::string& user_json, const std::string& name, const std::string& text) {
    GenerationConfig c;
    if (!user_json.empty()) apply_generation_config_json(c, user_json, ConfigSource::User);
    set_generation_config_field(c, name, text);
    return to_json(c).dump();
  }, nb::arg("user_json"), nb::arg("name"), nb::arg("text"), "sets one field from CLI-style text; returns all fields as JSON");
  m.def("effective_generation_config", [](PyModel& pm, const std::string& user_json) {
    auto c = merged_config(&pm, user_json, nullptr);
    return describe(with_model_defaults(c, pm.model->config(), nullptr));
  }, nb::arg("model"), nb::arg("user_json"), "the merged settings (model file < user) as 'name = value' lines");
  m.def("generate", &run_generate, nb::arg("model"), nb::arg("tokenizer").none(), nb::arg("prompt_ids"),
        nb::arg("user_json"), nb::arg("callback").none() = nb::none(), nb::arg("stop_callback").none() = nb::none(),
        nb::arg("hooks") = std::vector<std::shared_ptr<Hook>>{},
        nb::arg("negative_prompt_ids").none() = nb::none(), nb::arg("prefill_chunk_size") = 512);
}

}  // namespace mlxgp::py
