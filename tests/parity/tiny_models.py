"""Tiny random transformers checkpoints (fixed seed, fp32) for parity tests.

`make_tiny_model(arch, out_dir)` builds one architecture with transformers itself and
save_pretrained()s it (config.json + model.safetensors), so every test compares against the real
reference implementation of that architecture. Weights are scaled up a little from transformers'
0.02 init so logits are not all near zero (a weak test)."""
from pathlib import Path

ARCHS = ("llama", "mistral", "qwen2", "qwen3")
# The later architectures (tests/parity/test_architectures.py), each with its distinctive options on.
MORE_ARCHS = ("gemma", "gemma2", "gemma3_text", "phi3", "phi3-long", "granite", "olmo2", "smollm3",
              "mixtral", "qwen2_moe", "qwen3_moe", "starcoder2", "gpt2", "gpt2-scaled", "qwen3-yarn", "llama-yarn",
              "gpt_oss", "gemma3", "mistral3", "ministral3", "mistral3-ministral3", "olmo3", "olmoe", "glm", "glm4",
              "cohere", "cohere2", "phi", "glm4_moe", "stablelm", "stablelm-parallel", "seed_oss", "ernie4_5",
              "exaone4", "gpt_neox", "arcee", "nemotron", "granitemoe", "helium", "hunyuan_v1_dense", "deepseek_v2",
              "deepseek_v3", "glm4_moe_lite", "dots1", "apertus", "qwen2_5_vl", "qwen3_vl", "llama4_text", "llama4",
              "gpt_bigcode", "gpt_bigcode-mha", "olmo", "gemma4_text", "gemma4_text-moe", "gemma4_text-e2b",
              "gemma4", "phimoe", "ernie4_5_moe", "hunyuan_v1_moe", "lfm2", "lfm2_moe", "qwen3_next", "qwen3_5_text",
              "qwen3_5_moe_text", "qwen3_5", "qwen3_5_moe")
# Multimodal checkpoints (Gemma3ForConditionalGeneration, Mistral3ForConditionalGeneration) with a tiny vision
# tower: mlxgp runs their language model.
MULTIMODAL_ARCHS = ("gemma3", "mistral3", "mistral3-ministral3", "qwen2_5_vl", "qwen3_vl", "llama4", "gemma4",
                    "qwen3_5", "qwen3_5_moe")
MOE_ARCHS = ("mixtral", "phimoe", "ernie4_5_moe", "hunyuan_v1_moe", "lfm2_moe", "qwen3_next", "qwen3_5_moe_text",
             "qwen3_5_moe", "qwen2_moe", "qwen3_moe", "gpt_oss", "olmoe", "glm4_moe", "granitemoe", "deepseek_v2",
             "deepseek_v3", "glm4_moe_lite", "dots1", "llama4_text", "llama4", "gemma4_text-moe")

_COMMON = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
               rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)


def tiny_config(arch: str):
    import transformers

    if arch == "llama":
        # Llama-3 rope scaling with a short original context so all three frequency bands occur,
        # plus tied embeddings (SmolLM / Llama-3.2 style).
        return transformers.LlamaConfig(
            **_COMMON, tie_word_embeddings=True,
            rope_parameters={"rope_type": "llama3", "rope_theta": 50000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 64})
    if arch == "llama-plain":  # default rope, separate head: what a plain GGUF conversion holds
        return transformers.LlamaConfig(**_COMMON, rope_parameters={"rope_type": "default",
                                                                    "rope_theta": 10000.0})
    if arch == "llama-kq":  # rows of 256 and 512 values: llama.cpp's K-quants need multiples of 256
        return transformers.LlamaConfig(**{**_COMMON, "hidden_size": 256, "intermediate_size": 512,
                                           "num_hidden_layers": 2},
                                        rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    if arch == "llama-linear":
        return transformers.LlamaConfig(
            **_COMMON, rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0})
    if arch == "mistral":
        return transformers.MistralConfig(**_COMMON, sliding_window=4096, head_dim=16)
    if arch == "qwen2":
        return transformers.Qwen2Config(**_COMMON, rope_parameters={"rope_type": "default",
                                                                     "rope_theta": 1000000.0})
    if arch == "qwen3":
        # Explicit head_dim different from hidden/heads, as in real Qwen3 checkpoints.
        return transformers.Qwen3Config(**_COMMON, head_dim=32, tie_word_embeddings=False)
    if arch == "qwen3-yarn":
        # YaRN as Qwen3's model cards enable it (factor 4 over the original context), with an original
        # context short enough that the ramp between interpolated and original frequencies falls inside the
        # 16 frequencies (dims 0-5 of them).
        return transformers.Qwen3Config(
            **{**_COMMON, "max_position_embeddings": 256}, head_dim=32, tie_word_embeddings=False,
            rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                             "original_max_position_embeddings": 64})
    if arch == "llama-yarn":
        # Every YaRN option off its default: betas, DeepSeek's mscale pair for the attention factor, and an
        # untruncated (fractional) ramp.
        return transformers.LlamaConfig(
            **_COMMON, rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0,
                                        "original_max_position_embeddings": 128, "beta_fast": 16.0,
                                        "beta_slow": 2.0, "mscale": 0.8, "mscale_all_dim": 0.5,
                                        "truncate": False})
    if arch == "gemma":
        return transformers.GemmaConfig(**_COMMON, head_dim=16, hidden_act="gelu_pytorch_tanh")
    if arch == "gemma2":
        # Caps small enough that they clip (tanh well out of its linear range), a query scalar that is not
        # head_dim, and a window shorter than the test sequences on alternating layers.
        return transformers.Gemma2Config(
            **_COMMON, head_dim=16, query_pre_attn_scalar=24, attn_logit_softcapping=2.0,
            final_logit_softcapping=4.0, sliding_window=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    if arch == "gemma3_text":
        # Local layers on their own rope base, the global one with linear scaling (as Gemma 3 4B+).
        return transformers.Gemma3TextConfig(
            **_COMMON, head_dim=16, query_pre_attn_scalar=16, sliding_window=8, final_logit_softcapping=6.0,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                             "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1000000.0}})
    if arch in ("gemma4_text", "gemma4_text-moe"):
        # Gemma 4 31B's layout: sliding layers of head_dim 16 (rope base 1e4), a global one twice as wide with one
        # key/value head that is also its values (attention_k_eq_v) and proportional RoPE on a quarter of it; the
        # MoE variant (26B-A4B's) runs 4 experts (top 2) beside the MLP, its global layer with its own v_proj. No
        # per-layer input embeddings (E2B / E4B's, which mlxgp refuses).
        moe = dict(enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=32)
        return transformers.Gemma4TextConfig(
            **_COMMON, head_dim=16, global_head_dim=32, num_global_key_value_heads=1,
            attention_k_eq_v=arch == "gemma4_text", sliding_window=8, final_logit_softcapping=6.0,
            hidden_size_per_layer_input=0, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                             "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                                "rope_theta": 1000000.0}},
            **(moe if arch == "gemma4_text-moe" else {}))
    if arch == "gemma4_text-e2b":
        # Gemma 4 E2B / E4B's layout: per-layer inputs (8 features a layer from their own 512-row table and a
        # projection of the embedding) and the last two layers attending to the keys and values of the last sliding /
        # full layer before them, their MLPs twice as wide; proportional RoPE on the global layers.
        return transformers.Gemma4TextConfig(
            **{**_COMMON, "num_hidden_layers": 4}, head_dim=16, global_head_dim=32, sliding_window=8,
            final_logit_softcapping=6.0, hidden_size_per_layer_input=8, vocab_size_per_layer_input=512,
            num_kv_shared_layers=2, use_double_wide_mlp=True,
            layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                             "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                                "rope_theta": 1000000.0}})
    if arch in ("phi3", "phi3-long"):
        # LongRoPE with partial rotary (8 of 16 dims): "phi3" stays below original_max_position_embeddings
        # (short factors); "phi3-long" crosses it during decoding (transformers switches to the long factors
        # for every forward whose last position is past it).
        orig = 1024 if arch == "phi3" else 24
        return transformers.Phi3Config(
            **{**_COMMON, "max_position_embeddings": 4 * orig}, original_max_position_embeddings=orig, pad_token_id=0,
            rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                             "short_factor": [1.0, 1.3, 2.1, 3.7], "long_factor": [1.5, 2.9, 5.3, 9.1]})
    if arch == "granite":
        return transformers.GraniteConfig(**_COMMON, embedding_multiplier=3.0, residual_multiplier=0.6,
                                          attention_multiplier=0.2, logits_scaling=2.5)
    if arch == "granitemoe":
        # Granite 3.0 MoE: granite's four multipliers, 4 experts top-2 (a softmax over the top-k logits).
        return transformers.GraniteMoeConfig(**_COMMON, num_local_experts=4, num_experts_per_tok=2,
                                             embedding_multiplier=3.0, residual_multiplier=0.6,
                                             attention_multiplier=0.2, logits_scaling=2.5)
    if arch == "olmo2":
        return transformers.Olmo2Config(**_COMMON)
    if arch == "olmo3":
        # A window shorter than the sequences on two layers of three, YaRN on the global layer only (the sliding
        # ones rotate unscaled), its ramp inside the frequencies.
        return transformers.Olmo3Config(
            **_COMMON, sliding_window=8, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                             "full_attention": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                "original_max_position_embeddings": 16}})
    if arch == "smollm3":
        return transformers.SmolLM3Config(**_COMMON, no_rope_layer_interval=2, pad_token_id=0)
    if arch == "starcoder2":
        return transformers.Starcoder2Config(**{k: v for k, v in _COMMON.items() if k != "rms_norm_eps"},
                                             norm_epsilon=1e-5, sliding_window=8, use_bias=True)
    if arch in ("gpt2", "gpt2-scaled"):
        # GPT2Config's own names; 64 learned positions (the tests reach 44). "gpt2" keeps the defaults mlx-lm
        # hard-codes (n_inner 4 * n_embd, gelu_new, 1/sqrt(head_dim)); "gpt2-scaled" has its own MLP width,
        # exact gelu, no 1/sqrt(head_dim) and the scale divided by layer index + 1.
        extra = {} if arch == "gpt2" else dict(n_inner=96, activation_function="gelu", scale_attn_weights=False,
                                                scale_attn_by_inverse_layer_idx=True)
        # No dropout (GPT2Config's default is 0.1): mlxgp trains without model dropout, as the other configs have none.
        return transformers.GPT2Config(vocab_size=512, n_embd=64, n_layer=3, n_head=4, n_positions=64,
                                       layer_norm_epsilon=1e-5, bos_token_id=1, eos_token_id=2, resid_pdrop=0.0,
                                       embd_pdrop=0.0, attn_pdrop=0.0, **extra)
    if arch in ("gpt_bigcode", "gpt_bigcode-mha"):
        # GPTBigCodeConfig's names, 64 learned positions. "gpt_bigcode": StarCoder's layout (multi-query: one
        # key/value head, gelu_pytorch_tanh), its own MLP width; "gpt_bigcode-mha": a key/value head per query head
        # (c_attn's rows per head), SantaCoder's gelu_fast, n_inner unset (4 * n_embd), unscaled scores.
        extra = (dict(n_inner=96) if arch == "gpt_bigcode" else
                 dict(multi_query=False, activation_function="gelu_fast", scale_attn_weights=False))
        return transformers.GPTBigCodeConfig(vocab_size=512, n_embd=64, n_layer=3, n_head=4, n_positions=64,
                                             layer_norm_epsilon=1e-5, bos_token_id=1, eos_token_id=2, resid_pdrop=0.0,
                                             embd_pdrop=0.0, attn_pdrop=0.0, **extra)
    if arch == "mixtral":
        return transformers.MixtralConfig(**_COMMON, num_local_experts=4, num_experts_per_tok=2)
    if arch in ("phimoe", "phimoe-long"):
        # Phi-3.5-MoE: LayerNorms, biases on q / k / v / o and the head, sparsemixer routing with a wide threshold
        # (router_jitter_noise 0.3: some tokens weigh their experts 1, others share the softmax), a window shorter
        # than the sequences, LongRoPE with its own multipliers. "phimoe" stays below the original length (64);
        # "phimoe-long" crosses its 24 without a window (test_phimoe.py: transformers 5 keeps the short factors past
        # it, so transformers 4.56.2 is the reference there; the window is checked against 5.24 on "phimoe").
        head = _COMMON["hidden_size"] // _COMMON["num_attention_heads"]
        return transformers.PhimoeConfig(
            **_COMMON, num_local_experts=4, num_experts_per_tok=2, attention_bias=True, lm_head_bias=True,
            router_jitter_noise=0.3, sliding_window=None if arch == "phimoe-long" else 24,
            rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                             "short_factor": [1.0 + 0.15 * i for i in range(head // 2)],
                             "long_factor": [1.5 + 0.6 * i for i in range(head // 2)],
                             "short_mscale": 1.1, "long_mscale": 1.35,
                             "original_max_position_embeddings": 24 if arch == "phimoe-long" else 64})
    if arch == "qwen2_moe":
        # A shared expert, expert width != dense width, and layer 1 dense (mlp_only_layers).
        return transformers.Qwen2MoeConfig(**_COMMON, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48,
                                           shared_expert_intermediate_size=96, mlp_only_layers=[1])
    if arch == "qwen3_moe":
        return transformers.Qwen3MoeConfig(**_COMMON, num_experts=5, num_experts_per_tok=2, moe_intermediate_size=48,
                                           norm_topk_prob=True, head_dim=32)
    if arch == "olmo":
        # OLMo (OLMo-1B-hf, OLMo-7B-0424-hf): weightless LayerNorms; clip_qkv low enough to clamp some projections.
        return transformers.OlmoConfig(**{k: v for k, v in _COMMON.items() if k != "rms_norm_eps"}, clip_qkv=1.0,
                                       pad_token_id=0)
    if arch == "olmoe":
        # OlmoeConfig leaves the top-k unnormalised (norm_topk_prob false).
        return transformers.OlmoeConfig(**_COMMON, num_experts=4, num_experts_per_tok=2, pad_token_id=0)
    if arch in ("glm", "glm4"):
        # GlmConfig / Glm4Config: head_dim 128 (wider than hidden / heads), RoPE on its first 32 features in
        # interleaved pairs (partial_rotary_factor 0.25 here), q/k/v biases; glm4's extra post norms.
        cls = transformers.GlmConfig if arch == "glm" else transformers.Glm4Config
        return cls(**_COMMON, head_dim=128, pad_token_id=0,
                   rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25})
    if arch == "glm4_moe":
        # GLM-4.5's layout: a dense first layer, then 8 experts top-2 in 2 groups of which 1 is kept (so the group
        # choice bites), sigmoid scores biased by a random e_score_correction_bias (make_model_from_config), a
        # routed_scaling_factor, an ungated shared expert, per-head q/k norms and q/k/v biases.
        return transformers.Glm4MoeConfig(**_COMMON, head_dim=16, n_routed_experts=8, num_experts_per_tok=2,
                                          moe_intermediate_size=32, n_group=2, topk_group=1, first_k_dense_replace=1,
                                          routed_scaling_factor=2.5, use_qk_norm=True, attention_bias=True,
                                          pad_token_id=0)
    if arch in ("deepseek_v2", "deepseek_v3", "glm4_moe_lite"):
        # Multi-head latent attention (a 96-wide latent beside 32 shared rotary features: one 128-wide cached head),
        # a dense first layer, then 8 experts top-3 beside shared ones. deepseek_v2: queries straight from q_proj,
        # softmax routing limited to the 2 of 4 groups whose best expert scores most, 2 shared experts, V2-Lite's
        # YaRN (equal mscales: the softmax scale moves, cos / sin do not; mlx-lm's deepseek_v2 requires rope_scaling).
        # deepseek_v3: queries through the q_a_proj latent, YaRN with both mscales (so the softmax scale moves too),
        # sigmoid routing with 1 of 2 groups kept and a correction bias, routed_scaling_factor.
        mla = dict(kv_lora_rank=96, qk_nope_head_dim=32, qk_rope_head_dim=32, v_head_dim=32, n_routed_experts=8,
                   num_experts_per_tok=3, moe_intermediate_size=32, first_k_dense_replace=1, pad_token_id=0)
        common = {**_COMMON, "num_key_value_heads": 4, "max_position_embeddings": 256}
        if arch == "deepseek_v2":
            return transformers.DeepseekV2Config(**common, **mla, q_lora_rank=None, n_shared_experts=2,
                                                 topk_method="group_limited_greedy", n_group=4, topk_group=2,
                                                 routed_scaling_factor=1.5,
                                                 rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0,
                                                                  "factor": 4.0, "mscale": 0.707,
                                                                  "mscale_all_dim": 0.707,
                                                                  "original_max_position_embeddings": 64})
        if arch == "glm4_moe_lite":  # GLM-4.7-Flash: V3's attention and routing, dense layers by mlp_layer_types
            mla.pop("first_k_dense_replace")
            return transformers.Glm4MoeLiteConfig(**common, **mla, q_lora_rank=48, n_shared_experts=1, n_group=2,
                                                  topk_group=1, routed_scaling_factor=1.8,
                                                  mlp_layer_types=["dense", "sparse", "sparse"])
        return transformers.DeepseekV3Config(**common, **mla, q_lora_rank=48, n_shared_experts=1, n_group=2,
                                             topk_group=1, routed_scaling_factor=2.5,
                                             rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0,
                                                              "factor": 4.0, "original_max_position_embeddings": 64,
                                                              "mscale": 0.9, "mscale_all_dim": 1.0,
                                                              "beta_fast": 32, "beta_slow": 1})
    if arch == "apertus":
        # Apertus: per-head q/k norms, attention_layernorm / feedforward_layernorm, the ungated xIELU MLP with each
        # layer's learned alpha_p / alpha_n (drawn at random here), Llama-3 rope scaling over a short original context.
        return transformers.ApertusConfig(**_COMMON, pad_token_id=0,
                                          rope_parameters={"rope_type": "llama3", "rope_theta": 50000.0,
                                                           "factor": 8.0, "low_freq_factor": 1.0,
                                                           "high_freq_factor": 4.0,
                                                           "original_max_position_embeddings": 64})
    if arch == "dots1":
        # dots.llm1: qwen3's attention (per-head q/k norms) with a window of 8 on the last layer (max_window_layers 2),
        # a dense first layer, then sigmoid-routed experts (1 of 2 groups, correction bias, unnormalised, x 2.0) beside
        # a shared one.
        return transformers.Dots1Config(**_COMMON, n_routed_experts=8, num_experts_per_tok=3, n_shared_experts=1,
                                        moe_intermediate_size=32, n_group=2, topk_group=1, routed_scaling_factor=2.0,
                                        first_k_dense_replace=1, sliding_window=8, max_window_layers=2,
                                        pad_token_id=0)
    if arch == "phi":
        # PhiConfig: RoPE on the first 40% of each head (rotary dims 6 of 16), gelu_new, biases and a head bias.
        return transformers.PhiConfig(**{k: v for k, v in _COMMON.items() if k != "rms_norm_eps"}, layer_norm_eps=1e-5,
                                      pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0,
                                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                       "partial_rotary_factor": 0.4})
    if arch in ("stablelm", "stablelm-parallel"):
        # StableLM-2 1.6B's q/k/v biases on a quarter-rotary head (4 of 16 dims); the 12B's per-head q/k LayerNorms
        # and parallel blocks (one norm a block) in the second.
        return transformers.StableLmConfig(**{k: v for k, v in _COMMON.items() if k != "rms_norm_eps"},
                                           layer_norm_eps=1e-5, use_qkv_bias=arch == "stablelm",
                                           qk_layernorm=arch == "stablelm-parallel",
                                           use_parallel_residual=arch == "stablelm-parallel", pad_token_id=0)
    if arch == "helium":
        # Helium-1: interleaved RoPE, q/k/v biases (attention_bias; o_proj never has one).
        return transformers.HeliumConfig(**_COMMON, head_dim=16, attention_bias=True, pad_token_id=0)
    if arch == "hunyuan_v1_dense":
        # Hunyuan dense: per-head q/k RMSNorms after RoPE, "dynamic" RoPE with a fixed alpha (a stretched base), biases
        # on q / k / v / o.
        return transformers.HunYuanDenseV1Config(**_COMMON, head_dim=16, attention_bias=True, pad_token_id=0,
                                                 rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0,
                                                                  "alpha": 50.0, "factor": 1.0})
    if arch == "hunyuan_v1_moe":
        # Hunyuan-A13B's layout: hunyuan_v1_dense's attention (biases on q / k / v / o here), every layer's 4 experts
        # top-2 by a float32 softmax router beside an ungated shared MLP.
        return transformers.HunYuanMoEV1Config(**_COMMON, head_dim=16, attention_bias=True, pad_token_id=0,
                                               num_experts=4, moe_topk=2,
                                               rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0,
                                                                "alpha": 50.0, "factor": 1.0})
    if arch == "lfm2":
        # LFM2's layout: gated short convolutions (3 positions) on most layers, the first one included, attention with
        # per-head q / k norms on the others; the MLP width from block_auto_adjust_ff_dim (two thirds of 128,
        # rounded up to 16: 96).
        return transformers.Lfm2Config(**{**{k: v for k, v in _COMMON.items() if k != "rms_norm_eps"},
                                          "num_hidden_layers": 4}, norm_eps=1e-5, pad_token_id=0,
                                       block_multiple_of=16, layer_types=["conv", "full_attention", "conv", "conv"])
    if arch == "lfm2_moe":
        # LFM2-8B-A1B's layout: lfm2's blocks, a dense first layer, then 4 experts top-2 of width 32 chosen by a sigmoid
        # router plus a random expert_bias that changes some tokens' choice, renormalised, routed_scaling_factor 1.5.
        return transformers.Lfm2MoeConfig(**{**{k: v for k, v in _COMMON.items() if k != "rms_norm_eps"},
                                             "num_hidden_layers": 4}, norm_eps=1e-5, pad_token_id=0,
                                          layer_types=["conv", "full_attention", "conv", "conv"], num_experts=4,
                                          num_experts_per_tok=2, moe_intermediate_size=32, num_dense_layers=1,
                                          routed_scaling_factor=1.5)
    if arch in ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "qwen3_5", "qwen3_5_moe"):
        # Qwen3-Next / Qwen3.5: gated delta nets (2 key heads of 16, each serving 2 of the 4 value heads; a
        # convolution over 4 positions) on layers 0, 1 and 3; gated attention with per-head q / k norms and RoPE on a
        # quarter of each head (head_dim 32) on layer 2; zero-centred norms. qwen3_next:
        # layer 0 dense (mlp_only_layers), then 4 experts top-2 beside a sigmoid-gated shared expert; qwen3_5_moe_text:
        # every layer so; qwen3_5 / qwen3_5_moe: Qwen3_5(Moe)ForConditionalGeneration around them, a tiny vision tower.
        kw = dict({k: v for k, v in _COMMON.items() if k != "num_hidden_layers"}, num_hidden_layers=4, head_dim=32,
                  pad_token_id=0, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
                  linear_value_head_dim=16, linear_conv_kernel_dim=4,
                  layer_types=["linear_attention", "linear_attention", "full_attention", "linear_attention"],
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25})
        moe = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=48)
        if arch == "qwen3_next":
            return transformers.Qwen3NextConfig(**kw, **moe, mlp_only_layers=[0])
        if arch == "qwen3_5_moe_text":
            from transformers.models.qwen3_5_moe.configuration_qwen3_5_moe import Qwen3_5MoeTextConfig
            return Qwen3_5MoeTextConfig(**{k: v for k, v in kw.items() if k != "intermediate_size"}, **moe)
        from transformers.models.qwen3_5.configuration_qwen3_5 import Qwen3_5Config, Qwen3_5TextConfig
        from transformers.models.qwen3_5_moe.configuration_qwen3_5_moe import Qwen3_5MoeConfig
        if arch == "qwen3_5_text":
            return Qwen3_5TextConfig(**kw)
        text = dict(kw, rope_parameters={**kw["rope_parameters"], "mrope_section": [1, 1, 2], "mrope_interleaved": True})
        if arch == "qwen3_5_moe":
            text = dict({k: v for k, v in text.items() if k != "intermediate_size"}, **moe)
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)
        cls = Qwen3_5MoeConfig if arch == "qwen3_5_moe" else Qwen3_5Config
        return cls(text_config=text, vision_config=vision, image_token_id=500, video_token_id=501,
                   vision_start_token_id=502, vision_end_token_id=503, bos_token_id=1, eos_token_id=2)
    if arch == "arcee":
        # AFM-4.5B's layout: an ungated relu2 MLP, with YaRN (factor 4 over an original 64 positions) as it ships.
        return transformers.ArceeConfig(**_COMMON, pad_token_id=0,
                                        rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                         "original_max_position_embeddings": 64})
    if arch == "nemotron":
        # Nemotron: LayerNorm1P (1 + w, with a bias), RoPE on half of each head, the relu2 MLP, head_dim 32.
        return transformers.NemotronConfig(**{k: v for k, v in _COMMON.items() if k != "rms_norm_eps"}, norm_eps=1e-5,
                                           head_dim=32, pad_token_id=0)
    if arch == "gpt_neox":
        # Pythia's layout: attention and MLP side by side on their own LayerNorms, each head's q / k / v rows together
        # in query_key_value, RoPE on a quarter of each head, exact gelu; the MLP 4x wide (mlx-lm's is always).
        return transformers.GPTNeoXConfig(**{k: v for k, v in _COMMON.items()
                                             if k not in ("rms_norm_eps", "num_key_value_heads", "intermediate_size")},
                                          intermediate_size=256, layer_norm_eps=1e-5, pad_token_id=0)
    if arch == "seed_oss":
        # Seed-OSS: q/k/v biases and (attention_out_bias) o_proj's, a head_dim that is not hidden / heads; its
        # class's 0.1 dropouts off (transformers applies them in training only; mlxgp refuses to train with them).
        return transformers.SeedOssConfig(**_COMMON, head_dim=32, attention_bias=True, attention_out_bias=True,
                                          attention_dropout=0.0, residual_dropout=0.0, pad_token_id=0)
    if arch == "ernie4_5":
        # ERNIE 4.5: interleaved RoPE, biases on every linear (use_bias), a tied head.
        return transformers.Ernie4_5Config(**_COMMON, head_dim=32, use_bias=True, pad_token_id=0)
    if arch == "ernie4_5_moe":
        # ERNIE 4.5 MoE: ernie4_5's attention, layer 0 dense, experts narrower than the dense MLP beside a shared one,
        # biases on every linear but the experts (use_bias) and on the tied head, the choice moved by a random
        # moe_statics correction bias.
        return transformers.Ernie4_5_MoeConfig(**_COMMON, moe_intermediate_size=32, moe_k=2, moe_num_experts=4,
                                               moe_num_shared_experts=2, moe_layer_start_index=1, use_bias=True,
                                               pad_token_id=0)
    if arch == "exaone4":
        # EXAONE 4.0: post-sublayer norms, per-head q/k RMSNorms, a window of 8 and RoPE on the sliding layers, neither
        # on the global one.
        return transformers.Exaone4Config(**_COMMON, sliding_window=8, pad_token_id=0,
                                          layer_types=["sliding_attention", "sliding_attention", "full_attention"])
    if arch == "cohere":
        # Command R+'s per-head q/k LayerNorms (use_qk_norm), a logit_scale that is not a power of two.
        return transformers.CohereConfig(**_COMMON, use_qk_norm=True, logit_scale=0.3, pad_token_id=0)
    if arch == "cohere2":
        # Command R7B's layout: RoPE and a window (8, shorter than the sequences) on the sliding layers, neither on
        # the global one.
        return transformers.Cohere2Config(**_COMMON, sliding_window=8, pad_token_id=0, logit_scale=0.5,
                                          layer_types=["sliding_attention", "sliding_attention", "full_attention"])
    if arch == "gpt_oss":
        # Sinks, biases everywhere, a window of 8 on alternating layers, YaRN with GptOssConfig's untruncated
        # ramp (over a short original context so it bites), and a swiglu_limit low enough to clamp.
        return transformers.GptOssConfig(
            **_COMMON, head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"], swiglu_limit=0.3,
            rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "beta_fast": 32.0,
                             "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 32})
    if arch == "ministral3" or arch == "mistral3-ministral3":
        # YaRN over a short original context with a large llama_4_scaling_beta, so the position-dependent query
        # scale changes every eighth position.
        text = transformers.Ministral3Config(
            **_COMMON, head_dim=16, rope_parameters={
                "rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0, "original_max_position_embeddings": 8,
                "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0, "llama_4_scaling_beta": 0.5})
        if arch == "ministral3":
            return text
        return transformers.Mistral3Config(text_config=text.to_dict(), vision_config=_PIXTRAL, image_token_index=500,
                                           tie_word_embeddings=False)
    if arch == "mistral3":
        # As Mistral Small 3.1 writes it (mistral3_real_config drops the outer tie_word_embeddings, whose default
        # ties the head, but the checkpoint's own lm_head differs from the embeddings: transformers keeps it).
        text = transformers.MistralConfig(**_COMMON, head_dim=16, sliding_window=None, tie_word_embeddings=False)
        return transformers.Mistral3Config(text_config=text.to_dict(), vision_config=_PIXTRAL, image_token_index=500,
                                           tie_word_embeddings=False)
    if arch == "gemma3":
        # Gemma 3 4B+'s multimodal checkpoint: the gemma3_text options of "gemma3_text" above, a tiny SigLIP tower.
        text = tiny_config("gemma3_text")
        vision = transformers.SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                 num_attention_heads=2, image_size=28, patch_size=14)
        return transformers.Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                         mm_tokens_per_image=4, boi_token_index=497, eoi_token_index=498,
                                         image_token_index=499)
    if arch == "gemma4":
        # Gemma 4 E2B's multimodal checkpoint (Gemma4ForConditionalGeneration: model.language_model.*): the language
        # model of "gemma4_text-e2b" above, a tiny vision tower, no audio one.
        vision = transformers.Gemma4VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                 num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                                                 patch_size=4, position_embedding_size=64)
        return transformers.Gemma4Config(text_config=tiny_config("gemma4_text-e2b").to_dict(),
                                         vision_config=vision.to_dict(), audio_config=None, boi_token_id=497,
                                         eoi_token_id=498, image_token_id=499, video_token_id=500, boa_token_id=501,
                                         audio_token_id=502, eoa_token_index=503)
    if arch in ("qwen2_5_vl", "qwen3_vl"):
        # Qwen2.5-VL / Qwen3-VL: a qwen2 (q/k/v biases) / qwen3 (q/k norms) decoder with multimodal RoPE sections
        # (interleaved in Qwen3-VL), a tiny vision tower; text only here, where the sections' positions are equal.
        qwen3 = arch == "qwen3_vl"
        text = dict(_COMMON, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                              "mrope_section": [2, 3, 3], **({"mrope_interleaved": True} if qwen3
                                                                             else {})},
                    **({"head_dim": 16} if qwen3 else {}))
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                      **({"deepstack_visual_indexes": [0]} if qwen3 else {"fullatt_block_indexes": [0]}))
        cls = transformers.Qwen3VLConfig if qwen3 else transformers.Qwen2_5_VLConfig
        return cls(text_config=text, vision_config=vision, image_token_id=500, video_token_id=501,
                   vision_start_token_id=502, vision_end_token_id=503, bos_token_id=1, eos_token_id=2)
    if arch in ("llama4_text", "llama4"):
        # Llama 4: four layers, the last without RoPE (its queries scaled by position: floor_scale 4 so the scale
        # changes within the sequences), chunks of 8 positions on the others, weightless q/k norms, the llama3 rope
        # scaling; dense and MoE layers alternating (4 experts, top-1, inputs scaled by the router) beside the shared
        # expert. rms_norm_eps 1e-6 is what mlx-lm's q/k norms use whatever the config says.
        text = transformers.Llama4TextConfig(
            **{**_COMMON, "num_hidden_layers": 4, "rms_norm_eps": 1e-6}, head_dim=16, intermediate_size_mlp=128,
            num_local_experts=4, num_experts_per_tok=1, interleave_moe_layer_step=2, attention_chunk_size=8,
            floor_scale=4, attn_scale=0.5, pad_token_id=0, tie_word_embeddings=False,
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
        if arch == "llama4_text":
            return text
        vision = transformers.Llama4VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                 num_attention_heads=2, image_size=28, patch_size=14,
                                                 vision_output_dim=32, projector_input_dim=32, projector_output_dim=32)
        return transformers.Llama4Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                         boi_token_index=497, eoi_token_index=498, image_token_index=499)
    if arch.endswith("-gguf"):
        return _tiny_gguf_config(arch[:-5])
    raise ValueError(f"unknown tiny architecture {arch!r}")


_PIXTRAL = dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                image_size=28, patch_size=14, head_dim=16)


# The architectures written as GGUF by write_tiny_gguf beyond llama/qwen2/qwen3
# (tests/parity/test_gguf_architectures.py); make_tiny_model(f"{arch}-gguf", ...) builds them.
GGUF_ARCHS = ("qwen2_moe", "qwen3_moe", "phi3", "starcoder2", "gemma2", "gemma3_text", "gpt2", "stablelm", "nemotron")


def _tiny_gguf_config(arch: str):
    """Tiny configs for the GGUF tests. transformers 5.24's GGUF reader maps only some of the metadata
    llama.cpp writes and leaves the rest at the config class defaults; where that matters for the math the
    tiny model uses those defaults, so that the file means the same to transformers and to llama.cpp (what
    mlxgp follows): the expert widths (expert_feed_forward_length, expert_shared_feed_forward_length are
    not read), gpt2's context (n_ctx is not read: n_positions stays 1024) and MLP width (feed_forward_length
    is not read: n_inner stays 4 * n_embd, which llama.cpp's converter writes), gemma's query_pre_attn_scalar (llama.cpp: head_dim, never stored) and soft-caps (stored by
    llama.cpp, not read), starcoder2's rope base (not read), phi3's partial rotary and LongRoPE (not read),
    stablelm's and nemotron's partial rotary (not read: 0.25 / 0.5 stay), stablelm's rope base and per-head q/k norms
    (not read), nemotron's LayerNorm epsilon (llama.cpp writes layer_norm_epsilon, transformers reads the rms one).
    mlxgp reads the metadata, so a file with other values keeps llama.cpp's meaning there."""
    import transformers

    if arch == "qwen2_moe":  # Qwen2MoeConfig's expert widths; every layer sparse, as llama.cpp runs it
        return transformers.Qwen2MoeConfig(**_COMMON, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=1408,
                                           shared_expert_intermediate_size=5632)
    if arch == "qwen3_moe":  # Qwen3MoeConfig's expert width; llama.cpp renormalises the top-k
        return transformers.Qwen3MoeConfig(**_COMMON, num_experts=5, num_experts_per_tok=2, moe_intermediate_size=768,
                                           norm_topk_prob=True, head_dim=32)
    if arch == "phi3":
        return transformers.Phi3Config(**_COMMON, pad_token_id=0)
    if arch == "starcoder2":
        return transformers.Starcoder2Config(**{k: v for k, v in _COMMON.items() if k != "rms_norm_eps"},
                                             norm_epsilon=1e-5, use_bias=True)
    if arch == "gemma2":  # head_dim = query_pre_attn_scalar = 256; caps 50 / 30; even layers slide
        return transformers.Gemma2Config(**_COMMON, head_dim=256, query_pre_attn_scalar=256, sliding_window=8)
    if arch == "gemma3_text":  # six layers: five sliding (rope base 10000), the last global
        return transformers.Gemma3TextConfig(
            **{**_COMMON, "num_hidden_layers": 6}, head_dim=256, query_pre_attn_scalar=256, sliding_window=8,
            rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                             "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}})
    if arch == "stablelm":  # StableLM-2 1.6B's layout: q/k/v biases, sequential blocks
        return transformers.StableLmConfig(**{k: v for k, v in _COMMON.items() if k != "rms_norm_eps"},
                                           layer_norm_eps=1e-5, use_qkv_bias=True, pad_token_id=0)
    if arch == "nemotron":
        return transformers.NemotronConfig(**{k: v for k, v in _COMMON.items() if k != "rms_norm_eps"}, norm_eps=1e-5,
                                           pad_token_id=0)
    if arch == "gpt2":  # 1024 learned positions (GPT2Config's n_positions); no dropout
        return transformers.GPT2Config(vocab_size=512, n_embd=64, n_layer=3, n_head=4, n_positions=1024,
                                       layer_norm_epsilon=1e-5, bos_token_id=1, eos_token_id=2, resid_pdrop=0.0,
                                       embd_pdrop=0.0, attn_pdrop=0.0)
    raise ValueError(f"no tiny GGUF config for {arch!r}")


# The weights' seed where seed 0's routers leave an expert without tokens on the tests' inputs.
_SEEDS = {"deepseek_v2": 2, "deepseek_v3": 2, "glm4_moe_lite": 2, "phimoe": 1, "phimoe-long": 1}


def make_tiny_model(arch: str, out_dir, seed: int | None = None, **config_overrides):
    """Saves a tiny random `arch` model into out_dir; returns (model, out_dir)."""
    cfg = tiny_config(arch)
    for key, value in config_overrides.items():
        setattr(cfg, key, value)
    return make_model_from_config(cfg, out_dir, _SEEDS.get(arch, 0) if seed is None else seed)


def make_model_from_config(cfg, out_dir, seed: int = 0):
    """Saves a random fp32 model of transformers config `cfg` (weights drawn as make_tiny_model's) into
    out_dir; returns (model, out_dir)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg.dtype = torch.float32
    if cfg.model_type == "mistral3":  # not in transformers' causal-LM mapping
        model = transformers.Mistral3ForConditionalGeneration(cfg).to(torch.float32)
    elif cfg.model_type in ("qwen2_5_vl", "qwen3_vl", "llama4", "qwen3_5", "qwen3_5_moe"):
        model = transformers.AutoModelForImageTextToText.from_config(cfg, dtype=torch.float32)
    else:
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("wpe.weight"):
                p.normal_(0.0, 0.3)  # gpt2's learned positions: large enough that a wrong position changes tokens
            elif name.endswith("self_attn.sinks"):
                p.normal_(0.0, 1.0)  # gpt_oss: sinks that take a real share of each softmax
            elif p.ndim >= 2 and (name.endswith(("mlp.gate.weight", "feed_forward.gate.weight"))
                                  or name.endswith("mlp.router.weight")
                                  or name.endswith("feed_forward.router.weight") or name.endswith("router.proj.weight")):
                p.normal_(0.0, 0.2)  # MoE routers: decisive, varied routing, so every expert gets tokens
            elif name.endswith("linear_attn.conv1d.weight"):
                p.normal_(0.0, 0.5)  # qwen3_next: a convolution whose output the delta rule's outputs show
            elif p.ndim >= 2:
                p.normal_(0.0, 0.08)
            elif name.endswith("linear_attn.A_log"):
                p.uniform_(-1.0, 1.5)  # decays from exp(-e^-1 softplus) to exp(-e^1.5 softplus): slow and fast heads
            elif name.endswith("linear_attn.dt_bias"):
                p.normal_(0.0, 0.5)
            elif cfg.model_type == "phimoe" and name.endswith("layernorm.bias"):
                p.normal_(0.0, 0.05)  # (a bias as large as the norm's weight would route every token alike)
            elif "norm" in name or ".ln_" in name or name.endswith(("router.scale", "router.per_expert_scale")):
                # (gpt2's LayerNorms are ln_1 / ln_2 / ln_f; gemma4_text's router scales multiply as norm weights do)
                p.uniform_(0.5, 1.5)  # non-trivial norm weights catch a skipped or misplaced norm
            else:
                p.normal_(0.0, 0.05)  # biases (qwen2 q/k/v)
        for name, b in model.named_buffers():
            if name.endswith("layer_scalar"):  # gemma4_text: a scalar that a skipped multiply would show
                b.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(6))
            if name.endswith(("e_score_correction_bias", "feed_forward.expert_bias")):
                # glm4_moe: a routing bias that changes which experts are chosen, yet leaves each one some tokens
                b.normal_(0.0, 0.15, generator=torch.Generator().manual_seed(5))
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    if cfg.model_type == "mistral3" and not cfg.tie_word_embeddings:
        _drop_outer_tie(out_dir)
    if cfg.model_type == "llama4":
        # transformers 5.24's Llama4ForConditionalGeneration.forward fails on every input (it returns
        # outputs.image_outputs, which its language model's output lacks): the reference is that language model, the
        # same weights, which the multimodal forward runs on text anyway.
        model = model.language_model
    return model, out_dir


def _drop_outer_tie(folder) -> None:
    """Mistral Small 3.1's config.json has no outer tie_word_embeddings (Mistral3Config's default, true, ties the
    head unless the checkpoint's lm_head differs from the embeddings, as it does here)."""
    import json

    path = Path(folder) / "config.json"
    cfg = json.loads(path.read_text())
    cfg.pop("tie_word_embeddings", None)
    path.write_text(json.dumps(cfg, indent=2))


def text_config(config):
    """The language model's config of a transformers config (itself for text-only models)."""
    return config.get_text_config(decoder=True)


def legacy_rope_config(folder) -> None:
    """Rewrites config.json from transformers 5.x `rope_parameters` to the older top-level
    `rope_theta` + `rope_scaling` layout (what pre-5.x checkpoints and mlx-lm 0.32 read)."""
    import json

    path = Path(folder) / "config.json"
    cfg = json.loads(path.read_text())
    rope = dict(cfg.pop("rope_parameters", None) or {})
    cfg["rope_theta"] = rope.pop("rope_theta", 10000.0)
    cfg["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
    path.write_text(json.dumps(cfg, indent=2))


def gpt_oss_mxfp4_folder(model, folder, out):
    """gpt-oss's original checkpoint layout: each layer's experts as MXFP4 `*_blocks` (uint8 [E, out, in / 32,
    16], two 4-bit e2m1 codes a byte, low nibble first) and `*_scales` (uint8 e8m0 exponents [E, out, in / 32]),
    gate_up rows interleaving gate and up, and `quantization_config` {"quant_method": "mxfp4"}. The codes and
    scales are random: transformers' own dequantization defines what they mean."""
    import json
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    shutil.copytree(folder, out)
    weights = load_file(out / "model.safetensors")
    rng = np.random.default_rng(7)
    cfg = model.config
    E, H, I = cfg.num_local_experts, cfg.hidden_size, cfg.intermediate_size
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}.mlp.experts."
        del weights[p + "gate_up_proj"], weights[p + "down_proj"]
        for name, rows, cols in (("gate_up_proj", 2 * I, H), ("down_proj", H, I)):
            weights[p + name + "_blocks"] = rng.integers(0, 256, (E, rows, cols // 32, 16), dtype=np.uint8)
            weights[p + name + "_scales"] = rng.integers(121, 125, (E, rows, cols // 32), dtype=np.uint8)
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    (out / "config.json").write_text(json.dumps(config))
    return out


def mlx_lm_layout(folder, arch: str) -> None:
    """mlx-lm 0.32 reads the pre-5.x config layout (top-level rope_theta / rope_scaling, gemma3's
    rope_local_base_freq) and always rotates with LongRoPE's long factors, so phi3 goes without scaling.
    Its gpt2 reads only the original GPT-2 tensor names and n_ctx.
    Its gemma, starcoder2 and gpt_bigcode use exact gelu whatever hidden_act says (its gpt_neox the tanh one), its gemma2 and starcoder2 have no
    sliding window, and its gemma3_text
    reads sliding_window_pattern and never caps its logits (its cohere2 reads the pattern too): the folder says the same
    to both sides."""
    import json

    path = Path(folder) / "config.json"
    outer = json.loads(path.read_text())
    if arch in MULTIMODAL_ARCHS:  # the same on the language model's config; mlx-lm's gemma3 takes its vocab outside
        cfg = outer["text_config"]
        outer["vocab_size"] = cfg["vocab_size"]
        arch = cfg["model_type"]
        if arch.endswith("_vl_text"):  # mlx-lm's qwen2_vl / qwen3_vl build qwen2 / qwen3 from text_config alone
            cfg["tie_word_embeddings"] = outer.get("tie_word_embeddings", True)
            arch = "qwen3" if arch == "qwen3_vl_text" else "qwen2"
    else:
        cfg = outer
    if arch in ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text"):  # mlx-lm reads full_attention_interval alone
        # (layer_types [linear, linear, full, linear])
        cfg["full_attention_interval"] = 3
    if arch == "qwen3_5_moe_text":
        fuse_experts(folder)
    if arch in ("ministral3", "qwen3_5_text", "qwen3_5_moe_text"):  # (their mlx-lm models read rope_parameters)
        path.write_text(json.dumps(outer, indent=2))
        return
    if arch.startswith("gemma4_text"):
        # mlx-lm's gemma4_text reads rope_parameters itself and the released configs' global_head_dim /
        # num_global_key_value_heads, not the per_layer_config transformers 5.24 writes in their place.
        full = next(v for v in cfg.pop("per_layer_config").values())
        cfg["global_head_dim"] = full["head_dim"]
        cfg["num_global_key_value_heads"] = full.get("num_key_value_heads", cfg["num_key_value_heads"])
        path.write_text(json.dumps(outer, indent=2))
        return
    rope = dict(cfg.pop("rope_parameters", None) or {})
    if "full_attention" in rope:
        cfg["rope_local_base_freq"] = rope["sliding_attention"]["rope_theta"]
        rope = dict(rope["full_attention"])
    cfg["rope_theta"] = rope.pop("rope_theta", 10000.0)
    if "partial_rotary_factor" in rope:
        cfg["partial_rotary_factor"] = rope.pop("partial_rotary_factor")
    cfg["rope_scaling"] = rope if rope.get("rope_type", "default") not in ("default", "longrope") else None
    if arch in ("qwen2_moe", "qwen3_moe") and "num_experts" not in cfg:
        cfg["num_experts"] = cfg["num_local_experts"]  # transformers 5 saves the mixtral spelling
    if arch == "gemma":
        cfg["hidden_act"] = "gelu"
    if arch == "apertus":  # mlx-lm's ModelArgs requires the original config's switches (as released)
        cfg.update(qk_norm=True, post_norm=False, mlp_bias=False)
    if arch in ("gemma2", "starcoder2", "dots1", "phimoe"):  # (mlx-lm's dots1 and phimoe have no window either)
        cfg["sliding_window"] = 4096
    if arch == "starcoder2":
        cfg["hidden_act"] = "gelu"  # mlx-lm's starcoder2 MLP is exact gelu
    if arch == "gpt_bigcode":
        cfg["activation_function"] = "gelu"  # mlx-lm's gpt_bigcode MLP is exact gelu whatever the config says
    if arch == "gpt2":
        _gpt2_original_names(folder)
        cfg.setdefault("n_ctx", cfg["n_positions"])  # mlx-lm's ModelArgs requires it
    if arch in ("gemma3_text", "cohere2"):
        cfg["sliding_window_pattern"] = 3  # layer_types [sliding, sliding, full]
        cfg["final_logit_softcapping"] = None  # mlx-lm's gemma3_text does not cap
    if arch == "gpt_neox":  # mlx-lm's gpt_neox reads the older rope keys and always takes the tanh gelu
        cfg["rotary_pct"], cfg["rotary_emb_base"] = cfg["partial_rotary_factor"], cfg["rope_theta"]
        cfg["hidden_act"] = "gelu_new"
    if arch == "hunyuan_v1_dense":  # mlx-lm's hunyuan asks rope_scaling for alpha, factor and the older "type"
        cfg["rope_scaling"]["type"] = cfg["rope_scaling"].pop("rope_type")
    if arch == "lfm2":  # mlx-lm's ModelArgs requires the released configs' block_dim (the hidden size)
        cfg["block_dim"] = cfg["hidden_size"]
    if arch == "exaone4":
        cfg["sliding_window_pattern"] = "LLG"  # mlx-lm's exaone4 reads EXAONE's letters (layer_types the same)
        cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])  # and requires head_dim
    path.write_text(json.dumps(outer, indent=2))


def fuse_experts(folder) -> None:
    """Rewrites a saved model's per-expert tensors (mlp.experts.E.{gate,up,down}_proj.weight, what transformers 5.24
    saves) as the Qwen3.5-MoE uploads hold them: mlp.experts.gate_up_proj [E, 2I, hidden] and down_proj [E, hidden, I]
    (the only layout mlx-lm 0.32's qwen3_5_moe sanitize reads)."""
    import re

    import torch
    from safetensors.torch import load_file, save_file

    path = Path(folder) / "model.safetensors"
    tensors = load_file(str(path))
    out, groups = {}, {}
    for k, v in tensors.items():
        m = re.fullmatch(r"(.*\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight", k)
        if m:
            groups.setdefault(m[1], {}).setdefault(m[3], {})[int(m[2])] = v
        else:
            out[k] = v
    for prefix, projs in groups.items():
        stack = {p: torch.stack([e[i] for i in sorted(e)]) for p, e in projs.items()}
        out[prefix + ".gate_up_proj"] = torch.cat([stack["gate"], stack["up"]], dim=1).contiguous()
        out[prefix + ".down_proj"] = stack["down"].contiguous()
    save_file(out, str(path), metadata={"format": "pt"})


def _gpt2_original_names(folder) -> None:
    """Renames a saved GPT2LMHeadModel's tensors (transformer.h.0.attn.c_attn.weight, lm_head.weight) the way
    the original GPT-2 checkpoints name them (h.0.attn.c_attn.weight, no head), with the causal-mask buffers
    (h.N.attn.bias) they carry: the only layout mlx-lm 0.32's gpt2 sanitize reads."""
    import torch
    from safetensors.torch import load_file, save_file

    path = Path(folder) / "model.safetensors"
    tensors = load_file(str(path))
    out = {k.removeprefix("transformer."): v for k, v in tensors.items() if k != "lm_head.weight"}
    layers = {k.split(".")[1] for k in out if k.startswith("h.")}
    n_pos = out["wpe.weight"].shape[0]
    for i in layers:
        out[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n_pos, n_pos, dtype=torch.bool)).view(1, 1, n_pos, n_pos)
    save_file(out, str(path), metadata={"format": "pt"})


GGUF_TYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1")


# llama.cpp's architecture names (general.architecture) of the transformers model types.
GGUF_ARCH_NAMES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen2_moe": "qwen2moe",
                   "qwen3_moe": "qwen3moe", "phi3": "phi3", "starcoder2": "starcoder2", "gemma2": "gemma2",
                   "gemma3_text": "gemma3", "gpt2": "gpt2", "gpt_oss": "gpt-oss", "stablelm": "stablelm",
                   "nemotron": "nemotron", "seed_oss": "seed_oss", "ernie4_5": "ernie4_5", "olmo2": "olmo2",
                   "granite": "granite", "arcee": "arcee", "smollm3": "smollm3", "cohere": "command-r",
                   "deepseek_v2": "deepseek2", "deepseek_v3": "deepseek2", "exaone4": "exaone4",
                   "llama4_text": "llama4", "gpt_bigcode": "starcoder", "olmo": "olmo",
                   "olmoe": "olmoe", "cohere2": "cohere2", "hunyuan_v1_dense": "hunyuan-dense",
                   "mixtral": "llama", "gemma4_text": "gemma4", "ernie4_5_moe": "ernie4_5-moe",
                   "hunyuan_v1_moe": "hunyuan-moe", "lfm2": "lfm2", "qwen3_next": "qwen3next",
                   "qwen3_5_text": "qwen35", "qwen3_5_moe_text": "qwen35moe", "lfm2_moe": "lfm2moe"}


def _gguf_metadata(w, cfg, head_dim, mtp_layers=0):
    """The `<arch>.*` keys llama.cpp's convert_hf_to_gguf.py writes for cfg.model_type."""
    import gguf

    mt = cfg.model_type
    if mt in ("gpt2", "gpt_bigcode"):
        # convert_hf_to_gguf.py's GPT2Model: no rope, no kv heads, a LayerNorm epsilon; its StarCoderModel the same
        # with one key/value head.
        w.add_block_count(cfg.n_layer)
        w.add_context_length(cfg.n_positions)
        w.add_embedding_length(cfg.n_embd)
        w.add_feed_forward_length(4 * cfg.n_embd)
        w.add_head_count(cfg.n_head)
        if mt == "gpt_bigcode":
            w.add_head_count_kv(1)
        w.add_layer_norm_eps(cfg.layer_norm_epsilon)
        w.add_token_list([f"<t{i}>" for i in range(cfg.vocab_size)])  # transformers' vocabulary size
        return
    if mt == "gemma4_text":
        _gguf_gemma4_metadata(w, cfg)
        return
    w.add_block_count(cfg.num_hidden_layers + mtp_layers)
    if mtp_layers:
        w.add_nextn_predict_layers(mtp_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    # (Llama4Model's converter: the dense layers' width; the experts' as expert_feed_forward_length)
    if mt != "qwen3_5_moe_text":  # (Qwen3_5MoeTextConfig has no intermediate_size: the converter writes none)
        w.add_feed_forward_length(cfg.intermediate_size_mlp if mt == "llama4_text" else
                                  _lfm2_mlp_width(cfg) if mt == "lfm2" else cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    if mt in ("deepseek_v2", "deepseek_v3"):
        _gguf_deepseek2_metadata(w, cfg)
        return
    if mt in ("lfm2", "lfm2_moe"):  # LFM2(Moe)Model's converter: no key/value heads on the convolution layers
        w.add_head_count_kv([0 if t == "conv" else cfg.num_key_value_heads for t in cfg.layer_types])
        w.add_shortconv_l_cache(cfg.conv_L_cache)
    else:
        w.add_head_count_kv(cfg.num_key_value_heads)
    if mt == "starcoder2":
        w.add_layer_norm_eps(cfg.norm_epsilon)
    elif mt in ("stablelm", "cohere", "cohere2"):
        w.add_layer_norm_eps(cfg.layer_norm_eps)
    elif mt == "nemotron":
        w.add_layer_norm_eps(cfg.norm_eps)
    elif mt in ("lfm2", "lfm2_moe"):
        w.add_layer_norm_rms_eps(cfg.norm_eps)
    elif mt == "olmo":  # OlmoModel's converter: OlmoLayerNorm's fixed epsilon, clip_qkv as clamp_kqv
        w.add_layer_norm_eps(1e-5)
        if cfg.clip_qkv is not None:
            w.add_clamp_kqv(cfg.clip_qkv)
    else:
        w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    rope = cfg.rope_parameters or {}
    theta = rope["full_attention"]["rope_theta"] if "full_attention" in rope else rope.get("rope_theta")
    if mt in ("hunyuan_v1_dense", "hunyuan_v1_moe") and rope.get("rope_type") == "dynamic":
        # HunYuanModel's converter: the NTK alpha folded into the base (base * alpha^(dim / (dim - 2))), no scaling.
        theta = theta * rope["alpha"] ** (head_dim / (head_dim - 2))
        w.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    if theta is not None and mt != "gemma2":  # llama.cpp's gemma2 converter writes no rope base
        w.add_rope_freq_base(theta)
    w.add_rope_dimension_count(int(head_dim * rope.get("partial_rotary_factor", 1.0)))
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    if mt != "starcoder2":
        w.add_vocab_size(cfg.vocab_size)
    else:  # transformers takes starcoder2's vocabulary size from the token list only
        w.add_token_list([f"<t{i}>" for i in range(cfg.vocab_size)])
    if cfg.pad_token_id is not None:  # phi3: transformers' default (32000) lies outside a tiny vocabulary
        w.add_pad_token_id(cfg.pad_token_id)
    if mt == "mixtral":  # LlamaModel's converter on MixtralForCausalLM: llama keys plus the expert counts
        w.add_expert_count(cfg.num_local_experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
    if mt in ("qwen2_moe", "qwen3_moe", "olmoe"):  # (OlmoeModel's converter: the experts as wide as intermediate_size)
        w.add_expert_count(cfg.num_experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
        w.add_expert_feed_forward_length(cfg.intermediate_size if mt == "olmoe" else cfg.moe_intermediate_size)
    if mt in ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text"):
        # Qwen3NextModel's converter (Qwen2MoeModel's expert keys) and Qwen3_5(Moe)TextModel's: the delta nets' widths
        # under ssm.*, the attention layers every full_attention_interval-th (the tiny models' layer_types say 3).
        assert all((t == "full_attention") == ((i + 1) % 3 == 0) for i, t in enumerate(cfg.layer_types))
        w.add_ssm_conv_kernel(cfg.linear_conv_kernel_dim)
        w.add_ssm_state_size(cfg.linear_key_head_dim)
        w.add_ssm_group_count(cfg.linear_num_key_heads)
        w.add_ssm_time_step_rank(cfg.linear_num_value_heads)
        w.add_ssm_inner_size(cfg.linear_value_head_dim * cfg.linear_num_value_heads)
        w.add_full_attention_interval(3)
        if mt != "qwen3_5_text":
            w.add_expert_count(cfg.num_experts)
            w.add_expert_used_count(cfg.num_experts_per_tok)
            w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
            w.add_expert_shared_feed_forward_length(cfg.shared_expert_intermediate_size)
        if mt != "qwen3_next":  # (_Qwen35MRopeMixin: the default sections when the config has none)
            w.add_rope_dimension_sections(rope.get("mrope_section", [11, 11, 10]) + [0])
    if mt == "lfm2_moe":  # LFM2MoeModel's converter: the experts' width, the dense lead, sigmoid gating
        w.add_expert_count(cfg.num_experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
        w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
        w.add_leading_dense_block_count(cfg.num_dense_layers)
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    if mt == "hunyuan_v1_moe":  # HunYuanMoEModel's converter: the shared MLP as wide as intermediate_size
        w.add_expert_count(cfg.num_experts)
        w.add_expert_used_count(cfg.moe_topk)
        w.add_expert_feed_forward_length(cfg.intermediate_size)
        w.add_expert_shared_feed_forward_length(cfg.intermediate_size)
        w.add_expert_shared_count(1)
    if mt == "ernie4_5_moe":
        # Ernie4_5MoeModel's converter: expert counts, the layer step and dense lead, the experts' width; the shared
        # experts' width as intermediate_size // num_key_value_heads (its formula, which ERNIE-4.5-21B-A3B's numbers
        # satisfy, as the tiny model's do).
        w.add_expert_count(cfg.moe_num_experts)
        w.add_expert_used_count(cfg.moe_k)
        w.add_interleave_moe_layer_step(cfg.moe_layer_interval)
        w.add_leading_dense_block_count(cfg.moe_layer_start_index)
        w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
        w.add_expert_shared_count(cfg.moe_num_shared_experts)
        w.add_expert_shared_feed_forward_length(cfg.intermediate_size // cfg.num_key_value_heads)
    if mt in ("cohere", "cohere2"):  # CommandR2Model / Cohere2Model: the logit scale, no rope scaling
        w.add_logit_scale(cfg.logit_scale)
        w.add_rope_scaling_type(gguf.RopeScalingType.NONE)
    if mt == "cohere2":
        w.add_sliding_window(cfg.sliding_window)
    if mt == "granite":  # GraniteModel: the multipliers as *_scale keys
        w.add_attention_scale(cfg.attention_multiplier)
        w.add_embedding_scale(cfg.embedding_multiplier)
        w.add_residual_scale(cfg.residual_multiplier)
        w.add_logit_scale(cfg.logits_scaling)
    if mt == "gpt_oss":  # convert_hf_to_gguf.py's GptOssModel: expert counts and width, window
        w.add_expert_count(cfg.num_local_experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
        w.add_expert_feed_forward_length(cfg.intermediate_size)
        w.add_sliding_window(cfg.sliding_window)
    if mt in ("gpt_oss", "arcee"):  # their converters' YaRN keys
        if rope.get("rope_type") == "yarn":
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(rope["factor"])
            w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    if mt == "llama4_text":  # Llama4Model: the experts and their interleave step
        w.add_expert_count(cfg.num_local_experts)
        w.add_expert_used_count(cfg.num_experts_per_tok)
        w.add_expert_feed_forward_length(cfg.intermediate_size)
        w.add_interleave_moe_layer_step(cfg.interleave_moe_layer_step)
    if mt == "qwen2_moe":
        w.add_expert_shared_feed_forward_length(cfg.shared_expert_intermediate_size)
    if mt == "gemma2":
        w.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
        w.add_final_logit_softcapping(cfg.final_logit_softcapping)
    if mt in ("gemma2", "gemma3_text"):
        w.add_sliding_window(cfg.sliding_window)
    if mt == "exaone4" and cfg.sliding_window is not None:  # Exaone4Model: the window and one bool a layer
        w.add_sliding_window(cfg.sliding_window)
        w.add_sliding_window_pattern([t == "sliding_attention" for t in cfg.layer_types])


def _lfm2_mlp_width(cfg):
    """Lfm2MLP's width (LFM2Model's converter writes it as feed_forward_length)."""
    ff = cfg.intermediate_size
    if cfg.block_auto_adjust_ff_dim:
        ff = int(2 * ff / 3)
        if cfg.block_ffn_dim_multiplier is not None:
            ff = int(cfg.block_ffn_dim_multiplier * ff)
            ff = cfg.block_multiple_of * ((ff + cfg.block_multiple_of - 1) // cfg.block_multiple_of)
    return ff


def _gguf_gemma4_metadata(w, cfg):
    """convert_hf_to_gguf.py's Gemma4Model: the full-attention layers' widths as key_length / rope.dimension_count
    (their partial RoPE goes into rope_freqs), the windowed ones' as *_swa, head_count_kv one a layer where they differ
    (here from the model's own layers: the converter takes num_global_key_value_heads whenever it is set, which
    transformers applies with attention_k_eq_v only), feed_forward_length one a layer with the double-wide MLPs, the
    window pattern, the sharing, the per-layer inputs and the experts."""
    n, first = cfg.num_hidden_layers, cfg.num_hidden_layers - (cfg.num_kv_shared_layers or 0)
    full = [t == "full_attention" for t in cfg.layer_types]
    dims, kv = zip(*_gemma4_widths(cfg))
    global_dim, swa_dim = max(dims), min(dims)
    rope = cfg.rope_parameters
    w.add_block_count(n)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length([cfg.intermediate_size * (2 if cfg.use_double_wide_mlp and i >= first else 1)
                               for i in range(n)] if cfg.use_double_wide_mlp else cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(kv if len(set(kv)) > 1 else kv[0])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(rope["full_attention"]["rope_theta"])
    w.add_rope_freq_base_swa(rope["sliding_attention"]["rope_theta"])
    w.add_key_length(global_dim)
    w.add_value_length(global_dim)
    w.add_key_length_swa(swa_dim)
    w.add_value_length_swa(swa_dim)
    w.add_rope_dimension_count(global_dim)
    w.add_rope_dimension_count_swa(swa_dim)
    w.add_sliding_window(cfg.sliding_window)
    w.add_sliding_window_pattern([not f for f in full])
    w.add_shared_kv_layers(cfg.num_kv_shared_layers or 0)
    w.add_embedding_length_per_layer_input(cfg.hidden_size_per_layer_input or 0)
    w.add_vocab_size(cfg.vocab_size)
    if cfg.final_logit_softcapping:
        w.add_final_logit_softcapping(cfg.final_logit_softcapping)
    if cfg.enable_moe_block:
        w.add_expert_count(cfg.num_experts)
        w.add_expert_used_count(cfg.top_k_experts)
        w.add_expert_feed_forward_length(cfg.moe_intermediate_size)


def _gemma4_widths(cfg):
    """(head_dim, key/value heads) of each layer of a transformers 5.24 Gemma4TextConfig (its per_layer_config)."""
    return [(cfg.per_layer_config[i].head_dim, cfg.per_layer_config[i].num_key_value_heads)
            for i in range(cfg.num_hidden_layers)]


def _gguf_deepseek2_metadata(w, cfg):
    """convert_hf_to_gguf.py's DeepseekV2Model: MQA over the latent (one KV head of kv_lora_rank + rope, values of
    kv_lora_rank), the heads' widths as *_mla, experts, and DeepSeek's YaRN log multiplier (0.1 mscale_all_dim). The
    gating function and the group counts as the converter writes them for DeepSeek-V3's configs (sigmoid)."""
    import gguf

    rope = cfg.rope_parameters or {}
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(rope.get("rope_theta", 10000.0))
    w.add_vocab_size(cfg.vocab_size)
    if cfg.pad_token_id is not None:
        w.add_pad_token_id(cfg.pad_token_id)
    w.add_leading_dense_block_count(cfg.first_k_dense_replace)
    if cfg.q_lora_rank is not None:
        w.add_q_lora_rank(cfg.q_lora_rank)
    w.add_kv_lora_rank(cfg.kv_lora_rank)
    w.add_key_length(cfg.kv_lora_rank + cfg.qk_rope_head_dim)
    w.add_value_length(cfg.kv_lora_rank)
    w.add_key_length_mla(cfg.qk_nope_head_dim + cfg.qk_rope_head_dim)
    w.add_value_length_mla(cfg.v_head_dim)
    w.add_expert_feed_forward_length(cfg.moe_intermediate_size)
    w.add_expert_count(cfg.n_routed_experts)
    w.add_expert_used_count(cfg.num_experts_per_tok)
    w.add_expert_shared_count(cfg.n_shared_experts)
    w.add_expert_weights_scale(cfg.routed_scaling_factor)
    if cfg.norm_topk_prob:
        w.add_expert_weights_norm(True)
    if cfg.model_type == "deepseek_v3":
        w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
        w.add_expert_group_count(cfg.n_group)
        w.add_expert_group_used_count(cfg.topk_group)
    w.add_rope_dimension_count(cfg.qk_rope_head_dim)
    if rope.get("rope_type") == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rope["factor"])
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        w.add_rope_scaling_yarn_log_mul(0.1 * rope["mscale_all_dim"])


def _gguf_tensors(model):
    """(llama.cpp name, float32 array) pairs as convert_hf_to_gguf.py produces them: gguf-py's name map,
    stacked experts split into gate / up, squeezed shapes, llama's Q/K row permutation, gemma's 1 + w norms,
    gpt2's Conv1D weights transposed to [out, in] and its tied head written out as output.weight."""
    import gguf
    import numpy as np

    cfg = model.config
    mt = cfg.model_type
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == GGUF_ARCH_NAMES[mt])
    names = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)

    def permute(t, n_head):  # what llama.cpp's convert_hf_to_gguf does to q/k rows
        return t.reshape(n_head, 2, t.shape[0] // n_head // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)

    state = model.state_dict()
    for name, t in state.items():
        t = t.detach().float().numpy().astype(np.float32)
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        if mt == "stablelm" and "_layernorm.norms." in name:
            # StableLM's converter stacks each head's q / k LayerNorm into one [heads, head_dim] tensor.
            base, head = name.rsplit(".norms.", 1)
            if head == "0.weight":
                n = sum(1 for k in state if k.startswith(base + ".norms."))
                yield names.get_name(base) + ".weight", np.stack(
                    [state[f"{base}.norms.{h}.weight"].float().numpy() for h in range(n)])
            continue
        if mt == "gpt_oss" and ".mlp.experts." in name:
            # GptOssExperts: gate_up_proj [E, H, 2I] with gate / up interleaved (x @ W), down_proj [E, I, H];
            # llama.cpp stacks them [E, out, in] as ffn_{gate,up,down}_exps with their biases.
            blk = "blk." + name.split(".")[2] + "."
            if name.endswith("gate_up_proj"):
                yield blk + "ffn_gate_exps.weight", np.ascontiguousarray(t[:, :, 0::2].transpose(0, 2, 1))
                yield blk + "ffn_up_exps.weight", np.ascontiguousarray(t[:, :, 1::2].transpose(0, 2, 1))
            elif name.endswith("gate_up_proj_bias"):
                yield blk + "ffn_gate_exps.bias", np.ascontiguousarray(t[:, 0::2])
                yield blk + "ffn_up_exps.bias", np.ascontiguousarray(t[:, 1::2])
            elif name.endswith("down_proj"):
                yield blk + "ffn_down_exps.weight", np.ascontiguousarray(t.transpose(0, 2, 1))
            else:
                yield blk + "ffn_down_exps.bias", t
            continue
        if mt == "llama4_text" and ".feed_forward.experts." in name:
            # Llama4TextExperts: gate_up_proj [E, H, 2I] (gate columns first, x @ W), down_proj [E, I, H]; llama.cpp
            # stacks them [E, out, in].
            blk = "blk." + name.split(".")[2] + "."
            if name.endswith("gate_up_proj"):
                half = t.shape[2] // 2
                yield blk + "ffn_gate_exps.weight", np.ascontiguousarray(t[:, :, :half].transpose(0, 2, 1))
                yield blk + "ffn_up_exps.weight", np.ascontiguousarray(t[:, :, half:].transpose(0, 2, 1))
            else:
                yield blk + "ffn_down_exps.weight", np.ascontiguousarray(t.transpose(0, 2, 1))
            continue
        if mt in ("deepseek_v2", "deepseek_v3") and name.endswith("kv_b_proj.weight"):
            # DeepseekV2Model's converter: per head, the key rows transposed (attn_k_b [heads, rank, nope]) and the
            # value rows (attn_v_b [heads, v, rank]).
            kv = t.reshape(cfg.num_attention_heads, cfg.qk_nope_head_dim + cfg.v_head_dim, -1)
            blk = "blk." + name.split(".")[2] + "."
            yield blk + "attn_k_b.weight", np.ascontiguousarray(kv[:, :cfg.qk_nope_head_dim].transpose(0, 2, 1))
            yield blk + "attn_v_b.weight", np.ascontiguousarray(kv[:, cfg.qk_nope_head_dim:])
            continue
        if mt == "gemma4_text" and name.rsplit(".", 1)[-1] in ("layer_scalar", "scale", "per_expert_scale",
                                                              "gate_up_proj", "down_proj"):
            # Gemma4Model's converter: the fused experts as they are ([E, 2I, H] gate rows first, [E, H, I]), the
            # router's scales beside its matrix and the experts, the layer scalar as a one-element weight.
            blk = "blk." + name.split(".")[2] + "."
            yield blk + {"layer_scalar": "layer_output_scale.weight", "scale": "ffn_gate_inp.scale",
                         "per_expert_scale": "ffn_down_exps.scale", "gate_up_proj": "ffn_gate_up_exps.weight",
                         "down_proj": "ffn_down_exps.weight"}[name.rsplit(".", 1)[-1]], t
            continue
        if mt in ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text") and (".linear_attn." in name or
                                                                        name.endswith("norm.weight")):
            yield from _qwen3_next_gguf_tensor(cfg, names, name, t)
            continue
        # (ernie4_5_moe's [1, E] under mlp.gate.moe_statics; lfm2_moe's feed_forward.expert_bias)
        if name.endswith(("e_score_correction_bias", "feed_forward.expert_bias")):
            yield "blk." + name.split(".")[2] + ".exp_probs_b.bias", t.reshape(-1)
            continue
        if mt == "gpt_oss" and name.endswith("self_attn.sinks"):
            yield "blk." + name.split(".")[2] + ".attn_sinks.weight", t
            continue
        if name.endswith(("mlp.experts.gate_up_proj", "feed_forward.experts.gate_up_proj")):
            # transformers 5 fuses [gate; up] per expert
            half = t.shape[1] // 2
            base = name[: -len("gate_up_proj")]
            yield names.get_name(base + "gate_proj") + ".weight", t[:, :half]
            yield names.get_name(base + "up_proj") + ".weight", t[:, half:]
            continue
        module, _, kind = name.rpartition(".")
        if name.endswith(("mlp.experts.down_proj", "feed_forward.experts.down_proj")):
            module, kind = name, "weight"
        t = t.squeeze()
        # LlamaModel (mixtral's converter too) and OlmoModel permute
        llama_converter = mt in ("llama", "granite", "arcee", "smollm3", "olmo", "mixtral")
        if llama_converter and module.endswith("self_attn.q_proj"):
            t = permute(t, cfg.num_attention_heads)
        if llama_converter and module.endswith("self_attn.k_proj"):
            t = permute(t, cfg.num_key_value_heads)
        if mt in ("gemma2", "gemma3_text", "nemotron") and name.endswith("norm.weight"):
            t = t + 1
        if mt == "gpt2" and kind == "weight" and module.endswith((".c_attn", ".c_proj", ".c_fc")):
            t = np.ascontiguousarray(t.T)
        yield names.get_name(module) + "." + kind, t
        if mt == "gpt2" and name.endswith("wte.weight"):
            yield "output.weight", t  # the converter stores GPT-2's tied head as a copy of wte


def _qwen3_next_gguf_tensor(cfg, names, name, t):
    """Qwen3NextModel's converter on a delta net's tensor or a norm: A_log as A = -exp(A_log), dt_bias as
    ssm_dt.bias, the convolution squeezed to [channels, kernel], the zero-centred norms stored as 1 + w (the gated
    linear_attn.norm as it is), in_proj_qkvz split into attn_qkv ([q; k; v] of all heads) and attn_gate (z). Qwen3.5's
    (_LinearAttentionVReorderBase) first reorders the value heads from grouped by key head to tiled (value head j of
    key head g moves to j x key heads + g) in every tensor that has them."""
    import numpy as np

    hk, hv = cfg.linear_num_key_heads, cfg.linear_num_value_heads
    dk, dv = cfg.linear_key_head_dim, cfg.linear_value_head_dim
    r = hv // hk

    def tiled(x, axis, width):  # grouped [hk, r, width] -> tiled [r, hk, width] along `axis`
        x = np.moveaxis(x, axis, 0)
        shape = x.shape
        x = x.reshape(hk, r, width, *shape[1:]).swapaxes(0, 1).reshape(shape)
        return np.ascontiguousarray(np.moveaxis(x, 0, axis))

    if cfg.model_type != "qwen3_next" and hk != hv:
        if name.endswith("in_proj_qkv.weight"):
            t = np.concatenate([t[:2 * hk * dk], tiled(t[2 * hk * dk:], 0, dv)])
        elif name.endswith("in_proj_z.weight"):
            t = tiled(t, 0, dv)
        elif name.endswith(("in_proj_b.weight", "in_proj_a.weight", ".A_log", ".dt_bias")):
            t = tiled(t, 0, 1)
        elif name.endswith("conv1d.weight"):
            t = np.concatenate([t[:2 * hk * dk], tiled(t[2 * hk * dk:], 0, dv)])
        elif name.endswith("out_proj.weight"):
            t = tiled(t, 1, dv)
    module, _, kind = name.rpartition(".")
    if name.endswith(".A_log"):
        yield names.get_name(name), -np.exp(t)
    elif name.endswith(".dt_bias"):
        yield names.get_name(module + ".dt_proj") + ".bias", t
    elif name.endswith("conv1d.weight"):
        yield names.get_name(module) + ".weight", np.ascontiguousarray(t.squeeze())
    elif name.endswith("in_proj_qkvz.weight"):
        per = t.reshape(hk, 2 * dk + 2 * r * dv, -1)  # rows [q, k, v, z] of each key head
        q, k, v, z = (per[:, a:b] for a, b in ((0, dk), (dk, 2 * dk), (2 * dk, 2 * dk + r * dv),
                                               (2 * dk + r * dv, 2 * dk + 2 * r * dv)))
        blk = "blk." + name.split(".")[2] + "."
        yield blk + "attn_qkv.weight", np.concatenate([x.reshape(-1, t.shape[1]) for x in (q, k, v)])
        yield blk + "attn_gate.weight", np.ascontiguousarray(z.reshape(-1, t.shape[1]))
    elif name.endswith("norm.weight") and not name.endswith("linear_attn.norm.weight"):
        yield names.get_name(module) + ".weight", t + 1
    else:
        yield names.get_name(module) + "." + kind, t


def _spm_vocab(w, size: int) -> None:
    import gguf

    assert size >= 259, "a SentencePiece vocabulary needs room for the byte tokens"
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(len(tokens), size)]
    types = ([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
             + [gguf.TokenType.NORMAL] * (size - 259))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * size)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


# A Gemma 4 vocabulary as llama.cpp's converter writes it (tokenizer.ggml.model "gemma4": tokens, types, merges over
# characters with U+2581 for spaces, the 256 byte tokens), small enough to read: words the merges build, a token no
# merge reaches ("\u2581xyz": llama.cpp builds it from its pieces), newline runs that are tokens (four newlines: one
# token though no merge makes it, as llama.cpp keeps a run of newlines whole).
GEMMA4_MERGES = [("\u2581", "t"), ("h", "e"), ("\u2581t", "he"), ("l", "l"), ("e", "ll"), ("h", "ell"), ("hell", "o"),
                 ("\u2581", "hello"), ("i", "n"), ("\u2581", "in"), ("o", "r"), ("w", "or"), ("l", "d"), ("wor", "ld"),
                 ("\u2581", "world"), ("\u2581", "\u2581"), ("\u2581", "a"), ("\n", "\n"), ("\n\n", "\n")]


def gemma4_vocabulary():
    """(tokens, token types) of the vocabulary GEMMA4_MERGES builds on: <pad> <eos> <bos> <unk>, the byte tokens,
    characters, the merges' results, two tokens no merge makes."""
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [3, 3, 3, 2] + [6] * 256
    tokens += ["\u2581", "\n", "\u00e9"] + list("abcdefghijklmnopqrstuvwxyzHW.,!'")
    tokens += [a + b for a, b in GEMMA4_MERGES] + ["\u2581xyz", "\n\n\n\n"]
    return tokens, types + [1] * (len(tokens) - len(types))


def _gemma4_vocab(w):
    tokens, types = gemma4_vocabulary()
    w.add_tokenizer_model("gemma4")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{a} {b}" for a, b in GEMMA4_MERGES])
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)


def write_tiny_gguf(model, path, qtype: str = "Q8_0", quantize=None, extra=None, types=None, drop=(),
                    vocab=False, meta=None, split_max_tensors=0, mtp_layers=0) -> Path:
    """Writes a transformers `model` (GGUF_ARCH_NAMES) as a llama.cpp-style GGUF (metadata keys, tensor
    names and layouts as llama.cpp's converter writes them), with 2-D and 3-D weights stored as `qtype` and
    1-D ones (norms, biases) and MoE routers as F32. No tokenizer metadata: the file holds a model only.
    `quantize(t, qtype)` -> uint8 blocks replaces gguf-py's quantizer (which lacks the K-quants), e.g.
    tests/refs/gguf_quant.quantize_rows (llama.cpp's own). `extra`: more {name: float32 array} tensors.
    `types`: {tensor name suffix: type} for tensors stored otherwise (through `quantize`, row by row).
    `drop`: the model's tensors left out (gpt2's output.weight: a head tied to token_embd). gpt2's position_embd
    stays F32, as llama.cpp's converter keeps it. `vocab`: add a SentencePiece-style vocabulary (<unk>, <s>,
    </s>, the 256 byte tokens, then placeholders), which llama.cpp needs to load the file at all; "gemma4": the
    gemma4 vocabulary of gemma4_vocabulary() (the model's vocab_size must be its size). `meta`: more
    {key: str or float} metadata (floats as FLOAT32). `split_max_tensors`: split as gguf-split does, into
    <stem>-0000N-of-0000M.gguf parts of at most that many tensors (split.no / split.count /
    split.tensors.count in each); returns the first part. `mtp_layers`: as _Qwen35MtpMixin writes a multi-token
    prediction block, that many more blocks counted in block_count and nextn_predict_layers (their tensors in
    `extra`)."""
    import gguf
    import numpy as np

    cfg = model.config
    path = Path(path)
    w = gguf.GGUFWriter(str(path), GGUF_ARCH_NAMES[cfg.model_type], split_max_tensors=split_max_tensors)
    gemma4 = cfg.model_type == "gemma4_text"  # (its head_dim is per layer)
    head_dim = None if gemma4 else getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    _gguf_metadata(w, cfg, head_dim, mtp_layers)
    if vocab == "gemma4":
        assert cfg.vocab_size == len(gemma4_vocabulary()[0])
        _gemma4_vocab(w)
    elif vocab:
        _spm_vocab(w, cfg.vocab_size)
    for key, value in (meta or {}).items():
        vt = (gguf.GGUFValueType.STRING if isinstance(value, str) else gguf.GGUFValueType.UINT32
              if isinstance(value, int) else gguf.GGUFValueType.FLOAT32)
        w.add_key_value(key, value, vt)
    qt = getattr(gguf.GGMLQuantizationType, qtype)
    rope = getattr(cfg, "rope_parameters", None) or {}  # gpt2 has none
    if rope.get("rope_type") == "llama3":
        # llama.cpp's converter stores Llama-3 scaling as per-frequency divisors (rope_freqs).
        base = rope["rope_theta"]
        default_inv = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)
        scaled_inv = model.model.rotary_emb.inv_freq.detach().float().numpy()
        w.add_tensor("rope_freqs.weight", (default_inv / scaled_inv).astype(np.float32))
    if cfg.model_type == "gemma4_text":
        # Gemma4Model's converter: proportional RoPE as divisors over the whole full-attention head, 1 on the rotated
        # pairs and 1e30 (no rotation) on the rest.
        global_dim = max(d for d, _ in _gemma4_widths(cfg))
        half, rotated = global_dim // 2, int(global_dim * rope["full_attention"]["partial_rotary_factor"] / 2)
        w.add_tensor("rope_freqs.weight", np.array([1.0] * rotated + [1e30] * (half - rotated), dtype=np.float32))
    tensors = [(n, t) for n, t in _gguf_tensors(model) if n not in drop]
    for gname, t in tensors + list((extra or {}).items()):
        own = next((q for suffix, q in (types or {}).items() if gname.endswith(suffix)), None)
        if own:
            rows = quantize(t.reshape(-1, t.shape[-1]), own)
            w.add_tensor(gname, rows.reshape(*t.shape[:-1], -1), raw_dtype=getattr(gguf.GGMLQuantizationType, own))
        elif (t.ndim >= 2 and qtype != "F32" and ".ffn_gate_inp." not in gname and gname != "position_embd.weight"
              and t.shape[-1] % 32 == 0):  # (rows shorter than a block stay F32, as the converter falls back)
            w.add_tensor(gname, (quantize or gguf.quants.quantize)(t, qtype if quantize else qt), raw_dtype=qt)
        else:
            w.add_tensor(gname, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return w.format_shard_names(path)[0]


def hf_stepwise_logits(model, ids, prefill):
    """transformers with its own cache: the first `prefill` ids in one forward, then one id per forward."""
    import numpy as np
    import torch

    out = []
    with torch.no_grad():
        r = model(torch.tensor([ids[:prefill]]), use_cache=True)
        out.append(r.logits[0].float().numpy())
        cache = r.past_key_values
        for t in ids[prefill:]:
            r = model(torch.tensor([[t]]), cache=cache, use_cache=True)
            cache = r.past_key_values
            out.append(r.logits[0].float().numpy())
    return np.concatenate(out, axis=0)
