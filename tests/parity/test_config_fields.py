"""config.json as transformers 5.24 reads it, held against transformers live on tiny random fp32 models (and a
GGUF's biases against llama.cpp):

- fields a config.json leaves out take the architecture's config class defaults (Gemma2Config's
  query_pre_attn_scalar 256 and soft-caps 50 / 30, Gemma 3's rope bases 1e6 / 1e4, GraniteConfig's
  attention_multiplier 1.0, head_dim 256 / 128, the MoE classes' expert counts, the norms' epsilons, ...):
  each model is saved with a config.json holding its sizes only, and transformers loads that same folder;
- fields of other architectures are ignored where the architecture's transformers code ignores them (a llama
  config carrying final_logit_softcapping is not capped);
- tie_word_embeddings with a different lm_head.weight saved uses that head (transformers' tie_weights ties
  only equal tensors);
- a llama GGUF with attention and FFN biases uses them, as llama.cpp does;
- a llama GGUF's rope scaling keys read as llama.cpp reads them (a factor without a type is linear, the older
  rope.scale_linear key, a zero factor, type none, yarn with its betas), and the keys mlxgp cannot follow
  refused by name;
- a split GGUF (gguf-split's <prefix>-0000N-of-0000M.gguf parts) loads all its parts, as llama.cpp does, and
  refuses a later part or a missing part in one line."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import tiny_models  # noqa: E402
from test_logits_parity import _hf_logits, _mlxgp_logits  # noqa: E402
from tests.refs import llama_cpp  # noqa: E402

SIZES = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2)
TOKENS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)  # inside the tiny vocabulary (no math)
_DELTA = dict(linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=16)
# Per architecture: its config class and what must be explicit besides the sizes (layers enough for a
# global / no-RoPE layer; MoE expert widths kept small, their counts and top-k left to the defaults).
MINIMAL = {
    "gemma": ("GemmaConfig", {}),
    "gemma2": ("Gemma2Config", {}),
    "gemma3_text": ("Gemma3TextConfig", {"num_hidden_layers": 6}),
    "granite": ("GraniteConfig", {}),
    "qwen3": ("Qwen3Config", {}),
    "gpt_oss": ("GptOssConfig", {}),
    "mixtral": ("MixtralConfig", {}),
    "qwen2_moe": ("Qwen2MoeConfig", {"moe_intermediate_size": 16, "shared_expert_intermediate_size": 32}),
    "qwen3_moe": ("Qwen3MoeConfig", {"moe_intermediate_size": 16}),
    "smollm3": ("SmolLM3Config", {"num_hidden_layers": 4}),
    "olmo2": ("Olmo2Config", {}),
    "phi3": ("Phi3Config", {}),
    "starcoder2": ("Starcoder2Config", {}),
    "phimoe": ("PhimoeConfig", {}),
    "ernie4_5_moe": ("Ernie4_5_MoeConfig", {"moe_intermediate_size": 16}),
    "hunyuan_v1_moe": ("HunYuanMoEV1Config", {"head_dim": 16}),  # (its class has no usable head_dim default)
    "lfm2": ("Lfm2Config", {"layer_types": ["conv", "full_attention", "conv"]}),  # (the MLP rounded up to 256)
    "lfm2_moe": ("Lfm2MoeConfig", {"layer_types": ["conv", "full_attention", "conv"], "moe_intermediate_size": 16}),
    # (the delta nets' widths and the expert counts kept small; head_dim 256, RoPE on a quarter of it, every fourth
    # layer attention, top-10 / top-8 and the shared experts' gates left to the classes)
    "qwen3_next": ("Qwen3NextConfig", {"num_hidden_layers": 4, "num_experts": 16, "moe_intermediate_size": 16,
                                       "shared_expert_intermediate_size": 16, **_DELTA}),
    "qwen3_5_text": ("Qwen3_5TextConfig", {"num_hidden_layers": 4, **_DELTA}),
    "qwen3_5_moe_text": ("Qwen3_5MoeTextConfig", {"num_hidden_layers": 4, "num_experts": 8, "moe_intermediate_size": 16,
                                                  "shared_expert_intermediate_size": 16, **_DELTA}),
}


def _ids(n, vocab=512, seed=11):
    return np.random.default_rng(seed).integers(3, vocab, size=n).tolist()


def _reference(folder):
    import torch
    import transformers

    # Gated delta nets: transformers' float32 forward (its chunked delta rule) sits up to 2e-4 from its own float64
    # one on these sizes, mlxgp's 6e-5: the reference runs in float64 (the eager experts: grouped_mm has no float64).
    delta_nets = ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text")
    if json.loads((Path(folder) / "config.json").read_text())["model_type"] in delta_nets:
        return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64,
                                                                 experts_implementation="eager").eval()
    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def _edit_config(folder, fn):
    path = Path(folder) / "config.json"
    cfg = json.loads(path.read_text())
    fn(cfg)
    path.write_text(json.dumps(cfg))


def _compare(run_mlxgp, folder, tmp_path, what):
    """mlxgp's logits against transformers' on the folder as transformers reads it now."""
    ids = _ids(24)
    ref = _hf_logits(_reference(folder), ids)
    got = _mlxgp_logits(run_mlxgp, folder, ids, tmp_path / "l.safetensors", "--dtype", "float32")
    diff = float(np.abs(got - ref).max())
    print(f"{what}: max |diff| = {diff:.3e} (logits up to {np.abs(ref).max():.2f})")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4, what


@pytest.mark.parametrize("arch", sorted(MINIMAL))
def test_fields_left_out_take_the_config_class_defaults(arch, run_mlxgp, tmp_path):
    import transformers

    cls, extra = MINIMAL[arch]
    cfg = getattr(transformers, cls)(**{**SIZES, **TOKENS, **extra})
    _, folder = tiny_models.make_model_from_config(cfg, tmp_path / arch)
    keep = {"model_type", "architectures", "dtype", *SIZES, *TOKENS, *extra}
    _edit_config(folder, lambda c: [c.pop(k) for k in list(c) if k not in keep])
    _compare(run_mlxgp, folder, tmp_path, f"{arch} with its sizes only")


@pytest.mark.parametrize("arch, field, value", [
    ("llama", "final_logit_softcapping", 2.0),
    ("llama", "attn_logit_softcapping", 1.0),
    ("llama", "query_pre_attn_scalar", 7),
    ("llama", "logits_scaling", 2.5),
    ("llama", "embedding_multiplier", 3.0),
    ("llama", "residual_multiplier", 0.5),
    ("llama", "attention_multiplier", 0.2),
    ("llama", "partial_rotary_factor", 0.5),
    ("llama", "no_rope_layers", [1, 0, 1]),
    ("llama", "qkv_bias", True),
    ("llama", "num_experts", 4),
    ("qwen2", "partial_rotary_factor", 0.5),
    ("gemma3_text", "attn_logit_softcapping", 3.0),  # stored by Gemma3TextConfig, never applied
])
def test_fields_the_architecture_does_not_read_are_ignored(arch, field, value, run_mlxgp, tmp_path):
    import transformers

    cls = {"llama": "LlamaConfig", "qwen2": "Qwen2Config", "gemma3_text": "Gemma3TextConfig"}[arch]
    _, folder = tiny_models.make_model_from_config(getattr(transformers, cls)(**SIZES, head_dim=16), tmp_path / arch)
    _edit_config(folder, lambda c: c.update({field: value}))
    _compare(run_mlxgp, folder, tmp_path, f"{arch} + {field}={value}")


def test_partial_rotary_factor_in_rope_parameters_is_ignored_by_llama(run_mlxgp, tmp_path):
    import transformers

    _, folder = tiny_models.make_model_from_config(transformers.LlamaConfig(**SIZES), tmp_path / "llama")
    _edit_config(folder, lambda c: c["rope_parameters"].update({"partial_rotary_factor": 0.5}))
    _compare(run_mlxgp, folder, tmp_path, "llama + rope_parameters.partial_rotary_factor")


@pytest.mark.parametrize("rope, top", [
    ({"factor": 4.0, "original_max_position_embeddings": 32, "attention_factor": 1.3}, {}),
    ({"factor": 2.0, "mscale": 0.7}, {"original_max_position_embeddings": 16}),
    ({"factor": None, "original_max_position_embeddings": 64, "beta_fast": None, "beta_slow": 0}, {}),
    ({"factor": 3.0}, {}),
], ids=["attention_factor", "top_level_original_and_lone_mscale", "derived_factor_null_betas", "no_original"])
def test_yarn_parameters_as_transformers_reads_them(rope, top, run_mlxgp, tmp_path):
    """Yarn's optional fields as transformers 5.24 resolves them: a given attention_factor wins; mscale alone
    (without mscale_all_dim) changes nothing; a top-level original_max_position_embeddings overrides the
    rope dict's; a null factor is max_position_embeddings / original; null or 0 betas take 32 / 1; no
    original length means max_position_embeddings."""
    import transformers

    _, folder = tiny_models.make_model_from_config(
        transformers.LlamaConfig(**{**SIZES, "max_position_embeddings": 256}, head_dim=16), tmp_path / "llama")
    _edit_config(folder, lambda c: (c["rope_parameters"].update({"rope_type": "yarn", **rope}), c.update(top)))
    _compare(run_mlxgp, folder, tmp_path, f"llama + yarn {rope} {top}")


def test_tie_word_embeddings_with_a_different_saved_head_uses_the_head(run_mlxgp, tmp_path):
    import transformers

    _, folder = tiny_models.make_model_from_config(
        transformers.LlamaConfig(**SIZES, tie_word_embeddings=False), tmp_path / "llama")
    _edit_config(folder, lambda c: c.update({"tie_word_embeddings": True}))
    _compare(run_mlxgp, folder, tmp_path, "tie_word_embeddings true, lm_head.weight saved and different")


def test_gguf_attention_and_ffn_biases_as_llama_cpp(run_mlxgp, tmp_path):
    """A llama GGUF holding q/k/v/o and gate/up/down biases (as a llamafied Qwen or a biased Llama converts),
    and one holding q/k/v biases only: llama.cpp adds every bias the file has."""
    import transformers

    model, _ = tiny_models.make_model_from_config(
        transformers.LlamaConfig(**{**SIZES, "max_position_embeddings": 1024}, attention_bias=True, mlp_bias=True,
                                 bos_token_id=1, eos_token_id=2), tmp_path / "llama")
    layers = range(SIZES["num_hidden_layers"])
    for name, drop in [("all", ()), ("qkv", [f"blk.{i}.{t}.bias" for i in layers
                                             for t in ("attn_output", "ffn_gate", "ffn_up", "ffn_down")])]:
        path = tiny_models.write_tiny_gguf(model, tmp_path / f"{name}.gguf", "F32", drop=drop, vocab=True)
        ids, prefill = _ids(40), 20
        ref = llama_cpp.logits(path, ids, prefill, repack=False)
        got = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / f"{name}.safetensors", "--prefill", prefill,
                            "--dtype", "float32")[prefill - 1:len(ids) - 1]
        diff = float(np.abs(got - ref).max())
        print(f"llama GGUF with {name} biases: max |diff| vs llama.cpp = {diff:.3e}")
        assert diff <= 1e-4, name


@pytest.mark.parametrize("meta", [
    {"llama.rope.scaling.factor": 2.0},
    {"llama.rope.scale_linear": 2.0},
    {"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 2.0},
    {"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 0.0},
    {"llama.rope.scaling.type": "none", "llama.rope.scaling.factor": 2.0},
    {"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0,
     "llama.rope.scaling.original_context_length": 32},
    {"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 8.0,
     "llama.rope.scaling.original_context_length": 256, "llama.rope.scaling.yarn_beta_fast": 32.0,
     "llama.rope.scaling.yarn_beta_slow": 1.0},
], ids=["factor_only", "scale_linear", "linear", "zero_factor", "none", "yarn", "yarn_default_betas"])
def test_gguf_rope_scaling_keys_as_llama_cpp(meta, run_mlxgp, tmp_path):
    """llama.cpp's load_hparams: rope.scaling.type defaults to linear, rope.scale_linear stands in for a missing
    rope.scaling.factor, a zero factor is no scaling and type none never scales; yarn ramps between the
    original context's 32 and 1 rotations and scales cos/sin by 1 + 0.1 ln(factor) (its build ignores the
    yarn_beta_fast / yarn_beta_slow keys on a llama file: mlxgp refuses values other than those)."""
    import transformers

    model, _ = tiny_models.make_model_from_config(
        transformers.LlamaConfig(**{**SIZES, "max_position_embeddings": 1024}, bos_token_id=1, eos_token_id=2),
        tmp_path / "llama")
    path = tiny_models.write_tiny_gguf(model, tmp_path / "rope.gguf", "F32", vocab=True, meta=meta)
    ids, prefill = _ids(40), 20
    ref = llama_cpp.logits(path, ids, prefill, repack=False)
    got = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "l.safetensors", "--prefill", prefill,
                        "--dtype", "float32")[prefill - 1:len(ids) - 1]
    diff = float(np.abs(got - ref).max())
    print(f"{meta}: max |diff| vs llama.cpp = {diff:.3e}")
    assert diff <= 1e-4


@pytest.mark.parametrize("meta, message", [
    ({"llama.rope.scaling.type": "yarn"}, "'llama.rope.scaling.factor' must be a positive number for yarn"),
    ({"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0, "llama.rope.scaling.attn_factor": 0.5},
     "'llama.rope.scaling.attn_factor' is not supported with yarn scaling (only 1)"),
    ({"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0,
      "llama.rope.scaling.yarn_log_multiplier": 0.1},
     "'llama.rope.scaling.yarn_log_multiplier' is not supported with yarn scaling (only 0)"),
    ({"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0, "llama.rope.scaling.yarn_beta_fast": 8.0},
     "'llama.rope.scaling.yarn_beta_fast' is not supported with yarn scaling (only 32)"),
    ({"llama.rope.scaling.type": "longrope", "llama.rope.scaling.factor": 4.0},
     "'llama.rope.scaling.type' = 'longrope' is not supported (supported: none, linear, yarn)"),
], ids=["yarn_without_factor", "attn_factor", "log_multiplier", "beta_fast", "unknown_type"])
def test_gguf_rope_scaling_we_cannot_follow_is_refused(meta, message, run_mlxgp, tmp_path):
    import transformers

    model, _ = tiny_models.make_model_from_config(transformers.LlamaConfig(**SIZES, **TOKENS), tmp_path / "llama")
    path = tiny_models.write_tiny_gguf(model, tmp_path / "rope.gguf", "F32", vocab=True, meta=meta)
    r = run_mlxgp("logits", "--model", path, "--input-ids", "5,6,7", "--out", tmp_path / "x.safetensors", check=False)
    assert r.returncode != 0
    assert message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_gguf_split_parts_as_llama_cpp(run_mlxgp, tmp_path):
    """A llama GGUF split into 4 parts of at most 9 tensors (layers and output.weight spread over them): the
    logits from its first part equal llama.cpp's on the same part; a later part, a missing part and a first
    part not named as llama_split_prefix expects are refused, as llama.cpp refuses them."""
    import shutil

    import gguf
    import transformers

    from test_logits_parity import _expect_error

    model, _ = tiny_models.make_model_from_config(
        transformers.LlamaConfig(**{**SIZES, "max_position_embeddings": 1024}, bos_token_id=1, eos_token_id=2),
        tmp_path / "llama")
    (tmp_path / "split").mkdir()
    first = tiny_models.write_tiny_gguf(model, tmp_path / "split" / "m.gguf", "F32", vocab=True, split_max_tensors=9)
    parts = sorted(first.parent.glob("m-*-of-*.gguf"))
    assert first == parts[0] and first.name == "m-00001-of-00004.gguf" and len(parts) == 4
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(first).tensors}
    ids, prefill = _ids(40), 20
    ref = llama_cpp.logits(first, ids, prefill, repack=False)
    got = _mlxgp_logits(run_mlxgp, first, ids, tmp_path / "l.safetensors", "--prefill", prefill,
                        "--dtype", "float32")[prefill - 1:len(ids) - 1]
    diff = float(np.abs(got - ref).max())
    print(f"4-part split GGUF: max |diff| vs llama.cpp = {diff:.3e}")
    assert diff <= 1e-4

    line = _expect_error(run_mlxgp, parts[1], "gguf", tmp_path)
    assert line == f"[gguf] {parts[1]} is part 2 of a split GGUF of 4: load its first part", line
    gone = tmp_path / "gone"
    shutil.copytree(first.parent, gone)
    (gone / parts[3].name).unlink()
    line = _expect_error(run_mlxgp, gone / first.name, "gguf", tmp_path)
    assert line == f"[gguf] split GGUF part 4 of 4 is missing: {gone / parts[3].name}", line
    renamed = tmp_path / "renamed.gguf"
    shutil.copy(first, renamed)
    line = _expect_error(run_mlxgp, renamed, "gguf", tmp_path)
    assert line == f"[gguf] {renamed} has split.count 4 but its name does not end in '-00001-of-00004.gguf'", line
