// load(), the Model (config as `args`, extra parameters by name, parameters, a plain forward) and the
// Tokenizer (encode/decode/chat template).
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unordered_map.h>
#include <nanobind/stl/vector.h>

#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "bindings.h"
#include "mlxgp/chat_template.h"
#include "mlxgp/error.h"
#include "mlxgp/model_config.h"

namespace mlxgp::py {

namespace mx = mlx::core;

namespace {

// transformers' apply_chat_template(tokenize=False) for one conversation given as JSON (messages with any
// keys); `extra` holds the template variables (tools, documents, keyword arguments). The template is the
// one get_chat_template picks: `chat_template` (a name or a source), else tool_use with tools, else default.
std::string render_chat(const Tokenizer& tok, const std::string& messages_json, bool add_generation_prompt,
                        const std::string& chat_template, const std::string& extra_json) {
  auto messages = nlohmann::ordered_json::parse(messages_json);
  auto extra = nlohmann::ordered_json::parse(extra_json);
  bool tools = extra.contains("tools") && !extra["tools"].is_null();
  std::string source = tok.select_chat_template(chat_template, tools);
  if (source.empty()) fail("tokenizer", "the tokenizer has no chat template; pass chat_template=");
  return apply_chat_template(source, messages, add_generation_prompt, tok.special_tokens(), extra);
}

}  // namespace

void bind_model(nb::module_& m) {
  nb::class_<ModelConfig>(m, "ModelArgs", "the checkpoint's config.json fields (HF names)")
      .def_ro("model_type", &ModelConfig::model_type)
      .def_prop_ro(
          "multimodal_model_type",
          [](const ModelConfig& c) -> std::optional<std::string> {
            if (c.multimodal_model_type.empty()) return std::nullopt;
            return c.multimodal_model_type;
          },
          "a multimodal checkpoint's own model_type ('gemma3', 'mistral3') when this is its language model (whose "
          "model_type and fields the others are), else None")
      .def_ro("vocab_size", &ModelConfig::vocab_size)
      .def_ro("hidden_size", &ModelConfig::hidden_size)
      .def_ro("intermediate_size", &ModelConfig::intermediate_size)
      .def_ro("num_hidden_layers", &ModelConfig::num_hidden_layers)
      .def_ro("num_attention_heads", &ModelConfig::num_attention_heads)
      .def_ro("num_key_value_heads", &ModelConfig::num_key_value_heads)
      .def_ro("head_dim", &ModelConfig::head_dim)
      .def_ro("rms_norm_eps", &ModelConfig::rms_norm_eps)
      .def_ro("rope_theta", &ModelConfig::rope_theta)
      .def_ro("max_position_embeddings", &ModelConfig::max_position_embeddings)
      .def_ro("tie_word_embeddings", &ModelConfig::tie_word_embeddings)
      .def_ro("bos_token_id", &ModelConfig::bos_token_id)
      .def_ro("eos_token_id", &ModelConfig::eos_token_id)
      .def_ro("pad_token_id", &ModelConfig::pad_token_id)
      .def_prop_ro(
          "quantization",
          [](const ModelConfig& c) -> std::optional<std::pair<int, int>> {
            if (!c.quantization) return std::nullopt;
            return std::make_pair(c.quantization->group_size, c.quantization->bits);
          },
          "(group_size, bits) of a quantized checkpoint, else None")
      .def_prop_ro(
          "quantization_mode",
          [](const ModelConfig& c) -> std::optional<std::string> {
            if (!c.quantization) return std::nullopt;
            return c.quantization->mode;
          },
          "MLX's quantization mode of a quantized checkpoint ('affine', 'mxfp4', 'mxfp8' or 'nvfp4'), else None")
      .def("__repr__", [](const ModelConfig& c) {
        return "ModelArgs(model_type='" + c.model_type + "', hidden_size=" + std::to_string(c.hidden_size) +
               ", num_hidden_layers=" + std::to_string(c.num_hidden_layers) +
               ", vocab_size=" + std::to_string(c.vocab_size) + ")";
      });

  nb::class_<PyModel>(m, "Model", "a loaded checkpoint; hooks and extra parameters live on it")
      .def_prop_ro("args", [](const PyModel& p) { return p.model->config(); })
      .def_ro("source", &PyModel::source)
      .def_ro("generation_config_json", &PyModel::generation_config_json)
      .def("__setitem__",
           [](PyModel& p, const std::string& key, const mx::array& v) { p.model->extra_params().set(key, v); })
      .def("__getitem__",
           [](PyModel& p, const std::string& key) {
             if (!p.model->extra_params().has(key)) throw nb::key_error(key.c_str());
             return p.model->extra_params().get(key);
           })
      .def("__delitem__",
           [](PyModel& p, const std::string& key) {
             if (!p.model->extra_params().has(key)) throw nb::key_error(key.c_str());
             p.model->extra_params().erase(key);
           })
      .def("__contains__", [](PyModel& p, const std::string& key) { return p.model->extra_params().has(key); })
      .def("extra_keys", [](PyModel& p) { return p.model->extra_params().keys(); })
      .def("save_extra_params", [](PyModel& p, const std::string& path) { p.model->extra_params().save(path); })
      .def("load_extra_params", [](PyModel& p, const std::string& path) { p.model->extra_params().load(path); })
      .def(
          "parameters", [](PyModel& p) { return p.model->parameters(); },
          "the parameters by HF name (quantized linears add .scales / .biases)")
      .def(
          "set_parameters",
          [](PyModel& p, const WeightMap& w, bool allow_new) { p.model->set_parameters(w, allow_new); },
          nb::arg("weights"), nb::arg("allow_new") = false)
      .def("num_hooks", [](PyModel& p) { return p.model->hooks().size(); })
      .def("clear_hooks", [](PyModel& p) { p.model->hooks().clear(); })
      .def("remove_hook", [](PyModel& p, int handle) { p.model->hooks().remove(handle); })
      .def("lm_head", [](PyModel& p, const mx::array& h) { return p.model->lm_head(h); })
      .def(
          "__call__",
          [](PyModel& p, const mx::array& tokens) {
            // A fresh cache per call: [B, T] int32 ids -> [B, T, vocab] float32 logits (hooks run).
            if (tokens.ndim() != 2) fail("model", "tokens must be [batch, length]");
            auto caches = p.model->make_caches();
            auto ids = mx::astype(tokens, mx::int32);
            nb::gil_scoped_release release;
            auto out = p.model->forward(ids, caches);
            mx::eval(out);
            return out;
          },
          nb::arg("tokens"), "logits of every position for token ids [B, T] (no cache kept)");

  nb::class_<Tokenizer>(m, "Tokenizer", "encode/decode identical to HF tokenizers")
      .def(
          "encode",
          [](const Tokenizer& t, const std::string& text, bool add_special) { return t.encode(text, add_special); },
          nb::arg("text"), nb::arg("add_special_tokens") = true)
      .def(
          "decode", [](const Tokenizer& t, const std::vector<int>& ids, bool skip) { return t.decode(ids, skip); },
          nb::arg("ids"), nb::arg("skip_special_tokens") = false)
      .def_prop_ro("vocab_size", &Tokenizer::vocab_size)
      .def("token_to_id", [](const Tokenizer& t, const std::string& s) { return t.token_to_id(s); })
      .def("id_to_token", &Tokenizer::id_to_token)
      .def("is_special", &Tokenizer::is_special)
      .def_prop_ro("bos_token_id", &Tokenizer::bos_token_id)
      .def_prop_ro("eos_token_id", &Tokenizer::eos_token_id)
      .def_prop_ro("pad_token_id", &Tokenizer::pad_token_id)
      .def_prop_ro(
          "chat_template",
          [](const Tokenizer& t) -> nb::object {
            if (t.named_chat_templates().empty())
              return t.chat_template().empty() ? nb::none() : nb::cast(t.chat_template());
            nb::dict named;  // transformers: a dict of the named templates
            for (const auto& [name, source] : t.named_chat_templates()) named[name.c_str()] = source;
            return named;
          },
          "the chat template (None if none; a dict name -> template when the tokenizer has named ones)")
      .def_prop_ro(
          "special_tokens_map",
          [](const Tokenizer& t) {
            nb::dict out;
            t.special_tokens().for_each([&](const char* name, const std::string& value) {
              if (!value.empty()) out[name] = value;
            });
            return out;
          },
          "transformers' special_tokens_map: the named special tokens the chat template sees")
      .def("_render_chat", &render_chat, nb::arg("messages_json"), nb::arg("add_generation_prompt"),
           nb::arg("chat_template"), nb::arg("extra_json"));

  m.def(
      "load",
      [](const std::string& path, std::optional<std::string> dtype, bool int8_activations) {
        LoadOptions options;
        if (dtype) options.dtype = parse_dtype(*dtype);
        options.int8_activations = int8_activations;
        LoadedModel loaded;
        {
          nb::gil_scoped_release release;
          loaded = load(path, options);
        }
        PyModel pm{loaded.model, loaded.generation_config_json, loaded.source};
        return std::make_pair(std::move(pm), std::shared_ptr<Tokenizer>(loaded.tokenizer));
      },
      nb::arg("path"), nb::arg("dtype") = nb::none(), nb::arg("int8_activations") = false);

  // A model over arrays that already exist (an mlx-lm module's parameters): the arrays are shared, not
  // copied, so an update through set_parameters() is what the other side sees once written back.
  m.def(
      "model_from_arrays",
      [](const std::string& config_json, const WeightMap& weights, const std::string& generation_config_json,
         const std::string& source) {
        ModelConfig config = parse_model_config(config_json);
        return PyModel{std::shared_ptr<Model>(create_model(config, weights)), generation_config_json, source};
      },
      nb::arg("config_json"), nb::arg("weights"), nb::arg("generation_config_json") = "", nb::arg("source") = "");
  m.def("supported_model_types", &supported_model_types, "the HF model_type values mlxgp implements");
  m.def(
      "load_tokenizer",
      [](const std::string& path) {
        nb::gil_scoped_release release;
        return load_tokenizer(path);
      },
      nb::arg("path"), "only the tokenizer of a folder (tokenizer.json) or .gguf file");
}

}  // namespace mlxgp::py
