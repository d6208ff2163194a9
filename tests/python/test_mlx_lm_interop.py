"""The documented API on models and tokenizers that mlx-lm loaded (issue #19): generate, hooks, steering
vectors and training through `mlx_lm.load`'s nn.Module and TokenizerWrapper, wrapped without copies.
Each case checks against mlx-lm itself (its own forward / generate_step / value_and_grad + optimizer) and
against the same call on the mlxgp-loaded folder (identical tokens)."""
import numpy as np
import pytest

from conftest import mlx_lm_greedy

ARCHS = ("llama", "mistral", "qwen2", "qwen3")
N = 16


@pytest.fixture(scope="module")
def tiny_archs(tmp_path_factory):
    """arch -> a tiny random HF folder (fixed seed) that mlx_lm.load and mlxgp both read."""
    from tiny_models import legacy_rope_config, make_tiny_model

    out = {}
    for arch in ARCHS:
        folder = tmp_path_factory.mktemp(f"tiny-{arch}")
        make_tiny_model(arch, folder)
        legacy_rope_config(folder)
        out[arch] = folder
    return out


def mlx_lm_model(folder):
    """mlx-lm's model of a folder without tokenizer files (mlx_lm.load also loads the tokenizer)."""
    from pathlib import Path

    from mlx_lm.utils import load_model

    return load_model(Path(folder))[0]


def assert_prefix_of_reference(ours, ref, eos):
    """Ours equals the reference, or stops early at an EOS token the reference also produced."""
    assert ours == ref[:len(ours)], (ours, ref)
    assert len(ours) == len(ref) or ours[-1] in eos, (ours, ref)


def test_basic_usage_with_mlx_lm_load(mgp, tiny_hf_tok):
    """The documented basic usage with mlx-lm's loader: same tokens as mlxgp's loader and as mlx-lm."""
    import mlx.core as mx
    from mlx_lm import load

    from mlx_gen_parity import GenerationConfig, generate

    model, tokenizer = load(str(tiny_hf_tok))
    mx.eval(model.parameters())
    before = mx.get_active_memory()
    cfg = GenerationConfig(max_tokens=N)
    out = generate(model, tokenizer, "Hello MLX parity", cfg)
    # Wrapping shares the module's arrays: far less than the 12.6 MB embedding table was allocated.
    assert mx.get_active_memory() - before < 4 << 20, mx.get_active_memory() - before
    assert model.args.hidden_size == 64

    ids = tokenizer.encode("Hello MLX parity")
    assert out["prompt_token_ids"] == ids
    ref = mlx_lm_greedy(model, ids, N)
    assert_prefix_of_reference(out["tokens"], ref, tokenizer.eos_token_ids)
    assert out["text"] == tokenizer.decode(out["tokens"], skip_special_tokens=True)

    m2, t2 = mgp.load(str(tiny_hf_tok))
    own = generate(m2, t2, "Hello MLX parity", cfg)
    assert own["tokens"] == out["tokens"] and own["text"] == out["text"]
    # Sampling with a seed, beams and a batch: identical to the mlxgp-loaded model too.
    for kw in (dict(do_sample=True, temperature=0.8, top_p=0.9, seed=3), dict(num_beams=3)):
        a = generate(model, tokenizer, "Hello MLX parity", cfg.copy(**kw))
        b = generate(m2, t2, "Hello MLX parity", cfg.copy(**kw))
        assert a["tokens"] == b["tokens"], kw
    a = generate(model, tokenizer, ["Hello", "The sea"], cfg)
    b = generate(m2, t2, ["Hello", "The sea"], cfg)
    assert [o["tokens"] for o in a] == [o["tokens"] for o in b]


@pytest.fixture(scope="module")
def more_archs(tmp_path_factory):
    """The later architectures as tiny folders in the layout mlx-lm 0.32 reads (test_architectures.py)."""
    from tiny_models import make_tiny_model, mlx_lm_layout

    def get(arch):
        folder = tmp_path_factory.mktemp(f"tiny-{arch}")
        make_tiny_model(arch, folder)
        mlx_lm_layout(folder, arch)
        return folder

    return get


@pytest.mark.parametrize("arch", ARCHS + ("gemma", "gemma2", "gemma3_text", "phi3", "granite", "olmo2", "smollm3",
                                          "mixtral", "qwen3_moe", "starcoder2", "gemma3", "mistral3",
                                          "mistral3-ministral3", "olmo3", "olmoe", "glm", "glm4", "cohere",
                                          "cohere2", "phi", "glm4_moe", "stablelm", "seed_oss",
                                          "ernie4_5", "exaone4", "nemotron", "granitemoe", "helium",
                                          "hunyuan_v1_dense", "deepseek_v2", "deepseek_v3", "glm4_moe_lite",
                                          "dots1", "apertus", "qwen2_5_vl", "qwen3_vl", "llama4", "gemma4_text",
                                          "gemma4_text-moe", "gemma4_text-e2b", "gemma4", "phimoe", "lfm2", "lfm2_moe",
                                          "qwen3_next", "qwen3_5", "qwen3_5_moe"))
def test_every_architecture_through_mlx_lm(mgp, tiny_archs, more_archs, arch):
    folder = tiny_archs[arch] if arch in tiny_archs else more_archs(arch)
    model = mlx_lm_model(folder)
    ids = [1, 17, 300, 42, 99, 7]
    # Without a tokenizer the wrapped module's config comes from model.args, which has no EOS: set it.
    out = mgp.generate(model, None, ids, max_tokens=N, eos_token_id=2)
    own_model, _ = mgp.load(str(folder))
    # A multimodal checkpoint loads as its language model and says whose it is.
    outer = (arch.split("-")[0] if arch.startswith(("gemma3", "mistral3", "qwen2_5_vl", "qwen3_vl", "llama4", "gemma4",
                                                    "qwen3_5"))
             and not arch.startswith(("gemma3_text", "llama4_text", "gemma4_text")) else None)
    assert own_model.args.multimodal_model_type == outer
    assert own_model.args.model_type == {"gemma3": "gemma3_text", "mistral3": "mistral", "qwen2_5_vl": "qwen2",
                                         "qwen3_vl": "qwen3", "llama4": "llama4_text",
                                         "gemma4_text-moe": "gemma4_text", "gemma4_text-e2b": "gemma4_text",
                                         "gemma4": "gemma4_text", "qwen3_5": "qwen3_5_text",
                                         "qwen3_5_moe": "qwen3_5_moe_text"}.get(arch, arch.split("-")[-1])
    own = mgp.generate(own_model, None, ids, max_tokens=N, eos_token_id=2)
    # mlx-lm 0.32's glm rotates every feature of each head, transformers' (and mlxgp's load of the folder) half of
    # them: the wrapped module computes what mlx-lm's does (interop._MLX_LM_IMPLIED), the folder what transformers'.
    if arch != "glm":
        assert out["tokens"] == own["tokens"], arch
    assert_prefix_of_reference(out["tokens"], mlx_lm_greedy(model, ids, N), [2])


def test_phimoe_longrope_module_rotates_as_mlx_lm(mgp, tmp_path):
    """mlx-lm's phimoe rotates with LongRoPE's long factors and long_mscale at every length (its SuScaledRoPE), where
    transformers and mlxgp's load of the folder take the short ones below the original length: the wrapped module
    computes what mlx-lm's does (interop._mlx_lm_rope), with the biases mlx-lm always gives it."""
    from tiny_models import legacy_rope_config, make_tiny_model

    _, folder = make_tiny_model("phimoe", tmp_path / "phimoe")
    legacy_rope_config(folder)  # (mlx-lm reads rope_scaling with its short / long factors and multipliers)
    model = mlx_lm_model(folder)
    ids = [1, 17, 300, 42, 99, 7]
    out = mgp.generate(model, None, ids, max_tokens=N, eos_token_id=2)
    ref = mlx_lm_greedy(model, ids, N)
    assert_prefix_of_reference(out["tokens"], ref, [2])
    own_model, _ = mgp.load(str(folder))  # transformers' short factors here (and its window of 24)
    assert mgp.generate(own_model, None, ids, max_tokens=N, eos_token_id=2)["tokens"] != out["tokens"]


def test_ernie4_5_moe_module_with_biased_experts_is_refused(mgp):
    """mlx-lm's ernie4_5_moe with use_bias puts biases on its experts, which transformers' architecture (and mlxgp's)
    never has: refused by name rather than run without them."""
    from mlx_lm.models.ernie4_5_moe import Model, ModelArgs

    args = ModelArgs(model_type="ernie4_5_moe", hidden_size=32, intermediate_size=64, max_position_embeddings=64,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_hidden_layers=2, rms_norm_eps=1e-5,
                     vocab_size=64, rope_theta=10000.0, use_bias=True, tie_word_embeddings=True, moe_num_experts=4,
                     moe_k=2, moe_intermediate_size=16, moe_layer_start_index=1)
    with pytest.raises(ValueError) as e:
        mgp.generate(Model(args), None, [1, 2, 3], max_tokens=2)
    assert str(e.value) == ("[interop] mlx-lm model of architecture 'ernie4_5_moe' with use_bias is not supported as "
                            "a wrapped module (its experts carry biases transformers' never have)")


@pytest.mark.parametrize("arch", ["gpt2", "gpt_bigcode", "gpt_neox"])
def test_mlx_lm_modules_named_otherwise_are_refused_as_wrapped_modules(mgp, more_archs, arch):
    """mlx-lm names these architectures' tensors as GPT-2 / GPTBigCode / GPT-NeoX (model.h.N..., transformer.h.N...),
    mlxgp as its decoder: weight updates would not reach the wrapped model, so wrapping is refused by name, and the
    folder itself loads (mlx_gen_parity.load) and decodes as mlx-lm does."""
    folder = more_archs(arch)
    model = mlx_lm_model(folder)
    with pytest.raises(ValueError) as e:
        mgp.generate(model, None, [1, 17, 300], max_tokens=2, eos_token_id=2)
    assert str(e.value) == (f"[interop] mlx-lm model of architecture '{arch}' is not supported as a wrapped module "
                            "(its tensor names are not mlxgp's); load its folder with mlx_gen_parity.load")
    own_model, _ = mgp.load(str(folder))
    ids = [1, 17, 300, 42, 99, 7]
    own = mgp.generate(own_model, None, ids, max_tokens=N, eos_token_id=2)
    assert_prefix_of_reference(own["tokens"], mlx_lm_greedy(model, ids, N), [2])


@pytest.mark.parametrize("mode", ["mxfp4", "mxfp8", "nvfp4"])
def test_mlx_lm_model_quantized_in_a_microscaling_mode(mgp, more_archs, mode):
    """An mlx-lm model quantized in one of MLX's microscaling modes (mlx_lm's quantize_model, as convert
    --q-mode does: stacked experts in the mode, the routers affine 8-bit by qwen3_moe's quant_predicate)
    wraps as any other: the tokens of mlx-lm's own decode."""
    from mlx_lm.utils import quantize_model

    model = mlx_lm_model(more_archs("qwen3_moe"))
    model, _ = quantize_model(model, {}, None, None, mode=mode)
    assert model.model.layers[0].mlp.switch_mlp.up_proj.mode == mode
    ids = [1, 17, 300, 42, 99, 7]
    out = mgp.generate(model, None, ids, max_tokens=N, eos_token_id=2)
    assert_prefix_of_reference(out["tokens"], mlx_lm_greedy(model, ids, N), [2])
    assert len(out["tokens"]) >= 4


def test_unsupported_architecture_is_one_line(mgp):
    from mlx_lm.models import gpt2

    args = gpt2.ModelArgs(model_type="gpt2", n_ctx=64, n_embd=32, n_head=2, n_layer=1, n_positions=64,
                          layer_norm_epsilon=1e-5, vocab_size=64)
    with pytest.raises(ValueError, match=r"^\[interop\] mlx-lm model of architecture 'gpt2' is not supported"):
        mgp.generate(gpt2.Model(args), None, [1, 2, 3], max_tokens=2)


@pytest.mark.parametrize("arch, what", [("gpt_neox", "gpt_neox"), ("stablelm-parallel", "stablelm with qk_layernorm")])
def test_modules_named_unlike_mlxgp_are_refused(mgp, more_archs, arch, what):
    """GPT-NeoX's tensors (model.h.N.attention...) and stablelm's per-head q / k norms are named otherwise in mlxgp:
    wrapping would lose weight updates, so it is refused in one line; their folders load."""
    folder = more_archs(arch)
    with pytest.raises(ValueError, match=rf"^\[interop\] mlx-lm model of architecture '{what}' is not supported"):
        mgp.generate(mlx_lm_model(folder), None, [1, 2, 3], max_tokens=2)
    ids = [1, 17, 300, 42, 99, 7]
    own, _ = mgp.load(str(folder))
    out = mgp.generate(own, None, ids, max_tokens=N, eos_token_id=2)
    assert_prefix_of_reference(out["tokens"], mlx_lm_greedy(mlx_lm_model(folder), ids, N), [2])
    with pytest.raises(TypeError, match=r"^\[interop\] expected an mlxgp Model or an mlx-lm model, got dict$"):
        mgp.generate({}, None, [1, 2, 3], max_tokens=2)


def test_persona_hooks_read_the_mlx_lm_module(mgp, tiny_hf_tok):
    """model['_persona_v'] = v on the nn.Module, the documented hook spellings; against mlx-lm's forward
    with the same edits (a residual add on the layer, a logits processor) and the mlxgp-loaded model."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm import load

    from mlx_gen_parity import LogitBiasHook, ResidualInjectionHook, extract_steering_vector, generate

    model, tokenizer = load(str(tiny_hf_tok))
    m2, t2 = mgp.load(str(tiny_hf_tok))
    pos, neg = ["I love it!", "What a great day."], ["I hate it.", "What a terrible day."]
    v = extract_steering_vector(model, tokenizer, pos, neg, layer=1)
    assert float(mx.abs(v - mgp.extract_steering_vector(m2, t2, pos, neg, layer=1)).max()) < 1e-6
    v = v / mx.linalg.norm(v) * 8.0
    model["_persona_v"] = v
    m2["_persona_v"] = v
    hooks = [ResidualInjectionHook(layer=0, param_key="_persona_v", alpha=1.5),
             LogitBiasHook(param_key="_persona_v", alpha=1.2)]
    prompt = "Describe Mondays."
    out = generate(model, tokenizer, prompt, max_tokens=N, hooks=hooks)
    plain = generate(model, tokenizer, prompt, max_tokens=N)
    assert out["tokens"] != plain["tokens"]
    assert generate(m2, t2, prompt, max_tokens=N, hooks=hooks)["tokens"] == out["tokens"]

    # The reference: mlx-lm's own forward with alpha * v added after block 0 and 1.2 * lm_head(v) added
    # to the logits.
    class AddAfter(nn.Module):
        def __init__(self, inner, delta):
            super().__init__()
            self.inner = inner
            self._delta = delta
            self.use_sliding = inner.use_sliding  # read by mlx-lm's llama forward

        def __call__(self, x, *a, **k):
            return self.inner(x, *a, **k) + self._delta

    bias = 1.2 * model.model.embed_tokens.as_linear(v)  # tied head
    layers = model.model.layers
    layers[0] = AddAfter(layers[0], 1.5 * v)
    try:
        ref = mlx_lm_greedy(model, out["prompt_token_ids"], N, logits_processors=[lambda _t, logits: logits + bias])
    finally:
        layers[0] = layers[0].inner
    assert_prefix_of_reference(out["tokens"], ref, tokenizer.eos_token_ids)

    # A vector swapped on the module takes effect at the next call; a deleted one is an error.
    model["_persona_v"] = -v
    assert generate(model, tokenizer, prompt, max_tokens=N, hooks=hooks)["tokens"] != out["tokens"]
    del model["_persona_v"]
    with pytest.raises(ValueError, match=r"^\[params\] no extra parameter '_persona_v'$"):
        generate(model, tokenizer, prompt, max_tokens=4, hooks=hooks)


def lm_loss(model, tokens, pad_id):
    """Mean next-token cross entropy with pad targets masked: the loss train_step computes."""
    import mlx.core as mx
    import mlx.nn as nn

    logits = model(tokens[:, :-1]).astype(mx.float32)
    targets = tokens[:, 1:]
    mask = targets != pad_id
    ce = nn.losses.cross_entropy(logits, targets) * mask
    return ce.sum() / mask.sum()


@pytest.mark.parametrize("arch", ["qwen2", "mistral3", "qwen3_vl", "qwen3_next", "qwen3_5"])
def test_train_step_on_mlx_lm_model_matches_mlx_value_and_grad(mgp, tiny_archs, more_archs, arch):
    """train_step(model, {'tokens': ...}, mlx.optimizers.AdamW(...) (SGD for qwen3_next / qwen3_5), cfg, pad_id=...) on an mlx-lm model
    against the same step done by mlx itself (nn.value_and_grad + the same optimizer class) on a second copy;
    afterwards mlx-lm's own forward runs on the trained weights (mistral3, qwen3_vl, qwen3_5: multimodal modules, whose
    language model's arrays are named language_model.* there; qwen3_next / qwen3_5: norms stored as 1 + w and convolutions
    [C, K, 1], which the wrapped model runs and writes back as they are)."""
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    from mlx.utils import tree_flatten

    from mlx_gen_parity import TrainingConfig, train_step

    folder = tiny_archs[arch] if arch in tiny_archs else more_archs(arch)
    model, ref_model = mlx_lm_model(folder), mlx_lm_model(folder)
    pad_id = 0
    g = np.random.default_rng(1)
    tokens = g.integers(3, 500, size=(2, 12))
    tokens[1, 9:] = pad_id
    tokens = mx.array(tokens)
    before = model(tokens)
    # AdamW's normalised step turns rounding-level gradient differences into lr-sized ones where a gradient is near
    # 0, and the delta nets' float32 rounding reaches that (mlx's own value_and_grad and mlxgp's differ by 7e-5 after
    # two AdamW steps, on attention's v_proj): SGD for them.
    delta_nets = arch in ("qwen3_next", "qwen3_5")
    lr = 5e-3 if delta_nets else 2e-4
    make = optim.SGD if delta_nets else optim.AdamW
    opt, ref_opt = make(learning_rate=lr), make(learning_rate=lr)
    cfg = TrainingConfig()
    for _ in range(2):
        r = train_step(model, {"tokens": tokens}, opt, cfg, pad_id=pad_id)
        loss, grads = nn.value_and_grad(ref_model, lambda m: lm_loss(m, tokens, pad_id))(ref_model)
        ref_opt.update(ref_model, grads)
        mx.eval(ref_model.parameters())
        assert abs(r["loss"] - loss.item()) < 1e-5, (r["loss"], loss.item())
        assert r["n_tokens"] == 2 * 11 - 3 and r["lr"] == pytest.approx(lr)
    ours, ref = dict(tree_flatten(model.parameters())), dict(tree_flatten(ref_model.parameters()))
    worst = max(float(mx.abs(ours[k] - ref[k]).max()) for k in ref)
    assert worst < 1e-5, worst
    after = model(tokens)  # mlx-lm's own forward on the arrays train_step wrote back
    # (These random delta nets move their logits by 2e-2 for parameters moved by 5e-6: their written-back arrays are
    # held to mlx's above, in the module's own convention, rather than their forward to ref_model's.)
    if not delta_nets:
        assert float(mx.abs(after - ref_model(tokens)).max()) < 1e-4
    assert float(mx.abs(after - before).max()) > 1e-4
    # loss_forward on the wrapped module agrees with mlx's loss on it.
    l2, n2 = mgp.loss_forward(model, {"tokens": tokens}, pad_id=pad_id)
    assert abs(l2.item() - lm_loss(model, tokens, pad_id).item()) < 1e-5 and n2.item() == 19


def test_mlx_optimizers_adamw_agrees_with_ours(mgp, tiny_llama, record_property):
    """mlx.optimizers.AdamW (bias_correction=True: torch's update rule) and the package's AdamW, three
    steps each on the same model: parameters within 1e-6."""
    import mlx.core as mx
    import mlx.optimizers as optim

    a, _ = mgp.load(str(tiny_llama))
    b, _ = mgp.load(str(tiny_llama))
    batches = [mx.array(np.random.default_rng(i).integers(3, 500, size=(2, 10))) for i in range(3)]
    theirs = optim.AdamW(learning_rate=1e-3, weight_decay=0.01, bias_correction=True)
    ours = mgp.AdamW(learning_rate=1e-3, weight_decay=0.01)
    for batch in batches:
        ra = mgp.train_step(a, batch, theirs, mgp.TrainingConfig())
        rb = mgp.train_step(b, batch, ours, mgp.TrainingConfig())
        assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-6)
    pa, pb = a.parameters(), b.parameters()
    worst = max(float(mx.abs(pa[k] - pb[k]).max()) for k in pb)
    record_property("adamw_max_abs_diff", worst)
    print(f"\nmlx.optimizers.AdamW vs mlx_gen_parity.AdamW after 3 steps: max |diff| {worst:.3g}")
    assert worst < 1e-6, worst
    # Other mlx optimizers drive the same path.
    for opt in (optim.SGD(learning_rate=1e-2, momentum=0.9), optim.Lion(learning_rate=1e-4), optim.Adam(1e-3)):
        c, _ = mgp.load(str(tiny_llama))
        first = mgp.train_step(c, batches[0], opt)["loss"]
        for _ in range(3):
            last = mgp.train_step(c, batches[0], opt)["loss"]
        assert last < first, (type(opt).__name__, first, last)
    with pytest.raises(TypeError, match=r"^\[train\] the optimizer must be"):
        mgp.train_step(c, batches[0], object())


def test_training_config_documented_spellings(mgp, tiny_llama):
    import mlx.core as mx

    cfg = mgp.TrainingConfig(dtype="bf16", loss_scale=1024.0)
    assert cfg.dtype == "bfloat16" and cfg.loss_scale == 1024.0
    same = mgp.TrainingConfig(dtype="bfloat16", loss_scale="static", loss_scale_value=1024.0)
    assert mgp.TrainingConfig(dtype="fp16", loss_scale="dynamic").loss_scale == "dynamic"
    assert mgp.TrainingConfig(dtype="fp32", loss_scale=None).loss_scale is None
    batch = mx.array(np.random.default_rng(0).integers(3, 500, size=(2, 10)))
    results = []
    for c in (cfg, same):
        model, _ = mgp.load(str(tiny_llama))
        results.append(mgp.train_step(model, {"input_ids": batch}, mgp.AdamW(1e-3), c))
    assert results[0] == results[1] and results[0]["loss_scale"] == 1024.0
    with pytest.raises(ValueError, match=r"^\[train\] unknown dtype 'bf17' \(supported: float32 / fp32"):
        mgp.TrainingConfig(dtype="bf17")
    with pytest.raises(ValueError, match=r"^\[train\] loss_scale must be None, a number"):
        mgp.TrainingConfig(loss_scale="sometimes")
    with pytest.raises(ValueError, match=r"^\[train\] a batch dict needs exactly one of tokens and input_ids$"):
        mgp.train_step(model, {"ids": batch}, mgp.AdamW())


def test_soft_prompt_trained_on_mlx_lm_module(mgp, tiny_archs):
    """SoftPromptHook(n_virtual=, param_key=) with the soft prompt on the nn.Module: the trained array goes
    back to the module, and generate with the hook equals mlx-lm's forward over [soft prompt; embeddings]."""
    import mlx.core as mx
    import mlx.optimizers as optim

    from mlx_gen_parity import SoftPromptHook, TrainingConfig, generate, train_step

    model = mlx_lm_model(tiny_archs["llama"])
    model["_soft_prompt"] = mx.zeros((4, model.args.hidden_size))
    start = model["_soft_prompt"]
    hook = SoftPromptHook(n_virtual=4, param_key="_soft_prompt")
    batch = {"tokens": mx.array(np.random.default_rng(2).integers(3, 500, size=(2, 10)))}
    losses = [train_step(model, batch, optim.Adam(learning_rate=5e-2), TrainingConfig(trainable=["_soft_prompt"]),
                         hooks=[hook])["loss"] for _ in range(4)]
    assert model["_soft_prompt"] is not start and float(mx.abs(model["_soft_prompt"]).max()) > 0
    ids = [1, 5, 9]
    out = generate(model, None, ids, max_tokens=1, hooks=[hook])
    h = mx.concatenate([model["_soft_prompt"][None], model.model.embed_tokens(mx.array([ids]))], axis=1)
    logits = model(mx.array([ids]), input_embeddings=h)  # mlx-lm's forward over the same embeddings
    assert out["tokens"][0] == int(mx.argmax(logits[0, -1]))
    assert losses[-1] < losses[0], losses


def test_draft_model_as_path_default_or_loaded(mgp, default_model, default_gguf, tiny_hf_tok):
    """draft_model_id as a path, 'default', an mlxgp model or an mlx-lm model: greedy speculative decoding
    gives the target's own tokens."""
    from mlx_lm import load

    model, tokenizer = default_model
    plain = mgp.generate(model, tokenizer, "The capital of France is", max_tokens=12)["tokens"]
    mlx_lm_draft, _ = load(str(tiny_hf_tok))  # same vocabulary as the default model
    for draft in (str(default_gguf), "default", model, mlx_lm_draft):
        cfg = mgp.GenerationConfig(max_tokens=12, use_speculative=True, draft_model_id=draft, num_draft_tokens=3)
        out = mgp.generate(model, tokenizer, "The capital of France is", cfg)
        assert out["tokens"] == plain, type(draft).__name__
        assert out["speculative"]["drafted_tokens"] > 0
    cfg = mgp.GenerationConfig(max_tokens=4, use_speculative=True, draft_model_id=model)
    assert cfg.copy(max_tokens=5).draft_model_object is model
    with pytest.raises(ValueError, match=r"^\[generate\] a loaded draft model works with one prompt"):
        mgp.generate(model, tokenizer, ["a", "b"], cfg)
