"""The later architectures (gemma, gemma2, gemma3_text, phi3, granite, olmo2, smollm3, MoE, starcoder2, gpt2, glm,
glm4, ...) against transformers,
live, on tiny random fp32 models built from a config and a fixed seed (tiny_models.MORE_ARCHS: each
architecture's distinctive options on, with values that matter: soft-caps that clip, windows shorter than
the sequences, LongRoPE crossing its original length during decoding, layers without RoPE).

Per architecture: logits over a prefill then cached single-token decode steps against transformers run the
same way (prefill, then one token at a time on its cache); greedy 32 tokens; a left-padded batch of three
prompts; beam search. Plus the refusals: unknown model types and math-changing options name themselves."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402

PREFILL, TOTAL = 20, 40  # 20 ids in one forward, then 20 cached decode steps
MAX_NEW = 32


def _ids(n, vocab, seed):
    return np.random.default_rng(seed).integers(3, vocab, size=n).tolist()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = {}

    def get(arch):
        if arch not in cache:
            cache[arch] = tiny_models.make_tiny_model(arch, tmp_path_factory.mktemp(arch.replace("-", "_")))
        return cache[arch]

    return get


def _hf_greedy_stepwise(model, ids):
    """Greedy decoding on transformers' forward with its cache, one token per forward (what mlxgp does).
    For phi3 past original_max_position_embeddings, transformers' generate() differs: its
    prepare_inputs_for_generation drops the cache once and re-prefills everything with the long factors."""
    import torch

    eos = tiny_models.text_config(model.config).eos_token_id
    out = []
    with torch.no_grad():
        r = model(torch.tensor([ids]), use_cache=True)
        for _ in range(MAX_NEW):
            row = r.logits[0, -1].clone()
            row[eos] = -float("inf")  # min_new_tokens
            t = int(row.argmax())
            out.append(t)
            r = model(torch.tensor([[t]]), cache=r.past_key_values, use_cache=True)
    return out


def _hf_generate(model, ids, **kw):
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW, do_sample=False, min_new_tokens=MAX_NEW,
                             pad_token_id=0, **kw)
    return out[0, len(ids):].tolist()


def _assert_every_expert_routed(model, ids):
    """The input exercises the routing: each MoE layer sends some token to every expert (transformers' router)."""
    import torch

    cfg = tiny_models.text_config(model.config)
    n_experts = getattr(cfg, "num_local_experts", None) or cfg.num_experts
    if cfg.model_type in ("glm4_moe", "deepseek_v2", "deepseek_v3", "glm4_moe_lite", "dots1", "ernie4_5_moe",
                          "lfm2_moe"):
        _assert_group_routing(model, ids, n_experts)
        return
    with torch.no_grad():
        r = model(torch.tensor([ids]), output_router_logits=True)
    assert r.router_logits, "no MoE layer reported routing"
    for layer, logits in enumerate(r.router_logits):
        k = getattr(cfg, "top_k_experts", None) or cfg.num_experts_per_tok  # (Gemma4TextConfig's name)
        chosen = set(logits.topk(k, dim=-1).indices.flatten().tolist())
        assert chosen == set(range(n_experts)), (layer, sorted(chosen))


def _assert_group_routing(model, ids, n_experts):
    """The group-limited routers (glm4_moe and deepseek_v3: sigmoid scores, correction bias, group choice;
    deepseek_v2: softmax, group choice) and ernie4_5_moe's (softmax, correction bias): every expert gets some token,
    and the bias and the group choice change the choice of some token (top-k of the plain scores would differ)."""
    import torch

    seen = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out))
             for m in model.modules() if type(m).__name__.lower().endswith("topkrouter")]
    with torch.no_grad():
        model(torch.tensor([ids]))
    for h in hooks:
        h.remove()
    assert seen, "no MoE layer routed"
    k = model.config.num_experts_per_tok
    for layer, (logits, _, indices) in enumerate(seen):
        assert set(indices.flatten().tolist()) == set(range(n_experts)), layer
        plain = logits.sigmoid().topk(k, dim=-1).indices.sort(-1).values
        assert not torch.equal(plain, indices.sort(-1).values), f"layer {layer}: bias and groups change nothing"


@pytest.mark.parametrize("arch", tiny_models.MORE_ARCHS)
def test_logits_prefill_and_cached_decode(arch, tiny, run_mlxgp, tmp_path):
    model, folder = tiny(arch)
    ids = _ids(TOTAL, tiny_models.text_config(model.config).vocab_size, seed=11)
    ref = tiny_models.hf_stepwise_logits(model, ids, PREFILL)
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out,
              "--dtype", "float32", "--prefill", PREFILL)
    from safetensors.numpy import load_file

    got = load_file(str(out))["logits"]
    if arch in tiny_models.MOE_ARCHS:
        _assert_every_expert_routed(model, ids)
    assert got.shape == ref.shape == (TOTAL, tiny_models.text_config(model.config).vocab_size)
    diff = float(np.abs(got - ref).max())
    print(f"{arch}: max |diff| = {diff:.3e} over {TOTAL} positions ({TOTAL - PREFILL} cached decode steps)")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4


@pytest.mark.parametrize("arch", tiny_models.MORE_ARCHS)
def test_greedy_single_batch_and_beams(arch, tiny, run_mlxgp, run_mlxgp_json, tmp_path):
    model, folder = tiny(arch)
    vocab = tiny_models.text_config(model.config).vocab_size
    prompts = [_ids(n, vocab, seed=20 + n) for n in (12, 5, 9)]
    greedy = _hf_greedy_stepwise if arch == "phi3-long" else _hf_generate
    refs = [greedy(model, p) for p in prompts]
    # min_new_tokens on both sides: EOS forbidden, so every sequence runs MAX_NEW tokens.
    common = ["--model", folder, "--dtype", "float32", "--max-new-tokens", MAX_NEW, "--min-new-tokens", MAX_NEW]
    single = run_mlxgp_json("generate", *common, "--input-ids", ",".join(map(str, prompts[0])))
    got = single["sequences"][0]["token_ids"]
    same = sum(a == b for a, b in zip(got, refs[0]))
    print(f"{arch}: greedy {same}/{MAX_NEW} tokens identical")
    assert got == refs[0]
    if arch == "phi3-long":
        # A batch switches to the long factors for every row once its largest position passes the
        # original length (transformers' batched forward does the same), so rows differ from solo runs.
        return
    # Three prompts of different lengths decoded together (left-padded rows of one batch).
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps({"input_ids": p}) + "\n" for p in prompts))
    proc = run_mlxgp("generate", *common, "--prompts-file", jsonl, "--batch-size", 3, "--json")
    rows = [json.loads(line)["sequences"][0]["token_ids"] for line in proc.stdout.splitlines() if line.strip()]
    assert rows == refs
    if arch == "phi3-long":
        return  # transformers' beam search re-prefills at the crossing as its greedy does (see above)
    # Beam search (3 beams, the best returned) against transformers' beam search.
    ref_beam = _hf_generate(model, prompts[1], num_beams=3)
    beam = run_mlxgp_json("generate", *common, "--input-ids", ",".join(map(str, prompts[1])), "--num-beams", 3)
    assert beam["sequences"][0]["token_ids"] == ref_beam


def _mlx_lm_q4(folder, qdir):
    """mlx-lm's convert path on `folder`: load, quantize 4-bit g32, save into qdir (returned)."""
    from mlx_lm.utils import load_model, quantize_model, save_config, save_model

    model, config = load_model(folder)
    model, config = quantize_model(model, config, group_size=32, bits=4)
    save_model(qdir, model)
    save_config(config, qdir / "config.json")
    return qdir


def _logits_vs_mlx_lm(run_mlxgp, folder, ids, tmp_path):
    """(mlxgp's logits, mlx-lm's) of the MLX folder on ids."""
    import mlx.core as mx
    from mlx_lm.utils import load_model
    from safetensors.numpy import load_file

    ref_model, _ = load_model(folder)
    ref = np.array(ref_model(mx.array([ids]))[0].astype(mx.float32))
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out)
    return load_file(str(out))["logits"], ref


@pytest.mark.parametrize("arch", ["olmo", "olmoe"])
def test_clip_qkv_clamps_as_transformers(arch, tiny, run_mlxgp, tmp_path):
    """clip_qkv (OLMo-7B-0424's, OLMoE's field): q, k and v clamped after their projections (olmoe's after its q / k
    norms). The clamp bites on these inputs (transformers without it differs by more than 1e-2); mlxgp's logits over a
    prefill and cached steps are transformers' with it."""
    import torch
    import transformers

    if arch == "olmo":
        model, folder = tiny("olmo")
    else:
        model, folder = tiny_models.make_tiny_model("olmoe", tmp_path / "olmoe", clip_qkv=0.4)
    ids = _ids(TOTAL, tiny_models.text_config(model.config).vocab_size, seed=21)
    ref = tiny_models.hf_stepwise_logits(model, ids, PREFILL)
    unclipped = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, clip_qkv=None).eval()
    assert float(np.abs(tiny_models.hf_stepwise_logits(unclipped, ids, PREFILL) - ref).max()) > 1e-2
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out, "--dtype", "float32",
              "--prefill", PREFILL)
    from safetensors.numpy import load_file

    diff = float(np.abs(load_file(str(out))["logits"] - ref).max())
    print(f"{arch} clip_qkv {model.config.clip_qkv}: max |diff| = {diff:.3e}")
    assert diff <= 1e-4


@pytest.mark.parametrize("arch", ["olmo", "gemma4_text-e2b"])
def test_half_precision_and_quantized_folders(arch, tiny, run_mlxgp, tmp_path):
    """A bf16 folder runs in bf16, as close to transformers' fp32 run on the same rounded weights as transformers' own
    bf16 run is (within 2x: rounding is not bit for bit; Gemma 4's unscaled q.k amplifies it to a tenth of the logit
    range in both), and exactly with --dtype float32; and `mlxgp convert --quantize` (4-bit g32) writes a folder whose logits are transformers' on
    its dequantized weights. OLMo's norms store nothing, so the activation dtype comes from the embedding; Gemma 4
    E2B's per-layer inputs multiply by scales cast to it, its layer scalars are bf16 buffers and its per-layer table
    is quantized like the embedding."""
    import mlx.core as mx
    import torch
    import transformers
    from safetensors.numpy import load_file, save_file

    model, src = tiny(arch)
    ids = _ids(30, tiny_models.text_config(model.config).vocab_size, seed=6)

    def logits(folder, *extra):
        out = tmp_path / "l.safetensors"
        run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out, *extra)
        return load_file(str(out))["logits"]

    def hf(folder, dtype):
        m = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        with torch.no_grad():
            return m(torch.tensor([ids])).logits[0].float().numpy()

    half = tmp_path / "bf16"
    transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16).save_pretrained(half)
    exact = hf(half, torch.float32)
    diff32 = float(np.abs(logits(half, "--dtype", "float32") - exact).max())
    diff_half = float(np.abs(logits(half) - exact).max())
    ref_half = float(np.abs(hf(half, torch.bfloat16) - exact).max())
    q4 = tmp_path / "q4"
    run_mlxgp("convert", "--hf-path", src, "--mlx-path", q4, "--quantize", "--q-bits", 4, "--q-group-size", 32)
    packed, dense = load_file(str(q4 / "model.safetensors")), {}
    for name, a in packed.items():
        if name.endswith(".weight") and name[:-7] + ".scales" in packed:
            base = name[:-7]
            dense[name] = np.array(mx.dequantize(mx.array(a), mx.array(packed[base + ".scales"]),
                                                 mx.array(packed[base + ".biases"]), 32, 4))
        elif not name.endswith((".scales", ".biases")):
            dense[name] = a
    deq = tmp_path / "dequantized"
    shutil.copytree(src, deq)
    save_file(dense, str(deq / "model.safetensors"), metadata={"format": "pt"})
    diff_q4 = float(np.abs(logits(q4) - hf(deq, torch.float32)).max())
    print(f"{arch} bf16 folder: fp32 max |diff| = {diff32:.3e}; in bf16 {diff_half:.3e} from transformers' fp32 "
          f"(transformers' bf16: {ref_half:.3e}); 4-bit g32 convert vs transformers on its dequantized weights "
          f"{diff_q4:.3e}")
    assert diff32 <= 1e-4 and diff_half <= 2 * ref_half and diff_q4 <= 1e-4


def test_clip_qkv_elsewhere_is_refused(tiny, run_mlxgp, tmp_path):
    """transformers reads clip_qkv in olmo and olmoe alone; elsewhere (and non-positive) it is refused in one line."""
    _, src = tiny("olmo")
    for model_type, value, message in (("llama", 1.0, "clip_qkv is not supported for llama (only olmo and olmoe)"),
                                       ("olmo", -1.0, "clip_qkv must be a finite number > 0")):
        folder = tmp_path / f"{model_type}{value}"
        shutil.copytree(src, folder)
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(model_type=model_type, clip_qkv=value)
        (folder / "config.json").write_text(json.dumps(cfg))
        r = run_mlxgp("logits", "--model", folder, "--input-ids", "5,6,7", "--out", tmp_path / "x.safetensors",
                      check=False)
        assert r.returncode != 0 and r.stderr.strip() == f"[config] {message}", r.stderr


def test_gemma4_prompt_cache_and_what_it_refuses(tiny, run_mlxgp, run_mlxgp_json, tmp_path):
    """gemma4_text's layers differ in width (a saved prompt cache holds each its own) and gemma4_text-e2b's per-layer
    inputs and shared keys / values run over the whole stack from token ids: a draft of its first layers and a soft
    prompt (virtual tokens without ids) are refused in one line, as are bidirectional attention over every token
    and a per-layer table smaller than the vocabulary."""
    from safetensors.numpy import save_file

    _, wide = tiny("gemma4_text")
    _, e2b = tiny("gemma4_text-e2b")
    ids = ",".join(map(str, _ids(14, 512, seed=8)))
    common = ["--input-ids", ids, "--max-new-tokens", 8, "--ignore-eos", "--dtype", "float32"]
    for folder in (wide, e2b):
        plain = run_mlxgp_json("generate", "--model", folder, *common)["sequences"][0]["token_ids"]
        cache = tmp_path / f"{folder.name}.safetensors"
        run_mlxgp("cache-prompt", "--model", folder, "--input-ids", ids.rsplit(",", 4)[0], "--out", cache,
                  "--dtype", "float32")
        cached = run_mlxgp_json("generate", "--model", folder, *common, "--prompt-cache", cache)
        assert cached["sequences"][0]["token_ids"] == plain
    soft = tmp_path / "soft.safetensors"
    save_file({"soft_prompt": np.full((3, 64), 0.01, np.float32)}, str(soft))
    for extra, message in ((["--use-speculative", "--draft-layers", 1],
                            "[config] a draft of the first layers of gemma4_text with per-layer inputs or layers "
                            "that share keys and values is not supported"),
                           (["--soft-prompt", soft],
                            "[hooks] an embeddings hook that changes the length (a soft prompt) cannot run with "
                            "gemma4_text's per-layer inputs")):
        r = run_mlxgp("generate", "--model", e2b, *common, *extra, check=False)
        assert r.returncode != 0 and message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    for edit, message in (({"use_bidirectional_attention": "all"},
                           "[config] use_bidirectional_attention \"all\" is not supported"),
                          ({"vocab_size_per_layer_input": 256},
                           "[config] vocab_size_per_layer_input (256) smaller than vocab_size is not supported")):
        folder = tmp_path / f"edited{len(message)}"
        shutil.copytree(e2b, folder)
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(edit)
        (folder / "config.json").write_text(json.dumps(cfg))
        r = run_mlxgp("generate", "--model", folder, *common, check=False)
        assert r.returncode != 0 and message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_gemma2_softcap_with_quantized_cache_is_refused(tiny, run_mlxgp):
    _, folder = tiny("gemma2")
    r = run_mlxgp("generate", "--model", folder, "--input-ids", "5,6,7", "--max-new-tokens", 2,
                  "--kv-bits", 8, check=False)
    assert r.returncode != 0
    assert "soft-capping" in r.stderr and r.stderr.count("\n") <= 1, r.stderr


def test_llama4_chunks_with_a_rotating_cache_are_refused(tiny, run_mlxgp):
    """A rotating cache (max_kv_size) keeps too few positions to mask chunks by position once a sequence passes the
    first chunk (8 here): refused in one line, not decoded over a wrong set of keys."""
    _, folder = tiny("llama4_text")
    r = run_mlxgp("generate", "--model", folder, "--input-ids", ",".join(map(str, range(3, 15))), "--max-new-tokens",
                  2, "--max-kv-size", 16, check=False)
    assert r.returncode != 0
    assert ("[model] chunked attention (attention_chunk_size 8) with a rotating KV cache (max_kv_size) is not "
            "supported past the first chunk") in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_gpt_oss_refusals_name_themselves(tiny, run_mlxgp):
    """What mlxgp does not do for gpt_oss says so in one line: a quantized KV cache (the sinks join the
    softmax on the eager attention path only)."""
    _, folder = tiny("gpt_oss")
    r = run_mlxgp("generate", "--model", folder, "--input-ids", "5,6,7", "--max-new-tokens", 2, "--kv-bits", 8,
                  check=False)
    assert r.returncode != 0 and "attention sinks (gpt_oss) with a quantized KV cache" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr


def test_gpt_oss_mxfp4_checkpoint_as_transformers_dequantizes_it(tiny, run_mlxgp, run_mlxgp_json, tmp_path):
    """The original MXFP4 expert tensors load kept as MXFP4 (MLX's mxfp4 gather_qmm: the blocks are its packing)
    or dequantized by --dtype float32; logits, greedy tokens and a left-padded batch equal transformers' on the
    same folder (it dequantizes the blocks itself on a CPU)."""
    import torch
    import transformers
    from safetensors.numpy import load_file

    model, folder = tiny("gpt_oss")
    mxfp4 = tiny_models.gpt_oss_mxfp4_folder(model, folder, tmp_path / "mxfp4")
    ref = transformers.AutoModelForCausalLM.from_pretrained(mxfp4, dtype=torch.float32).eval()
    ids = _ids(TOTAL, tiny_models.text_config(model.config).vocab_size, seed=12)
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits[0].numpy()
    for extra in ([], ["--dtype", "float32"]):
        out = tmp_path / "l.safetensors"
        run_mlxgp("logits", "--model", mxfp4, "--input-ids", ",".join(map(str, ids)), "--out", out, *extra)
        diff = float(np.abs(load_file(str(out))["logits"] - want).max())
        print(f"gpt_oss MXFP4 experts {extra or 'kept'}: max |diff| = {diff:.3e} (logits up to {np.abs(want).max():.2f})")
        assert np.abs(want).max() > 0.5
        assert diff <= 1e-4
    prompts = [_ids(n, tiny_models.text_config(model.config).vocab_size, seed=30 + n) for n in (11, 4)]
    refs = [_hf_generate(ref, p) for p in prompts]
    common = ["--model", mxfp4, "--max-new-tokens", MAX_NEW, "--min-new-tokens", MAX_NEW]
    assert run_mlxgp_json("generate", *common, "--input-ids", ",".join(map(str, prompts[0])))["sequences"][0][
        "token_ids"] == refs[0]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps({"input_ids": p}) + "\n" for p in prompts))
    proc = run_mlxgp("generate", *common, "--prompts-file", jsonl, "--batch-size", 2, "--json")
    assert [json.loads(line)["sequences"][0]["token_ids"] for line in proc.stdout.splitlines() if line.strip()] == refs


def test_qwen2_5_vl_original_flat_config(tiny, run_mlxgp, tmp_path):
    """Qwen2.5-VL's original uploads keep the text fields at the top level (no text_config) and label the rope
    "mrope" with its sections; text-only logits are transformers' on that folder."""
    import torch
    import transformers

    model, src = tiny("qwen2_5_vl")
    folder = tmp_path / "flat"
    shutil.copytree(src, folder)
    cfg = json.loads((folder / "config.json").read_text())
    text = cfg.pop("text_config")
    rope = text.pop("rope_parameters")
    text.pop("model_type")
    cfg.update(text, rope_theta=rope["rope_theta"], rope_scaling={"type": "mrope", "mrope_section": rope["mrope_section"]})
    (folder / "config.json").write_text(json.dumps(cfg))
    ref_model = transformers.AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    ids = _ids(TOTAL, 512, seed=17)
    ref = tiny_models.hf_stepwise_logits(ref_model, ids, PREFILL)
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out, "--dtype", "float32",
              "--prefill", PREFILL)
    from safetensors.numpy import load_file

    diff = float(np.abs(load_file(str(out))["logits"] - ref).max())
    print(f"qwen2_5_vl flat config with mrope: max |diff| = {diff:.3e}")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4


@pytest.mark.parametrize("edit, message", [
    ({"model_type": "gemma9"}, "unknown model_type 'gemma9'"),
    ({"model_type": "gemma3"}, "gemma3 config.json needs a text_config object"),  # a multimodal config's own
    ({"model_type": "mistral3", "text_config": {"model_type": "gemma2"}},
     "mistral3's text_config has model_type \"gemma2\" (supported: mistral, ministral3, llama)"),
    ({"rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}},
     "unsupported rope_type 'dynamic'"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 2.0, "beta_fast": -3.0}},
     "yarn beta_fast must be finite and positive"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 2.0, "truncate": "yes"}},
     "'truncate' must be true or false"),
    ({"hidden_activation": "relu6"}, "unsupported hidden_act 'relu6'"),
    ({"use_bidirectional_attention": True}, "use_bidirectional_attention"),
    ({"layer_types": ["sliding_attention", "chunked_attention", "full_attention"]}, "unsupported layer type 'chunked_attention'"),
])
def test_unknown_architecture_or_option_is_named(edit, message, tiny, run_mlxgp, tmp_path):
    _, src = tiny("gemma2")
    folder = tmp_path / "edited"
    shutil.copytree(src, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(edit)
    (folder / "config.json").write_text(json.dumps(cfg))
    r = run_mlxgp("logits", "--model", folder, "--input-ids", "5,6,7", "--out", tmp_path / "x.safetensors",
                  check=False)
    assert r.returncode != 0
    assert message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


# phi3-long: mlx-lm has no short factors; qwen2_moe: mlx-lm 0.32's qwen2_moe has no mlp_only_layers;
# gpt2-scaled: mlx-lm's gpt2 hard-codes the MLP width, gelu_new and the 1/sqrt(head_dim) scale; llama-yarn:
# mlx-lm's YarnRoPE always truncates the ramp to whole dims (transformers' `truncate: false` does not);
# gpt_oss: mlx-lm 0.32's sanitize splits gate_up_proj along the hidden axis of transformers' saved float
# layout [E, hidden, 2I] (it expects the original MXFP4 checkpoint's [E, 2I, ...]) and refuses the folder; glm:
# mlx-lm 0.32's glm rotates every feature of each head (transformers' GlmAttention only partial_rotary_factor of
# them, as its glm4 does); arcee: mlx-lm 0.32 has no arcee; llama4_text: mlx-lm 0.32 has Llama 4 as the multimodal
# llama4 only (tested so); gpt_bigcode-mha: mlx-lm 0.32's gpt_bigcode splits c_attn as [q; k; v] rows, which
# transformers' multi_query false layout holds per head (so mlx-lm's logits of such a folder are not transformers');
# olmo: mlx-lm 0.32's olmo reads AI2's original checkpoint layout through the ai2-olmo package, not transformers';
# ernie4_5_moe: mlx-lm 0.32's drops the moe_statics correction bias (the choice on the plain probabilities), gives the
# tied head no bias and the experts biases with use_bias (test_ernie4_5_moe_mlx_lm_folder); hunyuan_v1_moe: mlx-lm 0.32
# has no hunyuan_v1_moe (its hunyuan is the original checkpoints' layout); qwen3_5_text / qwen3_5_moe_text: mlx-lm 0.32
# has Qwen3.5 as the multimodal qwen3_5 / qwen3_5_moe only (tested so).
@pytest.mark.parametrize("arch", [a for a in tiny_models.MORE_ARCHS
                                  if a not in ("phi3-long", "qwen2_moe", "gpt2-scaled", "llama-yarn", "gpt_oss",
                                               "glm", "arcee", "llama4_text", "gpt_bigcode-mha", "olmo",
                                               "ernie4_5_moe", "hunyuan_v1_moe", "qwen3_5_text", "qwen3_5_moe_text")])
def test_mlx_quantized_folder_vs_mlx_lm(arch, tiny, run_mlxgp, tmp_path):
    """mlx-lm's convert path (load, 4-bit g32 quantize, save) on each architecture; both sides read that folder."""
    _, src = tiny(arch)
    folder = tmp_path / "legacy"
    shutil.copytree(src, folder)
    tiny_models.mlx_lm_layout(folder, arch)
    qdir = _mlx_lm_q4(folder, tmp_path / "q4")
    # (mlx-lm 0.32's gemma4 embeds the image / video / audio placeholders (ids 499, 500, 502 here) as themselves,
    # transformers' Gemma4Model, and mlxgp, as the pad token: the ids leave them out.)
    got, ref = _logits_vs_mlx_lm(run_mlxgp, qdir, _ids(30, 497 if arch == "gemma4" else 512, seed=4), tmp_path)
    diff = float(np.abs(got - ref).max())
    print(f"{arch}: MLX 4-bit g32 folder vs mlx-lm: max |diff| = {diff:.3e} (logit range {np.abs(ref).max():.1f})")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-3


def test_ernie4_5_moe_mlx_lm_folder(run_mlxgp, tmp_path):
    """An mlx-lm 4-bit folder of ERNIE 4.5 MoE (what mlx_lm.convert makes of the released bias-free checkpoints)
    holds no moe_statics correction bias: mlxgp routes it on the plain probabilities, as transformers does with the
    bias absent (its zeros) and as mlx-lm does, and gives mlx-lm's logits."""
    from safetensors.numpy import load_file

    _, folder = tiny_models.make_tiny_model("ernie4_5_moe", tmp_path / "hf", use_bias=False)
    tiny_models.mlx_lm_layout(folder, "ernie4_5_moe")
    qdir = _mlx_lm_q4(folder, tmp_path / "q4")
    assert not any("e_score_correction_bias" in k for k in load_file(str(qdir / "model.safetensors")))
    got, ref = _logits_vs_mlx_lm(run_mlxgp, qdir, _ids(30, 512, seed=4), tmp_path)
    diff = float(np.abs(got - ref).max())
    print(f"ernie4_5_moe: mlx-lm 4-bit g32 folder vs mlx-lm: max |diff| = {diff:.3e} (logit range {np.abs(ref).max():.1f})")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-3


def test_longrope_prompt_past_original_length_prefills_as_one_forward(tiny, run_mlxgp, run_mlxgp_json):
    """A prompt longer than original_max_position_embeddings (24 here) is long-rotated throughout, as
    transformers' single prefill forward does, whatever the prefill chunk size; rotating / quantized caches
    (which prefill in steps) refuse it in one line."""
    model, folder = tiny("phi3-long")
    ids = _ids(30, tiny_models.text_config(model.config).vocab_size, seed=5)
    ref = _hf_generate(model, ids)
    got = run_mlxgp_json("generate", "--model", folder, "--dtype", "float32", "--max-new-tokens", MAX_NEW,
                         "--min-new-tokens", MAX_NEW, "--input-ids", ",".join(map(str, ids)),
                         "--prefill-chunk-size", 8)["sequences"][0]["token_ids"]
    assert got == ref
    r = run_mlxgp("generate", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--max-new-tokens", 2,
                  "--max-kv-size", 64, check=False)
    assert r.returncode != 0 and "original_max_position_embeddings" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0, r.stderr


def test_gpt2_original_checkpoint_names(tiny, run_mlxgp, tmp_path):
    """The original GPT-2 checkpoints' layout (h.N..., no transformer. prefix, no lm_head, causal-mask buffers
    h.N.attn.bias) loads to the same logits as transformers' model."""
    import torch

    model, src = tiny("gpt2")
    folder = tmp_path / "original"
    shutil.copytree(src, folder)
    tiny_models._gpt2_original_names(folder)
    ids = _ids(24, tiny_models.text_config(model.config).vocab_size, seed=9)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].float().numpy()
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out, "--dtype", "float32")
    from safetensors.numpy import load_file

    diff = float(np.abs(load_file(str(out))["logits"] - ref).max())
    print(f"gpt2 original names: max |diff| = {diff:.3e}")
    assert diff <= 1e-4


@pytest.mark.parametrize("edit, message", [
    ({"activation_function": "relu"}, "unsupported activation_function 'relu'"),
    ({"add_cross_attention": True}, "add_cross_attention"),
])
def test_gpt2_unsupported_option_is_named(edit, message, tiny, run_mlxgp, tmp_path):
    _, src = tiny("gpt2")
    folder = tmp_path / "edited"
    shutil.copytree(src, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(edit)
    (folder / "config.json").write_text(json.dumps(cfg))
    r = run_mlxgp("logits", "--model", folder, "--input-ids", "5,6,7", "--out", tmp_path / "x.safetensors",
                  check=False)
    assert r.returncode != 0
    assert message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_gpt2_learned_positions_bound_the_context(tiny, run_mlxgp, run_mlxgp_json, tmp_path):
    """64 learned positions: transformers' wpe lookup fails past them (IndexError). mlxgp's generate stops at
    the context (finish_reason length, as for every model), its tokens up to there transformers' own; a forward
    past it (logits on 68 ids, or a rotating cache that lets generation run on) is refused in one line."""
    import torch

    model, folder = tiny("gpt2")
    ids = _ids(60, tiny_models.text_config(model.config).vocab_size, seed=3)
    with pytest.raises(IndexError):
        with torch.no_grad():
            model(torch.tensor([ids + ids[:8]]))
    with torch.no_grad():
        ref = model.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False, min_new_tokens=4,
                             pad_token_id=0)[0, len(ids):].tolist()
    common = ["--model", folder, "--dtype", "float32", "--input-ids", ",".join(map(str, ids)),
              "--max-new-tokens", 8, "--min-new-tokens"]
    seq = run_mlxgp_json("generate", *common, 4)["sequences"][0]
    assert seq["token_ids"] == ref and seq["finish_reason"] == "length", seq
    # A minimum the context cannot hold is refused rather than silently unmet.
    r = run_mlxgp("generate", *common, 8, check=False)
    assert r.returncode == 2 and "min_new_tokens 8 cannot be met" in r.stderr, r.stderr
    common.append(8)
    message = "position 64 is past the model's 64 learned positions"
    for args in (["logits", "--model", folder, "--input-ids", ",".join(map(str, ids + ids[:8])),
                  "--out", tmp_path / "x.safetensors"],
                 ["generate", *common, "--max-kv-size", 128]):
        r = run_mlxgp(*args, check=False)
        assert r.returncode != 0
        assert message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


def test_gpt2_mlxgp_convert_folder_loads_in_mlx_lm(tiny, run_mlxgp, tmp_path):
    """mlxgp's convert (4-bit g32) of an HF gpt2 folder writes mlx-lm's names (model.h.N..., wte/wpe quantized):
    mlx-lm loads it, and both sides give the same logits on it."""
    _, src = tiny("gpt2")
    folder = tmp_path / "hf"
    shutil.copytree(src, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["n_ctx"] = cfg["n_positions"]  # mlx-lm's ModelArgs requires it (transformers 5 does not write it)
    (folder / "config.json").write_text(json.dumps(cfg))
    qdir = tmp_path / "q4"
    run_mlxgp("convert", "--hf-path", folder, "--mlx-path", qdir, "--quantize", "--q-bits", 4, "--q-group-size", 32)
    got, ref = _logits_vs_mlx_lm(run_mlxgp, qdir, _ids(30, 512, seed=4), tmp_path)  # (mlx-lm loads strictly)
    diff = float(np.abs(got - ref).max())
    print(f"gpt2: mlxgp-converted 4-bit g32 folder, mlxgp vs mlx-lm: max |diff| = {diff:.3e}")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-3


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_gpt2_sharded_half_precision_folder(dtype, tiny, run_mlxgp, tmp_path):
    """A sharded (model.safetensors.index.json) bf16 / fp16 HF gpt2 folder: with --dtype float32, the logits of
    transformers' fp32 model on the same rounded weights; in its own dtype, close to transformers' run in it."""
    import torch
    import transformers

    model, _ = tiny("gpt2")
    folder = tmp_path / dtype
    half = transformers.AutoModelForCausalLM.from_config(model.config, dtype=getattr(torch, dtype))
    half.load_state_dict(model.state_dict())
    half.eval()
    half.save_pretrained(folder, max_shard_size="100KB")
    assert (folder / "model.safetensors.index.json").exists()
    ids = _ids(30, tiny_models.text_config(model.config).vocab_size, seed=6)
    with torch.no_grad():
        ref_half = half(torch.tensor([ids])).logits[0].float().numpy()
        ref32 = half.float()(torch.tensor([ids])).logits[0].numpy()
    from safetensors.numpy import load_file

    def logits(*extra):
        out = tmp_path / "l.safetensors"
        run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out, *extra)
        return load_file(str(out))["logits"]

    diff32 = float(np.abs(logits("--dtype", "float32") - ref32).max())
    diff_half = float(np.abs(logits() - ref_half).max())
    print(f"gpt2 sharded {dtype} folder: fp32 max |diff| = {diff32:.3e}; in {dtype} max |diff| = {diff_half:.3e} "
          f"(logit range {np.abs(ref32).max():.1f})")
    assert diff32 <= 1e-4
    assert diff_half <= (5e-2 if dtype == "bfloat16" else 1e-2)


@pytest.mark.parametrize("arch", ["mixtral", "qwen3_moe", "gpt_oss", "glm4_moe", "qwen3_next", "qwen3_5_text", "lfm2"])
def test_bfloat16_folder_on_the_cpu(arch, tiny, run_mlxgp, tmp_path):
    """MLX's CPU gather_mm takes float32 alone: the stacked experts of a bf16 folder multiply in float32 and
    round once; the logits stay close to transformers' bf16 forward (once a raw [GatherMM::eval] error). The recurrent
    layers round where transformers does: the depthwise convolution summed in float32 and rounded once (torch's
    conv1d), qwen3_next's SiLU after it likewise, its beta rounded to bf16 before the float32 delta rule (once 2.7x
    transformers' distance from its float32 forward, now within it)."""
    import torch
    import transformers

    model, _ = tiny(arch)
    folder = tmp_path / "bf16"
    half = transformers.AutoModelForCausalLM.from_config(model.config, dtype=torch.bfloat16)
    half.load_state_dict(model.state_dict())
    half.eval()
    half.save_pretrained(folder)
    ids = _ids(20, tiny_models.text_config(model.config).vocab_size, seed=8)
    with torch.no_grad():
        ref = half(torch.tensor([ids])).logits[0].float().numpy()
        ref32 = half.float()(torch.tensor([ids])).logits[0].numpy()  # the same rounded weights in fp32
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", folder, "--input-ids", ",".join(map(str, ids)), "--out", out)
    from safetensors.numpy import load_file

    got = load_file(str(out))["logits"]
    diff, noise = float(np.abs(got - ref).max()), float(np.abs(ref - ref32).max())
    print(f"{arch} bf16 folder on the CPU: max |diff| from transformers' bf16 = {diff:.3e}; transformers' bf16 "
          f"from its fp32 = {noise:.3e} (logit range {np.abs(ref).max():.1f})")
    if arch == "gpt_oss":
        # transformers' gpt_oss rounds elsewhere than the llama family (norms kept in float32, its softmaxes
        # and router in bf16), so its bf16 logits sit 1.9e-2 from its fp32 ones and mlxgp's 4.7e-2 from
        # them; mlxgp's bf16 is held to the fp32 forward on the same rounded weights instead (3.0e-2).
        assert float(np.abs(got - ref32).max()) <= 2 * noise
    else:
        assert diff <= 2 * noise


def test_gpt2_left_padded_batch_on_a_rotating_cache(tiny, run_mlxgp, tmp_path):
    """The batch's rotating cache (--max-kv-size, large enough to keep every key) counts each row's positions
    from its own first token too: each row equals transformers' solo greedy run."""
    model, folder = tiny("gpt2")
    prompts = [_ids(n, tiny_models.text_config(model.config).vocab_size, seed=40 + n) for n in (11, 4, 7)]
    refs = [_hf_generate(model, p) for p in prompts]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps({"input_ids": p}) + "\n" for p in prompts))
    proc = run_mlxgp("generate", "--model", folder, "--dtype", "float32", "--max-new-tokens", MAX_NEW,
                     "--min-new-tokens", MAX_NEW, "--prompts-file", jsonl, "--batch-size", 3, "--max-kv-size", 64,
                     "--json")
    rows = [json.loads(line)["sequences"][0]["token_ids"] for line in proc.stdout.splitlines() if line.strip()]
    assert rows == refs


# qwen3_moe: stacked experts and mlx-lm's 8-bit g64 routers; mixtral: stacked experts; granite: mlx-lm's
# 8-bit g64 o_proj / down_proj / lm_head; glm4_moe: its router (mlx-lm's MoEGate, no Linear) left unquantized;
# gpt_neox: written under mlx-lm's names (model.h.N.attention.query_key_value, model.embed_out); stablelm-parallel:
# each head's q / k norm as its own tensor again; granitemoe: stacked experts, 8-bit g64 router.layer and o_proj;
# deepseek_v2: its plain-parameter router left unquantized; deepseek_v3: kv_b_proj split per head into mlx-lm's 3-D
# embed_q / unembed_out, quantized as its MultiLinear; gpt_bigcode: transformer.h.N names, the fused c_attn;
# gemma4_text-moe: experts under mlx-lm's switch_glu, its 8-bit g64 router.proj; qwen3_next / qwen3_5 / qwen3_5_moe:
# the zero-centred norms written as 1 + w, the convolutions [C, K, 1], 8-bit g64 mlp.gate and shared_expert_gate.
@pytest.mark.parametrize("arch", ["qwen3_moe", "mixtral", "granite", "glm4_moe", "gpt_neox", "stablelm-parallel",
                                  "granitemoe", "deepseek_v2", "deepseek_v3", "glm4_moe_lite", "dots1", "apertus",
                                  "llama4", "gpt_bigcode", "gemma4_text-moe", "phimoe", "lfm2", "lfm2_moe",
                                  "qwen3_next", "qwen3_5", "qwen3_5_moe"])
def test_mlxgp_convert_quantize_matches_mlx_lm_convert(arch, tiny, hf_default, run_mlxgp, tmp_path):
    """`mlxgp convert --quantize` (4-bit g32) writes what mlx_lm.convert writes from the same HF folder: the same
    tensors (names, dtypes, shapes, values: 3-D stacked experts quantized too, the model class's
    quant_predicate modules at their own bits and group size) and the same "quantization" dict with its
    per-module entries; mlx-lm loads mlxgp's folder and both give the same logits on it."""
    import importlib

    import mlx.core as mx
    from mlx_lm.utils import load_model

    _, src = tiny(arch)
    folder = tmp_path / "hf"
    shutil.copytree(src, folder)
    tiny_models.mlx_lm_layout(folder, arch)
    hf_default[1].save_pretrained(folder)  # mlx_lm.convert loads a tokenizer: the default model's
    ref_dir, got_dir = tmp_path / "mlx-lm", tmp_path / "mlxgp"
    importlib.import_module("mlx_lm.convert").convert(str(folder), str(ref_dir), quantize=True, q_group_size=32,
                                                      q_bits=4)
    run_mlxgp("convert", "--hf-path", folder, "--mlx-path", got_dir, "--quantize", "--q-bits", 4,
              "--q-group-size", 32)
    want, got = (mx.load(str(d / "model.safetensors")) for d in (ref_dir, got_dir))
    assert sorted(got) == sorted(want)
    for k in want:
        assert (got[k].dtype, got[k].shape) == (want[k].dtype, want[k].shape), k
        assert mx.array_equal(got[k], want[k]).item(), k
    assert any(v.ndim == 3 and v.dtype == mx.uint32 for v in want.values()) == (arch in tiny_models.MOE_ARCHS)
    q_want, q_got = (json.loads((d / "config.json").read_text())["quantization"] for d in (ref_dir, got_dir))
    assert q_got == q_want
    # per-module entries beside group_size / bits / mode
    assert (len(q_want) > 3) == (arch in ("qwen3_moe", "granite", "granitemoe", "gemma4_text-moe", "lfm2_moe",
                                          "qwen3_next", "qwen3_5_moe"))

    ref_model, _ = load_model(got_dir)
    ids = _ids(30, 512, seed=4)
    ref = np.array(ref_model(mx.array([ids]))[0].astype(mx.float32))
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", got_dir, "--input-ids", ",".join(map(str, ids)), "--out", out)
    from safetensors.numpy import load_file

    diff = float(np.abs(load_file(str(out))["logits"] - ref).max())
    print(f"{arch}: mlxgp convert 4-bit g32 vs mlx_lm.convert: tensors and quantization equal; logits vs mlx-lm "
          f"{diff:.3e}")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-3


def _mlx_lm_converted(arch, tiny, hf_default, tmp_path, **kw):
    """mlx_lm.convert of the tiny HF folder of arch (with a tokenizer, which it loads) into tmp_path/mlx-lm."""
    import importlib

    _, src = tiny(arch)
    folder = tmp_path / "hf"
    shutil.copytree(src, folder)
    tiny_models.mlx_lm_layout(folder, arch)
    hf_default[1].save_pretrained(folder)  # (the default model's, from its GGUF: always there)
    out = tmp_path / "mlx-lm"
    importlib.import_module("mlx_lm.convert").convert(str(folder), str(out), **kw)
    return out


def test_dtype_dequantizes_each_module_with_its_own_group_size(tiny, hf_default, run_mlxgp, tmp_path):
    """mlx_lm.convert -q --q-group-size 32 of qwen3_moe records its routers as {"group_size": 64, "bits": 8}:
    --dtype float32 dequantizes each tensor with its module's entry (mlx-lm's load_model reads them so), giving
    mlx-lm's logits on the same weights dequantized (mlx_lm.utils.dequantize_model)."""
    import mlx.core as mx
    from mlx_lm.utils import dequantize_model, load_model

    qdir = _mlx_lm_converted("qwen3_moe", tiny, hf_default, tmp_path, quantize=True, q_group_size=32, q_bits=4)
    q = json.loads((qdir / "config.json").read_text())["quantization"]
    assert q["model.layers.0.mlp.gate"] == {"group_size": 64, "bits": 8} and q["group_size"] == 32
    ref_model = dequantize_model(load_model(qdir)[0])
    ids = _ids(30, 512, seed=4)
    ref = np.array(ref_model(mx.array([ids]))[0].astype(mx.float32))
    out = tmp_path / "l.safetensors"
    run_mlxgp("logits", "--model", qdir, "--input-ids", ",".join(map(str, ids)), "--out", out, "--dtype", "float32")
    from safetensors.numpy import load_file

    diff = float(np.abs(load_file(str(out))["logits"] - ref).max())
    print(f"qwen3_moe 4-bit g32 folder with g64 routers, --dtype float32 vs mlx-lm dequantized: {diff:.3e}")
    assert np.abs(ref).max() > 0.5
    assert diff <= 1e-4


def test_convert_dtype_of_quantized_folder_drops_quantization(tiny, hf_default, run_mlxgp, tmp_path):
    """`mlxgp convert --dtype float32` of an mlx-lm 4-bit folder writes dense weights and, as mlx_lm.convert
    --dequantize, a config without "quantization" / "quantization_config": the same tensors and config keys
    as mlx-lm's, and mlx-lm loads it."""
    import importlib

    import mlx.core as mx
    from mlx_lm.utils import load_model

    qdir = _mlx_lm_converted("olmo2", tiny, hf_default, tmp_path, quantize=True, q_group_size=32, q_bits=4)
    ref_dir, got_dir = tmp_path / "deq-mlx-lm", tmp_path / "deq-mlxgp"
    importlib.import_module("mlx_lm.convert").convert(str(qdir), str(ref_dir), dequantize=True)
    run_mlxgp("convert", "--hf-path", qdir, "--mlx-path", got_dir, "--dtype", "float32")
    cfg_want, cfg_got = (json.loads((d / "config.json").read_text()) for d in (ref_dir, got_dir))
    assert "quantization" not in cfg_want and "quantization_config" not in cfg_want
    assert "quantization" not in cfg_got and "quantization_config" not in cfg_got
    want, got = (mx.load(str(d / "model.safetensors")) for d in (ref_dir, got_dir))
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == mx.float32 and mx.allclose(got[k], want[k].astype(mx.float32)).item(), k
    load_model(got_dir)  # strict: no quantized modules expected, none found
