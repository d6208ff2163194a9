#include "io/gpt2_config.h"

#include <string>

#include "mlxgp/error.h"

namespace mlxgp::io {

namespace {

using json = nlohmann::json;

bool has(const json& j, const char* key) { return j.contains(key) && !j.at(key).is_null(); }

}  // namespace

json gpt2_common_fields(const json& in) {
  json j = in;
  const bool bigcode = in.value("model_type", "") == "gpt_bigcode";
  // GPT2Config's field, else the common name where its attribute_map aliases one (hidden_size -> n_embd),
  // else its default. Common names it does not alias (rms_norm_eps, hidden_act, intermediate_size) are ignored.
  auto take = [&](const char* field, const char* common, json def, bool aliased) {
    j[common] = has(in, field) ? in.at(field) : aliased && has(in, common) ? in.at(common) : def;
  };
  take("n_embd", "hidden_size", 768, true);
  take("n_layer", "num_hidden_layers", 12, true);
  take("n_head", "num_attention_heads", 12, true);
  take("n_positions", "max_position_embeddings", 1024, true);
  take("layer_norm_epsilon", "rms_norm_eps", 1e-5, false);
  take("activation_function", "hidden_act", bigcode ? "gelu_pytorch_tanh" : "gelu_new", false);
  take("vocab_size", "vocab_size", 50257, true);
  // Neither has a head_dim field: every head is n_embd / n_head wide. GPT-2 has no grouped heads; GPTBigCode
  // one key/value head with multi_query (its default, StarCoder's and SantaCoder's layout), else one per head.
  const bool multi_query = bigcode && (!has(in, "multi_query") || in.at("multi_query") == true);
  j["num_key_value_heads"] = multi_query ? json(1) : j["num_attention_heads"];
  j.erase("head_dim");
  if (has(in, "n_inner")) j["intermediate_size"] = in.at("n_inner");
  else if (j["hidden_size"].is_number_integer()) j["intermediate_size"] = 4 * j["hidden_size"].get<long long>();
  j["attention_bias"] = j["mlp_bias"] = true;  // every Conv1D (GPTBigCode: Linear) has a bias
  for (const char* key : {"tie_word_embeddings"})
    if (!in.contains(key)) j[key] = true;
  for (const char* key : {"bos_token_id", "eos_token_id"})
    if (!in.contains(key)) j[key] = 50256;
  const auto act = j["hidden_act"].is_string() ? j["hidden_act"].get<std::string>() : "";
  // gelu_fast (SantaCoder's) is transformers' FastGELUActivation: the tanh approximation, as gelu_new.
  if (act != "gelu_new" && act != "gelu_pytorch_tanh" && act != "gelu_fast" && act != "gelu" && act != "silu" &&
      act != "swish")
    fail("config", "unsupported activation_function '" + (act.empty() ? j["hidden_act"].dump() : act) +
                       "' (supported: gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, silu, swish)");
  if (has(in, "add_cross_attention") && in.at("add_cross_attention") == true)
    fail("config", std::string("add_cross_attention is not supported (") + (bigcode ? "gpt_bigcode" : "gpt2") +
                       " runs as a decoder only)");
  return j;
}

}  // namespace mlxgp::io
