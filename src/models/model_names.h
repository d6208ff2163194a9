// Checkpoint tensor names -> the names DecoderModel reads, for architectures whose checkpoints spell
// them differently (gpt2). The loader applies it before anything looks a tensor up by name (dtype
// handling finds model.norm.weight), and create_model applies it too, for callers that hand weights
// over directly. Names already in the model's layout pass through, so applying it twice is harmless.
#pragma once

#include <string>

#include "mlxgp/checkpoint_names.h"
#include "mlxgp/model.h"

namespace mlxgp {

WeightMap to_model_names(const std::string& model_type, WeightMap weights);

// The final norm's weight (model.norm.weight; phi's model.final_layernorm.weight, gpt_neox's
// model.final_layer_norm.weight), whose dtype is the activation dtype; null when `w` has none of them.
const mlx::core::array* final_norm_weight(const WeightMap& w);
// The tensor whose dtype is the activation dtype: the final norm's weight, else (olmo, whose norms store nothing) the
// embedding table (its scales when quantized) where that is a float; null when there is neither.
const mlx::core::array* activation_dtype_weight(const WeightMap& w);

// glm4_moe's and ernie4_5_moe's routing tensors: each e_score_correction_bias and the router weight (mlp.gate.weight)
// beside one, which transformers keeps in float32 whatever the model's dtype (_keep_in_fp32_modules_strict) and mlx-lm
// never quantizes for glm4_moe (its MoEGate is no Linear); mlxgp keeps ernie4_5_moe's so too, and hunyuan_v1_moe's
// float32 router (gate.wg).
bool is_fp32_router_tensor(const WeightMap& w, const std::string& name);
// The same for config's model, a multimodal checkpoint's language model included (language_model_names).
WeightMap to_model_names(const ModelConfig& config, WeightMap weights);

// A multimodal checkpoint's language model (ModelConfig::multimodal_model_type): language_model.model.* and
// language_model.lm_head.* (transformers' save_pretrained, mlx-lm), or model.language_model.* and lm_head.*
// (transformers 4.52 - 4.57), as the decoder's model.* and lm_head.*; the vision tower and projector dropped.
WeightMap language_model_names(WeightMap weights);
// The reverse: language_model.<name> (mlx-lm, and transformers for gemma3 / mistral3); transformers writes Qwen2-VL /
// Qwen2.5-VL as the decoder's own names and Qwen3-VL as model.language_model.*.
WeightMap language_model_checkpoint_names(WeightMap weights, const std::string& multimodal_type,
                                          CheckpointLayout layout);

// gpt2: HF's (transformer.)h.N.attn.c_attn with Conv1D [in, out] weights, or mlx-lm's model.h.N...
// bigcode (gpt_bigcode): transformer.h.N... in both layouts, [out, in]; a c_attn with per-head rows (no
// multi_query) becomes self_attn.query_key_value.
WeightMap gpt2_model_names(WeightMap weights, bool bigcode = false);
// The reverse (mlxgp/checkpoint_names.h).
WeightMap gpt2_checkpoint_names(WeightMap weights, CheckpointLayout layout, bool bigcode = false);

// stablelm: each head's q / k LayerNorm (self_attn.q_layernorm.norms.<h>.weight) stacked as the decoder's
// self_attn.q_norm.weight [heads, head_dim]; a missing head is a [model] error.
WeightMap stablelm_model_names(WeightMap weights);
// The reverse (both layouts name them alike).
WeightMap stablelm_checkpoint_names(WeightMap weights);

// gpt_neox: transformers' gpt_neox.* (embed_in, layers.N.attention.*, final_layer_norm; the head embed_out, or
// lm_head) or mlx-lm's model.* (layers model.h.N, head model.embed_out), buffers dropped.
WeightMap gpt_neox_model_names(WeightMap weights);
// The reverse.
WeightMap gpt_neox_checkpoint_names(WeightMap weights, CheckpointLayout layout);

// granitemoe: each layer's block_sparse_moe.input_linear [E, 2I, H] split into switch_mlp.gate_proj / up_proj,
// output_linear as switch_mlp.down_proj (mlx-lm's names).
WeightMap granitemoe_model_names(WeightMap weights);
// The reverse for transformers' layout (Hf); mlx-lm's (MlxLm) is the model's own.
WeightMap granitemoe_checkpoint_names(WeightMap weights, CheckpointLayout layout);

// Stacked experts between layouts (models/expert_names.cpp). pop_tensor removes and returns w[name] ([model] "missing
// tensor" without one); rename_prefix renames every tensor `from`<rest> to `to`<rest>, rename_infix the first `from`
// within any name to `to`; refuse_quantized_switch fails
// with [model] for quantized projections under `switch_prefix` (<module>.switch_mlp.), which `model_type`'s fused
// transformers layout cannot hold.
mlx::core::array pop_tensor(WeightMap& w, const std::string& name);
void rename_prefix(WeightMap& w, const std::string& from, const std::string& to);
void rename_infix(WeightMap& w, const std::string& from, const std::string& to);
void refuse_quantized_switch(const WeightMap& w, const std::string& switch_prefix, const std::string& model_type);
// Experts fused as transformers' Gemma4TextExperts / Qwen3_5MoeExperts keep them, `fused`gate_up_proj [E, 2I, hidden]
// (gate rows first) and `fused`down_proj [E, hidden, I], as `switch_prefix`{gate,up,down}_proj.weight; and back.
void split_fused_experts(WeightMap& w, const std::string& fused, const std::string& switch_prefix);
void fuse_switch_experts(WeightMap& w, const std::string& switch_prefix, const std::string& fused,
                         const std::string& model_type);

// gpt_oss: the experts' transformers tensors (gate_up_proj [E, hidden, 2I] interleaved, down_proj; or the
// original checkpoint's MXFP4 *_blocks / *_scales) and mlx-lm's experts.<proj> as stacked switch_mlp
// projections with biases (models/moe.h).
WeightMap gpt_oss_model_names(WeightMap weights);
// The reverse: mlx-lm's experts.<proj> (MlxLm), or transformers' float gate_up_proj / down_proj and their biases
// (Hf; stacked experts kept quantized have no transformers layout here: [model] error).
WeightMap gpt_oss_checkpoint_names(WeightMap weights, CheckpointLayout layout);

// apertus: the xIELU scalars (mlp.act_fn.*) [1] again for transformers (mlx-lm's sanitize squeezes them).
WeightMap apertus_checkpoint_names(WeightMap weights, CheckpointLayout layout);

// lfm2_moe: mlx-lm's names of the dense layers' projections (feed_forward.gate_proj / up_proj / down_proj) as
// transformers' w1 / w3 / w2.
WeightMap lfm2_model_names(WeightMap weights);
// lfm2 / lfm2_moe: each convolution kernel as transformers' Conv1d holds it ([hidden, 1, kernel], Hf) or mlx-lm's
// sanitize leaves it ([hidden, kernel, 1], MlxLm), whichever layout it was loaded in (GGUF's [hidden, kernel] too);
// lfm2_moe's experts one tensor each (Hf) and its dense projections under mlx-lm's names (MlxLm).
WeightMap lfm2_checkpoint_names(const std::string& model_type, WeightMap weights, CheckpointLayout layout);

// dots1: mlx-lm's stacked experts (mlp.experts.<proj>, no expert index) as the decoder's mlp.switch_mlp.<proj>.
WeightMap dots1_model_names(WeightMap weights);
// The reverse: transformers' one tensor per expert (Hf), mlx-lm's mlp.experts.<proj> (MlxLm).
WeightMap dots1_checkpoint_names(WeightMap weights, CheckpointLayout layout);

// llama4_text: each layer's feed_forward as the decoder's mlp; transformers' experts.gate_up_proj [E, hidden, 2I]
// (gate columns first) and down_proj [E, I, hidden], or mlx-lm's experts.<proj>, as stacked switch_mlp projections.
WeightMap llama4_model_names(WeightMap weights);
// The reverse: transformers' gate_up_proj / down_proj from float experts (Hf), mlx-lm's experts.<proj> (MlxLm).
WeightMap llama4_checkpoint_names(WeightMap weights, CheckpointLayout layout);

// gemma4_text: transformers' experts.gate_up_proj [E, 2I, hidden] (gate rows first) and down_proj [E, hidden, I], or
// mlx-lm's experts.switch_glu.<proj>, as stacked experts.switch_mlp projections.
WeightMap gemma4_model_names(WeightMap weights);
// The reverse: transformers' gate_up_proj / down_proj from float experts (Hf), mlx-lm's switch_glu (MlxLm).
WeightMap gemma4_checkpoint_names(WeightMap weights, CheckpointLayout layout);

// qwen3_next / qwen3_5_text / qwen3_5_moe_text: the multi-token-prediction head (mtp.*) dropped, as transformers
// ignores it; fused experts (mlp.experts.gate_up_proj) split. An mlx-lm folder's (1 + w) norms and [C, K, 1]
// convolutions stay as stored (the model runs them so).
WeightMap qwen3_next_model_names(WeightMap weights);
// The reverse, from either convention: transformers' zero-centred norms, [C, 1, K] convolutions and per-expert tensors
// (Hf), or mlx-lm's (1 + w) norms and [C, K, 1] convolutions (MlxLm).
WeightMap qwen3_next_checkpoint_names(const std::string& model_type, WeightMap weights, CheckpointLayout layout);

// deepseek_v2 / v3, glm4_moe_lite: the multi-token-prediction layers dropped; mlx-lm's embed_q / unembed_out
// (kv_b_proj split per head, maybe quantized) joined as transformers' kv_b_proj.
WeightMap deepseek_model_names(const ModelConfig& c, WeightMap weights);
// The reverse: mlx-lm's embed_q / unembed_out for deepseek_v3 (MlxLm); transformers' layout is the model's own.
WeightMap deepseek_checkpoint_names(const ModelConfig& c, WeightMap weights, CheckpointLayout layout);

}  // namespace mlxgp
