"""Writes the seed corpora of the libFuzzer targets (fuzz/) into tests/data/fuzz/<target>/.

Run with the project's venv: .venv/bin/python scripts/make_fuzz_seeds.py. Every file is small (a few
KB); inputs that once crashed a target are kept beside them as crash-*/regress-* (never rewritten here).
The prompt_cache seed is written by the fuzz binary itself (MLXGP_FUZZ_WRITE_SEED, see fuzz/prompt_cache.cpp).
"""
import json
import os
import sys

import numpy as np

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = os.path.join(root, "tests", "data", "fuzz")
SEP = b"\n--mlxgp-fuzz--\n"  # fuzz_targets.h split_parts


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def js(o):
    return json.dumps(o, indent=1)


# ---- tokenizers: small ones trained on the repository's own text ----
def tokenizers_seeds():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    text_path = os.path.join(root, "tests", "data", "train", "harbour_train.txt")
    lines = open(text_path, encoding="utf-8").read().splitlines()[:400]
    special = ["<s>", "</s>", "<|endoftext|>", "<unk>"]

    bl = Tokenizer(models.BPE())
    bl.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bl.decoder = decoders.ByteLevel()
    bl.post_processor = processors.ByteLevel(trim_offsets=False)
    bl.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=290, special_tokens=special,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    put("tokenizer_json", "bytelevel_bpe.json", bl.to_str())

    sp = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    sp.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    sp.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    sp.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=290, special_tokens=special + byte_tokens))
    sp.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                      special_tokens=[("<s>", sp.token_to_id("<s>"))])
    put("tokenizer_json", "spm_bpe.json", sp.to_str())

    ug = Tokenizer(models.Unigram())
    ug.normalizer = normalizers.NFKC()
    ug.pre_tokenizer = pre_tokenizers.Metaspace()
    ug.decoder = decoders.Metaspace()
    ug.train_from_iterator(lines, trainers.UnigramTrainer(vocab_size=200, special_tokens=special, unk_token="<unk>"))
    put("tokenizer_json", "unigram.json", ug.to_str())

    cfg = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
           "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}
    put("tokenizer_json", "bytelevel_bpe_with_config.json", bl.to_str().encode() + SEP + js(cfg).encode())
    cfg = {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_prefix_space": True, "bos_token": "<s>"}
    put("tokenizer_json", "spm_bpe_llama_config.json", sp.to_str().encode() + SEP + js(cfg).encode())

    texts = ["Hello, world!", "  leading spaces and\ttabs\n\nnew lines", "caf\u00e9 \u4e2d\u6587 \U0001F600 1234567",
             "<s>special</s><|endoftext|>", "\xff\xfe invalid utf-8"]
    for i, t in enumerate(texts):
        data = t.encode("utf-8", "surrogateescape") if i < 4 else b"\xff\xfe invalid utf-8"
        put("tokenizer_text", f"text{i}", bytes([i % 3]) + data)


# ---- GGUF ----
def gguf_seeds():
    import gguf

    def tiny(path, with_tokenizer, qtype):
        w = gguf.GGUFWriter(path, "llama")
        w.add_block_count(1)
        w.add_context_length(64)
        w.add_embedding_length(32)
        w.add_feed_forward_length(32)
        w.add_head_count(2)
        w.add_head_count_kv(1)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(10000.0)
        w.add_vocab_size(8)
        if with_tokenizer:
            w.add_tokenizer_model("gpt2")
            w.add_token_list(["a", "b", "c", "ab", "<s>", "</s>", "\u0120", "d"])
            w.add_token_types([1, 1, 1, 1, 3, 3, 1, 1])
            w.add_token_merges(["a b"])
            w.add_bos_token_id(4)
            w.add_eos_token_id(5)
        rng = np.random.default_rng(0)
        shapes = {"token_embd.weight": (8, 32), "output_norm.weight": (32,), "blk.0.attn_norm.weight": (32,),
                  "blk.0.ffn_norm.weight": (32,), "blk.0.attn_q.weight": (32, 32), "blk.0.attn_k.weight": (16, 32),
                  "blk.0.attn_v.weight": (16, 32), "blk.0.attn_output.weight": (32, 32),
                  "blk.0.ffn_gate.weight": (32, 32), "blk.0.ffn_up.weight": (32, 32), "blk.0.ffn_down.weight": (32, 32)}
        for name, shape in shapes.items():
            a = rng.standard_normal(shape).astype(np.float32)
            if len(shape) == 1:
                w.add_tensor(name, a)
            elif qtype is None:
                w.add_tensor(name, a.astype(np.float16))
            else:
                q = gguf.quants.quantize(a, qtype)
                w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for name, tok, q in [("tiny_f16_tok.gguf", True, None), ("tiny_q8_0.gguf", False, gguf.GGMLQuantizationType.Q8_0),
                             ("tiny_q4_0.gguf", False, gguf.GGMLQuantizationType.Q4_0)]:
            p = os.path.join(tmp, name)
            tiny(p, tok, q)
            put("gguf", name, open(p, "rb").read())


def arch_seed(name, arch, seed, keys, shapes, keep_f32, extra=None):
    """Writes tests/data/fuzz/gguf/<name>: `arch`'s metadata (keys(w)), then each of `shapes` drawn from rng `seed`,
    matrices as F16 unless keep_f32(name) (norms, routers, kernels stay F32, as the converters write them), then
    extra(w)."""
    import tempfile

    import gguf

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        w = gguf.GGUFWriter(path, arch)
        keys(w)
        for tensor, shape in shapes.items():
            a = rng.standard_normal(shape).astype(np.float32)
            w.add_tensor(tensor, a.astype(np.float16) if len(shape) > 1 and not keep_f32(tensor) else a)
        if extra:
            extra(w)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        put("gguf", name, open(path, "rb").read())


def gemma4_gguf_seed():
    """A tiny gemma4 file as Gemma4Model's converter lays it out: a windowed layer then a full one twice as wide with
    one key/value head and no attn_v, per-layer arrays, rope_freqs, per-layer inputs, fused experts beside the MLP."""

    def keys(w):
        w.add_block_count(2)
        w.add_context_length(64)
        w.add_embedding_length(16)
        w.add_feed_forward_length(16)
        w.add_head_count(2)
        w.add_head_count_kv([2, 1])
        w.add_layer_norm_rms_eps(1e-6)
        w.add_rope_freq_base(1e6)
        w.add_rope_freq_base_swa(1e4)
        w.add_key_length(16)
        w.add_value_length(16)
        w.add_key_length_swa(8)
        w.add_value_length_swa(8)
        w.add_rope_dimension_count(16)
        w.add_rope_dimension_count_swa(8)
        w.add_sliding_window(8)
        w.add_sliding_window_pattern([True, False])
        w.add_shared_kv_layers(0)
        w.add_embedding_length_per_layer_input(4)
        w.add_vocab_size(8)
        w.add_final_logit_softcapping(30.0)
        w.add_expert_count(2)
        w.add_expert_used_count(1)
        w.add_expert_feed_forward_length(8)
        w.add_tokenizer_model("gemma4")  # llama.cpp's gemma4 vocabulary: character merges, U+2581 for spaces
        w.add_token_list(["<pad>", "<eos>", "<bos>", "<unk>", "\u2581", "h", "e", "he"])
        w.add_token_types([3, 3, 3, 2, 1, 1, 1, 1])
        w.add_token_merges(["h e"])
        w.add_bos_token_id(2)
        w.add_eos_token_id(1)

    shapes = {"token_embd.weight": (8, 16), "output_norm.weight": (16,), "per_layer_token_embd.weight": (8, 8),
              "per_layer_model_proj.weight": (8, 16), "per_layer_proj_norm.weight": (4,)}
    for i, (dim, kv) in enumerate([(8, 2), (16, 1)]):
        b = f"blk.{i}."
        shapes.update({b + "attn_norm.weight": (16,), b + "attn_q.weight": (2 * dim, 16),
                       b + "attn_k.weight": (kv * dim, 16), b + "attn_output.weight": (16, 2 * dim),
                       b + "attn_q_norm.weight": (dim,), b + "attn_k_norm.weight": (dim,),
                       b + "post_attention_norm.weight": (16,), b + "ffn_norm.weight": (16,),
                       b + "post_ffw_norm.weight": (16,), b + "ffn_gate.weight": (16, 16),
                       b + "ffn_up.weight": (16, 16), b + "ffn_down.weight": (16, 16),
                       b + "pre_ffw_norm_2.weight": (16,), b + "post_ffw_norm_1.weight": (16,),
                       b + "post_ffw_norm_2.weight": (16,), b + "ffn_gate_inp.weight": (2, 16),
                       b + "ffn_gate_inp.scale": (16,), b + "ffn_down_exps.scale": (2,),
                       b + "ffn_gate_up_exps.weight": (2, 16, 16), b + "ffn_down_exps.weight": (2, 16, 8),
                       b + "layer_output_scale.weight": (1,), b + "inp_gate.weight": (4, 16),
                       b + "proj.weight": (16, 4), b + "post_norm.weight": (16,)})
        if i == 0:
            shapes[b + "attn_v.weight"] = (kv * dim, 16)

    arch_seed("tiny_gemma4.gguf", "gemma4", 0, keys, shapes, lambda n: "gate_inp" in n,
              lambda w: w.add_tensor("rope_freqs.weight", np.array([1.0] * 2 + [1e30] * 6, dtype=np.float32)))


def ernie45_moe_gguf_seed():
    """A tiny ernie4_5-moe file as Ernie4_5MoeModel's converter lays it out: a dense first layer, then experts chosen
    with exp_probs_b beside shared ones."""

    def keys(w):
        w.add_block_count(2)
        w.add_context_length(64)
        w.add_embedding_length(16)
        w.add_feed_forward_length(32)
        w.add_head_count(2)
        w.add_head_count_kv(1)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(5e5)
        w.add_rope_dimension_count(8)
        w.add_vocab_size(8)
        w.add_expert_count(2)
        w.add_expert_used_count(1)
        w.add_interleave_moe_layer_step(1)
        w.add_leading_dense_block_count(1)
        w.add_expert_feed_forward_length(8)
        w.add_expert_shared_count(1)
        w.add_expert_shared_feed_forward_length(8)

    shapes = {"token_embd.weight": (8, 16), "output_norm.weight": (16,)}
    for i in range(2):
        b = f"blk.{i}."
        shapes.update({b + "attn_norm.weight": (16,), b + "attn_q.weight": (16, 16), b + "attn_k.weight": (8, 16),
                       b + "attn_v.weight": (8, 16), b + "attn_output.weight": (16, 16),
                       b + "ffn_norm.weight": (16,)})
    shapes.update({"blk.0.ffn_gate.weight": (32, 16), "blk.0.ffn_up.weight": (32, 16),
                   "blk.0.ffn_down.weight": (16, 32), "blk.1.ffn_gate_inp.weight": (2, 16),
                   "blk.1.exp_probs_b.bias": (2,), "blk.1.ffn_gate_exps.weight": (2, 8, 16),
                   "blk.1.ffn_up_exps.weight": (2, 8, 16), "blk.1.ffn_down_exps.weight": (2, 16, 8),
                   "blk.1.ffn_gate_shexp.weight": (8, 16), "blk.1.ffn_up_shexp.weight": (8, 16),
                   "blk.1.ffn_down_shexp.weight": (16, 8)})
    arch_seed("tiny_ernie4_5_moe.gguf", "ernie4_5-moe", 1, keys, shapes, lambda n: "gate_inp" in n)


def lfm2_gguf_seed():
    """A tiny lfm2 file as LFM2Model's converter lays it out: a short-convolution layer (head_count_kv 0, its kernel
    under shortconv.conv as [hidden, kernel]) before an attention one, the final norm as token_embd_norm."""

    def keys(w):
        w.add_block_count(2)
        w.add_context_length(64)
        w.add_embedding_length(16)
        w.add_feed_forward_length(32)
        w.add_head_count(2)
        w.add_head_count_kv([0, 1])
        w.add_shortconv_l_cache(3)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(1e6)
        w.add_vocab_size(8)

    shapes = {"token_embd.weight": (8, 16), "token_embd_norm.weight": (16,),
              "blk.0.shortconv.conv.weight": (16, 3), "blk.0.shortconv.in_proj.weight": (48, 16),
              "blk.0.shortconv.out_proj.weight": (16, 16), "blk.1.attn_q.weight": (16, 16),
              "blk.1.attn_k.weight": (8, 16), "blk.1.attn_v.weight": (8, 16), "blk.1.attn_output.weight": (16, 16),
              "blk.1.attn_q_norm.weight": (8,), "blk.1.attn_k_norm.weight": (8,)}
    for i in range(2):
        b = f"blk.{i}."
        shapes.update({b + "attn_norm.weight": (16,), b + "ffn_norm.weight": (16,), b + "ffn_gate.weight": (32, 16),
                       b + "ffn_up.weight": (32, 16), b + "ffn_down.weight": (16, 32)})
    arch_seed("tiny_lfm2.gguf", "lfm2", 2, keys, shapes, lambda n: "shortconv.conv" in n)


def qwen35moe_gguf_seed():
    """A tiny qwen35moe file as Qwen3_5MoeTextModel's converter lays it out: a gated delta net (attn_qkv, attn_gate,
    ssm_beta / ssm_alpha, ssm_a without a suffix, ssm_dt.bias, the convolution [channels, kernel]) before a gated
    attention layer (full_attention_interval 2), experts beside a gated shared expert in both."""

    def keys(w):
        w.add_block_count(2)
        w.add_context_length(64)
        w.add_embedding_length(16)
        w.add_head_count(2)
        w.add_head_count_kv(1)
        w.add_key_length(8)
        w.add_value_length(8)
        w.add_rope_dimension_count(2)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_rope_freq_base(1e7)
        w.add_vocab_size(8)
        w.add_ssm_conv_kernel(4)
        w.add_ssm_state_size(8)
        w.add_ssm_group_count(1)
        w.add_ssm_time_step_rank(2)
        w.add_ssm_inner_size(16)
        w.add_full_attention_interval(2)
        w.add_expert_count(2)
        w.add_expert_used_count(1)
        w.add_expert_feed_forward_length(8)
        w.add_expert_shared_feed_forward_length(8)

    shapes = {"token_embd.weight": (8, 16), "output_norm.weight": (16,),
              "blk.0.attn_qkv.weight": (32, 16), "blk.0.attn_gate.weight": (16, 16), "blk.0.ssm_beta.weight": (2, 16),
              "blk.0.ssm_alpha.weight": (2, 16), "blk.0.ssm_a": (2,), "blk.0.ssm_dt.bias": (2,),
              "blk.0.ssm_conv1d.weight": (32, 4), "blk.0.ssm_norm.weight": (8,), "blk.0.ssm_out.weight": (16, 16),
              "blk.1.attn_q.weight": (32, 16), "blk.1.attn_k.weight": (8, 16), "blk.1.attn_v.weight": (8, 16),
              "blk.1.attn_output.weight": (16, 16), "blk.1.attn_q_norm.weight": (8,), "blk.1.attn_k_norm.weight": (8,)}
    for i in range(2):
        b = f"blk.{i}."
        shapes.update({b + "attn_norm.weight": (16,), b + "post_attention_norm.weight": (16,),
                       b + "ffn_gate_inp.weight": (2, 16), b + "ffn_gate_exps.weight": (2, 8, 16),
                       b + "ffn_up_exps.weight": (2, 8, 16), b + "ffn_down_exps.weight": (2, 16, 8),
                       b + "ffn_gate_inp_shexp.weight": (16,), b + "ffn_gate_shexp.weight": (8, 16),
                       b + "ffn_up_shexp.weight": (8, 16), b + "ffn_down_shexp.weight": (16, 8)})
    arch_seed("tiny_qwen35moe.gguf", "qwen35moe", 3, keys, shapes, lambda n: "gate_inp" in n or "ssm_conv1d" in n)


# ---- safetensors ----
def st_bytes(tensors, metadata=None):
    from safetensors.numpy import save
    return save(tensors, metadata=metadata)


def safetensors_seeds():
    rng = np.random.default_rng(0)
    put("safetensors", "f32_meta.safetensors", st_bytes({"a": rng.standard_normal((4, 3)).astype(np.float32),
                                                         "b": np.arange(5, dtype=np.int32)}, {"format": "pt", "k": "v"}))
    put("safetensors", "mixed.safetensors", st_bytes({"h": rng.standard_normal((2, 2, 2)).astype(np.float16),
                                                      "u": np.arange(7, dtype=np.uint8), "z": np.zeros((0, 3), np.float32),
                                                      "bo": np.array([True, False]), "d": np.ones(3, np.float64),
                                                      "i64": np.arange(3, dtype=np.int64)}))
    put("safetensors", "nan.safetensors", st_bytes({"x": np.array([1.0, np.nan, np.inf], np.float32)}))
    put("safetensors", "empty.safetensors", st_bytes({}))


# ---- config.json ----
def config_seeds():
    base = {"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "tie_word_embeddings": False, "max_position_embeddings": 128}
    put("model_config", "llama.json", js(base))
    put("model_config", "llama3_rope.json", js({**base, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "tie_word_embeddings": True, "eos_token_id": [1, 2], "bos_token_id": 0, "head_dim": 16}))
    put("model_config", "qwen2.json", js({**base, "model_type": "qwen2", "sliding_window": 8, "use_sliding_window": True,
                                          "max_window_layers": 1, "hidden_act": "silu"}))
    put("model_config", "qwen3.json", js({**base, "model_type": "qwen3", "head_dim": 8, "attention_bias": True,
                                          "layer_types": ["full_attention", "sliding_attention"], "sliding_window": 4}))
    put("model_config", "mistral.json", js({**base, "model_type": "mistral", "sliding_window": 16, "mlp_bias": True,
                                            "rope_scaling": {"type": "linear", "factor": 2.0}}))
    put("model_config", "quantized.json", js({**base, "quantization": {"group_size": 32, "bits": 4}}))
    # The later architectures' fields: per-layer-type rope, soft-caps, LongRoPE, multipliers, NoPE, experts.
    put("model_config", "gemma3.json", js({**base, "model_type": "gemma3_text", "head_dim": 8, "sliding_window": 4,
        "query_pre_attn_scalar": 8, "final_logit_softcapping": 30.0, "hidden_activation": "gelu_pytorch_tanh",
        "layer_types": ["sliding_attention", "full_attention"],
        "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}}}))
    put("model_config", "phi3.json", js({**base, "model_type": "phi3", "original_max_position_embeddings": 32,
        "rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.5], "long_factor": [2.0, 4.0]},
        "partial_rotary_factor": 0.5}))
    put("model_config", "granite_smollm3.json", js({**base, "model_type": "granite", "embedding_multiplier": 12.0,
        "residual_multiplier": 0.22, "attention_multiplier": 0.0078125, "logits_scaling": 8.0,
        "no_rope_layers": [1, 0]}))
    put("model_config", "moe.json", js({**base, "model_type": "qwen2_moe", "num_experts": 4, "num_experts_per_tok": 2,
        "moe_intermediate_size": 16, "shared_expert_intermediate_size": 32, "mlp_only_layers": [1],
        "norm_topk_prob": True, "qkv_bias": False}))


# ---- chat templates ----
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA2 = ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
          "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
          "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
          "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
          "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
          "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
          "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
          "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")
FEATURES = ("{%- macro fmt(m, i=0) -%}{{ i }}:{{ m.role|upper }}={{ m.content|trim|replace('a','b')|length }}{%- endmacro -%}"
            "{%- set ns = namespace(n=0) -%}{%- for m in messages if m.role != 'system' -%}{%- set ns.n = ns.n + 1 -%}"
            "{{ fmt(m, loop.index) }}{{ ', ' if not loop.last }}{%- endfor -%}"
            "{{ ns.n }} {{ messages|map(attribute='role')|join('|') }} {{ (messages|last).content|tojson }}"
            "{% if tools is defined %}{{ tools|tojson(indent=2) }}{% endif %}{{ 'x' * 3 }}{{ [1,2,3]|sum }}"
            "{{ {'a': 1, 'b': [1, 2]}|items|list }}{{ '%d-%s'|format(3, 'z') if false else 'ok' }}"
            "{% filter upper %}done{% endfilter %}{# comment #}{% raw %}{{ raw }}{% endraw %}")


def chat_template_seeds():
    msgs = js([{"role": "system", "content": "S"}, {"role": "user", "content": "Hi \u00e9"},
               {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]},
               {"role": "tool", "content": "42"}, {"role": "user", "content": "ok"}]).encode()
    put("chat_template", "chatml", CHATML.encode() + SEP + msgs)
    put("chat_template", "llama2", LLAMA2.encode())
    put("chat_template", "features", FEATURES.encode() + SEP + msgs)
    # Real templates of the fetched tokenizers (scripts/fetch_tokenizers.sh), when small.
    toks = os.path.join(root, ".cache", "tokenizers")
    if os.path.isdir(toks):
        for fam in sorted(os.listdir(toks)):
            p = os.path.join(toks, fam, "tokenizer_config.json")
            if not os.path.exists(p):
                continue
            t = json.load(open(p, encoding="utf-8")).get("chat_template")
            if isinstance(t, str) and len(t) <= 6000:
                put("chat_template", f"{fam}", t.encode())


# ---- generation_config.json ----
def generation_config_seeds():
    put("generation_config", "hf.json", js({"_from_model_config": True, "bos_token_id": 1, "eos_token_id": [2, 3],
                                             "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 20,
                                             "transformers_version": "4.56.2", "repetition_penalty": 1.1}))
    put("generation_config", "many.json", js({"max_new_tokens": 8, "num_beams": 2, "length_penalty": 0.5,
        "early_stopping": "never", "no_repeat_ngram_size": 2, "bad_words_ids": [[1, 2], [3]],
        "sequence_bias": [[[1], 2.0]], "suppress_tokens": [4], "min_p": 0.1, "stop_strings": ["\n\n"],
        "logit_bias": {"5": -1.5}, "dry_multiplier": 0.5, "dry_sequence_breakers": ["a"],
        "exponential_decay_length_penalty": [4, 1.5], "force_words_ids": [[[1, 2]]], "json_schema": "{\"type\": \"object\"}"}))
    put("generation_config", "nulls.json", js({"temperature": None, "top_k": None, "eos_token_id": 5, "seed": 42,
                                                "max_kv_size": 16, "kv_bits": 4, "regex": "[a-z]+"}))


# ---- checkpoint folders: meta.json | adapters.safetensors | optimizer.safetensors ----
def checkpoint_seeds():
    rng = np.random.default_rng(1)
    meta = js({"step": 3, "lr": 1e-4, "config": {"rank": 4}}).encode()
    ad = st_bytes({"model.layers.0.self_attn.q_proj.lora_a": rng.standard_normal((4, 8)).astype(np.float32),
                   "model.layers.0.self_attn.q_proj.lora_b": np.zeros((8, 4), np.float32)}, {"format": "mlxgp"})
    opt = st_bytes({"m.0": np.zeros(4, np.float32), "step": np.array([3], np.int32)})
    put("checkpoint", "full", meta + SEP + ad + SEP + opt)
    put("checkpoint", "meta_only", js({"step": 1}).encode())


# ---- server request bodies: "chat" or "completions" | body ----
def server_request_seeds():
    chat = {"model": "tiny", "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
            "max_tokens": 8, "temperature": 0.5, "top_p": 0.9, "stop": ["\n"], "stream": True,
            "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2, "seed": 1, "n": 2}
    put("server_request", "chat.json", b"chat" + SEP + js(chat).encode())
    chat2 = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "response_format":
             {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
             "frequency_penalty": 0.5, "presence_penalty": 0.1, "logit_bias": {"5": 1}, "max_completion_tokens": 4}
    put("server_request", "chat_parts.json", b"chat" + SEP + js(chat2).encode())
    comp = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 4, "logprobs": 2, "echo": False,
            "stop": "x", "top_k": 5, "repetition_penalty": 1.2}
    put("server_request", "completion.json", b"completions" + SEP + js(comp).encode())
    comp2 = {"prompt": [[1, 2, 3], [4, 5]], "max_tokens": 2, "n": 1, "stream": False}
    put("server_request", "completion_ids.json", b"completions" + SEP + js(comp2).encode())


if __name__ == "__main__":
    for f in [tokenizers_seeds, gguf_seeds, gemma4_gguf_seed, ernie45_moe_gguf_seed, lfm2_gguf_seed,
              qwen35moe_gguf_seed, safetensors_seeds, config_seeds, chat_template_seeds,
              generation_config_seeds, checkpoint_seeds, server_request_seeds]:
        f()
    print("seeds written under", out, file=sys.stderr)
