"""GGUF files of the architectures beyond llama/qwen2/qwen3 (qwen2_moe, qwen3_moe, phi3, starcoder2, gemma2,
gemma3, gpt2, stablelm, nemotron), written as llama.cpp's converter writes them (tiny_models.write_tiny_gguf: its
metadata keys, tensor names, stacked experts, fused phi3 projections, gemma's and nemotron's 1 + w norms, gpt2's
transposed Conv1D weights, learned positions and copied head, LayerNorm biases) from tiny random transformers models,
against transformers reading the same file (gguf-py's dequantizers, fp32 compute), live.

Per architecture and tensor type (F32, Q8_0): logits over a prefill and 16 cached decode steps, both as
loaded (Q8_0 stays packed, experts included) and with --dtype float32, within 1e-4; greedy 16 tokens
identical. MoE inputs route some token to every expert of every layer. Plus the refusals."""
import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import tiny_models  # noqa: E402
from test_architectures import _assert_every_expert_routed  # noqa: E402
from test_generate_parity import reference_greedy  # noqa: E402
from test_logits_parity import _expect_error, _hf_logits, _ids, _mlxgp_logits  # noqa: E402
from tests.refs import gguf_quant  # noqa: E402

GREEDY_NEW = 16


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = {}

    def get(arch):
        if arch not in cache:
            cache[arch] = tiny_models.make_tiny_model(f"{arch}-gguf", tmp_path_factory.mktemp(arch))[0]
        return cache[arch]

    return get


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
@pytest.mark.parametrize("arch", tiny_models.GGUF_ARCHS)
def test_gguf_vs_transformers(arch, qtype, tiny, run_mlxgp, run_mlxgp_json, tmp_path):
    import torch
    import transformers

    model = tiny(arch)
    path = tiny_models.write_tiny_gguf(model, tmp_path / f"{arch}-{qtype}.gguf", qtype)
    ref_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name,
                                                                  dtype=torch.float32).eval()
    assert ref_model.config.model_type == model.config.model_type
    ids = _ids(40, model.config.vocab_size, seed=13)
    if arch.endswith("_moe"):
        _assert_every_expert_routed(ref_model, ids)
    ref = _hf_logits(ref_model, ids)
    native = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "n.safetensors")
    dense = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "d.safetensors", "--dtype", "float32")
    assert native.shape == dense.shape == ref.shape
    d_native, d_dense = (float(np.abs(g - ref).max()) for g in (native, dense))

    prompt = ids[:12]
    want = reference_greedy(ref_model, prompt, GREEDY_NEW, ignore_eos=True)
    got = run_mlxgp_json("generate", "--model", path, "--input-ids", ",".join(map(str, prompt)),
                         "--max-new-tokens", GREEDY_NEW, "--ignore-eos")["sequences"][0]["token_ids"]
    same = sum(a == b for a, b in zip(got, want))
    print(f"{arch} GGUF {qtype}: max |diff| native {d_native:.3e}, float32 {d_dense:.3e} (logit range "
          f"{np.abs(ref).max():.1f}); greedy {same}/{GREEDY_NEW} tokens identical")
    assert np.abs(ref).max() > 0.5
    assert d_native <= 1e-4 and d_dense <= 1e-4
    assert got == want


@pytest.mark.parametrize("qtype", ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"])
def test_kquant_experts(qtype, tiny, run_mlxgp, run_mlxgp_json, tmp_path):
    """K-quant expert tensors (llama.cpp's quantizer; the experts' down projections, rows of 768, as real
    Q4_K_M MoE files hold Q6_K ffn_down_exps) multiplied as stored by the gathered block kernel: logits as
    loaded and with --dtype float32 within 1e-4 of transformers on the same file, greedy tokens identical,
    and a left-padded batch equal to each prompt alone."""
    import torch
    import transformers

    model = tiny("qwen3_moe")
    path = tiny_models.write_tiny_gguf(model, tmp_path / f"kq-{qtype}.gguf", "F32", gguf_quant.quantize_rows,
                                       types={"ffn_down_exps.weight": qtype})
    assert qtype in gguf_quant.tensor_types(path).values()
    ref_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name,
                                                                  dtype=torch.float32).eval()
    ids = _ids(40, model.config.vocab_size, seed=13)
    _assert_every_expert_routed(ref_model, ids)
    ref = _hf_logits(ref_model, ids)
    native = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "n.safetensors")
    dense = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "d.safetensors", "--dtype", "float32")
    d_native, d_dense = (float(np.abs(g - ref).max()) for g in (native, dense))

    prompts = [ids[:12], ids[20:27]]
    want = [reference_greedy(ref_model, p, GREEDY_NEW, ignore_eos=True) for p in prompts]
    got = run_mlxgp_json("generate", "--model", path, "--input-ids", ",".join(map(str, prompts[0])),
                         "--max-new-tokens", GREEDY_NEW, "--ignore-eos")["sequences"][0]["token_ids"]
    batch_file = tmp_path / "prompts.jsonl"
    batch_file.write_text("".join(json.dumps({"input_ids": p}) + "\n" for p in prompts))
    proc = run_mlxgp("generate", "--model", path, "--prompts-file", batch_file, "--batch-size", 2,
                     "--max-new-tokens", GREEDY_NEW, "--ignore-eos", "--json")
    got_batch = [json.loads(line)["sequences"][0]["token_ids"] for line in proc.stdout.splitlines() if line.strip()]
    print(f"qwen3_moe GGUF, {qtype} experts: max |diff| native {d_native:.3e}, float32 {d_dense:.3e}; greedy "
          f"{sum(a == b for a, b in zip(got, want[0]))}/{GREEDY_NEW} identical; batch of 2 equal: {got_batch == want}")
    assert d_native <= 1e-4 and d_dense <= 1e-4
    assert got == want[0]
    assert got_batch == want


def test_gpt_oss_gguf_as_llama_cpp(run_mlxgp, run_mlxgp_json, tmp_path):
    """gpt-oss GGUF files as llama.cpp writes and runs them (transformers 5.24's GGUF reader fails on them, so
    llama.cpp, node-llama-cpp 3.21.1's libllama, is the reference, live): sinks, biases, the router's bias,
    stacked biased experts, every even layer sliding, YaRN (llama.cpp's truncated ramp), the clamped SwiGLU's
    fixed 1.702 / 7.0. An F32 file, and one whose experts llama.cpp's own quantizer wrote as MXFP4 (loaded as
    MLX mxfp4 with the codes re-paired): logits against llama.cpp on the same file (F32) or on the F32 file of
    gguf-py's dequantization of those MXFP4 rows (llama.cpp's MXFP4 kernel rounds activations to 8 bits, 0.24
    apart on this model); greedy tokens are llama.cpp's argmax after each of mlxgp's prefixes."""
    import gguf
    import torch

    from tests.refs import llama_cpp

    model, _ = tiny_models.make_tiny_model("gpt_oss", tmp_path / "hf")
    ids, prefill = _ids(40, model.config.vocab_size, seed=14), 20
    f32 = tiny_models.write_tiny_gguf(model, tmp_path / "f32.gguf", "F32", vocab=True)
    mxfp4 = tiny_models.write_tiny_gguf(model, tmp_path / "mxfp4.gguf", "F32", gguf_quant.quantize_rows, vocab=True,
                                        types={"_exps.weight": "MXFP4"})
    assert set(gguf_quant.tensor_types(mxfp4).values()) == {"F32", "MXFP4"}
    with torch.no_grad():  # the same model with llama.cpp's MXFP4 rows dequantized by gguf-py
        for name, p in model.named_parameters():
            if name.endswith(("experts.gate_up_proj", "experts.down_proj")):
                w = p.numpy().transpose(0, 2, 1)  # [E, out, in], as llama.cpp stacks them
                rows = gguf_quant.quantize_rows(w.reshape(-1, w.shape[-1]), "MXFP4")
                deq = gguf.quants.dequantize(rows, gguf.GGMLQuantizationType.MXFP4).reshape(w.shape)
                p.copy_(torch.from_numpy(np.ascontiguousarray(deq.transpose(0, 2, 1))))
    dequantized = tiny_models.write_tiny_gguf(model, tmp_path / "deq.gguf", "F32", vocab=True)
    for path, ref_path, extra in ((f32, f32, []), (mxfp4, dequantized, []), (mxfp4, dequantized, ["--dtype", "float32"])):
        ref = llama_cpp.logits(ref_path, ids, prefill, repack=False)
        got = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "l.safetensors", "--prefill", prefill,
                            *extra)[prefill - 1:len(ids) - 1]
        diff = float(np.abs(got - ref).max())
        print(f"gpt-oss {path.stem} {extra or 'as loaded'}: max |diff| vs llama.cpp = {diff:.3e} "
              f"(logits up to {np.abs(ref).max():.2f})")
        assert np.abs(ref).max() > 0.5
        assert diff <= 1e-4
    prompt = ids[:12]
    got = run_mlxgp_json("generate", "--model", mxfp4, "--input-ids", ",".join(map(str, prompt)),
                         "--max-new-tokens", GREEDY_NEW, "--ignore-eos")["sequences"][0]["token_ids"]
    ref = llama_cpp.logits(dequantized, prompt + got, len(prompt), repack=False)
    assert [int(r.argmax()) for r in ref[:GREEDY_NEW]] == got


def _vs_llama_cpp(run_mlxgp, run_mlxgp_json, path, ids, prefill, tmp_path):
    """llama.cpp's logits after each of ids[prefill - 1:-1] (prefill in one batch, then one token at a time), mlxgp's
    for the same positions, and how many of mlxgp's GREEDY_NEW greedy tokens after ids[:12] are llama.cpp's argmax
    after mlxgp's prefix."""
    from tests.refs import llama_cpp

    ref = llama_cpp.logits(path, ids, prefill, repack=False)
    got = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "l.safetensors", "--prefill", prefill)[prefill - 1:len(ids) - 1]
    prompt = ids[:12]
    tokens = run_mlxgp_json("generate", "--model", path, "--input-ids", ",".join(map(str, prompt)),
                            "--max-new-tokens", GREEDY_NEW, "--ignore-eos")["sequences"][0]["token_ids"]
    steps = llama_cpp.logits(path, prompt + tokens, len(prompt), repack=False)
    same = sum(int(r.argmax()) == t for r, t in zip(steps[:GREEDY_NEW], tokens))
    return ref, got, same


def _vs_llama_cpp_and_source(run_mlxgp, run_mlxgp_json, model, path, ids, prefill, tmp_path):
    """_vs_llama_cpp's llama.cpp logits, mlxgp's max |diff| from them and from transformers' `model` the file was
    written from, and the greedy count."""
    ref, got, same = _vs_llama_cpp(run_mlxgp, run_mlxgp_json, path, ids, prefill, tmp_path)
    source = tiny_models.hf_stepwise_logits(model, ids, prefill)[prefill - 1:len(ids) - 1]
    return ref, float(np.abs(got - ref).max()), float(np.abs(got - source).max()), same


def _q8_rounded(a):
    """`a` through gguf-py's Q8_0 (blocks along the last axis, as a file's rows) and back."""
    import gguf

    qt = gguf.GGMLQuantizationType.Q8_0
    return gguf.quants.dequantize(gguf.quants.quantize(a.reshape(-1, a.shape[-1]), qt), qt).reshape(a.shape)


def _vs_source(run_mlxgp, model, path, ids, prefill, tmp_path):
    """max |diff| between mlxgp's logits on `path` and transformers' `model` (as its weights now are) after each of
    ids[prefill - 1:-1], both prefilling ids[:prefill] and then stepping one token at a time."""
    source = tiny_models.hf_stepwise_logits(model, ids, prefill)[prefill - 1:len(ids) - 1]
    got = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / f"{Path(path).stem}.safetensors", "--prefill", prefill)
    return float(np.abs(got[prefill - 1:len(ids) - 1] - source).max())


def _assert_vs_llama_cpp_and_source(name, ref, diff, vs_source, same, also=""):
    """Prints and checks an F32 file against llama.cpp (`diff`, greedy tokens `same`) and transformers' source model."""
    print(f"{name} GGUF F32 vs llama.cpp: max |diff| {diff:.3e} (logits up to {np.abs(ref).max():.2f}), vs transformers' "
          f"source model {vs_source:.3e}; greedy {same}/{GREEDY_NEW} tokens llama.cpp's argmax{also}")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4 and vs_source <= 1e-4
    assert same == GREEDY_NEW


# SmolLM3's GGUF holds no no_rope_layers: llama.cpp leaves RoPE out of every 4th layer (SmolLM3Config's default).
SMOLLM3_4 = {"num_hidden_layers": 4, "no_rope_layers": [1, 1, 1, 0], "layer_types": ["full_attention"] * 4}


# node-llama-cpp 3.21.1's llama.cpp reads EXAONE 4.0's window only at 32B's 64 layers (fixed in code; later builds
# read the file's sliding_window_pattern, which mlxgp reads): against it, the model without a window (RoPE on every
# layer); the windowed file against transformers' model it was written from (test_exaone4_windowed_gguf).
EXAONE4_GLOBAL = {"sliding_window": None, "layer_types": ["full_attention"] * 3}
# A 64-layer file without the window keys (converted before they existed): both read it as EXAONE 4.0 32B, a window of
# 4096 on three layers of four and no RoPE on the fourth.
EXAONE4_32B_LEGACY = {"num_hidden_layers": 64, "sliding_window": None, "layer_types": ["full_attention"] * 64}

# llama.cpp's cohere2 windows three layers of four (its fixed swa pattern), as Command R7B's layer_types have them.
COHERE2_4 = {"num_hidden_layers": 4, "layer_types": ["sliding_attention"] * 3 + ["full_attention"]}
# llama.cpp's olmoe sizes attn_k_norm as n_embd: a key/value head per query head, as OLMoE has them.
OLMOE_MHA = {"num_key_value_heads": 4}

# DeepSeek's GGUF keys hold one YaRN mscale (yarn_log_multiplier, 0.1 mscale_all_dim), as DeepSeek's checkpoints have
# mscale = mscale_all_dim.
DEEPSEEK_V3_YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
                    "mscale": 1.0, "mscale_all_dim": 1.0, "beta_fast": 32, "beta_slow": 1}


# Architectures transformers 5.24's GGUF reader cannot read (or reads partly), against llama.cpp (node-llama-cpp
# 3.21.1's libllama), live: stablelm with StableLM 2 12B's per-head q/k norms (stacked attn_q_norm / attn_k_norm,
# which that reader drops) and parallel blocks (no ffn_norm); seed_oss (q/k/v biases; llama.cpp refuses files with
# o_proj's, which Seed-OSS-36B has not); ernie4_5 (RoPE on adjacent pairs, a tied head; without the biases llama.cpp
# cannot load, as ERNIE-4.5-0.3B); olmo2 (post-sublayer norms, whole-projection q/k norms); granite (its four
# multipliers as *_scale keys, q/k rows permuted as LlamaModel's converter does); arcee (relu2 MLP, permuted rows,
# YaRN as llama.cpp computes it); smollm3 (permuted rows, a NoPE 4th layer); cohere as command-r (parallel blocks on
# one bias-free LayerNorm, adjacent-pair RoPE, the logit scale; llama.cpp reads Command R+'s per-head q/k norms only
# in models of 64 layers or more, so this 3-layer one has none); olmoe (whole-projection q/k norms, 4 experts top-2
# unnormalised); cohere2 (Command R7B: a window of 8 and RoPE on three layers of four, llama.cpp's fixed pattern);
# hunyuan_v1_dense (q/k norms after RoPE, the NTK alpha 50 as the converter folds it into freq_base; without the
# attention biases, as Hunyuan's dense models have none); ernie4_5_moe as ernie4_5-moe (a dense first layer, softmax
# experts chosen with exp_probs_b beside two shared ones; bias-free, as ERNIE-4.5-21B-A3B); hunyuan_v1_moe as hunyuan-moe
# (hunyuan-dense's attention, every layer's experts beside the shared MLP); lfm2 (short convolutions where
# head_count_kv is 0, shortconv.conv squeezed to [hidden, kernel], the final norm as token_embd_norm); lfm2_moe as
# lfm2moe (a dense first layer, then experts stacked with exp_probs_b; routed_scaling_factor 1 as LFM2-8B-A1B's, the
# only one llama.cpp applies). (qwen3next, qwen35 and qwen35moe: test_qwen3_next.py.)
@pytest.mark.parametrize("arch, overrides", [("stablelm-parallel", {}), ("seed_oss", {"attention_out_bias": False}),
                                             ("ernie4_5", {"use_bias": False}), ("olmo2", {}), ("granite", {}),
                                             ("arcee", {}), ("smollm3", SMOLLM3_4),
                                             ("cohere", {"use_qk_norm": False}), ("exaone4", EXAONE4_GLOBAL),
                                             ("exaone4", EXAONE4_32B_LEGACY), ("olmoe", OLMOE_MHA),
                                             ("cohere2", COHERE2_4), ("hunyuan_v1_dense", {"attention_bias": False}),
                                             ("ernie4_5_moe", {"use_bias": False}),
                                             ("hunyuan_v1_moe", {"attention_bias": False}), ("lfm2", {}),
                                             ("lfm2_moe", {"routed_scaling_factor": 1.0})])
def test_gguf_as_llama_cpp(arch, overrides, run_mlxgp, run_mlxgp_json, tmp_path):
    """An F32 file as llama.cpp's converter writes it: logits over 20 cached steps within 1e-4 of llama.cpp, and
    greedy tokens that are llama.cpp's argmax after each of mlxgp's prefixes."""
    model, _ = tiny_models.make_tiny_model(arch, tmp_path / "hf", **overrides)
    path = tiny_models.write_tiny_gguf(model, tmp_path / "f32.gguf", "F32", vocab=True)
    names = set(gguf_quant.tensor_types(path))
    if arch == "stablelm-parallel":
        assert {"blk.0.attn_q_norm.weight", "blk.0.attn_k_norm.weight"} <= names and "blk.0.ffn_norm.weight" not in names
    ids, prefill = _ids(40, model.config.vocab_size, seed=15), 20
    ref, got, same = _vs_llama_cpp(run_mlxgp, run_mlxgp_json, path, ids, prefill, tmp_path)
    diff = float(np.abs(got - ref).max())
    print(f"{arch} GGUF F32 vs llama.cpp: max |diff| {diff:.3e} (logits up to {np.abs(ref).max():.2f}); greedy "
          f"{same}/{GREEDY_NEW} tokens llama.cpp's argmax")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4
    assert same == GREEDY_NEW


def _table_gelu(act):
    """`act` as ggml_vec_gelu_f32 computes it under GGML_GELU_FP16: f16 in, the f16 table's value out."""
    import torch

    class TableGelu(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.act = act

        def forward(self, x):
            return self.act(x.half().float()).half().float()

    return TableGelu()


def test_starcoder_gguf(run_mlxgp, run_mlxgp_json, tmp_path):
    """gpt_bigcode as llama.cpp's starcoder (StarCoderModel's converter: one key/value head in the fused attn_qkv,
    learned positions, LayerNorms with biases, the head tied to token_embd, the MLP 4 * n_embd wide as StarCoder's):
    an F32 file's logits within 1e-4 of transformers' model it was written from (transformers' GGUF reader has no
    starcoder); greedy tokens llama.cpp's argmax. llama.cpp's logits differ by up to 2e-3: ggml's f32 GELU
    (GGML_GELU_FP16) rounds its input to f16 and reads a table of f16 values. Giving transformers' model that GELU
    brings it closer to llama.cpp than the formula is (what remains: f16 roundings that 1e-6 input differences flip)."""
    import torch

    model, _ = tiny_models.make_tiny_model("gpt_bigcode", tmp_path / "hf", n_inner=None)
    path = tiny_models.write_tiny_gguf(model, tmp_path / "f32.gguf", "F32", vocab=True)
    assert {"blk.0.attn_qkv.weight", "position_embd.weight"} <= set(gguf_quant.tensor_types(path))
    ids, prefill = _ids(40, model.config.vocab_size, seed=15), 20
    ref, got, same = _vs_llama_cpp(run_mlxgp, run_mlxgp_json, path, ids, prefill, tmp_path)
    source = tiny_models.hf_stepwise_logits(model, ids, prefill)[prefill - 1:len(ids) - 1]

    for block in model.transformer.h:
        block.mlp.act = _table_gelu(block.mlp.act)
    with_table = tiny_models.hf_stepwise_logits(model, ids, prefill)[prefill - 1:len(ids) - 1]
    vs_source, vs_llama, table_vs_llama = (float(np.abs(a - b).max()) for a, b in
                                           ((got, source), (got, ref), (with_table, ref)))
    print(f"starcoder GGUF F32: max |diff| vs transformers' source model {vs_source:.3e}, vs llama.cpp {vs_llama:.3e} "
          f"(transformers with llama.cpp's f16 GELU table vs llama.cpp {table_vs_llama:.3e}); greedy {same}/{GREEDY_NEW} "
          "tokens llama.cpp's argmax")
    assert np.abs(ref).max() > 0.5
    assert vs_source <= 1e-4 and vs_llama <= 2e-3 and table_vs_llama < vs_llama / 2
    assert same == GREEDY_NEW


def test_mixtral_gguf(run_mlxgp, run_mlxgp_json, tmp_path):
    """Mixtral as llama.cpp converts it: a llama file with llama.expert_count and stacked ffn_*_exps (q / k rows
    permuted as LlamaModel's converter does): F32 logits within 1e-4 of llama.cpp's and of transformers' model it was
    written from (transformers' GGUF reader takes a llama file for LlamaForCausalLM, without experts), every expert
    routed, greedy tokens llama.cpp's argmax; Q8_0 within 1e-4 of transformers on the Q8_0-rounded weights. A file with
    the older per-expert tensors is refused in one line."""
    import torch

    model, _ = tiny_models.make_tiny_model("mixtral", tmp_path / "hf")
    ids, prefill = _ids(40, model.config.vocab_size, seed=15), 20
    _assert_every_expert_routed(model, ids)
    path = tiny_models.write_tiny_gguf(model, tmp_path / "f32.gguf", "F32", vocab=True)
    assert {"blk.0.ffn_gate_inp.weight", "blk.0.ffn_gate_exps.weight"} <= set(gguf_quant.tensor_types(path))
    ref, diff, vs_source, same = _vs_llama_cpp_and_source(run_mlxgp, run_mlxgp_json, model, path, ids, prefill,
                                                          tmp_path)
    q8 = tiny_models.write_tiny_gguf(model, tmp_path / "q8.gguf", "Q8_0", vocab=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and not name.endswith("mlp.gate.weight"):  # the router stays F32
                p.copy_(torch.from_numpy(np.ascontiguousarray(_q8_rounded(p.numpy()), dtype=np.float32)))
    diff_q8 = _vs_source(run_mlxgp, model, q8, ids, prefill, tmp_path)
    _assert_vs_llama_cpp_and_source("mixtral", ref, diff, vs_source, same,
                                    f"; Q8_0 vs transformers on the Q8_0-rounded weights {diff_q8:.3e}")
    assert diff_q8 <= 1e-4
    legacy = tiny_models.write_tiny_gguf(model, tmp_path / "legacy.gguf", "F32",
                                         extra={"blk.0.ffn_gate.0.weight": np.zeros((4, 4), np.float32)})
    r = run_mlxgp("logits", "--model", legacy, "--input-ids", "5,6,7", "--out", tmp_path / "x.safetensors", check=False)
    assert r.returncode != 0 and r.stderr.strip().startswith("[gguf] per-expert tensors (blk.N.ffn_gate.E.weight"), \
        r.stderr


def test_olmo_gguf(run_mlxgp, run_mlxgp_json, tmp_path):
    """OLMo as OlmoModel's converter writes it (no norm tensors: llama.cpp's norms have no weight either; q / k rows
    permuted; clip_qkv as attention.clamp_kqv): an F32 file's logits within 1e-4 of llama.cpp's and of transformers'
    model it was written from (transformers' GGUF reader has no olmo), greedy tokens llama.cpp's argmax. An F16 file
    computes in float32 as llama.cpp does (without a norm weight to take the activation dtype from): within 1e-4 of
    transformers' fp32 model on the f16-rounded weights."""
    import torch

    model, _ = tiny_models.make_tiny_model("olmo", tmp_path / "hf")
    path = tiny_models.write_tiny_gguf(model, tmp_path / "f32.gguf", "F32", vocab=True)
    assert not any("norm" in n for n in gguf_quant.tensor_types(path))
    ids, prefill = _ids(40, model.config.vocab_size, seed=15), 20
    ref, diff, vs_source, same = _vs_llama_cpp_and_source(run_mlxgp, run_mlxgp_json, model, path, ids, prefill,
                                                          tmp_path)
    f16 = tiny_models.write_tiny_gguf(model, tmp_path / "f16.gguf", "F16", vocab=True)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(p.half().float())
    diff16 = _vs_source(run_mlxgp, model, f16, ids, prefill, tmp_path)
    _assert_vs_llama_cpp_and_source("olmo", ref, diff, vs_source, same,
                                    f"; F16 file vs transformers on the f16-rounded weights {diff16:.3e}")
    assert diff16 <= 1e-4


@pytest.mark.parametrize("arch", ["gemma4_text", "gemma4_text-moe", "gemma4_text-e2b"])
def test_gemma4_gguf(arch, run_mlxgp, run_mlxgp_json, tmp_path):
    """Gemma 4 as Gemma4Model's converter writes it (31B's layout: a wider full-attention layer with one key/value head
    and no attn_v, head_count_kv one a layer, proportional RoPE as rope_freqs; 26B-A4B's experts beside the MLP, fused
    ffn_gate_up_exps, the router's scales; E2B's per-layer inputs, shared keys / values and double-wide MLPs): an F32
    file's logits within 1e-4 of transformers' model it was written from (transformers' GGUF reader has no gemma4);
    llama.cpp's logits differ by up to 2e-2 through ggml's f16 GELU table (test_starcoder_gguf), which
    given to transformers' model brings it closer to llama.cpp than the formula is; greedy tokens llama.cpp's argmax. A
    Q8_0 file within 1e-4 of transformers on the Q8_0-rounded weights (rows shorter than a block and the router stay
    F32)."""
    import torch

    model, _ = tiny_models.make_tiny_model(arch, tmp_path / "hf")
    ids, prefill = _ids(40, model.config.vocab_size, seed=15), 20
    if arch == "gemma4_text-moe":
        _assert_every_expert_routed(model, ids)
    path = tiny_models.write_tiny_gguf(model, tmp_path / "f32.gguf", "F32", vocab=True)
    names = set(gguf_quant.tensor_types(path))
    assert {"rope_freqs.weight", "blk.0.layer_output_scale.weight"} <= names
    if arch == "gemma4_text":
        assert "blk.2.attn_v.weight" not in names  # values from the keys
    ref, got, same = _vs_llama_cpp(run_mlxgp, run_mlxgp_json, path, ids, prefill, tmp_path)
    source = tiny_models.hf_stepwise_logits(model, ids, prefill)[prefill - 1:len(ids) - 1]
    q8 = tiny_models.write_tiny_gguf(model, tmp_path / "q8.gguf", "Q8_0", vocab=True)
    table = copy.deepcopy(model)
    for m in table.modules():  # the MLPs', the experts' and the per-layer inputs' GELU
        if isinstance(getattr(m, "act_fn", None), torch.nn.Module):
            m.act_fn = _table_gelu(m.act_fn)
    with_table = tiny_models.hf_stepwise_logits(table, ids, prefill)[prefill - 1:len(ids) - 1]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and p.shape[-1] % 32 == 0 and not name.endswith("router.proj.weight"):
                p.copy_(torch.from_numpy(np.ascontiguousarray(_q8_rounded(p.numpy()), dtype=np.float32)))
    diff_q8 = _vs_source(run_mlxgp, model, q8, ids, prefill, tmp_path)
    vs_source, vs_llama, table_vs_llama = (float(np.abs(a - b).max()) for a, b in
                                           ((got, source), (got, ref), (with_table, ref)))
    print(f"{arch} GGUF F32: max |diff| vs transformers' source model {vs_source:.3e}, vs llama.cpp {vs_llama:.3e} "
          f"(transformers with llama.cpp's f16 GELU table vs llama.cpp {table_vs_llama:.3e}); greedy {same}/{GREEDY_NEW} "
          f"tokens llama.cpp's argmax; Q8_0 vs transformers on the Q8_0-rounded weights {diff_q8:.3e}")
    assert np.abs(ref).max() > 0.5
    assert vs_source <= 1e-4 and diff_q8 <= 1e-4 and vs_llama <= 2e-2 and table_vs_llama < vs_llama / 2
    assert same == GREEDY_NEW
    if arch == "gemma4_text-e2b":  # three shared layers: llama.cpp would reuse layer 0's cache for full layers too
        bad = tiny_models.write_tiny_gguf(model, tmp_path / "bad.gguf", "F32", meta={"gemma4.attention.shared_kv_layers": 3})
        r = run_mlxgp("logits", "--model", bad, "--input-ids", "5,6,7", "--out", tmp_path / "x.safetensors", check=False)
        assert r.returncode != 0 and r.stderr.strip() == (
            "[gguf] metadata 'gemma4.attention.shared_kv_layers': layers sharing keys and values need a windowed then a "
            "full layer just before them (llama.cpp's fixed reuse)"), r.stderr


# deepseek2 files as DeepseekV2Model's converter writes them (kv_b_proj split per head into attn_k_b / attn_v_b, MQA over
# the latent, YaRN's log multiplier): V2 with softmax gating (with q_a_proj: llama.cpp reads a file without
# q_lora_rank only at V2-Lite's 27 layers), V3 with sigmoid gating, exp_probs_b and 1 of 2 groups. (q_lora_rank 64:
# Q8_0 blocks of 32 along q_b_proj's input.)
@pytest.mark.parametrize("arch, overrides", [("deepseek_v2", {"topk_method": "greedy", "q_lora_rank": 64}),
                                             ("deepseek_v3", {"rope_parameters": DEEPSEEK_V3_YARN, "q_lora_rank": 64})])
def test_deepseek2_gguf(arch, overrides, run_mlxgp, run_mlxgp_json, tmp_path):
    """An F32 file: logits within 1e-4 of llama.cpp's and of transformers' model it was written from (transformers'
    GGUF reader has no deepseek2), greedy tokens llama.cpp's argmax. A Q8_0 file (attn_k_b / attn_v_b dequantized for
    the absorbed products): logits within 1e-4 of transformers' model with each tensor rounded through gguf-py's
    Q8_0 as the file stores it (llama.cpp's Q8_0 products round the activations to 8 bits too)."""
    import torch

    model, _ = tiny_models.make_tiny_model(arch, tmp_path / "hf", **overrides)
    cfg = model.config
    ids, prefill = _ids(40, cfg.vocab_size, seed=15), 20
    path = tiny_models.write_tiny_gguf(model, tmp_path / "f32.gguf", "F32", vocab=True)
    assert {"blk.0.attn_k_b.weight", "blk.0.attn_v_b.weight"} <= set(gguf_quant.tensor_types(path))
    ref, diff, vs_source, same = _vs_llama_cpp_and_source(run_mlxgp, run_mlxgp_json, model, path, ids, prefill,
                                                          tmp_path)

    q8 = tiny_models.write_tiny_gguf(model, tmp_path / "q8.gguf", "Q8_0", vocab=True)
    rounded = _q8_rounded

    H, nope = cfg.num_attention_heads, cfg.qk_nope_head_dim
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim < 2 or name.endswith("mlp.gate.weight"):  # routers stay F32
                continue
            w = p.numpy()
            if name.endswith("kv_b_proj.weight"):  # stored as attn_k_b [H, rank, nope] and attn_v_b [H, v, rank]
                kv = w.reshape(H, -1, w.shape[-1])
                k = rounded(np.ascontiguousarray(kv[:, :nope].transpose(0, 2, 1))).transpose(0, 2, 1)
                w = np.concatenate([k, rounded(np.ascontiguousarray(kv[:, nope:]))], axis=1).reshape(w.shape)
            else:
                w = rounded(np.ascontiguousarray(w))
            p.copy_(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
    diff_q8 = _vs_source(run_mlxgp, model, q8, ids, prefill, tmp_path)
    _assert_vs_llama_cpp_and_source(arch, ref, diff, vs_source, same,
                                    f"; Q8_0 vs transformers on the Q8_0-rounded weights {diff_q8:.3e}")
    assert diff_q8 <= 1e-4


# What llama.cpp fixes in code for Llama 4 (its files hold none of it), as Scout's and Maverick's configs set it.
LLAMA4_AS_LLAMA_CPP = {"attention_chunk_size": 8192, "floor_scale": 8192, "attn_scale": 0.1}


def test_llama4_gguf(run_mlxgp, run_mlxgp_json, tmp_path):
    """A llama4 F32 file as Llama4Model's converter writes it (experts split from gate_up_proj, q / k rows unpermuted,
    Llama-3 rope as rope_freqs, dense and MoE layers interleaved): logits within 1e-4 of llama.cpp's and of
    transformers' model it was written from (transformers' GGUF reader has no llama4), greedy tokens llama.cpp's
    argmax. A file with a window key (later llama.cpp builds read 0 there as no chunks) is refused in one line."""
    model, _ = tiny_models.make_tiny_model("llama4_text", tmp_path / "hf", **LLAMA4_AS_LLAMA_CPP)
    ids, prefill = _ids(40, model.config.vocab_size, seed=15), 20
    path = tiny_models.write_tiny_gguf(model, tmp_path / "f32.gguf", "F32", vocab=True)
    assert {"blk.1.ffn_gate_inp.weight", "blk.1.ffn_up_exps.weight", "blk.1.ffn_gate_shexp.weight",
            "blk.0.ffn_gate.weight", "rope_freqs.weight"} <= set(gguf_quant.tensor_types(path))
    ref, diff, vs_source, same = _vs_llama_cpp_and_source(run_mlxgp, run_mlxgp_json, model, path, ids, prefill,
                                                          tmp_path)
    _assert_vs_llama_cpp_and_source("llama4", ref, diff, vs_source, same)
    windowed = tiny_models.write_tiny_gguf(model, tmp_path / "w.gguf", "F32", meta={"llama4.attention.sliding_window": 0})
    r = run_mlxgp("logits", "--model", windowed, "--input-ids", "5,6,7", "--out", tmp_path / "w.safetensors",
                  check=False)
    assert r.returncode != 0 and r.stderr.strip() == ("[gguf] metadata 'llama4.attention.sliding_window' is not "
                                                      "supported for llama4 (chunks of 8192 fixed)"), r.stderr


def test_exaone4_windowed_gguf(run_mlxgp, tmp_path):
    """An EXAONE 4.0 file with a window (sliding_window and one sliding_window_pattern bool a layer, as the converter
    writes them): windowed RoPE layers and a global one without RoPE, logits within 1e-4 of transformers' model it was
    written from (transformers' GGUF reader has no exaone4)."""
    model, _ = tiny_models.make_tiny_model("exaone4", tmp_path / "hf")
    assert model.config.sliding_window and "full_attention" in model.config.layer_types
    path = tiny_models.write_tiny_gguf(model, tmp_path / "w.gguf", "F32")
    ids, prefill = _ids(40, model.config.vocab_size, seed=15), 20
    ref = tiny_models.hf_stepwise_logits(model, ids, prefill)
    got = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "l.safetensors", "--prefill", prefill)
    diff = float(np.abs(got - ref).max())
    print(f"exaone4 windowed GGUF F32 vs transformers' source model: max |diff| {diff:.3e}")
    assert np.abs(ref).max() > 0.5 and diff <= 1e-4


def test_deepseek2_softmax_group_choice_refused(run_mlxgp, tmp_path):
    """llama.cpp scores expert groups by their two best experts (DeepSeek-V3's choice); DeepSeek-V2's group-limited
    softmax scores them by the best one: a softmax file with a group choice is refused rather than run as neither."""
    model, _ = tiny_models.make_tiny_model("deepseek_v2", tmp_path / "hf", topk_method="greedy", q_lora_rank=64)
    path = tiny_models.write_tiny_gguf(model, tmp_path / "g.gguf", "F32", meta={"deepseek2.expert_group_count": 4,
                                                                                "deepseek2.expert_group_used_count": 2})
    line = _expect_error(run_mlxgp, path, "gguf", tmp_path)
    assert line == ("[gguf] softmax gating with a group choice ('deepseek2.expert_group_used_count') is not "
                    "supported"), line


def test_olmo3_sliding_gguf_refused(run_mlxgp, tmp_path):
    """OLMo 3's GGUF files are olmo2 files with a window: refused by name rather than run without it."""
    model, _ = tiny_models.make_tiny_model("olmo2", tmp_path / "hf")
    path = tiny_models.write_tiny_gguf(model, tmp_path / "w.gguf", "F32", meta={"olmo2.attention.sliding_window": 8})
    line = _expect_error(run_mlxgp, path, "gguf", tmp_path)
    assert line == ("[gguf] metadata 'olmo2.attention.sliding_window' is not supported (OLMo 3's sliding layers)"), line


def test_gguf_mxfp4_outside_experts_refused(run_mlxgp, tmp_path):
    import transformers

    model, _ = tiny_models.make_model_from_config(
        transformers.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, eos_token_id=2),
        tmp_path / "llama")
    path = tiny_models.write_tiny_gguf(model, tmp_path / "m.gguf", "F32", gguf_quant.quantize_rows,
                                       types={"ffn_up.weight": "MXFP4"})
    line = _expect_error(run_mlxgp, path, "gguf", tmp_path)
    assert "tensor 'blk.0.ffn_up.weight' is MXFP4, which mlxgp loads for stacked experts" in line, line


def test_phi3_longrope_refused(tiny, run_mlxgp, tmp_path):
    """llama.cpp picks Phi-3's LongRoPE factors by its context size, transformers by the running length."""
    factors = np.ones(8, dtype=np.float32)
    path = tiny_models.write_tiny_gguf(tiny("phi3"), tmp_path / "long.gguf", "F32",
                                       extra={"rope_factors_long.weight": factors,
                                              "rope_factors_short.weight": factors})
    line = _expect_error(run_mlxgp, path, "gguf", tmp_path)
    assert "phi3 LongRoPE" in line and "is not supported" in line, line


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
def test_gpt2_tied_head(qtype, tiny, run_mlxgp, tmp_path):
    """A gpt2 file without output.weight (the head tied to token_embd, which then also serves as the head,
    packed for Q8_0): logits as loaded and with --dtype float32 within 1e-4 of transformers on the same file."""
    import torch
    import transformers

    path = tiny_models.write_tiny_gguf(tiny("gpt2"), tmp_path / f"tied-{qtype}.gguf", qtype, drop={"output.weight"})
    ref_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name,
                                                                  dtype=torch.float32).eval()
    assert ref_model.config.tie_word_embeddings
    ids = _ids(40, ref_model.config.vocab_size, seed=13)
    ref = _hf_logits(ref_model, ids)
    native = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "n.safetensors")
    dense = _mlxgp_logits(run_mlxgp, path, ids, tmp_path / "d.safetensors", "--dtype", "float32")
    d_native, d_dense = (float(np.abs(g - ref).max()) for g in (native, dense))
    print(f"gpt2 GGUF {qtype}, tied head: max |diff| native {d_native:.3e}, float32 {d_dense:.3e}")
    assert np.abs(ref).max() > 0.5
    assert d_native <= 1e-4 and d_dense <= 1e-4


def test_gpt2_positions_refused(tiny, run_mlxgp, tmp_path):
    """gpt2's learned positions: a file without position_embd, or with fewer rows than its context_length."""
    model = tiny("gpt2")
    missing = tiny_models.write_tiny_gguf(model, tmp_path / "nopos.gguf", "F32", drop={"position_embd.weight"})
    line = _expect_error(run_mlxgp, missing, "gguf", tmp_path)
    assert line == "[gguf] missing tensor 'position_embd.weight'", line
    short = tiny_models.write_tiny_gguf(model, tmp_path / "short.gguf", "F32", drop={"position_embd.weight"},
                                        extra={"position_embd.weight": np.zeros((16, 64), dtype=np.float32)})
    line = _expect_error(run_mlxgp, short, "gguf", tmp_path)
    assert line == ("[gguf] metadata 'gpt2.context_length' (1024) differs from the rows of "
                    "'position_embd.weight' (16)"), line


def test_unknown_architecture_named(run_mlxgp, tmp_path):
    import gguf

    path = tmp_path / "bloom.gguf"
    w = gguf.GGUFWriter(str(path), "bloom")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    line = _expect_error(run_mlxgp, path, "model", tmp_path)
    prefix = "[model] unknown model_type 'bloom' (supported GGUF architectures: "
    assert line.startswith(prefix) and line.endswith(")"), line
    listed = set(line[len(prefix):-1].split(", "))
    assert {"llama", "qwen2moe", "qwen3moe", "phi3", "starcoder2", "gemma2", "gemma3", "gpt2"} <= listed, line
